/* The channel-quad engine of the optimized depthwise input gradients (the two-pass
 * depthwise_conv2d_s8_grad_input_2pass_dsp.c, the one-pass depthwise_conv2d_s8_grad_input_dsp.c):
 * four adjacent channels at a time, each input pixel's four int32 accumulators gathered in
 * registers from the same terms g' (conv_grad_term of the masked gradient, the same shift) and
 * weights as the reference kernels, summed in another order (the shift bounds the sum of the
 * terms' absolute values by INT32_MAX, so no order overflows and the int32 sums are equal).
 *
 * Why: on small maps (MobileNetV2's 8x8 and 4x4 gradients) the channel-plane engine
 * (depthwise_conv2d_s8_grad_input_planes.h) pays per channel a set-up, a strided walk of the
 * gradient and of the output, and a walk of the accumulators for their magnitude; here a quad
 * reads its four gradient bytes as one word and writes its four int8 results as one word, and
 * the accumulators never leave the registers: pass 1 takes their magnitude, pass 2 rounds them
 * (or, with keep, pass 1 stores them for pass 2 to round).
 *
 * The gather: input pixel (y, x) receives from output (oy, ox) = (Y - a, X - b) through the taps
 * (py + a s, px + b s), py = (y + pad_h) mod s, Y = (y + pad_h - py) / s (columns likewise). The
 * quad's g' sit in a zero-bordered grid T of output pixels (two words each: g0 g2 and g1 g3 as
 * 16-bit lanes), so every tap of the pixel's phase reads T without a bounds check; the weights
 * are pre-widened the same way (SXTB16: w0 w2, w1 w3), so one tap is LDRD g', LDRD w and four
 * SMLABB / SMLATT.
 *
 * Buffers (the caller's, dwq_buffer_size bytes, 8-aligned): T (th x tw pairs of words), then the
 * widened weights (taps pairs of words). */
#ifndef KERNELS_DEPTHWISE_CONV2D_S8_GRAD_INPUT_QUADS_H
#define KERNELS_DEPTHWISE_CONV2D_S8_GRAD_INPUT_QUADS_H

#include <stddef.h>
#include <stdint.h>

#include "depthwise_conv2d_s8_grad_input.h"

#define DWQ_TAPS 9       /* the tap tables (the engine takes 3x3) */
#define DWQ_PHASES 4     /* strides 1 and 2 */
#define DWQ_PIXELS 1024  /* output pixels in T (8 KB): the engine is for small maps */
#define DWQ_MAX_PLANE 64 /* input pixels (8x8) up to which the variants take it */

struct dwq {
    struct depthwise_conv2d_s8_grad_input_params p;
    const int8_t *grad_out;
    const uint8_t *mask;
    const int8_t *filter, *trained;
    const float *scales;
    float max_scale;
    int32_t th, tw; /* T's rows and columns (output pixels and borders) */
    int32_t bt, bl; /* T's border above and left of the output pixels */
    int32_t rb;     /* input rows a block of sums (the buffer after the weights) holds: dwq_fit */
    /* per phase (py * s_w + px): its taps, each an offset in T (words, from the pixel's (Y, X))
     * and the tap's widened weights (pair index) */
    uint8_t nt[DWQ_PHASES];
    int16_t off[DWQ_PHASES][DWQ_TAPS];
    uint8_t tap[DWQ_PHASES][DWQ_TAPS];
    /* per phase: the offset of its widened weights (words: its taps in the order above) */
    int16_t woff[DWQ_PHASES];
    uint8_t order[DWQ_TAPS]; /* the taps in the widened weights' order (every phase's) */
    uint8_t kind;            /* the row loop: DWQ_S1_3X3 or DWQ_S2_3X3 (assembly on the Cortex-M) */
};
enum { DWQ_S1_3X3 = 1, DWQ_S2_3X3 = 2 };
#define DWQ_TW 10 /* T's pitch (output pixels) for the 3x3 kinds: maps up to 8 wide at stride 1 */

