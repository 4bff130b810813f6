/* Weight and bias update of depthwise_conv2d_s8, optimized: bit-identical with
 * depthwise_conv2d_s8_grad_update_ref_run (depthwise_conv2d_s8_grad_update.c). Depth
 * multiplier 1 (the MobileNet case) with filters of up to DWGU_TAPS taps takes the faster path
 * below; anything else the reference.
 *
 * Exactness. The weight gradient of a trained channel c and tap t, acc[t] = sum over output
 * positions of g[pos, c] * (x[pos under t, c] - z_x), is the same sum of the same integer
 * products in another order (int32, equal modulo 2^32, hence equal). Zero or masked gradients
 * and taps in the padding add nothing, as the reference skips them. The update draws the
 * generator once per weight, channel by channel and tap by tap within a channel, as the
 * reference does, with the reference's float operations in the same order (dsp_step_weights,
 * dsp.h); the bias gradients are the same integer sums (dsp_bias_sums) stepped by the
 * reference's conv_grad_step_bias. So the weights, the biases and the generator's state end
 * identical.
 *
 * Speed. The reference walks one channel at a time over all positions and taps, an index
 * computation, a bounds check, a byte load, a multiply-add and a load and store of an
 * accumulator per MAC. Here four adjacent channels go together: per output position one word
 * of gradients (masked with the 4 mask bits spread to bytes), SXTB16 into (c, c+2) and
 * (c+1, c+3); per valid tap (bounds computed once per row and per position, not per tap) one
 * word of input, SXTAB16 adding the input offset while widening, and SMLABB / SMLATT into the
 * tap's four accumulators (on the stack). The biases: 4 channels per word of gradients into
 * 16-bit lane sums (dsp_bias_sums). */
#include "conv2d_s8_grad_input.h"      /* conv_grad_masked */
#include "conv2d_s8_grad_update_dsp.h" /* conv_grad_update_bias_dsp */
#include "depthwise_conv2d_s8_grad_update.h"
#include "dsp.h"

#define DWGU_TAPS 25 /* taps whose 4 channels' accumulators the stack holds (400 B) */

/* n (1..4) int8 from p as a word, the bytes past n zero; n == 4 reads one word. */
static inline __attribute__((always_inline)) uint32_t read_n(const int8_t *p, int32_t n) {
    if (n == 4) return dsp_read4(p);
    uint32_t v = 0;
    for (int32_t i = 0; i < n; ++i) v |= (uint32_t)(uint8_t)p[i] << (8 * i);
    return v;
}

/* The first valid tap index and one past the last along one axis: the tap f is valid iff
 * 0 <= o + f * d < size. */
static inline void tap_range(int32_t o, int32_t d, int32_t f_n, int32_t size, int32_t *lo,
                             int32_t *hi) {
    *lo = o >= 0 ? 0 : (-o + d - 1) / d;
    if (o + (f_n - 1) * d < size)
        *hi = f_n;
    else
        *hi = o >= size ? 0 : (size - o + d - 1) / d;
    if (*hi < *lo) *hi = *lo;
}

