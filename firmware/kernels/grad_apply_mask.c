/* G_in = G_out * mask. See grad_apply_mask.h. */
#include "grad_apply_mask.h"

#include "grad.h"

/* 0xFF in byte j where bit j of the nibble is set: times 0x00204081 (2^0 + 2^7 + 2^14 + 2^21)
 * puts bit j at bits j + 7m, among them bit 8j (m = j); no two partial products meet, so
 * nothing carries, and the AND keeps bit 8j of each byte; times 0xFF fills its byte. Lane j
 * of a little-endian word is element j, as the mask's bit j is (grad.h). */
static inline uint32_t lanes4(uint32_t nibble) {
    return ((nibble * 0x00204081u) & 0x01010101u) * 0xFFu;
}

void grad_apply_mask_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct grad_apply_mask_params p = *(const struct grad_apply_mask_params *)params;
    const int8_t *g = operands[GRAD_APPLY_MASK_GRAD];
    const uint8_t *mask = operands[GRAD_APPLY_MASK_MASK];
    int8_t *out = operands[GRAD_APPLY_MASK_GRAD_OUT];
    const size_t n = p.size > 0 ? (size_t)p.size : 0u;

    /* Element i reads only g[i] before writing out[i], so out may alias g. Eight elements per
     * mask byte: each nibble spread to a byte-lane mask (lanes4), two words ANDed. */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint32_t bits = mask[i >> 3];
        uint32_t a, b;
        __builtin_memcpy(&a, g + i, 4);
        __builtin_memcpy(&b, g + i + 4, 4);
        a &= lanes4(bits & 0xFu);
        b &= lanes4(bits >> 4);
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
