/* The emulated board's persistence region: the machine's 16 MB PSRAM at 0x60000000 (the
 * RAM QEMU's mps2-an500 maps there, the only RAM of the machine that takes a memory
 * backend). pytools/emulator.py backs it with a file (memory-backend-file, share=on), so
 * the slots survive a guest reset (QEMU re-loads only the ELF's segments) and a restart of
 * QEMU. It behaves like NOR flash: erase sets every byte to 0xFF, program can only clear
 * bits, 32 bits at a time.
 *
 * An erase can also take time, as a real one does (boards/<board>.toml [persist]
 * simulated_erase_us; 0, the default, is instant): the board then stays inside the erase for
 * that long (virtual time: instructions under -icount), taking received bytes into a RAM ring
 * as the STM32 boards' RAM-resident USART interrupt does while their flash is busy. Tests use it
 * to show that a host that keeps sending during an erase loses nothing. */
#include <stdint.h>

#include "bsp.h"
#include "cortex_m.h"

#ifndef BOARD_PERSIST_ERASE_US
#define BOARD_PERSIST_ERASE_US 0u
#endif
#define INSTRUCTIONS_PER_US 1000u /* -icount shift=0: 1 ns per instruction */

#if BOARD_PERSIST_ERASE_US
void mps2_uart_rx_service(void); /* bsp_mps2.c */

static void simulated_erase_time(uint32_t instructions) {
    uint32_t t0 = bsp_counter_raw();
    while (bsp_counter_raw() - t0 < instructions) {
        mps2_uart_rx_service();
    }
}
#endif

static bool in_slot(uint32_t slot, uint32_t offset, uint32_t n) {
    uint32_t size = bsp_persist_slot_size();
    return slot < 2u && offset <= size && n <= size - offset && (offset & 3u) == 0 && (n & 3u) == 0;
}

bool bsp_persist_erase(uint32_t slot) {
    if (!in_slot(slot, 0, 0)) return false;
    volatile uint32_t *p = (volatile uint32_t *)(uintptr_t)bsp_persist_slot_addr(slot);
    for (uint32_t i = 0; i < bsp_persist_slot_size() / 4u; i++) p[i] = 0xFFFFFFFFu;
    cm_dsb();
#if BOARD_PERSIST_ERASE_US
    simulated_erase_time(BOARD_PERSIST_ERASE_US * INSTRUCTIONS_PER_US);
#endif
    return true;
}

bool bsp_persist_program(uint32_t slot, uint32_t offset, const uint8_t *data, uint32_t n) {
    if (!in_slot(slot, offset, n)) return false;
    volatile uint32_t *p = (volatile uint32_t *)(uintptr_t)(bsp_persist_slot_addr(slot) + offset);
    for (uint32_t i = 0; i < n / 4u; i++) {
        uint32_t w = (uint32_t)data[4 * i] | (uint32_t)data[4 * i + 1] << 8 |
                     (uint32_t)data[4 * i + 2] << 16 | (uint32_t)data[4 * i + 3] << 24;
        p[i] &= w; /* NOR flash: programming clears bits, never sets them */
    }
    cm_dsb();
    return true;
}
