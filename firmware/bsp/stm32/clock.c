/* SYSCLK from the main PLL fed by the HSE (Nucleo: the ST-LINK's 8 MHz MCO in bypass mode;
 * Disco: a 25 MHz crystal), falling back to the HSI. The order is the reference manuals'
 * (RM0385 §4.1.4 and §3.3.2, RM0390 §5.1.4 and §3.4.1): voltage scale while the PLL is off,
 * PLL on, over-drive, flash wait states before the clock rises, bus prescalers, and only
 * then the switch to the PLL. Every ready flag is awaited with a timeout measured by the DWT
 * cycle counter (which counts HSI cycles until the switch): a clock that never starts is
 * reported (clock_problem(), logged once the UART runs) instead of hanging before any output.
 * Assumes the reset state: Reset_Handler is the only way in. */
#include <stdbool.h>
#include <stdint.h>

#include "clock.h"

/* RCC_PLLCFGR: the VCO input must be 1..2 MHz, 2 MHz recommended to limit jitter; a 25 MHz
 * crystal only divides down to 1 MHz exactly. */
#if (BOARD_HSE_HZ % 2000000u) == 0
#define PLL_IN_HZ 2000000u
#else
#define PLL_IN_HZ 1000000u
#endif
#define PLL_P 2u
#define PLL_VCO_HZ (BOARD_CLOCK_HZ * PLL_P)
#define PLL_M_HSE (BOARD_HSE_HZ / PLL_IN_HZ)
#define PLL_M_HSI (HSI_HZ / PLL_IN_HZ)
#define PLL_N (PLL_VCO_HZ / PLL_IN_HZ)
#define PLL_Q ((PLL_VCO_HZ + 48000000u - 1u) / 48000000u) /* 48 MHz or just below */

_Static_assert(BOARD_HSE_HZ % PLL_IN_HZ == 0, "HSE is not a whole number of MHz");
_Static_assert(PLL_M_HSE >= 2u && PLL_M_HSE <= 63u, "PLLM out of range 2..63");
_Static_assert(PLL_N >= 50u && PLL_N <= 432u, "PLLN out of range 50..432");
_Static_assert(PLL_N *PLL_IN_HZ == PLL_VCO_HZ, "SYSCLK is not reachable with PLLP = 2");
_Static_assert(PLL_VCO_HZ >= 100000000u && PLL_VCO_HZ <= 432000000u, "VCO out of 100..432 MHz");
_Static_assert(PLL_Q >= 2u && PLL_Q <= 15u, "PLLQ out of range 2..15");
_Static_assert(!STM32_PLLQ_MUST_BE_48MHZ || PLL_Q * 48000000u == PLL_VCO_HZ,
               "no PLLQ gives exactly 48 MHz");

/* One wait state per started 30 MHz of HCLK beyond the first (2.7-3.6 V): 7 at 216 MHz,
 * 5 at 180 MHz. */
#define FLASH_WAIT_STATES ((BOARD_CLOCK_HZ - 1u) / 30000000u)
_Static_assert(BOARD_CLOCK_HZ != 216000000u || FLASH_WAIT_STATES == 7u, "216 MHz needs 7 WS");
_Static_assert(BOARD_CLOCK_HZ != 180000000u || FLASH_WAIT_STATES == 5u, "180 MHz needs 5 WS");

#define NEEDS_OVERDRIVE (BOARD_CLOCK_HZ > STM32_OVERDRIVE_ABOVE_HZ)

/* Timeouts in HSI cycles (16 per microsecond). HSE start-up is specified at 2 ms for a
 * crystal (bypass: immediate); PLL lock and the regulator take about 100 us. */
#define MS_AT_HSI (HSI_HZ / 1000u)
#define HSE_TIMEOUT (100u * MS_AT_HSI)
#define STEP_TIMEOUT (10u * MS_AT_HSI)

static uint32_t hclk_hz = HSI_HZ, pclk1_hz = HSI_HZ, pclk2_hz = HSI_HZ;
static const char *source = "16 MHz HSI (reset clock)";
static const char *problem;

uint32_t clock_hclk_hz(void) {
    return hclk_hz;
}
uint32_t clock_pclk1_hz(void) {
    return pclk1_hz;
}
uint32_t clock_pclk2_hz(void) {
    return pclk2_hz;
}
const char *clock_source(void) {
    return source;
}
const char *clock_problem(void) {
    return problem;
}

static void cycle_counter_start(void) {
    DEMCR |= DEMCR_TRCENA;
    DWT_LAR = DWT_LAR_UNLOCK; /* M7: CoreSight lock; a write the M4 ignores */
    DWT_CYCCNT = 0u;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
}

/* True once (reg & mask) == want; false after `cycles` cycles without it. */
static bool await(volatile uint32_t *reg, uint32_t mask, uint32_t want, uint32_t cycles) {
    uint32_t t0 = DWT_CYCCNT;
    while ((*reg & mask) != want) {
        if (DWT_CYCCNT - t0 > cycles) return false;
    }
    return true;
}