/* Fills q's geometry from p; returns 0 (another path) unless the engine takes the shape: depth
 * multiplier 1, channels a multiple of 4, dilation 1, 3x3 filters at stride 1 or 2 (for which the
 * reference's shift is the smallest one whatever the weights, dw_grad_worst_shift: no pass over
 * them), no negative padding, T at most DWQ_TW wide. */
int dwq_setup(struct dwq *q, const struct depthwise_conv2d_s8_grad_input_params *p);
size_t dwq_buffer_size(const struct dwq *q);
/* Blocks of as many input rows as `bytes` of buffers hold (fewer calls a quad; at least one):
 * returns 0 where even one does not fit. dwq_buffer_size then gives the bytes used. */
int dwq_fit(struct dwq *q, size_t bytes);
/* dwq_setup's quick part: 3x3, depth multiplier 1, channels a multiple of 4, at most
 * DWQ_MAX_PLANE input pixels (the variants' bound). */
static inline int dwq_shape(const struct depthwise_conv2d_s8_grad_input_params *p) {
    return p->filter_h == 3 && p->filter_w == 3 && p->depth_multiplier == 1 &&
           p->input_c % 4 == 0 && p->input_h * p->input_w <= DWQ_MAX_PLANE;
}
/* The operands into q; returns the weight scales' maximum (conv_grad_channel_q23's max_s). */
float dwq_operands(struct dwq *q, void *const *operands);
/* T's borders zero: once per call (dwq_terms writes only the output pixels). */
void dwq_clear(const struct dwq *q, void *buf);

/* What dwq_run does with each pixel's four accumulators. */
enum dwq_mode {
    DWQ_MAX = 0,   /* their largest magnitude (returned) */
    DWQ_STORE = 1, /* that, and stored: to[pos * to_step + k] (int32) */
    DWQ_ROUND = 2  /* rounded (struct dwq_round): out[pos * input_c + c0 + k] (int8) */
};
/* grad_requantize_s32's rounding with max|acc| known: the reciprocal's (128 <= max_abs < 2^30)
 * or dsp.h's general one. */
struct dwq_round {
    uint32_t max_abs, half, r;
    float k;
};
/* Quad c0 (channels c0..c0+3) of batch b: its terms into T and its weights, then every input
 * pixel of the batch as mode says; returns the largest magnitude (DWQ_MAX, DWQ_STORE; 0 where
 * every g' is zero, with nothing stored) or 0. */
uint32_t dwq_run(const struct dwq *q, void *buf, int32_t b, int32_t c0, enum dwq_mode mode,
                 int32_t *to, int32_t to_step, int8_t *out, const struct dwq_round *rnd);

/* Whether the one-pass DSP variant runs the engine for these parameters (for the tests; in
 * depthwise_conv2d_s8_grad_input_dsp.c). */
int32_t depthwise_conv2d_s8_grad_input_dsp_quads(const void *params);
/* The same for the two-pass DSP variant (in depthwise_conv2d_s8_grad_input_2pass_dsp.c). */
int32_t depthwise_conv2d_s8_grad_input_2pass_dsp_quads(const void *params);
/* Pass 2 of a quad whose sums pass 1 stored in the output bytes of its pixels (int32, at byte
 * 4 c0 of each pixel: dwq_run's DWQ_STORE with to = grad_in + 4 c0, to_step = input_c / 4):
 * grad_in[pos * input_c + c0 + k] = their rounding, every position. */
void dwq_round_free(const struct dwq *q, void *buf, int8_t *grad_in, int32_t c0,
                    const struct dwq_round *rnd);
/* Pass 2 of kept quads: out[pos * c_n + k] = from[pos * 4 + k] rounded, pos < n, k < 4. */
void dwq_round_kept(const int32_t *from, size_t n, int8_t *out, size_t c_n,
                    const struct dwq_round *rnd);

#endif
