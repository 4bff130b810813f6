/* Board support for QEMU's mps2-an500 (emulated Cortex-M7) and mps2-an386 (emulated
 * Cortex-M4): the same CMSDK peripherals at the same addresses.
 *  - UART0: CMSDK APB UART at 0x40004000. Receive BUSY-POLLS: in QEMU 7.2 the UART model
 *    never asks its backend for more bytes while the CPU sleeps in WFI, so an
 *    interrupt-driven receive stalls forever.
 *  - Cost counter: the 32-bit CMSDK dual timer at 0x40002000 counting down at 25 MHz.
 *    Under -icount shift=0 one instruction is 1 ns of virtual time, so one tick is 40
 *    instructions: the counter reports instructions, not silicon cycles.
 *  - Semihosting (QEMU runs with -semihosting-config enable=on,target=native): exit codes
 *    and a stderr that works without the serial link. */
#include <stdint.h>

#include "bsp.h"
#include "cortex_m.h"
#include "fmt.h"
#include "protocol.h"

#define UART0_BASE 0x40004000u
#define UART_DATA REG32(UART0_BASE + 0x00u)
#define UART_STATE REG32(UART0_BASE + 0x04u)
#define UART_CTRL REG32(UART0_BASE + 0x08u)
#define UART_BAUDDIV REG32(UART0_BASE + 0x10u)
#define UART_STATE_TXFULL 1u
#define UART_STATE_RXFULL 2u
#define UART_CTRL_TXEN 1u
#define UART_CTRL_RXEN 2u

#define DUALTIMER_BASE 0x40002000u
#define TIMER1_LOAD REG32(DUALTIMER_BASE + 0x00u)
#define TIMER1_VALUE REG32(DUALTIMER_BASE + 0x04u)
#define TIMER1_CONTROL REG32(DUALTIMER_BASE + 0x08u)
#define TIMER_CTRL_ENABLE (1u << 7)
#define TIMER_CTRL_32BIT (1u << 1)

#define INSTRUCTIONS_PER_TICK 40u /* 1 ns per instruction, 25 MHz timer */

void bsp_init(void) {
    UART_BAUDDIV = BOARD_CLOCK_HZ / BOARD_BAUD; /* QEMU warns below 16; the value is nominal */
    UART_CTRL = UART_CTRL_TXEN | UART_CTRL_RXEN;
    TIMER1_LOAD = 0xFFFFFFFFu;
    TIMER1_CONTROL = TIMER_CTRL_ENABLE | TIMER_CTRL_32BIT; /* free-running, wraps */
    bsp_tick_start(BOARD_CLOCK_HZ);
}

void bsp_uart_write(const uint8_t *data, size_t n) {
    for (size_t i = 0; i < n; i++) {
        while (UART_STATE & UART_STATE_TXFULL) {
        }
        UART_DATA = data[i];
    }
}

/* Bytes taken from the UART while the persistence "flash" is busy (flash.c's simulated erase),
 * as the STM32 boards' RAM-resident USART interrupt does during a real erase; the main loop
 * reads them before the UART's own. Only boards that simulate an erase time have the ring. */
#if BOARD_PERSIST_ERASE_US
#define RX_RING_SIZE 1024u
static uint8_t rx_ring[RX_RING_SIZE];
static uint32_t rx_head, rx_tail, rx_dropped;

void mps2_uart_rx_service(void) {
    while (UART_STATE & UART_STATE_RXFULL) {
        uint8_t byte = (uint8_t)(UART_DATA & 0xFFu);
        if (rx_head - rx_tail < RX_RING_SIZE) {
            rx_ring[rx_head++ % RX_RING_SIZE] = byte;
        } else {
            rx_dropped++;
        }
    }
}
#endif

int bsp_uart_getc(void) {
#if BOARD_PERSIST_ERASE_US
    if (rx_tail != rx_head) return rx_ring[rx_tail++ % RX_RING_SIZE];
#endif
    if (UART_STATE & UART_STATE_RXFULL) return (int)(UART_DATA & 0xFFu);
    return -1;
}

uint32_t bsp_counter_raw(void) {
    /* Down-counter to up-counter; the product wraps consistently modulo 2^32. */
    return (0xFFFFFFFFu - TIMER1_VALUE) * INSTRUCTIONS_PER_TICK;
}

uint8_t bsp_counter_unit(void) {
    return COUNTER_INSTRUCTIONS;
}

void bsp_idle(void) {
    /* Busy-poll: no WFI (see above). */
}

/* An emulator has no DBGMCU IDCODE, factory flash size or unique id: say so, with what it
 * does have (the core's CPUID, which QEMU models); the limits are the board file's. */
size_t bsp_describe_chip(char *buf, size_t n) {
    uint32_t cpuid = SCB_CPUID;
    uint32_t part = (cpuid >> 4) & 0xFFFu; /* 0xC24 Cortex-M4, 0xC27 Cortex-M7 */
    return fmt_snprintf(buf, n,
                        "chip emulated Cortex-M%s cpuid 0x%08x: no idcode, flash size or uid "
                        "(reported 0); limits from the board file",
                        part == 0xC24u   ? "4"
                        : part == 0xC27u ? "7"
                                         : "?",
                        (unsigned)cpuid);
}

size_t bsp_describe_clock(char *buf, size_t n) {
    return fmt_snprintf(buf, n, "clock %u MHz CMSDK timer; cost counter in instructions (-icount)",
                        (unsigned)(BOARD_CLOCK_HZ / 1000000u));
}

const char *bsp_bringup_problem(void) {
    return 0; /* no clock tree to fail */
}

RAMFUNC void bsp_irq_handler(uint32_t irqn) {
    (void)irqn;
    bsp_debug_write("unexpected device interrupt\n");
    bsp_exit(2);
}

/* --- semihosting ---------------------------------------------------------------- */

#define SYS_WRITE0 0x04u
#define SYS_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

static uint32_t semihost(uint32_t op, const void *arg) {
    register uint32_t r0 __asm("r0") = op;
    register const void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void bsp_debug_write(const char *text) {
    (void)semihost(SYS_WRITE0, text);
}

void bsp_exit(int code) {
    uint32_t args[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
    for (;;) (void)semihost(SYS_EXIT_EXTENDED, args);
}
