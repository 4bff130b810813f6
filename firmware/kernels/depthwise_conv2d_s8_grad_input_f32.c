/* Input gradient of depthwise_conv2d_s8 in float32. See depthwise_conv2d_s8_grad_input_f32.h. */
#include "depthwise_conv2d_s8_grad_input_f32.h"

#include "grad.h"

void depthwise_conv2d_s8_grad_input_f32_run(const void *params, void *const *operands,
                                            void *scratch) {
    (void)scratch;
    const struct depthwise_conv2d_s8_grad_input_f32_params p =
        *(const struct depthwise_conv2d_s8_grad_input_f32_params *)params;
    const float *grad_out = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_F32_GRAD_OUTPUT];
    const float s_g =
        *(const float *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_F32_GRAD_OUTPUT_SCALE];
    const uint8_t *mask =
        p.has_mask ? (const uint8_t *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_F32_MASK] : NULL;
    const int8_t *filter = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_F32_FILTER];
    const int8_t *trained = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_F32_TRAINED_FILTER];
    const float *scales = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_F32_WEIGHT_SCALES];
    float *grad_in = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_F32_GRAD_INPUT];

    const int32_t output_c = p.input_c * p.depth_multiplier;
    const size_t in_row = (size_t)p.input_w * (size_t)p.input_c;
    const size_t in_image = (size_t)p.input_h * in_row;
    for (size_t i = 0; i < (size_t)p.batches * in_image; ++i) grad_in[i] = 0.0f;
    size_t idx = 0; /* flat index of G_y[b, oy, ox, oc] */
    for (int32_t b = 0; b < p.batches; ++b) {
        float *image = grad_in + (size_t)b * in_image;
        for (int32_t oy = 0; oy < p.output_h; ++oy) {
            const int32_t y0 = oy * p.stride_h - p.pad_h;
            for (int32_t ox = 0; ox < p.output_w; ++ox) {
                const int32_t x0 = ox * p.stride_w - p.pad_w;
                for (int32_t oc = 0; oc < output_c; ++oc, ++idx) {
                    if (grad_out[idx] == 0.0f || (mask && !grad_mask_get(mask, idx))) continue;
                    const float g = s_g * grad_out[idx] * scales[p.per_channel ? oc : 0];
                    const int32_t ic = oc / p.depth_multiplier;
                    const int tr = oc < p.train_rows;
                    const int8_t *w = tr ? trained + oc : filter + oc;
                    const size_t stride = tr ? (size_t)p.train_rows : (size_t)output_c;
                    for (int32_t fy = 0; fy < p.filter_h; ++fy) {
                        const int32_t y = y0 + fy * p.dilation_h;
                        if (y < 0 || y >= p.input_h) continue;
                        for (int32_t fx = 0; fx < p.filter_w; ++fx) {
                            const int32_t x = x0 + fx * p.dilation_w;
                            if (x < 0 || x >= p.input_w) continue;
                            const int32_t wv =
                                w[((size_t)fy * (size_t)p.filter_w + (size_t)fx) * stride];
                            image[(size_t)y * in_row + (size_t)x * p.input_c + ic] += g * (float)wv;
                        }
                    }
                }
            }
        }
    }
    *(float *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_F32_GRAD_INPUT_SCALE] = 1.0f;
}

size_t depthwise_conv2d_s8_grad_input_f32_scratch_size(const void *params) {
    (void)params;
    return 0;
}