/* acc[t * 4 + j] = the weight gradient of channel c0 + j, tap t, for j < n. */
static inline __attribute__((always_inline)) void block_grads(
    const struct depthwise_conv2d_s8_grad_update_params *p, const int8_t *grad_out,
    const uint8_t *mask, const int8_t *input, int32_t c0, int32_t n, int32_t *acc) {
    const int32_t ic = p->input_c, fw = p->filter_w;
    const size_t oc = (size_t)ic; /* depth multiplier 1 */
    const size_t in_row = (size_t)p->input_w * (size_t)ic;
    const size_t in_image = (size_t)p->input_h * in_row;
    const uint32_t off2 = dsp_pair(p->input_offset);
    const size_t x_step = (size_t)p->dilation_w * (size_t)ic;
    size_t pos = 0;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *image = input + (size_t)b * in_image + (size_t)c0;
        for (int32_t oy = 0; oy < p->output_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t fy_lo, fy_hi;
            tap_range(y0, p->dilation_h, p->filter_h, p->input_h, &fy_lo, &fy_hi);
            for (int32_t ox = 0; ox < p->output_w; ++ox, ++pos) {
                const size_t gi = pos * oc + (size_t)c0;
                const uint32_t g =
                    read_n(grad_out + gi, n) & (mask ? dsp_mask_bytes(mask, gi, n) : 0xFFFFFFFFu);
                if (g == 0 || fy_lo == fy_hi) continue;
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t fx_lo, fx_hi;
                tap_range(x0, p->dilation_w, fw, p->input_w, &fx_lo, &fx_hi);
                if (fx_lo == fx_hi) continue;
                const uint32_t ge = dsp_sxtb16(g), go = dsp_sxtb16_hi(g); /* (c, c+2), (c+1, c+3) */
                for (int32_t fy = fy_lo; fy < fy_hi; ++fy) {
                    const int8_t *px = image + (size_t)(y0 + fy * p->dilation_h) * in_row +
                                       (size_t)(x0 + fx_lo * p->dilation_w) * (size_t)ic;
                    int32_t *a = acc + (size_t)(fy * fw + fx_lo) * 4u;
                    for (int32_t fx = fx_lo; fx < fx_hi; ++fx, px += x_step, a += 4) {
                        const uint32_t x = read_n(px, n);
                        const uint32_t xe = dsp_sxtab16(off2, x), xo = dsp_sxtab16_hi(off2, x);
                        a[0] = dsp_smlabb(ge, xe, a[0]);
                        a[1] = dsp_smlabb(go, xo, a[1]);
                        a[2] = dsp_smlatt(ge, xe, a[2]);
                        a[3] = dsp_smlatt(go, xo, a[3]);
                    }
                }
            }
        }
    }
}

void depthwise_conv2d_s8_grad_update_dsp_run(const void *params, void *const *operands,
                                             void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct depthwise_conv2d_s8_grad_update_params p =
        *(const struct depthwise_conv2d_s8_grad_update_params *)params;
    const int32_t taps = p.filter_h * p.filter_w;
    const int weights = p.update_weights && p.train_rows > 0;
    if (weights && (p.depth_multiplier != 1 || taps > DWGU_TAPS)) { /* bias-only: any shape */
        depthwise_conv2d_s8_grad_update_ref_run(params, operands, scratch);
        return;
    }
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

    const int32_t weight_rows = p.update_weights ? p.train_rows : 0;
    int32_t acc[DWGU_TAPS * 4];
    for (int32_t c0 = 0; c0 < weight_rows; c0 += 4) {
        const int32_t n = weight_rows - c0 < 4 ? weight_rows - c0 : 4;
        for (int32_t i = 0; i < taps * 4; ++i) acc[i] = 0;
        if (n == 4)
            block_grads(&p, grad_out, mask, input, c0, 4, acc);
        else
            block_grads(&p, grad_out, mask, input, c0, n, acc);
        /* The reference's steps, channel by channel, tap by tap: the same generator draws. */
        for (int32_t j = 0; j < n; ++j) {
            const int32_t c = c0 + j;
            const float f = conv_grad_weight_factor(p.lr, grad_scale, p.input_scale,
                                                    scales[p.per_channel ? c : 0]);
            dsp_step_weights(filter + (size_t)c, (size_t)p.train_rows, acc + j, 4, (size_t)taps, f,
                             rng);
        }
    }

    const size_t positions = (size_t)p.batches * (size_t)p.output_h * (size_t)p.output_w;
    const size_t channels = (size_t)p.input_c * (size_t)p.depth_multiplier; /* G_y's innermost */
    conv_grad_update_bias_dsp(bias, p.update_bias ? p.train_bias_rows : 0, positions, channels,
                              grad_out, mask, p.lr, grad_scale, p.input_scale, scales,
                              p.per_channel);
}

/* The selector, the runtime's entry for depthwise_conv2d_s8_grad_update (ops.def): the DSP variant
 * above when the build enables it (KERNELS_USE_DSP(), dsp.h), else the reference
 * (depthwise_conv2d_s8_grad_update.c). The DSP variant falls back to the reference itself for the
 * shapes it does not take. */
void depthwise_conv2d_s8_grad_update_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        depthwise_conv2d_s8_grad_update_dsp_run(params, operands, scratch);
    else
        depthwise_conv2d_s8_grad_update_ref_run(params, operands, scratch);
}
