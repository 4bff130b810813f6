/* int8 LEAKY_RELU: TFLite's reference QuantizeLeakyRelu. See leaky_relu_s8.h. */
#include "leaky_relu_s8.h"

#include "fixedpoint.h"

void leaky_relu_s8_ref_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct leaky_relu_s8_params p = *(const struct leaky_relu_s8_params *)params;
    const int8_t *in = operands[LEAKY_RELU_S8_INPUT];
    int8_t *out = operands[LEAKY_RELU_S8_OUTPUT];
    for (int32_t i = 0; i < p.count; ++i) {
        const int32_t v = in[i] - p.input_zero_point;
        const int32_t y =
            p.output_zero_point + (v >= 0 ? fp_multiply_by_quantized_multiplier(
                                                v, p.identity_multiplier, (int)p.identity_shift)
                                          : fp_multiply_by_quantized_multiplier(
                                                v, p.alpha_multiplier, (int)p.alpha_shift));
        out[i] = (int8_t)fp_clamp(y, INT8_MIN, INT8_MAX);
    }
}

size_t leaky_relu_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
