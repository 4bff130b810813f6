/* The STM32F4/F7 registers the shared STM32 support (bsp/stm32) touches: RCC, PWR, the
 * flash interface, GPIO, DBGMCU, and the Cortex-M core registers that bsp/cortex_m/cortex_m.h
 * does not define (DWT, NVIC). These blocks have the same addresses and bit positions on
 * both families for everything used here (RM0390 for the F446, RM0385 for the F746); what
 * differs (USART layout, caches, limits, where the unique id lives) is in the family's
 * stm32_family.h (bsp/stm32f4, bsp/stm32f7). */
#ifndef STM32_REGS_H
#define STM32_REGS_H

#include <stdint.h>

#include "cortex_m.h"

#define REG8(addr) (*(volatile uint8_t *)(addr))
#define REG16(addr) (*(volatile uint16_t *)(addr))

/* --- RCC: RM0385 §5.3, RM0390 §6.3 ------------------------------------------------ */
#define RCC_BASE 0x40023800u
#define RCC_CR REG32(RCC_BASE + 0x00u)
#define RCC_PLLCFGR REG32(RCC_BASE + 0x04u)
#define RCC_CFGR REG32(RCC_BASE + 0x08u)
#define RCC_AHB1ENR REG32(RCC_BASE + 0x30u)
#define RCC_APB1ENR REG32(RCC_BASE + 0x40u)
#define RCC_APB2ENR REG32(RCC_BASE + 0x44u)

#define RCC_CR_HSION (1u << 0)
#define RCC_CR_HSIRDY (1u << 1)
#define RCC_CR_HSEON (1u << 16)
#define RCC_CR_HSERDY (1u << 17)
#define RCC_CR_HSEBYP (1u << 18)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)

/* PLLM[5:0], PLLN[14:6], PLLP[17:16] (00=/2 .. 11=/8), PLLSRC bit 22, PLLQ[27:24]. The other
 * bits are reserved or unused here (F446: PLLR[30:28]) and keep their reset value. */
#define RCC_PLLCFGR_M(m) ((uint32_t)(m) << 0)
#define RCC_PLLCFGR_N(n) ((uint32_t)(n) << 6)
#define RCC_PLLCFGR_P(p) ((uint32_t)((p) / 2u - 1u) << 16)
#define RCC_PLLCFGR_SRC_HSE (1u << 22)
#define RCC_PLLCFGR_Q(q) ((uint32_t)(q) << 24)
#define RCC_PLLCFGR_FIELDS (0x3Fu | (0x1FFu << 6) | (3u << 16) | (1u << 22) | (0xFu << 24))

#define RCC_CFGR_SW_MASK (3u << 0)
#define RCC_CFGR_SW_HSI (0u << 0)
#define RCC_CFGR_SW_PLL (2u << 0)
#define RCC_CFGR_SWS_MASK (3u << 2)
#define RCC_CFGR_SWS_PLL (2u << 2)
#define RCC_CFGR_HPRE_MASK (0xFu << 4)
#define RCC_CFGR_HPRE_DIV1 (0u << 4) /* 0xxx: not divided */
#define RCC_CFGR_PPRE1_MASK (7u << 10)
#define RCC_CFGR_PPRE1_DIV4 (5u << 10) /* 101 */
#define RCC_CFGR_PPRE2_MASK (7u << 13)
#define RCC_CFGR_PPRE2_DIV2 (4u << 13) /* 100 */

#define RCC_AHB1ENR_GPIOAEN (1u << 0)
#define RCC_AHB1ENR_GPIOBEN (1u << 1)
#define RCC_AHB1ENR_GPIODEN (1u << 3)
#define RCC_APB1ENR_USART2EN (1u << 17)
#define RCC_APB1ENR_USART3EN (1u << 18)
#define RCC_APB1ENR_PWREN (1u << 28)
#define RCC_APB2ENR_USART1EN (1u << 4)

/* --- PWR: RM0385 §4.4 (PWR_CR1/CSR1), RM0390 §5.4 (PWR_CR/CSR): same bits ---------- */
#define PWR_BASE 0x40007000u
#define PWR_CR1 REG32(PWR_BASE + 0x00u)
#define PWR_CSR1 REG32(PWR_BASE + 0x04u)
#define PWR_CR1_VOS_MASK (3u << 14)
#define PWR_CR1_VOS_SCALE1 (3u << 14)
#define PWR_CR1_ODEN (1u << 16)
#define PWR_CR1_ODSWEN (1u << 17)
#define PWR_CSR1_VOSRDY (1u << 14)
#define PWR_CSR1_ODRDY (1u << 16)
#define PWR_CSR1_ODSWRDY (1u << 17)

/* --- Flash interface: RM0385 §3.7, RM0390 §3.8 ----------------------------------- */
#define FLASH_IF_BASE 0x40023C00u
#define FLASH_ACR REG32(FLASH_IF_BASE + 0x00u)
#define FLASH_ACR_LATENCY_MASK 0xFu
#define FLASH_ACR_PRFTEN (1u << 8)
/* F7: bit 9 ARTEN. F4: bit 9 ICEN, bit 10 DCEN, bit 11 ICRST, bit 12 DCRST. */
#define FLASH_ACR_ARTEN (1u << 9)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)
#define FLASH_ACR_ICRST (1u << 11)
#define FLASH_ACR_DCRST (1u << 12)

/* --- GPIO: RM0385 §6.4, RM0390 §7.4 ---------------------------------------------- */
#define GPIOA_BASE 0x40020000u
#define GPIOB_BASE 0x40020400u
#define GPIOD_BASE 0x40020C00u
/* MODER, PUPDR: 2 bits a pin. AFRL (pins 0-7), AFRH (pins 8-15): 4 bits a pin. */
#define GPIO_MODER(port) REG32((port) + 0x00u)
#define GPIO_PUPDR(port) REG32((port) + 0x0Cu)
#define GPIO_AFR(port, pin) REG32((port) + 0x20u + 4u * ((pin) / 8u))
#define GPIO_MODE_AF 2u
#define GPIO_PULL_NONE 0u
#define GPIO_PULL_UP 1u
#define GPIO_AF7_USART 7u /* USART1..3 on AF7: both families' alternate function tables */

/* --- DBGMCU: the device id, same address on every STM32F4/F7 (RM0385 §40.6.1) -------- */
#define DBGMCU_IDCODE REG32(0xE0042000u)
#define IDCODE_DEV_ID(v) ((v)&0xFFFu)
#define IDCODE_REV_ID(v) ((v) >> 16)

/* --- Cortex-M core: DWT, NVIC (ARMv7-M ARM) -------------------------------------- */
#define DEMCR REG32(0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL REG32(0xE0001000u)
#define DWT_CTRL_CYCCNTENA (1u << 0)
#define DWT_CYCCNT REG32(0xE0001004u)
#define DWT_LAR REG32(0xE0001FB0u)
#define DWT_LAR_UNLOCK 0xC5ACCE55u /* CoreSight software lock key (M7; ignored on the M4) */

#define NVIC_ISER(n) REG32(0xE000E100u + 4u * (n))
#define NVIC_ICPR(n) REG32(0xE000E280u + 4u * (n))
#define NVIC_IPR(irq) REG8(0xE000E400u + (irq)) /* byte per IRQ; bits 7:4 implemented */

#endif
