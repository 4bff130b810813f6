/* G = G_a + G_b through a common fixed-point unit, optimized: bit-identical with
 * grad_add_ref_run (grad_add.c). The same accumulators; their int8 requantization is dsp.h's
 * dsp_grad_requantize_s32 (a float estimate corrected with exact 64-bit products,
 * bit-identical with grad_requantize_s32 and its 64-bit division per element, which is most
 * of the reference's cost). */
#include "dsp.h"
#include "grad.h"
#include "grad_add.h"

void grad_add_dsp_run(const void *params, void *const *operands, void *scratch) {
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
    const int32_t m_a = grad_add_unit_multiplier(s_a, s_max);
    const int32_t m_b = grad_add_unit_multiplier(s_b, s_max);
    for (size_t i = 0; i < n; ++i) acc[i] = (int32_t)a[i] * m_a + (int32_t)b[i] * m_b;
    const float unit = s_max * (1.0f / (float)(1L << GRAD_ADD_FRAC_BITS));
    *out_scale = dsp_grad_requantize_s32(acc, n, unit, out);
}
