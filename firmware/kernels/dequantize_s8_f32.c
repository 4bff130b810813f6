/* int8 -> float32: TFLite's reference Dequantize. See dequantize_s8_f32.h. */
#include "dequantize_s8_f32.h"

void dequantize_s8_f32_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loop on plain locals. */
    const struct dequantize_s8_f32_params p = *(const struct dequantize_s8_f32_params *)params;
    const int8_t *in = operands[DEQUANTIZE_S8_F32_INPUT];
    float *out = operands[DEQUANTIZE_S8_F32_OUTPUT];

    for (int32_t i = 0; i < p.count; ++i) {
        /* TFLite computes (float)((double)scale * (q - zp)). That double product is exact
         * (24-bit scale times a 9-bit integer), so rounding it once to float equals the
         * float product: single precision gives the same bits without software doubles. */
        out[i] = p.scale * (float)((int32_t)in[i] - p.zero_point);
    }
}

size_t dequantize_s8_f32_scratch_size(const void *params) {
    (void)params;
    return 0;
}
