/* Weight/bias gradient of conv2d_s8 from float32 G_y and the QAS SGD step, in place.
 * See conv2d_s8_grad_update_f32.h. */
#include "conv2d_s8_grad_update_f32.h"

#include "conv2d_s8_grad_update.h" /* the QAS factors and the saturating steps */
#include "conv2d_train.h"
#include "grad.h"

/* G_y[pos, c] masked (conv_grad_masked_at, conv2d_s8_grad_input.h, in float32). */
static inline float masked(const float *g, const uint8_t *mask, size_t pos, size_t oc, size_t c,
                           size_t pixels) {
    const size_t i = pos * oc + c;
    return (mask && !grad_mask_get(mask, i)) ? 0.0f : g[conv_grad_row(pos, pixels) * oc + c];
}

void conv2d_s8_grad_update_f32_run(const void *params, void *const *operands, void *scratch) {
    struct conv2d_s8_grad_update_f32_params p =
        *(const struct conv2d_s8_grad_update_f32_params *)params;
    CONV_TRAIN_COLS_AS_LAYER(p); /* an input-channel slice: conv2d_train.h */
    const float *grad_out = operands[CONV2D_S8_GRAD_UPDATE_F32_GRAD_OUTPUT];
    const float s_g = *(const float *)operands[CONV2D_S8_GRAD_UPDATE_F32_GRAD_OUTPUT_SCALE];
    const uint8_t *mask =
        p.has_mask ? (const uint8_t *)operands[CONV2D_S8_GRAD_UPDATE_F32_MASK] : NULL;
    const int8_t *input = operands[CONV2D_S8_GRAD_UPDATE_F32_INPUT];
    const float *scales = operands[CONV2D_S8_GRAD_UPDATE_F32_WEIGHT_SCALES];
    int8_t *filter = operands[CONV2D_S8_GRAD_UPDATE_F32_TRAINED_FILTER];
    int32_t *bias = operands[CONV2D_S8_GRAD_UPDATE_F32_TRAINED_BIAS];
    uint32_t *rng = operands[CONV2D_S8_GRAD_UPDATE_F32_RNG_STATE];

    const size_t in_row = (size_t)p.input_w * (size_t)p.input_c;
    const size_t in_image = (size_t)p.input_h * in_row;
    const size_t filter_size = (size_t)p.filter_h * (size_t)p.filter_w * (size_t)p.input_c;
    const size_t oc = (size_t)p.output_c;
    const size_t positions = (size_t)p.batches * (size_t)p.output_h * (size_t)p.output_w;
    const size_t pixels = conv_grad_pixels(p.grad_broadcast, p.output_h, p.output_w);

    const int32_t weight_rows = p.update_weights ? p.train_rows : 0;
    for (int32_t c = 0; c < weight_rows; ++c) {
        float *acc = scratch; /* acc[fy, fx, k]: conv2d_s8_grad_update's, in float32 */
        for (size_t t = 0; t < filter_size; ++t) acc[t] = 0.0f;
        size_t pos = 0;
        for (int32_t b = 0; b < p.batches; ++b) {
            const int8_t *image = input + (size_t)b * in_image;
            for (int32_t oy = 0; oy < p.output_h; ++oy) {
                const int32_t y0 = oy * p.stride_h - p.pad_h;
                for (int32_t ox = 0; ox < p.output_w; ++ox, ++pos) {
                    const float g = masked(grad_out, mask, pos, oc, (size_t)c, pixels);
                    if (g == 0.0f) continue;
                    const int32_t x0 = ox * p.stride_w - p.pad_w;
                    for (int32_t fy = 0; fy < p.filter_h; ++fy) {
                        const int32_t y = y0 + fy * p.dilation_h;
                        if (y < 0 || y >= p.input_h) continue; /* padding: x_real = 0 */
                        for (int32_t fx = 0; fx < p.filter_w; ++fx) {
                            const int32_t x = x0 + fx * p.dilation_w;
                            if (x < 0 || x >= p.input_w) continue;
                            const int8_t *in_px =
                                image + (size_t)y * in_row + (size_t)x * p.input_c;
                            float *a = acc + ((size_t)fy * (size_t)p.filter_w + (size_t)fx) *
                                                 (size_t)p.input_c;
                            for (int32_t k = 0; k < p.input_c; ++k)
                                a[k] += g * (float)((int32_t)in_px[k] + p.input_offset);
                        }
                    }
                }
            }
        }
        const float f =
            conv_grad_weight_factor(p.lr, s_g, p.input_scale, scales[p.per_channel ? c : 0]);
        int8_t *w = filter + (size_t)c * filter_size;
        for (size_t t = 0; t < filter_size; ++t)
            w[t] = conv_grad_step_weight(w[t], f * acc[t], rng);
    }

    const int32_t bias_rows = p.update_bias ? p.train_bias_rows : 0;
    for (int32_t c = 0; c < bias_rows; ++c) {
        float sum = 0.0f;
        for (size_t pos = 0; pos < positions; ++pos)
            sum += masked(grad_out, mask, pos, oc, (size_t)c, pixels);
        const float f =
            conv_grad_bias_factor(p.lr, s_g, p.input_scale, scales[p.per_channel ? c : 0]);
        bias[c] = conv_grad_step_bias(bias[c], f * sum);
    }
}

size_t conv2d_s8_grad_update_f32_scratch_size(const void *params) {
    struct conv2d_s8_grad_update_f32_params p =
        *(const struct conv2d_s8_grad_update_f32_params *)params;
    CONV_TRAIN_COLS_AS_LAYER(p); /* an input-channel slice: conv2d_train.h */
    if (!p.update_weights || p.train_rows <= 0) return 0;
    return (size_t)p.filter_h * (size_t)p.filter_w * (size_t)p.input_c * sizeof(float);
}
