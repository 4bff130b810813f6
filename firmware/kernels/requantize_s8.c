/* int8 -> int8 QUANTIZE: TFLite's reference Requantize. See requantize_s8.h. */
#include "requantize_s8.h"

#include "fixedpoint.h"

void requantize_s8_ref_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct requantize_s8_params p = *(const struct requantize_s8_params *)params;
    const int8_t *in = operands[REQUANTIZE_S8_INPUT];
    int8_t *out = operands[REQUANTIZE_S8_OUTPUT];
    for (int32_t i = 0; i < p.count; ++i) {
        const int32_t y = fp_multiply_by_quantized_multiplier(in[i] - p.input_zero_point,
                                                              p.multiplier, (int)p.shift) +
                          p.output_zero_point;
        out[i] = (int8_t)fp_clamp(y, INT8_MIN, INT8_MAX);
    }
}

size_t requantize_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
