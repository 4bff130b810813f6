/* int8 depthwise 2-D convolution: TFLite's reference DepthwiseConvPerChannel, so that the
 * integer results are identical. See depthwise_conv2d_s8.h for layouts and operands. */
#include "depthwise_conv2d_s8.h"

#include "fixedpoint.h"

/* acc (+ bias) scaled to the output's quanta, offset by its zero point and clamped to the
 * fused activation range: the same sequence of integer steps as TFLite. */
static inline int8_t requantize(int32_t acc, int32_t multiplier, int32_t shift,
                                const struct depthwise_conv2d_s8_params *p) {
    acc = fp_multiply_by_quantized_multiplier(acc, multiplier, (int)shift);
    acc += p->output_offset;
    return (int8_t)fp_clamp(acc, p->act_min, p->act_max);
}

void depthwise_conv2d_s8_ref_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct depthwise_conv2d_s8_params p = *(const struct depthwise_conv2d_s8_params *)params;
    const int8_t *input = operands[DEPTHWISE_CONV2D_S8_INPUT];
    const int8_t *filter = operands[DEPTHWISE_CONV2D_S8_FILTER];
    const int32_t *bias = p.has_bias ? (const int32_t *)operands[DEPTHWISE_CONV2D_S8_BIAS] : NULL;
    const int32_t *multipliers = operands[DEPTHWISE_CONV2D_S8_MULTIPLIERS];
    const int32_t *shifts = operands[DEPTHWISE_CONV2D_S8_SHIFTS];
    const int8_t *trained_filter = operands[DEPTHWISE_CONV2D_S8_TRAINED_FILTER];
    const int32_t *trained_bias = operands[DEPTHWISE_CONV2D_S8_TRAINED_BIAS];
    int8_t *out = operands[DEPTHWISE_CONV2D_S8_OUTPUT];

    const int32_t output_c = p.input_c * p.depth_multiplier;
    const size_t in_row = (size_t)p.input_w * (size_t)p.input_c;
    const size_t in_image = (size_t)p.input_h * in_row;

    for (int32_t b = 0; b < p.batches; ++b) {
        const int8_t *image = input + (size_t)b * in_image;
        for (int32_t oy = 0; oy < p.output_h; ++oy) {
            const int32_t y0 = oy * p.stride_h - p.pad_h;
            for (int32_t ox = 0; ox < p.output_w; ++ox) {
                const int32_t x0 = ox * p.stride_w - p.pad_w;
                /* oc = ic * depth_multiplier + m runs 0..output_c-1 in order, so the NHWC
                 * output is written sequentially. */
                for (int32_t ic = 0; ic < p.input_c; ++ic) {
                    for (int32_t m = 0; m < p.depth_multiplier; ++m) {
                        const int32_t oc = ic * p.depth_multiplier + m;
                        /* Tap (fy, fx) of channel oc is w[(fy * filter_w + fx) * stride]:
                         * a trained channel reads the compact RAM copy, others the filter. */
                        const int trained = oc < p.train_rows;
                        const int8_t *w = trained ? trained_filter + oc : filter + oc;
                        const size_t stride = trained ? (size_t)p.train_rows : (size_t)output_c;
                        /* 32-bit accumulator as TFLite; a depthwise tap sums only
                         * filter_h * filter_w products, far from overflowing. */
                        int32_t acc = 0;
                        for (int32_t fy = 0; fy < p.filter_h; ++fy) {
                            const int32_t y = y0 + fy * p.dilation_h;
                            /* Padding is real zero: taps outside the image add nothing. */
                            if (y < 0 || y >= p.input_h) continue;
                            for (int32_t fx = 0; fx < p.filter_w; ++fx) {
                                const int32_t x = x0 + fx * p.dilation_w;
                                if (x < 0 || x >= p.input_w) continue;
                                const int32_t in_val =
                                    image[(size_t)y * in_row + (size_t)x * p.input_c + ic];
                                const int32_t w_val =
                                    w[((size_t)fy * (size_t)p.filter_w + (size_t)fx) * stride];
                                acc += w_val * (in_val + p.input_offset);
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
}

size_t depthwise_conv2d_s8_ref_scratch_size(const void *params) {
    (void)params;
    return 0;
}
