/* Input gradient of conv2d_s8 in float32. See conv2d_s8_grad_input_f32.h. */
#include "conv2d_s8_grad_input_f32.h"

#include "conv2d_s8_grad_input.h" /* conv_grad_pixels, conv_grad_row */
#include "conv2d_train.h"
#include "grad.h"

void conv2d_s8_grad_input_f32_run(const void *params, void *const *operands, void *scratch) {
    const struct conv2d_s8_grad_input_f32_params p =
        *(const struct conv2d_s8_grad_input_f32_params *)params;
    const float *grad_out = operands[CONV2D_S8_GRAD_INPUT_F32_GRAD_OUTPUT];
    const float s_g = *(const float *)operands[CONV2D_S8_GRAD_INPUT_F32_GRAD_OUTPUT_SCALE];
    const uint8_t *mask =
        p.has_mask ? (const uint8_t *)operands[CONV2D_S8_GRAD_INPUT_F32_MASK] : NULL;
    const int8_t *filter = operands[CONV2D_S8_GRAD_INPUT_F32_FILTER];
    const int8_t *trained = operands[CONV2D_S8_GRAD_INPUT_F32_TRAINED_FILTER];
    const float *scales = operands[CONV2D_S8_GRAD_INPUT_F32_WEIGHT_SCALES];
    float *grad_in = operands[CONV2D_S8_GRAD_INPUT_F32_GRAD_INPUT];

    const size_t in_row = (size_t)p.input_w * (size_t)p.input_c;
    const size_t in_image = (size_t)p.input_h * in_row;
    for (size_t i = 0; i < (size_t)p.batches * in_image; ++i) grad_in[i] = 0.0f;
    const size_t pixels = conv_grad_pixels(p.grad_broadcast, p.output_h, p.output_w);
    size_t pos = 0; /* flat output position (b, oy, ox) */
    for (int32_t b = 0; b < p.batches; ++b) {
        float *image = grad_in + (size_t)b * in_image;
        for (int32_t oy = 0; oy < p.output_h; ++oy) {
            const int32_t y0 = oy * p.stride_h - p.pad_h;
            for (int32_t ox = 0; ox < p.output_w; ++ox, ++pos) {
                const int32_t x0 = ox * p.stride_w - p.pad_w;
                const float *gy = grad_out + conv_grad_row(pos, pixels) * (size_t)p.output_c;
                for (int32_t c = 0; c < p.output_c; ++c) {
                    const size_t idx = pos * (size_t)p.output_c + (size_t)c; /* the mask's bit */
                    if (gy[c] == 0.0f || (mask && !grad_mask_get(mask, idx))) continue;
                    const float g = s_g * gy[c] * scales[p.per_channel ? c : 0];
                    const int8_t *kernel =
                        conv_train_row(scratch, filter, trained, c, p.filter_h * p.filter_w,
                                       p.input_c, p.train_rows, p.train_cols);
                    for (int32_t fy = 0; fy < p.filter_h; ++fy) {
                        const int32_t y = y0 + fy * p.dilation_h;
                        if (y < 0 || y >= p.input_h) continue;
                        for (int32_t fx = 0; fx < p.filter_w; ++fx) {
                            const int32_t x = x0 + fx * p.dilation_w;
                            if (x < 0 || x >= p.input_w) continue;
                            float *a = image + (size_t)y * in_row + (size_t)x * p.input_c;
                            const int8_t *w =
                                kernel +
                                ((size_t)fy * (size_t)p.filter_w + (size_t)fx) * (size_t)p.input_c;
                            for (int32_t k = 0; k < p.input_c; ++k) a[k] += g * (float)w[k];
                        }
                    }
                }
            }
        }
    }
    *(float *)operands[CONV2D_S8_GRAD_INPUT_F32_GRAD_INPUT_SCALE] = 1.0f;
}

/* One composed filter row when input channels are trained (conv_train_row), else none. */
size_t conv2d_s8_grad_input_f32_scratch_size(const void *params) {
    const struct conv2d_s8_grad_input_f32_params p =
        *(const struct conv2d_s8_grad_input_f32_params *)params;
    return conv_train_row_bytes(p.filter_h * p.filter_w, p.input_c, p.train_cols, 1);
}
