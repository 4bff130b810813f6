/* Input gradient of depthwise_conv2d_s8, int8 with a dynamic scale. See
 * depthwise_conv2d_s8_grad_input.h; the fixed-point helpers are conv2d_s8_grad_input.h's. */
#include "depthwise_conv2d_s8_grad_input.h"

#include "conv2d_s8_grad_input.h"
#include "grad.h"

void depthwise_conv2d_s8_grad_input_ref_run(const void *params, void *const *operands,
                                            void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct depthwise_conv2d_s8_grad_input_params p =
        *(const struct depthwise_conv2d_s8_grad_input_params *)params;
    const int8_t *grad_out = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT];
    const float grad_out_scale =
        *(const float *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE];
    const uint8_t *mask =
        p.has_mask ? (const uint8_t *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_MASK] : NULL;
    const int8_t *filter = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_FILTER];
    const int8_t *trained = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_TRAINED_FILTER];
    const float *scales = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_WEIGHT_SCALES];
    int8_t *grad_in = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT];
    float *grad_in_scale = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE];

    const int32_t output_c = p.input_c * p.depth_multiplier;
    const size_t in_row = (size_t)p.input_w * (size_t)p.input_c;
    const size_t in_image = (size_t)p.input_h * in_row;
    const size_t n_in = (size_t)p.batches * in_image;
    const size_t taps = (size_t)p.filter_h * (size_t)p.filter_w;
    int32_t *acc = scratch;
    int32_t *m = acc + n_in; /* Q23 channel multipliers */

    const float max_scale = conv_grad_channel_q23(scales, p.per_channel ? output_c : 1, m);

    /* Overflow bound (conv_grad_pick_shift): input channel ic receives one term per tap of
     * each of its depth_multiplier output channels. */
    uint64_t b0 = 0, w1 = 0;
    for (int32_t ic = 0; ic < p.input_c; ++ic) {
        uint64_t bk = 0, wk = 0;
        for (int32_t mm = 0; mm < p.depth_multiplier; ++mm) {
            const int32_t oc = ic * p.depth_multiplier + mm;
            const int tr = oc < p.train_rows;
            const int8_t *w = tr ? trained + oc : filter + oc;
            const size_t stride = tr ? (size_t)p.train_rows : (size_t)output_c;
            uint64_t s = 0;
            for (size_t t = 0; t < taps; ++t) {
                const int32_t v = w[t * stride];
                s += (uint64_t)(v < 0 ? -v : v);
            }
            bk += s * 128u * (uint64_t)m[p.per_channel ? oc : 0];
            wk += s;
        }
        if (bk > b0) b0 = bk;
        if (wk > w1) w1 = wk;
    }
    const int shift = conv_grad_pick_shift(b0, w1, CONV_GRAD_MIN_SHIFT_16);

    for (size_t i = 0; i < n_in; ++i) acc[i] = 0;
    size_t idx = 0; /* flat index of G_y[b, oy, ox, oc] (NHWC order) */
    for (int32_t b = 0; b < p.batches; ++b) {
        int32_t *image = acc + (size_t)b * in_image;
        for (int32_t oy = 0; oy < p.output_h; ++oy) {
            const int32_t y0 = oy * p.stride_h - p.pad_h;
            for (int32_t ox = 0; ox < p.output_w; ++ox) {
                const int32_t x0 = ox * p.stride_w - p.pad_w;
                for (int32_t oc = 0; oc < output_c; ++oc, ++idx) {
                    const int32_t g = conv_grad_masked(grad_out, mask, idx);
                    if (g == 0) continue;
                    const int32_t gs = conv_grad_term(g, m[p.per_channel ? oc : 0], shift);
                    if (gs == 0) continue;
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
                            image[(size_t)y * in_row + (size_t)x * p.input_c + ic] += gs * wv;
                        }
                    }
                }
            }
        }
    }
    *grad_in_scale =
        grad_requantize_s32(acc, n_in, grad_out_scale * max_scale * conv_grad_unit(shift), grad_in);
}

size_t depthwise_conv2d_s8_grad_input_scratch_size(const void *params) {
    const struct depthwise_conv2d_s8_grad_input_params p =
        *(const struct depthwise_conv2d_s8_grad_input_params *)params;
    const size_t n_in =
        (size_t)p.batches * (size_t)p.input_h * (size_t)p.input_w * (size_t)p.input_c;
    return (n_in + (size_t)p.input_c * (size_t)p.depth_multiplier) * sizeof(int32_t);
}