/* Leaves the chip on the HSI with the PLL off: every peripheral clock is 16 MHz. */
static void stay_on_hsi(const char *why) {
    problem = why;
    RCC_CFGR &=
        ~(RCC_CFGR_SW_MASK | RCC_CFGR_HPRE_MASK | RCC_CFGR_PPRE1_MASK | RCC_CFGR_PPRE2_MASK);
    RCC_CR &= ~RCC_CR_PLLON;
    PWR_CR1 &= ~(PWR_CR1_ODSWEN | PWR_CR1_ODEN);
    hclk_hz = pclk1_hz = pclk2_hz = HSI_HZ;
    source = "16 MHz HSI (fallback)";
}

void clock_init(void) {
    cycle_counter_start();
    RCC_APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC_APB1ENR; /* read back: the enable must land before PWR is written */
    cm_dsb();

    /* VOS can change only while the PLL is off and applies once it runs. */
    PWR_CR1 = (PWR_CR1 & ~PWR_CR1_VOS_MASK) | PWR_CR1_VOS_SCALE1;

#if BOARD_HSE_BYPASS
    RCC_CR |= RCC_CR_HSEBYP; /* writable only while HSEON = 0 */
#endif
    RCC_CR |= RCC_CR_HSEON;
    bool hse = await(&RCC_CR, RCC_CR_HSERDY, RCC_CR_HSERDY, HSE_TIMEOUT);
    uint32_t pll_src = RCC_PLLCFGR_SRC_HSE, pll_m = PLL_M_HSE;
    if (hse) {
        source = BOARD_HSE_BYPASS ? "PLL from the HSE (external clock, bypass)"
                                  : "PLL from the HSE (crystal)";
    } else {
        RCC_CR &= ~(RCC_CR_HSEON | RCC_CR_HSEBYP);
        pll_src = 0u;
        pll_m = PLL_M_HSI;
        source = "PLL from the 16 MHz HSI";
        problem =
            BOARD_HSE_BYPASS
                ? "HSE did not start within 100 ms (no clock from the ST-LINK MCO: check its "
                  "solder bridge and ST-LINK firmware); the PLL runs from the HSI (1 % accuracy)"
                : "HSE crystal did not start within 100 ms; the PLL runs from the HSI "
                  "(1 % accuracy)";
    }

    RCC_PLLCFGR = (RCC_PLLCFGR & ~RCC_PLLCFGR_FIELDS) | RCC_PLLCFGR_M(pll_m) |
                  RCC_PLLCFGR_N(PLL_N) | RCC_PLLCFGR_P(PLL_P) | pll_src | RCC_PLLCFGR_Q(PLL_Q);
    RCC_CR |= RCC_CR_PLLON;
    if (!await(&RCC_CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY, STEP_TIMEOUT)) {
        stay_on_hsi("PLL did not lock within 10 ms; running on the 16 MHz HSI");
        return;
    }
    if (!await(&PWR_CSR1, PWR_CSR1_VOSRDY, PWR_CSR1_VOSRDY, STEP_TIMEOUT)) {
        stay_on_hsi("voltage regulator (VOSRDY) not ready within 10 ms; running on the 16 MHz HSI");
        return;
    }

    if (NEEDS_OVERDRIVE) {
        PWR_CR1 |= PWR_CR1_ODEN;
        if (!await(&PWR_CSR1, PWR_CSR1_ODRDY, PWR_CSR1_ODRDY, STEP_TIMEOUT)) {
            stay_on_hsi("over-drive (ODRDY) not ready within 10 ms; running on the 16 MHz HSI");
            return;
        }
        PWR_CR1 |= PWR_CR1_ODSWEN; /* the core stalls during the regulator switch */
        if (!await(&PWR_CSR1, PWR_CSR1_ODSWRDY, PWR_CSR1_ODSWRDY, STEP_TIMEOUT)) {
            stay_on_hsi("over-drive switch (ODSWRDY) not ready within 10 ms; running on the HSI");
            return;
        }
    }

    /* The new latency must read back before the clock goes up. */
    FLASH_ACR = (FLASH_ACR & ~FLASH_ACR_LATENCY_MASK) | FLASH_WAIT_STATES | STM32_FLASH_ACR_ACCEL;
    if (!await(&FLASH_ACR, FLASH_ACR_LATENCY_MASK, FLASH_WAIT_STATES, STEP_TIMEOUT)) {
        stay_on_hsi("flash wait states did not read back; running on the 16 MHz HSI");
        return;
    }

    _Static_assert(APB1_DIV == 4u && APB2_DIV == 2u, "prescaler encodings below assume /4, /2");
    RCC_CFGR = (RCC_CFGR & ~(RCC_CFGR_HPRE_MASK | RCC_CFGR_PPRE1_MASK | RCC_CFGR_PPRE2_MASK)) |
               RCC_CFGR_HPRE_DIV1 | RCC_CFGR_PPRE1_DIV4 | RCC_CFGR_PPRE2_DIV2;
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL;
    if (!await(&RCC_CFGR, RCC_CFGR_SWS_MASK, RCC_CFGR_SWS_PLL, STEP_TIMEOUT)) {
        stay_on_hsi("the switch to the PLL did not complete within 10 ms; running on the HSI");
        return;
    }
    hclk_hz = BOARD_CLOCK_HZ;
    pclk1_hz = BOARD_CLOCK_HZ / APB1_DIV;
    pclk2_hz = BOARD_CLOCK_HZ / APB2_DIV;
}
