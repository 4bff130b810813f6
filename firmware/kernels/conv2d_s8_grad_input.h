/* Input gradient of the int8 2-D convolution (conv2d_s8): with the layer's forward pass
 *   z = conv(x_real, W_real) + b_real,  W_real[c] = s_W[c] * W_q[c],  y_q = clamp(requant(z))
 * and an upstream gradient G_y (dL/dy_real, int8 + scale, grad.h), this kernel computes
 *   G_z = G_y * mask                   (clamp derivative; rounding is straight through)
 *   G_x = conv_transpose(G_z, W_real)  (dL/dx_real)
 * and returns G_x as int8 with the dynamic scale max|G_x| / 127.
 *
 * Integer arithmetic. The per-channel weight scales sit inside the sum over output channels;
 * they are folded into the gradient as a fixed-point factor before the sum:
 *   m[c]  = round(2^23 * s_W[c] / max s_W)                     (Q23, 0 < m[c] <= 2^23)
 *   g'[c] = round_half_away(g_q[c] * mask * m[c] / 2^shift)    (exact product, one rounding)
 *   acc   = sum g' * W_q                                        (int32, in scratch)
 *   G_x   = acc * s_g * max s_W * 2^(shift - 23)
 * shift is the smallest value in [0, 30] for which no accumulator can overflow int32 whatever
 * the gradient: max over input channels k of sum over (c, taps) |g'|max[c] * |W_q[c, tap, k]|
 * <= INT32_MAX, a bound computed from the weights on every call (one pass over the filter, the
 * cost of one output pixel). The sum itself is exact; int32 rather than int64 because the
 * whole input gradient must sit in scratch until its dynamic scale is known.
 * Precision: the one rounding, of g', is at most half an accumulator unit, i.e. 2^-(Q+1) of one
 * G_y quantum at the widest channel's scale, with Q = 23 - shift fractional bits left:
 * Q ~ 24 - log2(max_k sum_(c,taps) (s_W[c] / max s_W) |W_q[c, tap, k]|), e.g. 6 for a 3x3 conv
 * over 256 full-range output channels, 11 for a 1x1 conv over 96, 14 for a 3x3 depthwise. So
 * the scale folding adds at most 1/128 of a G_y quantum per term, against the +-1/2 quantum
 * the int8 G_y already carries (m[c] itself is exact to 2^-24). The int8 result then rounds
 * acc * 127 / max|acc| (grad_requantize_s32). Masked or zero gradients are skipped.
 *
 * Layouts (NHWC, as conv2d_s8):
 *   grad_output        int8    [batches, output_h, output_w, output_c]   g_q of G_y
 *                              ([batches, 1, 1, output_c] with grad_broadcast: every output
 *                              pixel of an image reads its one row; the mask stays per pixel)
 *   grad_output_scale  float32 [1]                                       s_g
 *   mask               uint8   [ceil(batches*output_h*output_w*output_c / 8)] clamp mask bits
 *                              (grad.h; ignored, may be NULL, when has_mask == 0)
 *   filter             int8    [output_c, filter_h, filter_w, input_c]   the model's (flash)
 *   trained_filter     int8    [train_rows, filter_h, filter_w, input_c] RAM copy of the rows
 *                              being trained (their current values; may be NULL if none)
 *   weight_scales      float32 [output_c] (per_channel) or [1]           s_W
 *   grad_input         int8    [batches, input_h, input_w, input_c]      output: G_x quanta
 *   grad_input_scale   float32 [1]                                       output: its scale
 * Scratch: int32 accumulators for the whole input, then one Q23 multiplier per channel. */
#ifndef KERNELS_CONV2D_S8_GRAD_INPUT_H
#define KERNELS_CONV2D_S8_GRAD_INPUT_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "conv2d_s8_grad_input.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT = 0,
    CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE = 1,
    CONV2D_S8_GRAD_INPUT_MASK = 2,
    CONV2D_S8_GRAD_INPUT_FILTER = 3,
    CONV2D_S8_GRAD_INPUT_TRAINED_FILTER = 4,
    CONV2D_S8_GRAD_INPUT_WEIGHT_SCALES = 5,
    CONV2D_S8_GRAD_INPUT_GRAD_INPUT = 6,
    CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE = 7,
    CONV2D_S8_GRAD_INPUT_OPERANDS = 8
};

/* --- Fixed-point helpers shared by the *_grad_input kernels (conv2d_s8, depthwise_conv2d_s8,
 * fully_connected_s8), so the three round identically. --------------------------------------- */

