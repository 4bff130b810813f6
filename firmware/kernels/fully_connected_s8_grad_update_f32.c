/* Weight/bias gradient of fully_connected_s8 from float32 G_y and the QAS SGD step, in place.
 * See fully_connected_s8_grad_update_f32.h. */
#include "fully_connected_s8_grad_update_f32.h"

#include "conv2d_s8_grad_update.h" /* the QAS factors and the saturating steps */
#include "grad.h"

void fully_connected_s8_grad_update_f32_run(const void *params, void *const *operands,
                                            void *scratch) {
    const struct fully_connected_s8_grad_update_f32_params p =
        *(const struct fully_connected_s8_grad_update_f32_params *)params;
    const float *grad_out = operands[FULLY_CONNECTED_S8_GRAD_UPDATE_F32_GRAD_OUTPUT];
    const float s_g =
        *(const float *)operands[FULLY_CONNECTED_S8_GRAD_UPDATE_F32_GRAD_OUTPUT_SCALE];
    const uint8_t *mask =
        p.has_mask ? (const uint8_t *)operands[FULLY_CONNECTED_S8_GRAD_UPDATE_F32_MASK] : NULL;
    const int8_t *input = operands[FULLY_CONNECTED_S8_GRAD_UPDATE_F32_INPUT];
    const float *scales = operands[FULLY_CONNECTED_S8_GRAD_UPDATE_F32_WEIGHT_SCALES];
    int8_t *weights = operands[FULLY_CONNECTED_S8_GRAD_UPDATE_F32_TRAINED_WEIGHTS];
    int32_t *bias = operands[FULLY_CONNECTED_S8_GRAD_UPDATE_F32_TRAINED_BIAS];
    uint32_t *rng = operands[FULLY_CONNECTED_S8_GRAD_UPDATE_F32_RNG_STATE];

    const size_t depth = (size_t)p.input_depth;
    const size_t units = (size_t)p.output_depth;
    const int32_t weight_rows = p.update_weights ? p.train_rows : 0;
    for (int32_t o = 0; o < weight_rows; ++o) {
        float *acc = scratch; /* acc[i] = sum over b of g[b, o] * (x[b, i] - z_x) */
        for (size_t i = 0; i < depth; ++i) acc[i] = 0.0f;
        for (int32_t b = 0; b < p.batches; ++b) {
            const size_t at = (size_t)b * units + (size_t)o;
            if (mask && !grad_mask_get(mask, at)) continue;
            const float g = grad_out[at];
            if (g == 0.0f) continue;
            const int8_t *x = input + (size_t)b * depth;
            for (size_t i = 0; i < depth; ++i)
                acc[i] += g * (float)((int32_t)x[i] + p.input_offset);
        }
        const float f =
            conv_grad_weight_factor(p.lr, s_g, p.input_scale, scales[p.per_channel ? o : 0]);
        int8_t *w = weights + (size_t)o * depth;
        for (size_t i = 0; i < depth; ++i) w[i] = conv_grad_step_weight(w[i], f * acc[i], rng);
    }
    const int32_t bias_rows = p.update_bias ? p.train_bias_rows : 0;
    for (int32_t o = 0; o < bias_rows; ++o) {
        float sum = 0.0f;
        for (int32_t b = 0; b < p.batches; ++b) {
            const size_t at = (size_t)b * units + (size_t)o;
            if (!mask || grad_mask_get(mask, at)) sum += grad_out[at];
        }
        const float f =
            conv_grad_bias_factor(p.lr, s_g, p.input_scale, scales[p.per_channel ? o : 0]);
        bias[o] = conv_grad_step_bias(bias[o], f * sum);
    }
}

size_t fully_connected_s8_grad_update_f32_scratch_size(const void *params) {
    const struct fully_connected_s8_grad_update_f32_params p =
        *(const struct fully_connected_s8_grad_update_f32_params *)params;
    if (!p.update_weights || p.train_rows <= 0) return 0;
    return (size_t)p.input_depth * sizeof(float);
}
