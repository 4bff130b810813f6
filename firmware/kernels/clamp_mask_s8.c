/* The 1-bit clamp mask of a forward output. See clamp_mask_s8.h. */
#include "clamp_mask_s8.h"

#include "grad.h"

void clamp_mask_s8_ref_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loop on plain locals. */
    const struct clamp_mask_s8_params p = *(const struct clamp_mask_s8_params *)params;
    const int8_t *y = operands[CLAMP_MASK_S8_OUTPUT];
    uint8_t *mask = operands[CLAMP_MASK_S8_MASK];
    const size_t n = p.size > 0 ? (size_t)p.size : 0u;

    /* A whole byte at a time: element i is bit i % 8 of byte i / 8 (grad.h). */
    for (size_t base = 0; base < n; base += 8) {
        const size_t end = n - base < 8 ? n - base : 8;
        uint32_t byte = 0;
        for (size_t k = 0; k < end; ++k) {
            const int32_t v = y[base + k];
            byte |= (uint32_t)(p.act_min < v && v < p.act_max) << k;
        }
        mask[base >> 3] = (uint8_t)byte;
    }
}

size_t clamp_mask_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