/* The Q23 unit: a channel whose scale is the largest gets the multiplier 2^23. */
#define CONV_GRAD_Q 23

/* round(v), halves away from zero, for 0 <= v < 2^31: exact (adding 0.5 in float is not). */
static inline int32_t conv_grad_round_nonneg(float v) {
    int32_t t = (int32_t)v; /* truncation; (float)t is exact: below 2^24, or t == v above 2^23 */
    if (v - (float)t >= 0.5f) t++;
    return t;
}

/* The largest of scales[0..n) (n = channels, or 1 per tensor). */
static inline float conv_grad_max_scale(const float *scales, int32_t n) {
    float max_s = scales[0];
    for (int32_t i = 1; i < n; i++)
        if (scales[i] > max_s) max_s = scales[i];
    return max_s;
}

/* A channel's Q23 multiplier: round(2^23 * s / max_s), s its scale, max_s the largest. */
static inline int32_t conv_grad_q23(float s, float max_s) {
    return conv_grad_round_nonneg(s / max_s * (float)(1u << CONV_GRAD_Q));
}

/* m[i] = round(2^23 * scales[i] / max scales) for i < n (n = channels, or 1 per tensor);
 * returns max scales. Scales are positive (the lowering checks it). */
static inline float conv_grad_channel_q23(const float *scales, int32_t n, int32_t *m) {
    const float max_s = conv_grad_max_scale(scales, n);
    for (int32_t i = 0; i < n; i++) m[i] = conv_grad_q23(scales[i], max_s);
    return max_s;
}

/* round_half_away(g * m / 2^shift): the gradient term in accumulator units. |g| <= 128,
 * 0 <= m <= 2^23, so g * m and the rounding half fit in int32. */
static inline int32_t conv_grad_term(int32_t g, int32_t m, int shift) {
    const int32_t v = g * m;
    if (shift == 0) return v;
    const int32_t half = (int32_t)1 << (shift - 1);
    return v >= 0 ? (v + half) >> shift : -((half - v) >> shift);
}

/* The smallest accumulator shift of the input gradients (conv2d_s8, depthwise_conv2d_s8 and
 * fully_connected_s8): with it every term g' fits a signed 16-bit lane (|g * m| <= 2^30, so
 * |g'| <= 2^15: -2^15 exactly for g = -128 at m = 2^23, at most 127 * 2^8 for positive g),
 * which lets the optimized kernels multiply two terms per SMLAD in a single pass (the 1x1
 * gather; the depthwise int16 planes). With terms up to 2^23 wide the 1x1 gather needed two
 * passes: 2x the instructions. It leaves 23 - 15 = 8 fractional bits per term at the widest
 * channel's scale: the folding adds at most 2^-9 of a G_y quantum (times |W_q|) per term,
 * against the 1/2 quantum the int8 G_y itself carries; measured on the randomized layers of
 * tests/kernels/conv/test_conv_grads.py, at most 0.08 of an output step beyond the
 * requantization's 1/2. */
#define CONV_GRAD_MIN_SHIFT_16 15

static inline int conv_grad_pick_shift(uint64_t b0, uint64_t w1, int min_shift) {
    int shift = min_shift;
    while (shift < 30 && (b0 >> shift) + 1u + (w1 + 1u) / 2u > (uint64_t)INT32_MAX) shift++;
    return shift;
}

/* The real value of one accumulator unit, per unit of s_g * max s_W: 2^(shift - 23). */
static inline float conv_grad_unit(int shift) {
    return (float)(1u << shift) / (float)(1u << CONV_GRAD_Q);
}

/* Gradient element i with the clamp mask applied (mask may be NULL: no mask). */
static inline int32_t conv_grad_masked(const int8_t *g, const uint8_t *mask, size_t i) {
    return (mask && !((mask[i >> 3] >> (i & 7)) & 1)) ? 0 : (int32_t)g[i];
}

/* grad_broadcast (the conv grad kernels' .def): G_y is [batches, 1, 1, channels], one row per
 * image read at each of its `pixels` output pixels (a pixel stride of 0), while the clamp mask
 * keeps one bit per output element. conv_grad_pixels: 0 without grad_broadcast, else the
 * output pixels of an image; conv_grad_row: the G_y row of output position pos (flat b, y, x). */
