/* SYSCLK from the main PLL fed by the HSE (Nucleo: the ST-LINK's 8 MHz MCO in bypass mode;
 * Disco: a 25 MHz crystal). The order is RM0385's: voltage scale while the PLL is off, PLL
 * on, over-drive (§4.1.4 "Entering Over-drive mode"), flash wait states before the clock
 * rises (§3.3.2), bus prescalers, and only then the switch to the PLL.
 * Assumes the reset state: Reset_Handler is the only way in. */
#include <stdint.h>

#include "clock.h"
#include "stm32f7_regs.h"

/* RCC_PLLCFGR (RM0385 §5.3.2): the VCO input must be 1..2 MHz and 2 MHz is recommended to
 * limit jitter; a 25 MHz crystal only divides down to 1 MHz exactly. */
#if (BOARD_HSE_HZ % 2000000u) == 0
#define PLL_IN_HZ 2000000u
#else
#define PLL_IN_HZ 1000000u
#endif
#define PLL_P 2u
#define PLL_VCO_HZ (BOARD_CLOCK_HZ * PLL_P)
#define PLL_M (BOARD_HSE_HZ / PLL_IN_HZ)
#define PLL_N (PLL_VCO_HZ / PLL_IN_HZ)
#define PLL_Q (PLL_VCO_HZ / 48000000u) /* USB OTG FS, SDMMC and RNG need exactly 48 MHz */

_Static_assert(BOARD_HSE_HZ % PLL_IN_HZ == 0, "HSE is not a whole number of MHz");
_Static_assert(PLL_M >= 2u && PLL_M <= 63u, "PLLM out of range 2..63");
_Static_assert(PLL_N >= 50u && PLL_N <= 432u, "PLLN out of range 50..432");
_Static_assert(PLL_N* PLL_IN_HZ == PLL_VCO_HZ, "SYSCLK is not reachable with PLLP = 2");
_Static_assert(PLL_VCO_HZ >= 100000000u && PLL_VCO_HZ <= 432000000u, "VCO out of 100..432 MHz");
_Static_assert(PLL_Q >= 2u && PLL_Q <= 15u && PLL_Q * 48000000u == PLL_VCO_HZ,
               "no PLLQ gives exactly 48 MHz");

/* RM0385 §3.3.2 (read access latency, 2.7-3.6 V): one wait state per started 30 MHz of
 * HCLK beyond the first, so 7 WS at 216 MHz. */
#define FLASH_WAIT_STATES ((BOARD_CLOCK_HZ - 1u) / 30000000u)
_Static_assert(BOARD_CLOCK_HZ != 216000000u || FLASH_WAIT_STATES == 7u, "216 MHz needs 7 WS");

/* Scale 1 alone tops out at 180 MHz; above that the regulator needs over-drive (§4.1.4). */
#define NEEDS_OVERDRIVE (BOARD_CLOCK_HZ > 180000000u)

void clock_init(void) {
    RCC_APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC_APB1ENR; /* read back: the enable must land before PWR is written */
    cm_dsb();

    /* VOS can change only while the PLL is off and applies once it runs (§4.4.1). */
    PWR_CR1 = (PWR_CR1 & ~PWR_CR1_VOS_MASK) | PWR_CR1_VOS_SCALE1;

#if BOARD_HSE_BYPASS
    RCC_CR |= RCC_CR_HSEBYP; /* writable only while HSEON = 0 (§5.3.1) */
#endif
    RCC_CR |= RCC_CR_HSEON;
    while (!(RCC_CR & RCC_CR_HSERDY)) {
        /* No HSE means no usable clock: a debugger halting here sees why. */
    }

    RCC_PLLCFGR = (RCC_PLLCFGR & ~RCC_PLLCFGR_FIELDS) | RCC_PLLCFGR_M(PLL_M) |
                  RCC_PLLCFGR_N(PLL_N) | RCC_PLLCFGR_P(PLL_P) | RCC_PLLCFGR_SRC_HSE |
                  RCC_PLLCFGR_Q(PLL_Q);
    RCC_CR |= RCC_CR_PLLON;
    while (!(RCC_CR & RCC_CR_PLLRDY)) {
    }
    while (!(PWR_CSR1 & PWR_CSR1_VOSRDY)) {
    }

    if (NEEDS_OVERDRIVE) {
        PWR_CR1 |= PWR_CR1_ODEN;
        while (!(PWR_CSR1 & PWR_CSR1_ODRDY)) {
        }
        PWR_CR1 |= PWR_CR1_ODSWEN; /* the core stalls during the regulator switch */
        while (!(PWR_CSR1 & PWR_CSR1_ODSWRDY)) {
        }
    }

    /* ART and prefetch only serve fetches over the ITCM bus (0x00200000); this image runs
     * from the AXIM alias (0x08000000), where the L1 caches do that job. Harmless to enable,
     * and in place should code ever be linked for ITCM. */
    FLASH_ACR = (FLASH_ACR & ~FLASH_ACR_LATENCY_MASK) | FLASH_WAIT_STATES | FLASH_ACR_ARTEN |
                FLASH_ACR_PRFTEN;
    while ((FLASH_ACR & FLASH_ACR_LATENCY_MASK) != FLASH_WAIT_STATES) {
        /* §3.3.2: the new latency must read back before the clock goes up */
    }

    _Static_assert(APB1_DIV == 4u && APB2_DIV == 2u, "prescaler encodings below assume /4, /2");
    RCC_CFGR = (RCC_CFGR & ~(RCC_CFGR_HPRE_MASK | RCC_CFGR_PPRE1_MASK | RCC_CFGR_PPRE2_MASK)) |
               RCC_CFGR_HPRE_DIV1 | RCC_CFGR_PPRE1_DIV4 | RCC_CFGR_PPRE2_DIV2;
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL;
    while ((RCC_CFGR & RCC_CFGR_SWS_MASK) != RCC_CFGR_SWS_PLL) {
    }
}
