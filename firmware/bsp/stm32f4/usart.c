/* Serial link driver for the STM32F4's USART (RM0390 §25, the SR/DR register layout):
 * polled transmit (safe in fault handlers with interrupts off), interrupt-driven receive into
 * a ring buffer. The USART has a one-byte receive register, so bytes must be taken within
 * one character time (87 us at 115200 baud) or ORE is set and the next byte is lost: the
 * interrupt has the highest priority, and it runs from RAM so that a flash erase does not
 * stall it (stm32/flash.c). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bsp.h"
#include "clock.h"
#include "usart.h"
#include "usart_ring.h"

#ifndef BOARD_BAUD
#error "BOARD_BAUD comes from boards/<board>.toml ([serial] baud)"
#endif

#define TX_PORT GPIOA_BASE
#define TX_PIN 2u
#define RX_PORT GPIOA_BASE
#define RX_PIN 3u

/* RM0390 §25.4.4: with OVER8 = 0, BRR holds USARTDIV in 12.4 fixed point, which is
 * f_ck / baud rounded (45 MHz / 115200 -> 391, +0.03 %; 16 MHz HSI fallback -> 139). */
#define USART_BRR_VALUE ((clock_pclk1_hz() + BOARD_BAUD / 2u) / BOARD_BAUD)

static bool usart_ready;

#define USART_IRQ_PRIORITY 0x00u /* highest; see the deadline above */

void usart_init(void) {
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN;
    RCC_APB1ENR |= RCC_APB1ENR_USART2EN;
    (void)RCC_APB1ENR; /* read back + DSB: the clock enable lands before the USART is used */
    cm_dsb();

    gpio_af(RX_PORT, RX_PIN, GPIO_AF7_USART, GPIO_PULL_UP);

    /* 8N1: M = 0, PCE = 0, OVER8 = 0; CR2 STOP = 00; CR3 = 0 (no flow control). */
    USART_CR1(LINK_USART) = 0u;
    USART_BRR(LINK_USART) = USART_BRR_VALUE;
    USART_CR2(LINK_USART) = 0u;
    USART_CR3(LINK_USART) = 0u;
    USART_CR1(LINK_USART) = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE;

    /* TX joins the pin only once the transmitter drives it idle-high. */
    gpio_af(TX_PORT, TX_PIN, GPIO_AF7_USART, GPIO_PULL_NONE);

    /* Drop whatever the line produced before: reading SR then DR clears RXNE/ORE/FE/NF/PE. */
    (void)USART_SR(LINK_USART);
    (void)USART_DR(LINK_USART);

    NVIC_ICPR(LINK_USART_IRQN / 32u) = 1u << (LINK_USART_IRQN % 32u);
    NVIC_IPR(LINK_USART_IRQN) = USART_IRQ_PRIORITY;
    NVIC_ISER(LINK_USART_IRQN / 32u) = 1u << (LINK_USART_IRQN % 32u);
    usart_ready = true;
}

RAMFUNC void usart_irq(void) {
    uint32_t sr = USART_SR(LINK_USART);
    /* Reading SR then DR takes the byte and clears RXNE and the error flags (ORE, FE, NF, PE). */
    if (sr & (USART_SR_RXNE | USART_SR_ORE | USART_SR_FE | USART_SR_NF | USART_SR_PE)) {
        uint8_t byte = (uint8_t)USART_DR(LINK_USART);
        if (sr & USART_SR_ORE) usart_errors.overrun++;
        if (sr & (USART_SR_FE | USART_SR_NF | USART_SR_PE)) usart_errors.line_error++;
        if (sr & USART_SR_RXNE) rx_ring_push(byte);
    }
}

void bsp_uart_write(const uint8_t *data, size_t n) {
    if (!usart_ready) return; /* before bsp_init the USART has no clock: TXE never sets */
    for (size_t i = 0; i < n; i++) {
        while (!(USART_SR(LINK_USART) & USART_SR_TXE)) {
        }
        USART_DR(LINK_USART) = data[i];
    }
}
