/* Reset and the vector table, shared by every Cortex-M board.
 * The thread (main) stack is the PSP, separate from the exception stack (MSP), so that a
 * thread stack overflow hits the MPU guard and the MemManage handler still has a stack
 * to report from. */
#include <stdint.h>
#include <string.h>

#include "bsp.h"
#include "cortex_m.h"

extern uint32_t __handler_stack_top, __thread_stack_bottom, __thread_stack_top;
extern uint32_t __data_start, __data_end, __data_load, __bss_start, __bss_end;
extern uint32_t __ramfunc_start, __ramfunc_end, __ramfunc_load;

int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void MemManage_Handler(void);
void BusFault_Handler(void);
void UsageFault_Handler(void);
void SysTick_Handler(void);
void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));

typedef void (*vector_t)(void);

/* Device interrupts all enter one dispatcher that asks the board which handler runs:
 * one vector table for every board, no per-board assembly. */
#define DEVICE_IRQS 98 /* the STM32F746 has 98, the STM32F446 97; QEMU's mps2 machines fewer */
/* RAM-resident, as the board's handler it calls: a byte received during a flash erase is
 * taken through here while the flash cannot be read (bsp/stm32/flash.c). */
RAMFUNC void bsp_irq_handler(uint32_t irqn);
static RAMFUNC void device_irq_dispatch(void) {
    bsp_irq_handler((SCB_ICSR & 0x1FFu) - 16u);
}

#define D4 device_irq_dispatch, device_irq_dispatch, device_irq_dispatch, device_irq_dispatch
#define D16 D4, D4, D4, D4

__attribute__((section(".vectors"), used)) const vector_t vector_table[16 + DEVICE_IRQS] = {
    (vector_t)(uintptr_t)&__handler_stack_top,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0,
    0,
    0,
    0,
    SVC_Handler,
    DebugMon_Handler,
    0,
    PendSV_Handler,
    SysTick_Handler,
    D16,
    D16,
    D16,
    D16,
    D16,
    D16,
    device_irq_dispatch,
    device_irq_dispatch,
};

/* The table the core uses: a RAM copy, so that an interrupt taken while the flash is busy
 * (erase, program) fetches its vector without waiting for the flash. VTOR needs the table
 * aligned to its size rounded up to a power of two (114 words: 512 bytes). */
#define N_VECTORS (16 + DEVICE_IRQS)
static vector_t ram_vector_table[N_VECTORS]
    __attribute__((section(".ram_vectors"), aligned(512), used));

#define STACK_PAINT 0xC0FFEE11u

/* Runs on the thread stack (PSP) from here on. */
static __attribute__((noreturn, used)) void start_main(void) {
    bsp_init();
    bsp_exit(main());
}

/* Points the PSP at top, makes it the thread-mode stack, and jumps to entry. Naked: no
 * compiler frame may straddle the switch. */
static __attribute__((naked, noreturn)) void run_on_thread_stack(uint32_t *top,
                                                                 void (*entry)(void)) {
    (void)top;   /* in r0 */
    (void)entry; /* in r1 */
    __asm volatile(
        "msr psp, r0\n"
        "mrs r2, control\n"
        "orr r2, r2, #2\n"
        "msr control, r2\n"
        "isb\n"
        "bx r1\n");
}

__attribute__((noreturn)) void Reset_Handler(void) {
    /* Runs on the MSP (the exception stack): the whole thread stack can be painted. */
    memcpy(&__data_start, &__data_load, (size_t)((char *)&__data_end - (char *)&__data_start));
    memcpy(&__ramfunc_start, &__ramfunc_load,
           (size_t)((char *)&__ramfunc_end - (char *)&__ramfunc_start));
    memset(&__bss_start, 0, (size_t)((char *)&__bss_end - (char *)&__bss_start));
    for (uint32_t *p = &__thread_stack_bottom; p < &__thread_stack_top; p++) *p = STACK_PAINT;

    memcpy(ram_vector_table, vector_table, sizeof ram_vector_table);
    cm_dsb();
    SCB_VTOR = (uint32_t)(uintptr_t)ram_vector_table;
    SCB_CPACR |= (0xFu << 20); /* CP10, CP11: FPU full access (the ABI is hard-float) */
    cm_dsb();
    cm_isb();
    SCB_SHCSR |= SHCSR_MEMFAULTENA | SHCSR_BUSFAULTENA | SHCSR_USGFAULTENA;
    SCB_CCR |= (1u << 4); /* DIV_0_TRP: divide by zero is a UsageFault, not a silent 0 */
    cm_mpu_init();
    run_on_thread_stack(&__thread_stack_top, start_main);
}

uint32_t bsp_stack_size(void) {
    return (uint32_t)((char *)&__thread_stack_top - (char *)&__thread_stack_bottom);
}

uint32_t bsp_stack_high_water(void) {
    const uint32_t *p = &__thread_stack_bottom;
    while (p < &__thread_stack_top && *p == STACK_PAINT) p++;
    return (uint32_t)((char *)&__thread_stack_top - (char *)p);
}

void Default_Handler(void) {
    bsp_debug_write("unexpected interrupt\n");
    bsp_exit(2);
}
