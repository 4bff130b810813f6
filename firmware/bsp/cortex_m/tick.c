/* The 1 ms SysTick, uptime, and the 64-bit extension of the board's cost counter. */
#include <stdint.h>

#include "bsp.h"
#include "cortex_m.h"

static volatile uint32_t uptime_ms;
static volatile uint32_t counter_high, counter_last;

void bsp_tick_start(uint32_t hz) {
    SYST_RVR = hz / 1000u - 1u;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* core clock, interrupt, enable */
}

uint32_t bsp_uptime_ms(void) {
    return uptime_ms;
}

/* Extends the 32-bit counter; the tick calls it every millisecond, far inside the shortest
 * wrap period (2^32 cycles at 216 MHz is 19.9 s), so no wrap is ever missed. */
uint64_t bsp_counter_read64(void) {
    uint32_t primask;
    __asm volatile("mrs %0, primask\ncpsid i" : "=r"(primask)::"memory");
    uint32_t now = bsp_counter_raw();
    if (now < counter_last) counter_high++;
    counter_last = now;
    uint64_t v = ((uint64_t)counter_high << 32) | now;
    __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
    return v;
}

void SysTick_Handler(void) {
    uptime_ms++;
    (void)bsp_counter_read64();
}

extern uint32_t __flash_origin, __flash_size, __ram_origin, __ram_size;
extern uint32_t __flash_image_end, __bss_end;

uint32_t bsp_flash_origin(void) {
    return (uint32_t)(uintptr_t)&__flash_origin;
}
uint32_t bsp_flash_size(void) {
    return (uint32_t)(uintptr_t)&__flash_size;
}
uint32_t bsp_flash_used(void) {
    return (uint32_t)(uintptr_t)&__flash_image_end - (uint32_t)(uintptr_t)&__flash_origin;
}
uint32_t bsp_ram_origin(void) {
    return (uint32_t)(uintptr_t)&__ram_origin;
}
uint32_t bsp_ram_size(void) {
    return (uint32_t)(uintptr_t)&__ram_size;
}
uint32_t bsp_ram_static(void) {
    return (uint32_t)(uintptr_t)&__bss_end - (uint32_t)(uintptr_t)&__ram_origin;
}
