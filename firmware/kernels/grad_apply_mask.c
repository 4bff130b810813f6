/* G_in = G_out * mask. See grad_apply_mask.h. */
#include "grad_apply_mask.h"

#include "grad.h"

void grad_apply_mask_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct grad_apply_mask_params p = *(const struct grad_apply_mask_params *)params;
    const int8_t *g = operands[GRAD_APPLY_MASK_GRAD];
    const uint8_t *mask = operands[GRAD_APPLY_MASK_MASK];
    int8_t *out = operands[GRAD_APPLY_MASK_GRAD_OUT];
    const size_t n = p.size > 0 ? (size_t)p.size : 0u;

    /* Element i reads only g[i] before writing out[i], so out may alias g. Eight elements per
     * mask byte: each nibble spread to a byte-lane mask (grad_mask_lanes4), two words ANDed. */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint32_t bits = mask[i >> 3];
        uint32_t a, b;
        __builtin_memcpy(&a, g + i, 4);
        __builtin_memcpy(&b, g + i + 4, 4);
        a &= grad_mask_lanes4(bits & 0xFu);
        b &= grad_mask_lanes4(bits >> 4);
        __builtin_memcpy(out + i, &a, 4);
        __builtin_memcpy(out + i + 4, &b, 4);
    }
    for (; i < n; ++i) {
        out[i] = grad_mask_get(mask, i) ? g[i] : 0;
    }
}

size_t grad_apply_mask_scratch_size(const void *params) {
    (void)params;
    return 0;
}
