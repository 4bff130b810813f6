/* Where the persistence slots are (linker symbols from the generated memory.ld, written from
 * boards/<board>.toml [persist]) and the chip reset, shared by every Cortex-M board. The
 * erase and program operations are the board's (bsp/<bsp>/flash.c). */
#include <stdint.h>

#include "bsp.h"
#include "cortex_m.h"

extern uint32_t __persist_slot0, __persist_slot1, __persist_slot_size;

uint32_t bsp_persist_slot_size(void) {
    return (uint32_t)(uintptr_t)&__persist_slot_size;
}

uint32_t bsp_persist_slot_addr(uint32_t slot) {
    return slot == 0 ? (uint32_t)(uintptr_t)&__persist_slot0
                     : (uint32_t)(uintptr_t)&__persist_slot1;
}

#define AIRCR_VECTKEY (0x05FAu << 16)
#define AIRCR_PRIGROUP_MASK (7u << 8)
#define AIRCR_SYSRESETREQ (1u << 2)

void bsp_reset(void) {
    cm_dsb(); /* every write before the reset reaches memory */
    SCB_AIRCR = AIRCR_VECTKEY | (SCB_AIRCR & AIRCR_PRIGROUP_MASK) | AIRCR_SYSRESETREQ;
    cm_dsb();
    for (;;) {
    }
}
