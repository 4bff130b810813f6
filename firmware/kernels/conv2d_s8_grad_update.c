/* Weight/bias gradient of conv2d_s8 over the trained slice and the QAS SGD step, in place.
 * See conv2d_s8_grad_update.h for the arithmetic and operands. */
#include "conv2d_s8_grad_update.h"

#include "conv2d_s8_grad_input.h" /* conv_grad_masked */
#include "conv2d_train.h"

void conv2d_s8_grad_update_ref_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    struct conv2d_s8_grad_update_params p = *(const struct conv2d_s8_grad_update_params *)params;
    CONV_TRAIN_COLS_AS_LAYER(p); /* an input-channel slice: conv2d_train.h */
    const int8_t *grad_out = operands[CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT];
    const float grad_scale = *(const float *)operands[CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT_SCALE];
    const uint8_t *mask = p.has_mask ? (const uint8_t *)operands[CONV2D_S8_GRAD_UPDATE_MASK] : NULL;
    const int8_t *input = operands[CONV2D_S8_GRAD_UPDATE_INPUT];
    const float *scales = operands[CONV2D_S8_GRAD_UPDATE_WEIGHT_SCALES];
    int8_t *filter = operands[CONV2D_S8_GRAD_UPDATE_TRAINED_FILTER];
    int32_t *bias = operands[CONV2D_S8_GRAD_UPDATE_TRAINED_BIAS];
    uint32_t *rng = operands[CONV2D_S8_GRAD_UPDATE_RNG_STATE];

    const size_t in_row = (size_t)p.input_w * (size_t)p.input_c;
    const size_t in_image = (size_t)p.input_h * in_row;
    const size_t filter_size = (size_t)p.filter_h * (size_t)p.filter_w * (size_t)p.input_c;
    const size_t oc = (size_t)p.output_c;

    const size_t pixels = conv_grad_pixels(p.grad_broadcast, p.output_h, p.output_w);
    const int32_t weight_rows = p.update_weights ? p.train_rows : 0;
    for (int32_t c = 0; c < weight_rows; ++c) {
        /* acc[fy, fx, k] = sum over output positions of g[.., c] * (x - z_x) under that tap. */
        int32_t *acc = scratch;
        for (size_t t = 0; t < filter_size; ++t) acc[t] = 0;
        size_t pos = 0; /* output position (b, oy, ox), flattened */
        for (int32_t b = 0; b < p.batches; ++b) {
            const int8_t *image = input + (size_t)b * in_image;
            for (int32_t oy = 0; oy < p.output_h; ++oy) {
                const int32_t y0 = oy * p.stride_h - p.pad_h;
                for (int32_t ox = 0; ox < p.output_w; ++ox, ++pos) {
                    const int32_t g =
                        conv_grad_masked_at(grad_out, mask, pos, oc, (size_t)c, pixels);
                    if (g == 0) continue;
                    const int32_t x0 = ox * p.stride_w - p.pad_w;
                    for (int32_t fy = 0; fy < p.filter_h; ++fy) {
                        const int32_t y = y0 + fy * p.dilation_h;
                        if (y < 0 || y >= p.input_h) continue; /* padding: x_real = 0 */
                        for (int32_t fx = 0; fx < p.filter_w; ++fx) {
                            const int32_t x = x0 + fx * p.dilation_w;
                            if (x < 0 || x >= p.input_w) continue;
                            const int8_t *in_px =
                                image + (size_t)y * in_row + (size_t)x * p.input_c;
                            int32_t *a = acc + ((size_t)fy * (size_t)p.filter_w + (size_t)fx) *
                                                   (size_t)p.input_c;
                            for (int32_t k = 0; k < p.input_c; ++k)
                                a[k] += g * ((int32_t)in_px[k] + p.input_offset);
                        }
                    }
                }
            }
        }
        const float f =
            conv_grad_weight_factor(p.lr, grad_scale, p.input_scale, scales[p.per_channel ? c : 0]);
        int8_t *w = filter + (size_t)c * filter_size;
        for (size_t t = 0; t < filter_size; ++t)
            w[t] = conv_grad_step_weight(w[t], f * (float)acc[t], rng);
    }

    const size_t positions = (size_t)p.batches * (size_t)p.output_h * (size_t)p.output_w;
    conv_grad_update_bias_at(bias, p.update_bias ? p.train_bias_rows : 0, positions, oc, grad_out,
                             mask, p.lr, grad_scale, p.input_scale, scales, p.per_channel, pixels);
}

size_t conv2d_s8_grad_update_ref_scratch_size(const void *params) {
    struct conv2d_s8_grad_update_params p = *(const struct conv2d_s8_grad_update_params *)params;
    CONV_TRAIN_COLS_AS_LAYER(p); /* an input-channel slice: conv2d_train.h */
    if (!p.update_weights || p.train_rows <= 0) return 0;
    return (size_t)p.filter_h * (size_t)p.filter_w * (size_t)p.input_c * sizeof(int32_t);
}
