/* What the STM32F7 family (STM32F746: NUCLEO-F746ZG, STM32F746G-DISCO) adds to or changes
 * from the shared STM32 support in bsp/stm32: its limits, where the factory data lives, the
 * USART register layout, the L1 caches. RM0385. */
#ifndef STM32_FAMILY_H
#define STM32_FAMILY_H

#include "stm32_regs.h"

#define STM32_FAMILY "STM32F7"

/* Datasheet limits with over-drive on (RM0385 §5.2): HCLK 216, APB1 54, APB2 108 MHz.
 * Scale 1 alone tops out at 180 MHz; above that the regulator needs over-drive (§4.1.4). */
#define STM32_MAX_HCLK_HZ 216000000u
#define STM32_MAX_PCLK1_HZ 54000000u
#define STM32_MAX_PCLK2_HZ 108000000u
#define STM32_OVERDRIVE_ABOVE_HZ 180000000u
/* USB OTG FS, SDMMC and RNG need exactly 48 MHz from PLLQ (no other 48 MHz source used). */
#define STM32_PLLQ_MUST_BE_48MHZ 1
/* Flash accelerator: ART (it serves ITCM fetches only; the L1 caches serve the AXI alias). */
#define STM32_FLASH_ACR_ACCEL (FLASH_ACR_ARTEN | FLASH_ACR_PRFTEN)

/* Factory data (RM0385 §41.1, §41.2): 96-bit unique id, flash size in KB. */
#define STM32_UID_ADDR 0x1FF0F420u
#define STM32_FLASH_SIZE_ADDR 0x1FF0F442u

#define STM32_HAS_L1_CACHE 1

/* --- kernel clock select of the USARTs (RM0385 §5.3.26) ------------------------------ */
#define RCC_DCKCFGR2 REG32(RCC_BASE + 0x90u)
#define RCC_DCKCFGR2_USART1SEL_MASK (3u << 0) /* 00: the APB clock */
#define RCC_DCKCFGR2_USART3SEL_MASK (3u << 4)

/* --- USART: RM0385 §31.8 (the ISR/ICR/RDR/TDR layout) --------------------------------- */
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

/* --- Cortex-M7 L1 caches (PM0253) ---------------------------------------------------- */
#define SCB_CCR_DC (1u << 16)
#define SCB_CCR_IC (1u << 17)
#define SCB_CCSIDR REG32(0xE000ED80u) /* geometry of the cache CSSELR selects */
#define SCB_CSSELR REG32(0xE000ED84u)
#define SCB_ICIALLU REG32(0xE000EF50u) /* invalidate the whole I-cache */
#define SCB_DCIMVAC REG32(0xE000EF5Cu) /* invalidate a D-cache line by address */
#define SCB_DCISW REG32(0xE000EF60u)   /* invalidate one D-cache line by set/way */
#define DCACHE_LINE 32u

#endif
