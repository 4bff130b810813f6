/* Erase and program of the persistence slots in the STM32F746's own flash (RM0385 §3, "Embedded
 * flash memory"). Built for the Nucleo and the Discovery; NOT run here (no board attached), so
 * it is written to the reference manual and untested on silicon.
 *
 * Geometry (single bank, 1 MB): sectors 0-3 are 32 KB, sector 4 is 128 KB, sectors 5-7 are
 * 256 KB. boards/nucleo_f746zg.toml puts slot 0 on sectors 1-3 and slot 1 on sector 4
 * (each 96 KB), so the small sectors hold the slots and the large ones the image; sector 0
 * holds the vector table (the linker keeps the image out of sectors 1-4).
 *
 * Programming uses parallelism x32 (PSIZE = 10: needs VDD 2.7-3.6 V, as on both boards), one
 * 32-bit word at a time through the AXI address, waiting for BSY after each. The flash is
 * cacheable by the D-cache through AXI (write-through), so the lines of the slot are
 * invalidated after an erase or a program, or reads would return stale data. While the bank
 * is busy, reads of it (code fetches too) stall: the firmware simply waits. */
#include <stdint.h>

#include "bsp.h"
#include "cortex_m.h"
#include "stm32f7_regs.h"

#define FLASH_KEYR REG32(FLASH_IF_BASE + 0x04u)
#define FLASH_SR REG32(FLASH_IF_BASE + 0x0Cu)
#define FLASH_CR REG32(FLASH_IF_BASE + 0x10u)

#define FLASH_KEY1 0x45670123u
#define FLASH_KEY2 0xCDEF89ABu

#define SR_EOP (1u << 0)
#define SR_OPERR (1u << 1)
#define SR_WRPERR (1u << 4)
#define SR_PGAERR (1u << 5)
#define SR_PGPERR (1u << 6)
#define SR_ERSERR (1u << 7)
#define SR_BSY (1u << 16)
#define SR_ERRORS (SR_OPERR | SR_WRPERR | SR_PGAERR | SR_PGPERR | SR_ERSERR)

#define CR_PG (1u << 0)
#define CR_SER (1u << 1)
#define CR_SNB(n) ((uint32_t)(n) << 3) /* bits 6:3 */
#define CR_PSIZE_X32 (2u << 8)
#define CR_STRT (1u << 16)
#define CR_LOCK (1u << 31)

#define SCB_DCIMVAC REG32(0xE000EF5Cu) /* invalidate a D-cache line by address */
#define DCACHE_LINE 32u

#define FLASH_BASE 0x08000000u
#define N_SECTORS 8u

static uint32_t sector_start(uint32_t s) {
    if (s < 4u) return FLASH_BASE + s * 0x8000u;
    if (s == 4u) return FLASH_BASE + 0x20000u;
    return FLASH_BASE + 0x40000u + (s - 5u) * 0x40000u;
}

static void wait_idle(void) {
    while (FLASH_SR & SR_BSY) {
    }
}

static void unlock(void) {
    wait_idle();
    if (FLASH_CR & CR_LOCK) {
        FLASH_KEYR = FLASH_KEY1;
        FLASH_KEYR = FLASH_KEY2;
    }
    FLASH_SR = SR_ERRORS | SR_EOP; /* write 1 to clear what an earlier operation left */
}

static void lock(void) {
    FLASH_CR = CR_LOCK;
}

static void dcache_invalidate(uint32_t addr, uint32_t n) {
    cm_dsb();
    for (uint32_t a = addr & ~(DCACHE_LINE - 1u); a < addr + n; a += DCACHE_LINE) SCB_DCIMVAC = a;
    cm_dsb();
    cm_isb();
}

static bool in_slot(uint32_t slot, uint32_t offset, uint32_t n) {
    uint32_t size = bsp_persist_slot_size();
    return slot < 2u && offset <= size && n <= size - offset && (offset & 3u) == 0 && (n & 3u) == 0;
}

bool bsp_persist_erase(uint32_t slot) {
    if (!in_slot(slot, 0, 0)) return false;
    uint32_t start = bsp_persist_slot_addr(slot), end = start + bsp_persist_slot_size();
    bool ok = true;
    unlock();
    for (uint32_t s = 0; s < N_SECTORS && ok; s++) {
        uint32_t next = s + 1u < N_SECTORS ? sector_start(s + 1u) : FLASH_BASE + 0x100000u;
        if (next <= start || sector_start(s) >= end) continue; /* sector outside the slot */
        FLASH_CR = CR_PSIZE_X32 | CR_SER | CR_SNB(s);
        FLASH_CR |= CR_STRT;
        cm_dsb();
        wait_idle();
        ok = (FLASH_SR & SR_ERRORS) == 0;
    }
    FLASH_CR &= ~(CR_SER | CR_SNB(0xFu));
    lock();
    dcache_invalidate(start, end - start);
    return ok;
}

bool bsp_persist_program(uint32_t slot, uint32_t offset, const uint8_t *data, uint32_t n) {
    if (!in_slot(slot, offset, n)) return false;
    uint32_t addr = bsp_persist_slot_addr(slot) + offset;
    bool ok = true;
    unlock();
    FLASH_CR = CR_PSIZE_X32 | CR_PG;
    for (uint32_t i = 0; i < n / 4u && ok; i++) {
        uint32_t w = (uint32_t)data[4 * i] | (uint32_t)data[4 * i + 1] << 8 |
                     (uint32_t)data[4 * i + 2] << 16 | (uint32_t)data[4 * i + 3] << 24;
        REG32(addr + 4u * i) = w;
        cm_dsb(); /* the write reaches the flash interface before BSY is polled */
        wait_idle();
        ok = (FLASH_SR & SR_ERRORS) == 0;
    }
    FLASH_CR &= ~CR_PG;
    lock();
    dcache_invalidate(addr, n);
    return ok;
}
