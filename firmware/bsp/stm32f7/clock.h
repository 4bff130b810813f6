/* The clock tree, written once: clock.c programs it and usart.c derives its baud divisor
 * from it. SYSCLK = HCLK = BOARD_CLOCK_HZ (216 MHz), APB1 = HCLK/4, APB2 = HCLK/2. */
#ifndef STM32F7_CLOCK_H
#define STM32F7_CLOCK_H

#include <stdint.h>

#if !defined(BOARD_CLOCK_HZ) || !defined(BOARD_HSE_HZ) || !defined(BOARD_HSE_BYPASS)
#error "BOARD_CLOCK_HZ, BOARD_HSE_HZ and BOARD_HSE_BYPASS come from boards/<board>.toml"
#endif

#define APB1_DIV 4u
#define APB2_DIV 2u
#define PCLK1_HZ (BOARD_CLOCK_HZ / APB1_DIV)
#define PCLK2_HZ (BOARD_CLOCK_HZ / APB2_DIV)

/* Datasheet limits with over-drive on (RM0385 §5.2): HCLK 216, APB1 54, APB2 108 MHz. */
_Static_assert(BOARD_CLOCK_HZ <= 216000000u, "the STM32F746 runs at most at 216 MHz");
_Static_assert(PCLK1_HZ <= 54000000u, "APB1 is limited to 54 MHz");
_Static_assert(PCLK2_HZ <= 108000000u, "APB2 is limited to 108 MHz");

/* Brings SYSCLK from the 16 MHz HSI after reset to BOARD_CLOCK_HZ from the HSE PLL. */
void clock_init(void);

#endif
