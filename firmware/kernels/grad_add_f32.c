/* G = G_a + G_b in float32. See grad_add_f32.h. */
#include "grad_add_f32.h"

void grad_add_f32_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct grad_add_f32_params p = *(const struct grad_add_f32_params *)params;
    const float *a = operands[GRAD_ADD_F32_A];
    const float s_a = *(const float *)operands[GRAD_ADD_F32_A_SCALE];
    const float *b = operands[GRAD_ADD_F32_B];
    const float s_b = *(const float *)operands[GRAD_ADD_F32_B_SCALE];
    float *out = operands[GRAD_ADD_F32_OUT];
    const size_t n = p.size > 0 ? (size_t)p.size : 0u;
    /* Element i reads a[i] and b[i] before writing out[i], so out may alias either. */
    for (size_t i = 0; i < n; ++i) out[i] = s_a * a[i] + s_b * b[i];
    *(float *)operands[GRAD_ADD_F32_OUT_SCALE] = 1.0f;
}

size_t grad_add_f32_scratch_size(const void *params) {
    (void)params;
    return 0;
}
