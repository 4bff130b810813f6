/* G_in = G_out * mask, float32. See grad_apply_mask_f32.h. */
#include "grad_apply_mask_f32.h"

#include "grad.h"

void grad_apply_mask_f32_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct grad_apply_mask_f32_params p = *(const struct grad_apply_mask_f32_params *)params;
    const float *g = operands[GRAD_APPLY_MASK_F32_GRAD];
    const uint8_t *mask = operands[GRAD_APPLY_MASK_F32_MASK];
    float *out = operands[GRAD_APPLY_MASK_F32_GRAD_OUT];
    const size_t n = p.size > 0 ? (size_t)p.size : 0u;
    for (size_t i = 0; i < n; ++i) out[i] = grad_mask_get(mask, i) ? g[i] : 0.0f;
}

size_t grad_apply_mask_f32_scratch_size(const void *params) {
    (void)params;
    return 0;
}
