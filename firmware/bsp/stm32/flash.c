/* Erase and program of the persistence slots in the chip's own flash (RM0385 §3 for the
 * STM32F746, RM0390 §3 for the STM32F446: the same FLASH_KEYR/SR/CR interface). Built for
 * every STM32 board; NOT run here (no board attached): written to the reference manuals and
 * untested on silicon.
 *
 * Which sectors each slot erases comes from boards/<board>.toml ([flash] sectors, [persist]):
 * pytools.build.manifest checks that each slot starts a sector and writes the slot's first
 * sector and sector count into memory.ld (__persist_slotN_sector, __persist_slotN_sectors).
 *
 * A sector erase takes up to 2 s (F746, 128 KB) and stalls every read of the flash, code
 * fetches included. So that no received byte is lost meanwhile, these routines run from RAM
 * (RAMFUNC), the vector table is in RAM (bsp/cortex_m/startup.c) and so is the USART
 * interrupt path (dispatch, bsp_irq_handler, usart_irq); while the flash is busy BASEPRI
 * holds every other interrupt (SysTick included: the uptime then lags by the erase time),
 * since their handlers live in flash. The USART interrupt has priority 0 and keeps running.
 *
 * Programming uses parallelism x32 (PSIZE = 10: VDD 2.7-3.6 V, as on the Nucleo and Disco
 * boards), one 32-bit word at a time, waiting for BSY after each. On the F7 the flash is
 * cacheable by the D-cache through AXI (write-through), so the slot's lines are invalidated
 * after an erase or a program; on the F4 the ART data cache is reset instead. */
#include <stdint.h>

#include "bsp.h"
#include "cortex_m.h"
#include "stm32_family.h"

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
#define SR_ERSERR (1u << 7) /* F7 ERSERR, F4 PGSERR: same bit */
#define SR_BSY (1u << 16)
#define SR_ERRORS (SR_OPERR | SR_WRPERR | SR_PGAERR | SR_PGPERR | SR_ERSERR)

#define CR_PG (1u << 0)
#define CR_SER (1u << 1)
#define CR_SNB(n) ((uint32_t)(n) << 3) /* bits 6:3 */
#define CR_PSIZE_X32 (2u << 8)
#define CR_STRT (1u << 16)
#define CR_LOCK (1u << 31)

/* BASEPRI value that lets only priority-0 interrupts (the USART) run. */
#define ONLY_PRIORITY_0 0x10u

extern uint32_t __persist_slot0_sector, __persist_slot0_sectors;
extern uint32_t __persist_slot1_sector, __persist_slot1_sectors;

static inline __attribute__((always_inline)) void wait_idle(void) {
    while (FLASH_SR & SR_BSY) {
    }
}

static inline __attribute__((always_inline)) void unlock(void) {
    wait_idle();
    if (FLASH_CR & CR_LOCK) {
        FLASH_KEYR = FLASH_KEY1;
        FLASH_KEYR = FLASH_KEY2;
    }
    FLASH_SR = SR_ERRORS | SR_EOP; /* write 1 to clear what an earlier operation left */
}

/* After the flash changed under the caches: nothing may read stale contents. */
static inline __attribute__((always_inline)) void caches_forget(uint32_t addr, uint32_t n) {
#if STM32_HAS_L1_CACHE
    cm_dsb();
    for (uint32_t a = addr & ~(DCACHE_LINE - 1u); a < addr + n; a += DCACHE_LINE) SCB_DCIMVAC = a;
#else
    (void)addr;
    (void)n;
    uint32_t acr = FLASH_ACR;
    FLASH_ACR = acr & ~FLASH_ACR_DCEN; /* DCRST is writable only with the data cache off */
    FLASH_ACR = (acr & ~FLASH_ACR_DCEN) | FLASH_ACR_DCRST;
    FLASH_ACR = acr & ~FLASH_ACR_DCRST;
#endif
    cm_dsb();
    cm_isb();
}

static bool in_slot(uint32_t slot, uint32_t offset, uint32_t n) {
    uint32_t size = bsp_persist_slot_size();
    return slot < 2u && offset <= size && n <= size - offset && (offset & 3u) == 0 && (n & 3u) == 0;
}

/* Everything from unlock to lock, in RAM, with only the USART interrupt allowed. */
static RAMFUNC bool erase_sectors(uint32_t first, uint32_t count) {
    uint32_t basepri = cm_get_basepri();
    cm_set_basepri(ONLY_PRIORITY_0);
    bool ok = true;
    unlock();
    for (uint32_t s = first; s < first + count && ok; s++) {
        FLASH_CR = CR_PSIZE_X32 | CR_SER | CR_SNB(s);
        FLASH_CR |= CR_STRT;
        cm_dsb();
        wait_idle();
        ok = (FLASH_SR & SR_ERRORS) == 0;
    }
    FLASH_CR = CR_LOCK;
    cm_set_basepri(basepri);
    return ok;
}

static RAMFUNC bool program_words(uint32_t addr, const uint8_t *data, uint32_t words) {
    uint32_t basepri = cm_get_basepri();
    cm_set_basepri(ONLY_PRIORITY_0);
    bool ok = true;
    unlock();
    FLASH_CR = CR_PSIZE_X32 | CR_PG;
    for (uint32_t i = 0; i < words && ok; i++) {
        uint32_t w = (uint32_t)data[4 * i] | (uint32_t)data[4 * i + 1] << 8 |
                     (uint32_t)data[4 * i + 2] << 16 | (uint32_t)data[4 * i + 3] << 24;
        REG32(addr + 4u * i) = w;
        cm_dsb(); /* the write reaches the flash interface before BSY is polled */
        wait_idle();
        ok = (FLASH_SR & SR_ERRORS) == 0;
    }
    FLASH_CR = CR_LOCK;
    cm_set_basepri(basepri);
    return ok;
}

bool bsp_persist_erase(uint32_t slot) {
    if (!in_slot(slot, 0, 0)) return false;
    uint32_t first =
        (uint32_t)(uintptr_t)(slot ? &__persist_slot1_sector : &__persist_slot0_sector);
    uint32_t count =
        (uint32_t)(uintptr_t)(slot ? &__persist_slot1_sectors : &__persist_slot0_sectors);
    bool ok = erase_sectors(first, count);
    caches_forget(bsp_persist_slot_addr(slot), bsp_persist_slot_size());
    return ok;
}

bool bsp_persist_program(uint32_t slot, uint32_t offset, const uint8_t *data, uint32_t n) {
    if (!in_slot(slot, offset, n)) return false;
    uint32_t addr = bsp_persist_slot_addr(slot) + offset;
    bool ok = program_words(addr, data, n / 4u);
    caches_forget(addr, n);
    return ok;
}
