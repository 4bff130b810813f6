/* What the STM32F4 family (STM32F446RE: NUCLEO-F446RE) adds to or changes from the shared
 * STM32 support in bsp/stm32: its limits, where the factory data lives, the (older) USART
 * register layout. RM0390 (STM32F446xx reference manual), DS10693 (datasheet). */
#ifndef STM32_FAMILY_H
#define STM32_FAMILY_H

#include "stm32_regs.h"

#define STM32_FAMILY "STM32F4"

/* DS10693 §6.3.1 with over-drive: HCLK 180, APB1 45, APB2 90 MHz. Scale 1 without
 * over-drive tops out at 168 MHz (RM0390 §5.1.4). */
#define STM32_MAX_HCLK_HZ 180000000u
#define STM32_MAX_PCLK1_HZ 45000000u
#define STM32_MAX_PCLK2_HZ 90000000u
#define STM32_OVERDRIVE_ABOVE_HZ 168000000u
/* 180 MHz leaves no PLLQ giving exactly 48 MHz (VCO 360 MHz); USB would take PLLSAI. Nothing
 * here uses USB, so PLLQ only has to keep its outputs at or below 48 MHz. */
#define STM32_PLLQ_MUST_BE_48MHZ 0
/* Flash accelerator (ART): prefetch, instruction and data caches (RM0390 §3.4.2). */
#define STM32_FLASH_ACR_ACCEL (FLASH_ACR_ICEN | FLASH_ACR_DCEN | FLASH_ACR_PRFTEN)

/* Factory data (RM0390 §39.1, §39.2): 96-bit unique id, flash size in KB. */
#define STM32_UID_ADDR 0x1FFF7A10u
#define STM32_FLASH_SIZE_ADDR 0x1FFF7A22u

#define STM32_HAS_L1_CACHE 0

/* --- USART: RM0390 §25.6 (the SR/DR layout) ------------------------------------------ */
#define USART2_BASE 0x40004400u
#define USART_SR(u) REG32((u) + 0x00u)
#define USART_DR(u) REG32((u) + 0x04u)
#define USART_BRR(u) REG32((u) + 0x08u)
#define USART_CR1(u) REG32((u) + 0x0Cu)
#define USART_CR2(u) REG32((u) + 0x10u)
#define USART_CR3(u) REG32((u) + 0x14u)

#define USART_SR_PE (1u << 0)
#define USART_SR_FE (1u << 1)
#define USART_SR_NF (1u << 2)
#define USART_SR_ORE (1u << 3)
#define USART_SR_RXNE (1u << 5)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RXNEIE (1u << 5) /* also raises the interrupt on ORE */
#define USART_CR1_UE (1u << 13)

#endif
