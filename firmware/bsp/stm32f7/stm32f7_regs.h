/* The STM32F746 registers this BSP touches, plus the Cortex-M7 core registers that
 * bsp/cortex_m/cortex_m.h does not define (caches, DWT, NVIC). Only what is used.
 * Peripheral base addresses: RM0385 §2.2.2 (memory map, Table 1). */
#ifndef STM32F7_REGS_H
#define STM32F7_REGS_H

#include <stdint.h>

#include "cortex_m.h"

#define REG8(addr) (*(volatile uint8_t *)(addr))

/* --- RCC: RM0385 §5.3 ------------------------------------------------------------ */
#define RCC_BASE 0x40023800u
#define RCC_CR REG32(RCC_BASE + 0x00u)
#define RCC_PLLCFGR REG32(RCC_BASE + 0x04u)
#define RCC_CFGR REG32(RCC_BASE + 0x08u)
#define RCC_AHB1ENR REG32(RCC_BASE + 0x30u)
#define RCC_APB1ENR REG32(RCC_BASE + 0x40u)
#define RCC_APB2ENR REG32(RCC_BASE + 0x44u)
#define RCC_DCKCFGR2 REG32(RCC_BASE + 0x90u) /* 0x90 on F74x/75x; F4 parts put it at 0x94 */

#define RCC_CR_HSEON (1u << 16)
#define RCC_CR_HSERDY (1u << 17)
#define RCC_CR_HSEBYP (1u << 18)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)

/* PLLM[5:0], PLLN[14:6], PLLP[17:16] (00=/2 .. 11=/8), PLLSRC bit 22, PLLQ[27:24]. The other
 * bits are reserved and must keep their reset value (bit 29 resets to 1), hence a mask. */
#define RCC_PLLCFGR_M(m) ((uint32_t)(m) << 0)
#define RCC_PLLCFGR_N(n) ((uint32_t)(n) << 6)
#define RCC_PLLCFGR_P(p) ((uint32_t)((p) / 2u - 1u) << 16)
#define RCC_PLLCFGR_SRC_HSE (1u << 22)
#define RCC_PLLCFGR_Q(q) ((uint32_t)(q) << 24)
#define RCC_PLLCFGR_FIELDS (0x3Fu | (0x1FFu << 6) | (3u << 16) | (1u << 22) | (0xFu << 24))

#define RCC_CFGR_SW_MASK (3u << 0)
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
#define RCC_APB1ENR_USART3EN (1u << 18)
#define RCC_APB1ENR_PWREN (1u << 28)
#define RCC_APB2ENR_USART1EN (1u << 4)
/* USARTxSEL = 00 clocks the USART from its APB bus (PCLK2 for USART1, PCLK1 for USART3). */
#define RCC_DCKCFGR2_USART1SEL_MASK (3u << 0)
#define RCC_DCKCFGR2_USART3SEL_MASK (3u << 4)

/* --- PWR: RM0385 §4.4 ------------------------------------------------------------ */
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

/* --- Flash interface: RM0385 §3.7 (FLASH_ACR) ------------------------------------ */
#define FLASH_IF_BASE 0x40023C00u
#define FLASH_ACR REG32(FLASH_IF_BASE + 0x00u)
#define FLASH_ACR_LATENCY_MASK 0xFu
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ARTEN (1u << 9)

/* --- GPIO: RM0385 §6.4 ----------------------------------------------------------- */
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
#define GPIO_AF7_USART 7u /* USART1..3 on AF7: datasheet DS10916, alternate function table */

/* --- USART: RM0385 §31.8 --------------------------------------------------------- */
#define USART1_BASE 0x40011000u
#define USART3_BASE 0x40004800u
#define USART_CR1(u) REG32((u) + 0x00u)
#define USART_CR2(u) REG32((u) + 0x04u)
#define USART_CR3(u) REG32((u) + 0x08u)
#define USART_BRR(u) REG32((u) + 0x0Cu)
#define USART_RQR(u) REG32((u) + 0x18u)
#define USART_ISR(u) REG32((u) + 0x1Cu)
#define USART_ICR(u) REG32((u) + 0x20u)
#define USART_RDR(u) REG32((u) + 0x24u)
#define USART_TDR(u) REG32((u) + 0x28u)

#define USART_CR1_UE (1u << 0)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RXNEIE (1u << 5) /* also raises the interrupt on ORE */
#define USART_RQR_RXFRQ (1u << 3)
#define USART_ISR_PE (1u << 0)
#define USART_ISR_FE (1u << 1)
#define USART_ISR_NF (1u << 2)
#define USART_ISR_ORE (1u << 3)
#define USART_ISR_RXNE (1u << 5)
#define USART_ISR_TXE (1u << 7)
#define USART_ICR_PECF (1u << 0)
#define USART_ICR_FECF (1u << 1)
#define USART_ICR_NCF (1u << 2)
#define USART_ICR_ORECF (1u << 3)

/* --- Cortex-M7 core (ARMv7-M ARM; PM0253) ---------------------------------------- */
#define SCB_CCR_DC (1u << 16)
#define SCB_CCR_IC (1u << 17)
#define SCB_CCSIDR REG32(0xE000ED80u) /* geometry of the cache CSSELR selects */
#define SCB_CSSELR REG32(0xE000ED84u)
#define SCB_ICIALLU REG32(0xE000EF50u) /* invalidate the whole I-cache */
#define SCB_DCISW REG32(0xE000EF60u)   /* invalidate one D-cache line by set/way */

#define DEMCR REG32(0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL REG32(0xE0001000u)
#define DWT_CTRL_CYCCNTENA (1u << 0)
#define DWT_CYCCNT REG32(0xE0001004u)
#define DWT_LAR REG32(0xE0001FB0u)
#define DWT_LAR_UNLOCK 0xC5ACCE55u /* CoreSight software lock key */

#define NVIC_ISER(n) REG32(0xE000E100u + 4u * (n))
#define NVIC_ICPR(n) REG32(0xE000E280u + 4u * (n))
#define NVIC_IPR(irq) REG8(0xE000E400u + (irq)) /* byte per IRQ; the F746 implements bits 7:4 */

#endif
