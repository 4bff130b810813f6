/* int8 depthwise 2-D convolution with the Armv7E-M DSP SIMD instructions (dsp.h):
 * bit-identical with depthwise_conv2d_s8_ref_run (depthwise_conv2d_s8.c), TFLite's reference
 * DepthwiseConvPerChannel.
 *
 * Channel-vectorized (depth_multiplier 1, the MobileNet case): for each output pixel, four
 * channels at a time, each tap loads four input bytes and four filter bytes as one word each
 * (NHWC input and [1, h, w, channels] filter keep channels adjacent), widens them to 16-bit
 * lanes (the input offset added by SXTAB16) and multiply-accumulates every lane on its own
 * (SMLABB / SMLATT). Channels whose group of four is not whole, or straddles train_rows (a
 * trained channel reads the compact RAM copy, its neighbour the filter), and other depth
 * multipliers take the reference's per-channel arithmetic. Every product and sum is the
 * reference's; requantization is the reference's fixed-point code. */
#include "depthwise_conv2d_s8.h"
#include "dsp.h"
#include "fixedpoint.h"

static inline int8_t requantize(int32_t acc, int32_t oc, const int32_t *multipliers,
                                const int32_t *shifts, const struct depthwise_conv2d_s8_params *p) {
    const int32_t q = p->per_channel ? oc : 0;
    acc = fp_multiply_by_quantized_multiplier(acc, multipliers[q], (int)shifts[q]);
    acc += p->output_offset;
    return (int8_t)fp_clamp(acc, p->act_min, p->act_max);
}

void depthwise_conv2d_s8_dsp_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct depthwise_conv2d_s8_params p = *(const struct depthwise_conv2d_s8_params *)params;
    if (p.depth_multiplier != 1) {
        depthwise_conv2d_s8_ref_run(params, operands, scratch);
        return;
    }
    const int8_t *input = operands[DEPTHWISE_CONV2D_S8_INPUT];
    const int8_t *filter = operands[DEPTHWISE_CONV2D_S8_FILTER];
    const int32_t *bias = p.has_bias ? (const int32_t *)operands[DEPTHWISE_CONV2D_S8_BIAS] : NULL;
    const int32_t *multipliers = operands[DEPTHWISE_CONV2D_S8_MULTIPLIERS];
    const int32_t *shifts = operands[DEPTHWISE_CONV2D_S8_SHIFTS];
    const int8_t *trained_filter = operands[DEPTHWISE_CONV2D_S8_TRAINED_FILTER];
    const int32_t *trained_bias = operands[DEPTHWISE_CONV2D_S8_TRAINED_BIAS];
    int8_t *out = operands[DEPTHWISE_CONV2D_S8_OUTPUT];

    const int32_t channels = p.input_c;
    const size_t in_row = (size_t)p.input_w * (size_t)channels;
    const size_t in_image = (size_t)p.input_h * in_row;
    const uint32_t off2 = dsp_pair(p.input_offset);

    for (int32_t b = 0; b < p.batches; ++b) {
        const int8_t *image = input + (size_t)b * in_image;
        for (int32_t oy = 0; oy < p.output_h; ++oy) {
            const int32_t y0 = oy * p.stride_h - p.pad_h;
            /* The taps inside the image, in rows: the same for every output column's rows. */
            int32_t fy0 = 0, fy1 = p.filter_h;
            while (fy0 < fy1 && y0 + fy0 * p.dilation_h < 0) ++fy0;
            while (fy1 > fy0 && y0 + (fy1 - 1) * p.dilation_h >= p.input_h) --fy1;
            for (int32_t ox = 0; ox < p.output_w; ++ox) {
                const int32_t x0 = ox * p.stride_w - p.pad_w;
                int32_t fx0 = 0, fx1 = p.filter_w;
                while (fx0 < fx1 && x0 + fx0 * p.dilation_w < 0) ++fx0;
                while (fx1 > fx0 && x0 + (fx1 - 1) * p.dilation_w >= p.input_w) --fx1;
                int32_t c = 0;
                while (c < channels) {
                    /* Four channels read from one filter array (all trained, or none). */
                    const int whole =
                        c + 4 <= channels && (c + 4 <= p.train_rows || c >= p.train_rows);
                    const int trained = c < p.train_rows;
                    const int8_t *w = trained ? trained_filter : filter;
                    const size_t wstride = trained ? (size_t)p.train_rows : (size_t)channels;
                    if (whole) {
                        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                        for (int32_t fy = fy0; fy < fy1; ++fy) {
                            const int8_t *in_row_p =
                                image + (size_t)(y0 + fy * p.dilation_h) * in_row + (size_t)c;
                            const int8_t *w_row = w + (size_t)fy * (size_t)p.filter_w * wstride + c;
                            for (int32_t fx = fx0; fx < fx1; ++fx) {
                                const uint32_t xv = dsp_read4(
                                    in_row_p + (size_t)(x0 + fx * p.dilation_w) * (size_t)channels);
                                const uint32_t wv = dsp_read4(w_row + (size_t)fx * wstride);
                                const uint32_t xe = dsp_sxtab16(off2, xv),
                                               xo = dsp_sxtab16_hi(off2, xv);
                                const uint32_t we = dsp_sxtb16(wv), wo = dsp_sxtb16_hi(wv);
                                a0 = dsp_smlabb(xe, we, a0); /* channel c */
                                a2 = dsp_smlatt(xe, we, a2); /* c + 2 */
                                a1 = dsp_smlabb(xo, wo, a1); /* c + 1 */
                                a3 = dsp_smlatt(xo, wo, a3); /* c + 3 */
                            }
                        }
                        int32_t acc[4] = {a0, a1, a2, a3};
                        for (int32_t k = 0; k < 4; ++k) {
                            const int32_t oc = c + k;
                            if (oc < p.train_bias_rows)
                                acc[k] += trained_bias[oc];
                            else if (bias)
                                acc[k] += bias[oc];
                            *out++ = requantize(acc[k], oc, multipliers, shifts, &p);
                        }
                        c += 4;
                        continue;
                    }
                    /* One channel, as the reference. */
                    int32_t acc = 0;
                    for (int32_t fy = fy0; fy < fy1; ++fy) {
                        const int32_t y = y0 + fy * p.dilation_h;
                        for (int32_t fx = fx0; fx < fx1; ++fx) {
                            const int32_t x = x0 + fx * p.dilation_w;
                            const int32_t in_val =
                                image[(size_t)y * in_row + (size_t)x * channels + c];
                            const int32_t w_val =
                                w[((size_t)fy * (size_t)p.filter_w + (size_t)fx) * wstride + c];
                            acc += w_val * (in_val + p.input_offset);
                        }
                    }
                    if (c < p.train_bias_rows)
                        acc += trained_bias[c];
                    else if (bias)
                        acc += bias[c];
                    *out++ = requantize(acc, c, multipliers, shifts, &p);
                    ++c;
                }
            }
        }
    }
}
