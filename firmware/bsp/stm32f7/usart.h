/* The serial link's USART: which one each board wires to the ST-LINK virtual COM port,
 * and the driver's interface to the rest of the BSP. */
#ifndef STM32F7_USART_H
#define STM32F7_USART_H

#include <stdbool.h>
#include <stdint.h>

#include "cortex_m.h"
#include "stm32_family.h"

#if defined(BOARD_UART_USART3) && !defined(BOARD_UART_USART1)
/* NUCLEO-F746ZG (UM1974): USART3 on PD8 (TX) / PD9 (RX), clocked from APB1. */
#define LINK_USART USART3_BASE
#define LINK_USART_IRQN 39u /* RM0385 §10.1.2, vector table: USART3 global interrupt */
#elif defined(BOARD_UART_USART1) && !defined(BOARD_UART_USART3)
/* STM32F746G-DISCO (UM1907): USART1 on PA9 (TX) / PB7 (RX), clocked from APB2. */
#define LINK_USART USART1_BASE
#define LINK_USART_IRQN 37u /* RM0385 §10.1.2, vector table: USART1 global interrupt */
#else
#error "boards/<board>.toml [serial] uart must be USART3 (Nucleo) or USART1 (Disco)"
#endif

/* Clocks, pins, 8N1 at BOARD_BAUD, RXNE interrupt into the receive ring. */
void usart_init(void);

/* The USART interrupt: moves the received byte into the ring, counts errors. */
RAMFUNC void usart_irq(void);

/* True when bsp_uart_getc() has a byte. */
bool usart_rx_pending(void);

#endif
