/* Board support for the STM32F746 boards (NUCLEO-F746ZG, STM32F746G-DISCO): bring-up
 * order, the DWT cycle counter, idle, exit and the device interrupt dispatch. The clock
 * tree, caches and USART live in clock.c, cache.c and usart.c. */
#include <stdint.h>

#include "bsp.h"
#include "cache.h"
#include "clock.h"
#include "cortex_m.h"
#include "protocol.h"
#include "stm32f7_regs.h"
#include "usart.h"

void bsp_irq_handler(uint32_t irqn); /* called by bsp/cortex_m/startup.c */

/* The core's own cycle counter: CPU cycles at BOARD_CLOCK_HZ, 32 bits, wraps every 19.9 s
 * (the tick extends it to 64 bits). The M7's DWT has a CoreSight software lock that ignores
 * writes from the core until unlocked (Cortex-M7 TRM, DWT programmers' model). */
static void cycle_counter_start(void) {
    DEMCR |= DEMCR_TRCENA;
    DWT_LAR = DWT_LAR_UNLOCK;
    DWT_CYCCNT = 0u;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
}

void bsp_init(void) {
    clock_init();
    cache_enable();
    cycle_counter_start();
    usart_init();
    bsp_tick_start(BOARD_CLOCK_HZ);
}

uint32_t bsp_counter_raw(void) {
    return DWT_CYCCNT;
}

uint8_t bsp_counter_unit(void) {
    return COUNTER_CYCLES;
}

/* Interrupts off between the check and the WFI, or a byte arriving in between would be
 * slept through until the next tick. WFI still wakes on an interrupt that is pending
 * while PRIMASK masks it; re-enabling then lets the interrupt run. */
void bsp_idle(void) {
    cm_disable_irq();
    if (!usart_rx_pending()) {
        cm_dsb();
        __asm volatile("wfi" ::: "memory");
    }
    cm_enable_irq();
}

void bsp_irq_handler(uint32_t irqn) {
    if (irqn == LINK_USART_IRQN) {
        usart_irq();
        return;
    }
    bsp_debug_write("unexpected device interrupt\n");
    bsp_exit(2);
}

/* Nothing to return to: park with interrupts off. A busy loop rather than WFI so that a
 * debugger can attach without DBGMCU sleep support; the code stays here for it to read. */
static volatile int exit_code;

void bsp_exit(int code) {
    cm_disable_irq();
    exit_code = code;
    for (;;) {
    }
}

/* No semihosting host on a real board, and BKPT without a debugger is a HardFault. */
void bsp_debug_write(const char *text) {
    (void)text;
}
