/* MPU setup shared by every Cortex-M7 board:
 *  - a 64 KB no-access guard just below the RAM origin, where the thread stack ends (see
 *    sections.ld): an overflow faults instead of silently writing outside RAM (ignored by
 *    QEMU; system memory and option bytes on the STM32F746, which this code never reads);
 *  - a no-access fence from the RAM limit up to RAM_FENCE_END, so touching memory past
 *    the board's limit (which QEMU would otherwise ignore, and which is reserved space
 *    on the STM32F746) is a MemManage fault that reports the exact address.
 * Everything else keeps the default memory map (PRIVDEFENA). */
#include <stdint.h>

#include "cortex_m.h"

extern uint32_t __ram_origin, __ram_size;

#define STACK_GUARD_LOG2 16u /* 64 KB: larger than any stack frame this firmware has */

/* QEMU's mps2-an500 maps 4 MB of RAM from 0x20000000; fencing the same span on the
 * STM32 costs nothing and turns a BusFault on reserved space into the same report. */
#define RAM_FENCE_END (0x20000000u + 0x00400000u)

#define RASR_ENABLE 1u
#define RASR_SIZE(log2) ((uint32_t)((log2)-1u) << 1)
#define RASR_AP_NONE (0u << 24)
#define RASR_XN (1u << 28)
#define MPU_CTRL_ENABLE 1u
#define MPU_CTRL_PRIVDEFENA 4u

static void region(uint32_t n, uint32_t base, uint32_t log2size) {
    MPU_RNR = n;
    MPU_RBAR = base;
    MPU_RASR = RASR_XN | RASR_AP_NONE | RASR_SIZE(log2size) | RASR_ENABLE;
}

static uint32_t log2_u32(uint32_t v) {
    return 31u - (uint32_t)__builtin_clz(v);
}

void cm_mpu_init(void) {
    uint32_t regions = (MPU_TYPE >> 8) & 0xFFu;
    uint32_t n = 0;
    MPU_CTRL = 0;
    uint32_t ram_origin = (uint32_t)(uintptr_t)&__ram_origin;
    region(n++, ram_origin - (1u << STACK_GUARD_LOG2), STACK_GUARD_LOG2);

    /* Cover [ram_end, RAM_FENCE_END) with the largest aligned power-of-two regions. */
    uint32_t addr = ram_origin + (uint32_t)(uintptr_t)&__ram_size;
    while (addr < RAM_FENCE_END && n < regions) {
        uint32_t align = addr & (0u - addr); /* lowest set bit */
        uint32_t size = align;
        while (addr + size > RAM_FENCE_END) size >>= 1;
        region(n++, addr, log2_u32(size));
        addr += size;
    }
    while (n < regions) {
        MPU_RNR = n++;
        MPU_RASR = 0;
    }
    MPU_CTRL = MPU_CTRL_ENABLE | MPU_CTRL_PRIVDEFENA;
    cm_dsb();
    cm_isb();
}
