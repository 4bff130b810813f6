/* Board support shared by the STM32F4 and STM32F7 boards: bring-up order, the DWT cycle
 * counter, idle, exit, the boot banner and the device interrupt dispatch. The clock tree
 * (clock.c) and the persistence flash (flash.c) are shared too; the USART and, on the F7,
 * the caches are the family's (bsp/stm32f4, bsp/stm32f7). */
#include <stdint.h>

#include "bsp.h"
#include "clock.h"
#include "cortex_m.h"
#include "fmt.h"
#include "protocol.h"
#include "stm32_family.h"
#include "usart.h"
#if STM32_HAS_L1_CACHE
#include "cache.h"
#endif

void bsp_irq_handler(uint32_t irqn); /* called by bsp/cortex_m/startup.c */

void bsp_init(void) {
    clock_init(); /* starts the DWT cycle counter, which times its waits */
#if STM32_HAS_L1_CACHE
    cache_enable();
#endif
    usart_init(); /* its baud divisor from the clock that actually runs */
    bsp_tick_start(clock_hclk_hz());
}

/* The core's own cycle counter: CPU cycles at the core clock, 32 bits, wraps every 19.9 s
 * at 216 MHz (the tick extends it to 64 bits). */
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

/* RAM-resident (see cortex_m.h RAMFUNC): it runs while a flash erase stalls every fetch. */
RAMFUNC void bsp_irq_handler(uint32_t irqn) {
    if (irqn == LINK_USART_IRQN) {
        usart_irq();
        return;
    }
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

/* Which chip answered: DBGMCU IDCODE (DEV_ID 0x449 = STM32F74x/75x, 0x421 = STM32F446),
 * and the flash size and 96-bit unique id the factory wrote. */
size_t bsp_describe_chip(char *buf, size_t n) {
    uint32_t id = DBGMCU_IDCODE;
    return fmt_snprintf(
        buf, n, "chip " STM32_FAMILY " idcode 0x%08x, flash %u KB, uid %08x-%08x-%08x",
        (unsigned)id, (unsigned)REG16(STM32_FLASH_SIZE_ADDR), (unsigned)REG32(STM32_UID_ADDR + 8u),
        (unsigned)REG32(STM32_UID_ADDR + 4u), (unsigned)REG32(STM32_UID_ADDR));
}

size_t bsp_describe_clock(char *buf, size_t n) {
    return fmt_snprintf(buf, n, "clock %u MHz, %s", (unsigned)(clock_hclk_hz() / 1000000u),
                        clock_source());
}

const char *bsp_bringup_problem(void) {
    return clock_problem();
}
