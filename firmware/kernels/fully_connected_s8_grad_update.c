/* Weight/bias gradient of fully_connected_s8 over the trained rows and the QAS SGD step, in
 * place. See fully_connected_s8_grad_update.h; the steps are conv2d_s8_grad_update.h's. */
#include "fully_connected_s8_grad_update.h"

#include "conv2d_s8_grad_input.h" /* conv_grad_masked */
#include "conv2d_s8_grad_update.h"

void fully_connected_s8_grad_update_ref_run(const void *params, void *const *operands,
                                            void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct fully_connected_s8_grad_update_params p =
        *(const struct fully_connected_s8_grad_update_params *)params;
    const int8_t *grad_out = operands[FULLY_CONNECTED_S8_GRAD_UPDATE_GRAD_OUTPUT];
    const float grad_scale =
        *(const float *)operands[FULLY_CONNECTED_S8_GRAD_UPDATE_GRAD_OUTPUT_SCALE];
    const uint8_t *mask =
        p.has_mask ? (const uint8_t *)operands[FULLY_CONNECTED_S8_GRAD_UPDATE_MASK] : NULL;
    const int8_t *input = operands[FULLY_CONNECTED_S8_GRAD_UPDATE_INPUT];
    const float *scales = operands[FULLY_CONNECTED_S8_GRAD_UPDATE_WEIGHT_SCALES];
    int8_t *weights = operands[FULLY_CONNECTED_S8_GRAD_UPDATE_TRAINED_WEIGHTS];
    int32_t *bias = operands[FULLY_CONNECTED_S8_GRAD_UPDATE_TRAINED_BIAS];
    uint32_t *rng = operands[FULLY_CONNECTED_S8_GRAD_UPDATE_RNG_STATE];

    const size_t depth = (size_t)p.input_depth;
    const size_t units = (size_t)p.output_depth;

    const int32_t weight_rows = p.update_weights ? p.train_rows : 0;
    for (int32_t o = 0; o < weight_rows; ++o) {
        int32_t *acc = scratch; /* acc[i] = sum over b of g[b, o] * (x[b, i] - z_x) */
        for (size_t i = 0; i < depth; ++i) acc[i] = 0;
        for (int32_t b = 0; b < p.batches; ++b) {
            const int32_t g = conv_grad_masked(grad_out, mask, (size_t)b * units + (size_t)o);
            if (g == 0) continue;
            const int8_t *x = input + (size_t)b * depth;
            for (size_t i = 0; i < depth; ++i) acc[i] += g * ((int32_t)x[i] + p.input_offset);
        }
        const float f =
            conv_grad_weight_factor(p.lr, grad_scale, p.input_scale, scales[p.per_channel ? o : 0]);
        int8_t *w = weights + (size_t)o * depth;
        for (size_t i = 0; i < depth; ++i)
            w[i] = conv_grad_step_weight(w[i], f * (float)acc[i], rng);
    }

    conv_grad_update_bias(bias, p.update_bias ? p.train_bias_rows : 0, (size_t)p.batches, units,
                          grad_out, mask, p.lr, grad_scale, p.input_scale, scales, p.per_channel);
}

size_t fully_connected_s8_grad_update_ref_scratch_size(const void *params) {
    const struct fully_connected_s8_grad_update_params p =
        *(const struct fully_connected_s8_grad_update_params *)params;
    if (!p.update_weights || p.train_rows <= 0) return 0;
    return (size_t)p.input_depth * sizeof(int32_t);
}
