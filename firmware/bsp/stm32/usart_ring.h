/* What the STM32F4 and F7 USART drivers share: the receive ring the interrupt fills and the
 * thread drains, its error counters, and the GPIO alternate-function setup. Only the USART
 * register layouts differ between the families (F4: SR/DR; F7: ISR/RDR/TDR/ICR), so each
 * family's usart.c keeps its registers and includes this once. */
#ifndef STM32_USART_RING_H
#define STM32_USART_RING_H

#include <stdbool.h>
#include <stdint.h>

#include "usart.h" /* the family's registers (GPIO_*, RCC_*, USART_*) */

#define RX_RING_SIZE 1024u
_Static_assert((RX_RING_SIZE & (RX_RING_SIZE - 1u)) == 0u, "ring size must be a power of two");

/* Single producer (the interrupt writes head), single consumer (the thread writes tail);
 * free-running indices, so head - tail is the fill level even across wrap. */
static volatile uint8_t rx_ring[RX_RING_SIZE];
static volatile uint32_t rx_head, rx_tail;

/* Nothing reads these but a debugger (bsp.h has no error counter yet). */
static volatile struct {
    uint32_t overrun;    /* ORE: a byte arrived before the previous one was taken */
    uint32_t line_error; /* framing, noise or parity */
    uint32_t ring_full;  /* taken from the USART but dropped: the thread fell behind */
} usart_errors;

/* Called from the RAM-resident interrupt: always inlined, so no call reaches flash while a
 * sector erase stalls every fetch from it. */
__attribute__((always_inline)) static inline void rx_ring_push(uint8_t byte) {
    uint32_t head = rx_head;
    if (head - rx_tail < RX_RING_SIZE) {
        rx_ring[head % RX_RING_SIZE] = byte;
        rx_head = head + 1u; /* after the byte: the thread may read it from here on */
    } else {
        usart_errors.ring_full++;
    }
}

bool usart_rx_pending(void) {
    return rx_head != rx_tail;
}

int bsp_uart_getc(void) {
    uint32_t tail = rx_tail;
    if (tail == rx_head) return -1;
    uint8_t byte = rx_ring[tail % RX_RING_SIZE];
    rx_tail = tail + 1u; /* after the read: frees the slot for the interrupt */
    return byte;
}

static void gpio_af(uint32_t port, uint32_t pin, uint32_t af, uint32_t pull) {
    GPIO_PUPDR(port) = (GPIO_PUPDR(port) & ~(3u << (2u * pin))) | (pull << (2u * pin));
    uint32_t shift = 4u * (pin % 8u);
    GPIO_AFR(port, pin) = (GPIO_AFR(port, pin) & ~(0xFu << shift)) | (af << shift);
    GPIO_MODER(port) = (GPIO_MODER(port) & ~(3u << (2u * pin))) | (GPIO_MODE_AF << (2u * pin));
}

#endif
