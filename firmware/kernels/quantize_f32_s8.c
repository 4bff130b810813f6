/* float32 -> int8: TFLite's reference AffineQuantize. See quantize_f32_s8.h. */
#include "quantize_f32_s8.h"

#include "fixedpoint.h"

/* round(q) half away from zero (TfLiteRound, i.e. std::round on a float), for
 * |q| <= 512: the truncation and the difference are exact in float. */
static inline int32_t round_half_away(float q) {
    int32_t t = (int32_t)q; /* truncates toward zero */
    const float frac = q - (float)t;
    if (frac >= 0.5f) t += 1;
    if (frac <= -0.5f) t -= 1;
    return t;
}

void quantize_f32_s8_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loop on plain locals. */
    const struct quantize_f32_s8_params p = *(const struct quantize_f32_s8_params *)params;
    const float *in = operands[QUANTIZE_F32_S8_INPUT];
    int8_t *out = operands[QUANTIZE_F32_S8_OUTPUT];

    for (int32_t i = 0; i < p.count; ++i) {
        /* A float division, as TFLite's reference (val / static_cast<float>(scale)). */
        float q = in[i] / p.scale;
        /* Past +-512 every zero point clamps to the same end, and TFLite's own int32
         * conversion of a huge value, an infinity or NaN is undefined behaviour (x86 gives
         * INT32_MIN): saturate instead, and map NaN to the zero point (what Arm's
         * conversion of NaN to 0 gives). */
        if (q != q) q = 0.0f;
        if (q > 512.0f) q = 512.0f;
        if (q < -512.0f) q = -512.0f;
        out[i] = (int8_t)fp_clamp(round_half_away(q) + p.zero_point, INT8_MIN, INT8_MAX);
    }
}

size_t quantize_f32_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
