/* The clock tree, brought up once by clock_init() and read by the USART (baud divisor) and
 * the tick. Target: SYSCLK = HCLK = BOARD_CLOCK_HZ from the main PLL, APB1 = HCLK/4,
 * APB2 = HCLK/2. Every wait has a timeout: a board whose HSE never starts (no ST-LINK MCO,
 * a missing solder bridge) runs the PLL from the 16 MHz HSI instead, and if the PLL or the
 * regulator fails the chip stays on the HSI. The clocks then differ from the target, so the
 * USART and the tick ask for the real ones here; clock_problem() says what happened. */
#ifndef STM32_CLOCK_H
#define STM32_CLOCK_H

#include <stdint.h>

#include "stm32_family.h"

#if !defined(BOARD_CLOCK_HZ) || !defined(BOARD_HSE_HZ) || !defined(BOARD_HSE_BYPASS)
#error "BOARD_CLOCK_HZ, BOARD_HSE_HZ and BOARD_HSE_BYPASS come from boards/<board>.toml"
#endif

#define APB1_DIV 4u
#define APB2_DIV 2u
#define HSI_HZ 16000000u

_Static_assert(BOARD_CLOCK_HZ <= STM32_MAX_HCLK_HZ, "BOARD_CLOCK_HZ above the chip's maximum");
_Static_assert(BOARD_CLOCK_HZ / APB1_DIV <= STM32_MAX_PCLK1_HZ, "APB1 above its limit");
_Static_assert(BOARD_CLOCK_HZ / APB2_DIV <= STM32_MAX_PCLK2_HZ, "APB2 above its limit");

/* Brings SYSCLK from the 16 MHz HSI after reset to BOARD_CLOCK_HZ, or as close as the
 * hardware allows (see above). Starts the DWT cycle counter, which times the waits. */
void clock_init(void);

uint32_t clock_hclk_hz(void);
uint32_t clock_pclk1_hz(void);
uint32_t clock_pclk2_hz(void);

/* "216 MHz from the PLL on HSE 8 MHz (bypass)" and the like. */
const char *clock_source(void);

/* NULL when the target clock runs; otherwise what failed and what runs instead. */
const char *clock_problem(void);

#endif
