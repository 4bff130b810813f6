/* Serial link driver: polled transmit (safe in fault handlers with interrupts off),
 * interrupt-driven receive into a ring buffer. The USART has a one-byte receive register,
 * so bytes must be taken within one character time (87 us at 115200 baud) or ORE is set
 * and the next byte is lost: the interrupt has the highest priority for that reason. */
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

#if defined(BOARD_UART_USART3)
#define USART_KERNEL_HZ clock_pclk1_hz()
#define TX_PORT GPIOD_BASE
#define TX_PIN 8u
#define RX_PORT GPIOD_BASE
#define RX_PIN 9u
#else
#define USART_KERNEL_HZ clock_pclk2_hz()
#define TX_PORT GPIOA_BASE
#define TX_PIN 9u
#define RX_PORT GPIOB_BASE
#define RX_PIN 7u
#endif

/* RM0385 §31.5.4: with OVER8 = 0, BRR = USARTDIV = f_ck / baud, rounded to nearest
 * (54 MHz / 115200 -> 469, 108 MHz / 115200 -> 938: both -0.05 %; on the 16 MHz HSI fallback
 * 139, +0.08 %). BRR must be >= 16. The kernel clock is the one that runs (clock.h). */
#define USART_BRR_VALUE ((USART_KERNEL_HZ + BOARD_BAUD / 2u) / BOARD_BAUD)

static bool usart_ready;

#define USART_IRQ_PRIORITY 0x00u /* highest; see the deadline above */

static void clocks_enable(void) {
#if defined(BOARD_UART_USART3)
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIODEN;
    RCC_DCKCFGR2 &= ~RCC_DCKCFGR2_USART3SEL_MASK; /* kernel clock = PCLK1 */
    RCC_APB1ENR |= RCC_APB1ENR_USART3EN;
    (void)RCC_APB1ENR;
#else
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN | RCC_AHB1ENR_GPIOBEN;
    RCC_DCKCFGR2 &= ~RCC_DCKCFGR2_USART1SEL_MASK; /* kernel clock = PCLK2 */
    RCC_APB2ENR |= RCC_APB2ENR_USART1EN;
    (void)RCC_APB2ENR;
#endif
    /* Read back + DSB: a peripheral must not be touched until its clock enable lands. */
    (void)RCC_AHB1ENR;
    cm_dsb();
}

void usart_init(void) {
    clocks_enable();

    /* Pull-up on RX so an unplugged line idles high instead of making framing errors. */
    gpio_af(RX_PORT, RX_PIN, GPIO_AF7_USART, GPIO_PULL_UP);

    /* BRR, word length and oversampling are writable only while UE = 0 (§31.8.1).
     * 8N1: M1 = M0 = 0, PCE = 0; OVER8 = 0 (x16); CR2 STOP = 00 (1 stop bit);
     * CR3 = 0: no flow control, OVRDIS = 0 so overruns are flagged and counted. */
    USART_CR1(LINK_USART) = 0u;
    USART_BRR(LINK_USART) = USART_BRR_VALUE;
    USART_CR2(LINK_USART) = 0u;
    USART_CR3(LINK_USART) = 0u;
    USART_CR1(LINK_USART) = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE;

    /* TX joins the pin only now that the transmitter drives it idle-high: no glitch that
     * the host would read as a start bit. */
    gpio_af(TX_PORT, TX_PIN, GPIO_AF7_USART, GPIO_PULL_NONE);

    /* Drop whatever the line produced before the pins were connected. */
    USART_RQR(LINK_USART) = USART_RQR_RXFRQ;
    USART_ICR(LINK_USART) = USART_ICR_PECF | USART_ICR_FECF | USART_ICR_NCF | USART_ICR_ORECF;

    NVIC_ICPR(LINK_USART_IRQN / 32u) = 1u << (LINK_USART_IRQN % 32u);
    NVIC_IPR(LINK_USART_IRQN) = USART_IRQ_PRIORITY;
    NVIC_ISER(LINK_USART_IRQN / 32u) = 1u << (LINK_USART_IRQN % 32u);
    usart_ready = true;
}

/* RAM-resident: it keeps receiving while a flash erase stalls every fetch (stm32/flash.c). */
RAMFUNC void usart_irq(void) {
    uint32_t isr = USART_ISR(LINK_USART);
    if (isr & USART_ISR_RXNE) {
        uint8_t byte = (uint8_t)USART_RDR(LINK_USART); /* the read clears RXNE */
        rx_ring_push(byte);
    }
    /* ORE also raises this interrupt (RXNEIE) and keeps it raised until cleared. */
    if (isr & USART_ISR_ORE) {
        USART_ICR(LINK_USART) = USART_ICR_ORECF;
        usart_errors.overrun++;
    }
    if (isr & (USART_ISR_FE | USART_ISR_NF | USART_ISR_PE)) {
        USART_ICR(LINK_USART) = USART_ICR_FECF | USART_ICR_NCF | USART_ICR_PECF;
        usart_errors.line_error++;
    }
}

void bsp_uart_write(const uint8_t *data, size_t n) {
    if (!usart_ready) return; /* before bsp_init the USART has no clock: TXE never sets */
    for (size_t i = 0; i < n; i++) {
        while (!(USART_ISR(LINK_USART) & USART_ISR_TXE)) {
        }
        USART_TDR(LINK_USART) = data[i];
    }
}