static inline size_t conv_grad_pixels(int32_t grad_broadcast, int32_t output_h, int32_t output_w) {
    return grad_broadcast ? (size_t)output_h * (size_t)output_w : 0;
}
static inline size_t conv_grad_row(size_t pos, size_t pixels) {
    return pixels ? pos / pixels : pos;
}
/* G_y[pos, c] with the clamp mask's bit (pos * channels + c) applied: conv_grad_masked's value,
 * read through conv_grad_row. */
static inline int32_t conv_grad_masked_at(const int8_t *g, const uint8_t *mask, size_t pos,
                                          size_t channels, size_t c, size_t pixels) {
    const size_t i = pos * channels + c;
    if (mask && !((mask[i >> 3] >> (i & 7)) & 1)) return 0;
    return (int32_t)g[conv_grad_row(pos, pixels) * channels + c];
}

/* Input-channel slices (conv2d_train.h) read composed weight rows from the scratch, after the
 * accumulators and multipliers: one in the reference, GI_COLS_ROWS (a chunk) in the DSP
 * variant's 1x1 path, which takes 1x1 slices of an even train_cols over up to GI_COLS_MAX_C
 * input channels. */
#define GI_COLS_ROWS 32
#define GI_COLS_MAX_C 256

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in conv2d_s8_grad_input_dsp.c. */
void conv2d_s8_grad_input_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (conv2d_s8_grad_input.c), bit-exact with TFLite's reference; it calls no
 * variant. */
void conv2d_s8_grad_input_ref_run(const void *params, void *const *operands, void *scratch);
/* The reference's scratch: the int32 accumulators of the whole input gradient, then the
 * channels' Q23 multipliers. The int8 input gradient may start where the scratch starts
 * (both variants write element i after reading accumulator i, in ascending order; the
 * compiler's OUTPUT_OVER_SCRATCH, held by tests/test_scratch_planning.py). */
size_t conv2d_s8_grad_input_ref_scratch_size(const void *params);
/* The reference's accumulator shift (conv_grad_pick_shift over its overflow bound), m the
 * channels' Q23 multipliers: shared with the two-pass variant (conv2d_s8_grad_input_2pass.c). */
int conv2d_s8_grad_input_ref_shift(const struct conv2d_s8_grad_input_params *p,
                                   const int8_t *filter, const int8_t *trained, const int32_t *m);
/* The scratch the runtime plans (conv2d_s8_grad_input_dsp.c): the reference's, then the
 * DSP variant's split terms where it takes the layer, whichever build runs the plan. */
size_t conv2d_s8_grad_input_scratch_size(const void *params);

/* The DSP variant's 1x1 path (conv2d_s8_grad_input_dsp.c) in parts, for the two-pass variant's
 * DSP code (conv2d_s8_grad_input_2pass_dsp.c; DSP code calling DSP code): whether it takes the
 * layer (a 1x1 filter; input-channel slices even and over at most GI_COLS_MAX_C channels), the
 * bytes of its packed terms, its shift (m: the channels' Q23 multipliers), and the int32
 * accumulators of output pixels [first, end) (flat NHW) at acc, for the identity map (stride
 * 1, no padding, output size the input's), rows: its GI_COLS_ROWS composed rows
 * (conv_train_row_bytes; train_cols only), sink: NULL, or where the accumulators go instead
 * of acc (struct gi_sink). The same integers as the reference's. */
/* Where the accumulators of a tile (up to GI_SINK_PIXELS consecutive pixels of the identity
 * map) go 4 input channels at a time instead of whole rows (output_c <= GI_COLS_ROWS, one chunk
 * of output channels, so they are complete after one pass over it): buf, int32
 * [GI_SINK_PIXELS][4], handed to fn for pixels [q0, q0 + npix), input channels [k, k + nk)
 * (nk <= 4; the entries past nk are 0). */
#define GI_SINK_PIXELS 32
struct gi_sink {
    void (*fn)(struct gi_sink *s, int32_t q0, int32_t npix, int32_t k, int32_t nk);
    int32_t *buf;
};
int conv2d_s8_grad_input_dsp_1x1_takes(const struct conv2d_s8_grad_input_params *p);
size_t conv2d_s8_grad_input_dsp_1x1_terms_size(void);
int conv2d_s8_grad_input_dsp_1x1_shift(const struct conv2d_s8_grad_input_params *p,
                                       void *const *operands, const int32_t *m);
void conv2d_s8_grad_input_dsp_1x1_pixels(const struct conv2d_s8_grad_input_params *p,
                                         void *const *operands, const int32_t *m, int shift,
                                         uint32_t *terms, int8_t *rows, int32_t first, int32_t end,
                                         int32_t *acc, struct gi_sink *sink);

#endif
