/* The serial link's USART on the STM32F4 boards, and the driver's interface to the rest
 * of the BSP (the same as bsp/stm32f7/usart.h). */
#ifndef STM32F4_USART_H
#define STM32F4_USART_H

#include <stdbool.h>
#include <stdint.h>

#include "cortex_m.h"
#include "stm32_family.h"

#if defined(BOARD_UART_USART2)
/* NUCLEO-F446RE (UM1724): USART2 on PA2 (TX) / PA3 (RX) is the ST-LINK virtual COM port
 * (solder bridges SB13/SB14 on, the default), clocked from APB1. */
#define LINK_USART USART2_BASE
#define LINK_USART_IRQN 38u /* RM0390 §10.2, vector table: USART2 global interrupt */
#else
#error "boards/<board>.toml [serial] uart must be USART2 (NUCLEO-F446RE's virtual COM port)"
#endif

/* Clocks, pins, 8N1 at BOARD_BAUD, RXNE interrupt into the receive ring. */
void usart_init(void);

/* The USART interrupt: moves the received byte into the ring, counts errors. */
RAMFUNC void usart_irq(void);

/* True when bsp_uart_getc() has a byte. */
bool usart_rx_pending(void);

#endif
