/* Input gradient of conv2d_s8: G_x = conv_transpose(G_y * mask, W_real), int8 with a dynamic
 * scale. See conv2d_s8_grad_input.h for the arithmetic and operands. */
#include "conv2d_s8_grad_input.h"

#include "conv2d_train.h"
#include "grad.h"

int conv2d_s8_grad_input_ref_shift(const struct conv2d_s8_grad_input_params *pp,
                                   const int8_t *filter, const int8_t *trained, const int32_t *m) {
    const struct conv2d_s8_grad_input_params p = *pp;
    const size_t taps = (size_t)p.filter_h * (size_t)p.filter_w;
    /* Overflow bound (conv_grad_pick_shift): an input element (.., k) receives at most one
     * term from each weight W[c, fy, fx, k], so the sums over (c, fy, fx) bound it. */
    uint64_t b0 = 0, w1 = 0;
    for (int32_t k = 0; k < p.input_c; ++k) {
        uint64_t bk = 0, wk = 0;
        for (int32_t c = 0; c < p.output_c; ++c) {
            uint64_t s = 0;
            for (size_t t = 0; t < taps; ++t) {
                const int32_t v =
                    conv_train_weight(filter, trained, c, (int32_t)t, k, (int32_t)taps, p.input_c,
                                      p.train_rows, p.train_cols);
                s += (uint64_t)(v < 0 ? -v : v);
            }
            bk += s * 128u * (uint64_t)m[p.per_channel ? c : 0];
            wk += s;
        }
        if (bk > b0) b0 = bk;
        if (wk > w1) w1 = wk;
    }
    return conv_grad_pick_shift(b0, w1, CONV_GRAD_MIN_SHIFT_16);
}

void conv2d_s8_grad_input_ref_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct conv2d_s8_grad_input_params p =
        *(const struct conv2d_s8_grad_input_params *)params;
    const int8_t *grad_out = operands[CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT];
    const float grad_out_scale = *(const float *)operands[CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE];
    const uint8_t *mask = p.has_mask ? (const uint8_t *)operands[CONV2D_S8_GRAD_INPUT_MASK] : NULL;
    const int8_t *filter = operands[CONV2D_S8_GRAD_INPUT_FILTER];
    const int8_t *trained = operands[CONV2D_S8_GRAD_INPUT_TRAINED_FILTER];
    const float *scales = operands[CONV2D_S8_GRAD_INPUT_WEIGHT_SCALES];
    int8_t *grad_in = operands[CONV2D_S8_GRAD_INPUT_GRAD_INPUT];
    float *grad_in_scale = operands[CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE];

    const size_t in_row = (size_t)p.input_w * (size_t)p.input_c;
    const size_t in_image = (size_t)p.input_h * in_row;
    const size_t n_in = (size_t)p.batches * in_image;
    const size_t taps = (size_t)p.filter_h * (size_t)p.filter_w;
    int32_t *acc = scratch;
    int32_t *m = acc + n_in;                  /* Q23 channel multipliers */
    int8_t *row = (int8_t *)(m + p.output_c); /* a composed filter row (train_cols) */

    const int32_t n_scales = p.per_channel ? p.output_c : 1;
    const float max_scale = conv_grad_channel_q23(scales, n_scales, m);

    const int shift = conv2d_s8_grad_input_ref_shift(&p, filter, trained, m);

    for (size_t i = 0; i < n_in; ++i) acc[i] = 0;
    const size_t pixels = conv_grad_pixels(p.grad_broadcast, p.output_h, p.output_w);
    size_t pos = 0; /* flat output position (b, oy, ox) */
    for (int32_t b = 0; b < p.batches; ++b) {
        int32_t *image = acc + (size_t)b * in_image;
        for (int32_t oy = 0; oy < p.output_h; ++oy) {
            const int32_t y0 = oy * p.stride_h - p.pad_h;
            for (int32_t ox = 0; ox < p.output_w; ++ox, ++pos) {
                const int32_t x0 = ox * p.stride_w - p.pad_w;
                for (int32_t c = 0; c < p.output_c; ++c) {
                    const int32_t g = conv_grad_masked_at(grad_out, mask, pos, (size_t)p.output_c,
                                                          (size_t)c, pixels);
                    if (g == 0) continue;
                    const int32_t gs = conv_grad_term(g, m[p.per_channel ? c : 0], shift);
                    if (gs == 0) continue;
                    const int8_t *kernel = conv_train_row(row, filter, trained, c, (int32_t)taps,
                                                          p.input_c, p.train_rows, p.train_cols);
                    /* Scatter: the forward read x[y, x, :] through tap (fy, fx), so the
                     * gradient flows back there; padded taps had no input and get nothing. */
                    for (int32_t fy = 0; fy < p.filter_h; ++fy) {
                        const int32_t y = y0 + fy * p.dilation_h;
                        if (y < 0 || y >= p.input_h) continue;
                        for (int32_t fx = 0; fx < p.filter_w; ++fx) {
                            const int32_t x = x0 + fx * p.dilation_w;
                            if (x < 0 || x >= p.input_w) continue;
                            int32_t *a = image + (size_t)y * in_row + (size_t)x * p.input_c;
                            const int8_t *w =
                                kernel +
                                ((size_t)fy * (size_t)p.filter_w + (size_t)fx) * (size_t)p.input_c;
                            for (int32_t k = 0; k < p.input_c; ++k) a[k] += gs * (int32_t)w[k];
                        }
                    }
                }
            }
        }
    }
    *grad_in_scale =
        grad_requantize_s32(acc, n_in, grad_out_scale * max_scale * conv_grad_unit(shift), grad_in);
}

size_t conv2d_s8_grad_input_ref_scratch_size(const void *params) {
    const struct conv2d_s8_grad_input_params p =
        *(const struct conv2d_s8_grad_input_params *)params;
    const size_t n_in =
        (size_t)p.batches * (size_t)p.input_h * (size_t)p.input_w * (size_t)p.input_c;
    /* Input-channel slices: composed rows (conv2d_s8_grad_input.h, GI_COLS_ROWS). */
    const int chunk = p.filter_h == 1 && p.filter_w == 1 && p.input_c <= GI_COLS_MAX_C;
    return (n_in + (size_t)p.output_c) * sizeof(int32_t) +
           conv_train_row_bytes(p.filter_h * p.filter_w, p.input_c, p.train_cols,
                                chunk ? GI_COLS_ROWS : 1);
}
