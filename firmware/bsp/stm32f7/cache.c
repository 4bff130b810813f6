/* L1 cache enable, following PM0253 (STM32F7 programming manual) "Initializing and
 * enabling the L1-cache" and the ARMv7-M ARM's cache maintenance operations (CCSIDR, DCISW).
 * The default memory map makes SRAM1/2 write-back write-allocate and the flash
 * write-through; DTCM (0x20000000-0x2000FFFF) is never cached. Nothing here uses DMA, so
 * the D-cache needs no maintenance after it is on. */
#include <stdint.h>

#include "cache.h"
#include "stm32_family.h"

/* CCSIDR: LineSize [2:0] = log2(words per line) - 2, Associativity [12:3] = ways - 1,
 * NumSets [27:13] = sets - 1. */
#define CCSIDR_LINE_LOG2_BYTES(r) (((r)&0x7u) + 4u)
#define CCSIDR_WAYS(r) ((((r) >> 3) & 0x3FFu) + 1u)
#define CCSIDR_SETS(r) ((((r) >> 13) & 0x7FFFu) + 1u)

static void icache_enable(void) {
    if (SCB_CCR & SCB_CCR_IC) return;
    cm_dsb();
    cm_isb();
    SCB_ICIALLU = 0u;
    cm_dsb();
    cm_isb();
    SCB_CCR |= SCB_CCR_IC;
    cm_dsb();
    cm_isb();
}

/* Invalidate, never clean: the cache has been off since reset, so no line can be dirty,
 * and cleaning random contents would write garbage to RAM. Skipped if something (a boot
 * loader) left it on, since invalidating then would drop dirty data. */
static void dcache_enable(void) {
    if (SCB_CCR & SCB_CCR_DC) return;
    SCB_CSSELR = 0u; /* level 1, data */
    cm_dsb();
    cm_isb();
    uint32_t ccsidr = SCB_CCSIDR;
    uint32_t sets = CCSIDR_SETS(ccsidr), ways = CCSIDR_WAYS(ccsidr);
    uint32_t set_shift = CCSIDR_LINE_LOG2_BYTES(ccsidr);
    /* DCISW takes the way in its top bits: 32 - log2(ways) (30 for the M7's 4 ways). */
    uint32_t way_shift = ways > 1u ? (uint32_t)__builtin_clz(ways - 1u) : 0u;
    for (uint32_t set = 0; set < sets; set++) {
        for (uint32_t way = 0; way < ways; way++) {
            SCB_DCISW = (way << way_shift) | (set << set_shift);
        }
    }
    cm_dsb();
    SCB_CCR |= SCB_CCR_DC;
    cm_dsb();
    cm_isb();
}

void cache_enable(void) {
    icache_enable();
    dcache_enable();
}
