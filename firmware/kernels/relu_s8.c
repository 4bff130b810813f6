/* int8 RELU family as operators: TFLite's ReluX. See relu_s8.h. */
#include "relu_s8.h"

#include "fixedpoint.h"

void relu_s8_ref_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct relu_s8_params p = *(const struct relu_s8_params *)params;
    const int8_t *in = operands[RELU_S8_INPUT];
    int8_t *out = operands[RELU_S8_OUTPUT];
    for (int32_t i = 0; i < p.count; ++i) {
        const int32_t y = p.output_zero_point +
                          fp_multiply_by_quantized_multiplier(
                              in[i] - p.input_zero_point, p.output_multiplier, (int)p.output_shift);
        out[i] = (int8_t)fp_clamp(y, p.act_min, p.act_max);
    }
}

size_t relu_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
