/* Weight/bias gradient of depthwise_conv2d_s8 over the trained channels and the QAS SGD step,
 * in place. See depthwise_conv2d_s8_grad_update.h; the steps are conv2d_s8_grad_update.h's. */
#include "depthwise_conv2d_s8_grad_update.h"

#include "conv2d_s8_grad_input.h" /* conv_grad_masked */
#include "conv2d_s8_grad_update.h"

void depthwise_conv2d_s8_grad_update_ref_run(const void *params, void *const *operands,
                                             void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct depthwise_conv2d_s8_grad_update_params p =
        *(const struct depthwise_conv2d_s8_grad_update_params *)params;
    const int8_t *grad_out = operands[DEPTHWISE_CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT];
    const float grad_scale =
        *(const float *)operands[DEPTHWISE_CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT_SCALE];
    const uint8_t *mask =
        p.has_mask ? (const uint8_t *)operands[DEPTHWISE_CONV2D_S8_GRAD_UPDATE_MASK] : NULL;
    const int8_t *input = operands[DEPTHWISE_CONV2D_S8_GRAD_UPDATE_INPUT];
    const float *scales = operands[DEPTHWISE_CONV2D_S8_GRAD_UPDATE_WEIGHT_SCALES];
    int8_t *filter = operands[DEPTHWISE_CONV2D_S8_GRAD_UPDATE_TRAINED_FILTER];
    int32_t *bias = operands[DEPTHWISE_CONV2D_S8_GRAD_UPDATE_TRAINED_BIAS];
    uint32_t *rng = operands[DEPTHWISE_CONV2D_S8_GRAD_UPDATE_RNG_STATE];

    const size_t output_c = (size_t)p.input_c * (size_t)p.depth_multiplier;
    const size_t in_row = (size_t)p.input_w * (size_t)p.input_c;
    const size_t in_image = (size_t)p.input_h * in_row;
    const size_t taps = (size_t)p.filter_h * (size_t)p.filter_w;

    const int32_t weight_rows = p.update_weights ? p.train_rows : 0;
    for (int32_t c = 0; c < weight_rows; ++c) {
        const int32_t ic = c / p.depth_multiplier;
        /* acc[fy, fx] = sum over output positions of g[.., c] * (x[.., ic] - z_x) there. */
        int32_t *acc = scratch;
        for (size_t t = 0; t < taps; ++t) acc[t] = 0;
        size_t pos = 0; /* output position (b, oy, ox), flattened */
        for (int32_t b = 0; b < p.batches; ++b) {
            const int8_t *image = input + (size_t)b * in_image + (size_t)ic;
            for (int32_t oy = 0; oy < p.output_h; ++oy) {
                const int32_t y0 = oy * p.stride_h - p.pad_h;
                for (int32_t ox = 0; ox < p.output_w; ++ox, ++pos) {
                    const int32_t g = conv_grad_masked(grad_out, mask, pos * output_c + (size_t)c);
                    if (g == 0) continue;
                    const int32_t x0 = ox * p.stride_w - p.pad_w;
                    for (int32_t fy = 0; fy < p.filter_h; ++fy) {
                        const int32_t y = y0 + fy * p.dilation_h;
                        if (y < 0 || y >= p.input_h) continue; /* padding: x_real = 0 */
                        for (int32_t fx = 0; fx < p.filter_w; ++fx) {
                            const int32_t x = x0 + fx * p.dilation_w;
                            if (x < 0 || x >= p.input_w) continue;
                            const int32_t xv = image[(size_t)y * in_row + (size_t)x * p.input_c];
                            acc[(size_t)fy * (size_t)p.filter_w + (size_t)fx] +=
                                g * (xv + p.input_offset);
                        }
                    }
                }
            }
        }
        const float f =
            conv_grad_weight_factor(p.lr, grad_scale, p.input_scale, scales[p.per_channel ? c : 0]);
        for (size_t t = 0; t < taps; ++t) {
            int8_t *w = filter + t * (size_t)p.train_rows + (size_t)c;
            *w = conv_grad_step_weight(*w, f * (float)acc[t], rng);
        }
    }

    const size_t positions = (size_t)p.batches * (size_t)p.output_h * (size_t)p.output_w;
    conv_grad_update_bias(bias, p.update_bias ? p.train_bias_rows : 0, positions, output_c,
                          grad_out, mask, p.lr, grad_scale, p.input_scale, scales, p.per_channel);
}

size_t depthwise_conv2d_s8_grad_update_scratch_size(const void *params) {
    const struct depthwise_conv2d_s8_grad_update_params p =
        *(const struct depthwise_conv2d_s8_grad_update_params *)params;
    if (!p.update_weights || p.train_rows <= 0) return 0;
    return (size_t)p.filter_h * (size_t)p.filter_w * sizeof(int32_t);
}
