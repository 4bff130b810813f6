/* G = G_a + G_b through a common fixed-point unit. See grad_add.h. */
#include "grad_add.h"

#include "grad.h"

/* round(s / s_max * 2^GRAD_ADD_FRAC_BITS) for 0 <= s <= s_max: the product is at most 2^22,
 * where floats are spaced at most 0.5 apart, so adding 0.5 is exact and truncation rounds
 * half up. */
static int32_t unit_multiplier(float s, float s_max) {
    if (!(s > 0.0f)) return 0;
    const float r = s / s_max * (float)(1L << GRAD_ADD_FRAC_BITS);
    return (int32_t)(r + 0.5f);
}

void grad_add_ref_run(const void *params, void *const *operands, void *scratch) {
    grad_add_run_with(params, operands, scratch, grad_requantize_s32);
}

void grad_add_run_with(const void *params, void *const *operands, void *scratch,
                       float (*requantize)(const int32_t *acc, size_t n, float acc_scale,
                                           int8_t *out)) {
    const struct grad_add_params p = *(const struct grad_add_params *)params;
    const int8_t *a = operands[GRAD_ADD_A];
    const float s_a = *(const float *)operands[GRAD_ADD_A_SCALE];
    const int8_t *b = operands[GRAD_ADD_B];
    const float s_b = *(const float *)operands[GRAD_ADD_B_SCALE];
    int8_t *out = operands[GRAD_ADD_OUT];
    float *out_scale = operands[GRAD_ADD_OUT_SCALE];
    int32_t *acc = scratch;
    const size_t n = p.size > 0 ? (size_t)p.size : 0u;

    const float s_max = s_a > s_b ? s_a : s_b;
    if (!(s_max > 0.0f)) {
        for (size_t i = 0; i < n; ++i) out[i] = 0;
        *out_scale = 0.0f;
        return;
    }
    const int32_t m_a = unit_multiplier(s_a, s_max);
    const int32_t m_b = unit_multiplier(s_b, s_max);
    /* |g| <= 128 and m <= 2^22: |acc| <= 2^30. */
    for (size_t i = 0; i < n; ++i) acc[i] = (int32_t)a[i] * m_a + (int32_t)b[i] * m_b;
    /* The unit s_max / 2^22: a power-of-two scaling, exact. */
    const float unit = s_max * (1.0f / (float)(1L << GRAD_ADD_FRAC_BITS));
    *out_scale = requantize(acc, n, unit, out);
}

size_t grad_add_scratch_size(const void *params) {
    const struct grad_add_params p = *(const struct grad_add_params *)params;
    return p.size > 0 ? (size_t)p.size * sizeof(int32_t) : 0u;
}
