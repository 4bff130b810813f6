/* int8 2-D convolution: TFLite's reference ConvPerChannel, loop for loop, so that the
 * integer results are identical. See conv2d_s8.h for layouts and operands. */
#include "conv2d_s8.h"

#include "conv2d_train.h"
#include "fixedpoint.h"

/* acc (+ bias) scaled to the output's quanta, offset by its zero point and clamped to the
 * fused activation range: the same sequence of integer steps as TFLite. */
static inline int8_t requantize(int32_t acc, int32_t multiplier, int32_t shift,
                                const struct conv2d_s8_params *p) {
    acc = fp_multiply_by_quantized_multiplier(acc, multiplier, (int)shift);
    acc += p->output_offset;
    return (int8_t)fp_clamp(acc, p->act_min, p->act_max);
}

void conv2d_s8_ref_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct conv2d_s8_params p = *(const struct conv2d_s8_params *)params;
    const int8_t *input = operands[CONV2D_S8_INPUT];
    const int8_t *filter = operands[CONV2D_S8_FILTER];
    const int32_t *bias = p.has_bias ? (const int32_t *)operands[CONV2D_S8_BIAS] : NULL;
    const int32_t *multipliers = operands[CONV2D_S8_MULTIPLIERS];
    const int32_t *shifts = operands[CONV2D_S8_SHIFTS];
    const int8_t *trained_filter = operands[CONV2D_S8_TRAINED_FILTER];
    const int32_t *trained_bias = operands[CONV2D_S8_TRAINED_BIAS];
    int8_t *out = operands[CONV2D_S8_OUTPUT];

    const size_t in_row = (size_t)p.input_w * (size_t)p.input_c;
    const size_t in_image = (size_t)p.input_h * in_row;
    const size_t filter_row = (size_t)p.filter_w * (size_t)p.input_c;

    for (int32_t b = 0; b < p.batches; ++b) {
        const int8_t *image = input + (size_t)b * in_image;
        for (int32_t oy = 0; oy < p.output_h; ++oy) {
            const int32_t y0 = oy * p.stride_h - p.pad_h;
            for (int32_t ox = 0; ox < p.output_w; ++ox) {
                const int32_t x0 = ox * p.stride_w - p.pad_w;
                /* Output is NHWC, so writing channel after channel fills it in order. */
                for (int32_t oc = 0; oc < p.output_c; ++oc) {
                    /* The rows (or input channels) being trained come from their RAM copy. */
                    const int8_t *kernel =
                        conv_train_row(scratch, filter, trained_filter, oc, p.filter_h * p.filter_w,
                                       p.input_c, p.train_rows, p.train_cols);
                    /* 32-bit accumulator as TFLite: |w * (x - zp)| <= 128 * 255, so it
                     * cannot overflow below 2^16 taps (filter_h * filter_w * input_c). */
                    int32_t acc = 0;
                    for (int32_t fy = 0; fy < p.filter_h; ++fy) {
                        const int32_t y = y0 + fy * p.dilation_h;
                        /* Padding is real zero, i.e. it contributes nothing to the sum:
                         * taps outside the image are skipped (not read as the zero point). */
                        if (y < 0 || y >= p.input_h) continue;
                        for (int32_t fx = 0; fx < p.filter_w; ++fx) {
                            const int32_t x = x0 + fx * p.dilation_w;
                            if (x < 0 || x >= p.input_w) continue;
                            const int8_t *in_px =
                                image + (size_t)y * in_row + (size_t)x * p.input_c;
                            const int8_t *w =
                                kernel + (size_t)fy * filter_row + (size_t)fx * p.input_c;
                            for (int32_t ic = 0; ic < p.input_c; ++ic) {
                                acc += (int32_t)w[ic] * ((int32_t)in_px[ic] + p.input_offset);
                            }
                        }
                    }
                    if (oc < p.train_bias_rows)
                        acc += trained_bias[oc];
                    else if (bias)
                        acc += bias[oc];
                    const int32_t q = p.per_channel ? oc : 0;
                    *out++ = requantize(acc, multipliers[q], shifts[q], &p);
                }
            }
        }
    }
}

/* Two filter rows when input channels are trained (conv_train_row composes them; the DSP
 * variants hold a pair), else none. */
size_t conv2d_s8_ref_scratch_size(const void *params) {
    const struct conv2d_s8_params p = *(const struct conv2d_s8_params *)params;
    return conv_train_row_bytes(p.filter_h * p.filter_w, p.input_c, p.train_cols, 2);
}
