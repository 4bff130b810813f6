/* The channel-plane engine of the optimized depthwise input gradients (the one-pass
 * depthwise_conv2d_s8_grad_input_dsp.c and the two-pass
 * depthwise_conv2d_s8_grad_input_2pass_dsp.c): one channel at a time, the exact int32
 * accumulators of one input row at a time, from the same terms g' (conv_grad_term of the masked
 * gradient, the same shift) and weights as the reference kernels, summed in another order
 * (the shift bounds the sum of the terms' absolute values by INT32_MAX, so no order
 * overflows and the int32 sums are equal).
 *
 * The transposed convolution as plain correlations. With dilation 1, input row y receives
 * from filter rows fy = py, py + s, ... only, py = (y + pad_h) mod s (s = stride_h), and from
 * output row oy = Y - k at fy = py + k s, Y = (y + pad_h - py) / s; columns likewise. So each
 * of the s_h x s_w phases (py, px) is a correlation of the channel's compact g' plane P (no
 * stride gaps, zero-bordered) with a sub-kernel of ceil((fh - py) / s) x ceil((fw - px) / s)
 * taps, flipped: at stride 2 no product is spent on the stride's zeros. Every g' fits a 16-bit
 * lane (the shift is at least CONV_GRAD_MIN_SHIFT_16), so P is int16 and the correlation takes
 * two horizontally adjacent taps per SMLAD: per filter row and 4 adjacent outputs, the words
 * of P at 4 + 2 (pairs - 1) halfword offsets (unaligned loads, which the Cortex-M7 takes) and
 * 4 SMLAD per pair of taps against the pair's packed weights; the odd tap's pair carries a
 * zero weight.
 *
 * Buffers (the caller's, in its operator's scratch: dwp_buffer_size bytes, laid out by
 * dwp_buffers; bounded, dwp_setup refuses larger shapes): P, d->ph * d->pw <= DWP_PLANE int16;
 * the packed sub-kernels, d->words <= DWP_WORDS words; one accumulator row, input_w + 8 <=
 * DWP_ROW int32. */
#ifndef KERNELS_DEPTHWISE_CONV2D_S8_GRAD_INPUT_PLANES_H
#define KERNELS_DEPTHWISE_CONV2D_S8_GRAD_INPUT_PLANES_H

#include <stddef.h>
#include <stdint.h>

#include "conv2d_s8_grad_input.h"
#include "depthwise_conv2d_s8_grad_input.h"

#define DWP_PLANE 1024          /* int16 entries of P (2 KB) */
#define DWP_WORDS 64            /* packed weight pairs of every phase (7x7: 28) */
#define DWP_ROW 72              /* accumulators of one input row (+ 4 + the stride's spill) */
#define DWP_PHASES 4            /* s_h * s_w at most: strides 1 and 2 */
#define DWP_PAIR2_SAME_COLUMN 3 /* dwp's pair2: both phases' windows at one column */
#define DWP_NO_TAP 255 /* dwp's tap table: no tap (filters of at most 255 taps use the table) */

struct dwp {
    struct depthwise_conv2d_s8_grad_input_params p;
    const int8_t *grad_out;
    const uint8_t *mask;
    const int8_t *filter, *trained;
    const float *scales; /* the weight scales (per channel or one) */
    float max_scale;     /* their maximum */
    int shift;
    int32_t ph, pw; /* P's rows and row pitch (int16 entries) */
    int32_t pt, pl; /* P's border above and left of the g' */
    /* (16 bits: struct dwp is on the kernels' stack, in the deepest frames of a step) */
    int16_t kh[DWP_PHASES], kw[DWP_PHASES]; /* per phase (py * s_w + px): sub-kernel taps */
    int16_t koff[DWP_PHASES];               /* and the offset of its packed words */
    int16_t x0[DWP_PHASES], nx[DWP_PHASES]; /* per column phase: first column, columns */
    int16_t col0[DWP_PHASES];               /* per phase: P's column of its first output's window */
    int32_t words;                          /* packed words of all phases */
    uint8_t whole4; /* every column phase has a multiple of 4 columns: dwp_rows writes no more */
    uint8_t rows8;  /* stride 1, 8-wide rows, 2 or 3 tap pairs: dwp_rows's 8-output blocks */
    uint8_t pair2;  /* stride 2, 8-wide rows: both column phases in one block (phase a + 1, or
                     * DWP_PAIR2_SAME_COLUMN), or 0 */
    /* stride 2: per packed word its two taps (fy * filter_w + fx; DWP_NO_TAP: none, a zero
     * weight), in dwp_kernel's order, so that it packs a channel in one flat loop */
    uint8_t tap[DWP_WORDS][2];
};

/* Fills d's geometry and the shift (the reference's: dw_grad_worst_shift) from p; returns 0 (and
 * the caller takes another path) unless the shape fits the engine: depth multiplier 1, dilation
 * 1, strides 1 or 2, no negative padding, and the buffers' bounds. The operands are the
 * caller's to set (dwp_operands). */
int dwp_setup(struct dwp *d, const struct depthwise_conv2d_s8_grad_input_params *p);
/* The bytes of the engine's buffers for a shape dwp_setup takes (0 for the others). */
size_t dwp_buffer_size(const struct depthwise_conv2d_s8_grad_input_params *p);
/* The buffers in buf (8-aligned, dwp_buffer_size(&d->p) bytes): the accumulator row, the
 * packed sub-kernels, then P. With row NULL, no row: the packed sub-kernels and P only,
 * dwp_rowless_size(d) bytes (for a caller that has the rows written elsewhere). */
void dwp_buffers(const struct dwp *d, void *buf, int16_t **plane, uint32_t **words, int32_t **row);
size_t dwp_rowless_size(const struct dwp *d);
/* P's borders (and every entry) zero: once per call, as dwp_fill writes only the g'. */
void dwp_clear(const struct dwp *d, int16_t *plane);
/* Channel c's Q23 multiplier, conv_grad_channel_q23's m[c] (conv2d_s8_grad_input.h: the same
 * expression), computed when needed: the variants keep other things in the scratch the
 * reference gives the multipliers. */
static inline int32_t dwp_q23(const struct dwp *d, int32_t c) {
    return conv_grad_q23(d->scales[d->p.per_channel ? c : 0], d->max_scale);
}
/* The operands into d (depthwise_conv2d_s8_grad_input.h's order), d->max_scale the weight
 * scales' maximum (conv_grad_channel_q23's max_s); returns it. */
float dwp_operands(struct dwp *d, void *const *operands);
/* The largest shift the weights of a depthwise layer (depth multiplier 1) with `taps` taps
 * could need: with every |W_q| at its largest, 128, and every Q23 multiplier at its largest,
 * 2^23, the reference's bound sums are at most b0 = 128 * taps * 128 * 2^23 and w1 = 128 * taps,
 * and conv_grad_pick_shift is monotone in both. Up to 511 taps (any filter up to 22x22) that
 * is CONV_GRAD_MIN_SHIFT_16, the smallest shift there is: then it is the reference's shift
 * whatever the weights, and the optimized variants skip the reference's pass over them (a few
 * instructions per weight: taps x channels). */
static inline int dw_grad_worst_shift(int32_t taps) {
    const uint64_t w1 = 128u * (uint64_t)taps;
    return conv_grad_pick_shift(w1 * 128u * ((uint64_t)1 << CONV_GRAD_Q), w1,
                                CONV_GRAD_MIN_SHIFT_16);
}
/* P = channel c's g' of batch b (multiplier mc = dwp_q23(d, c)), the borders zero (P has
 * d->ph * d->pw entries). Returns whether any g' is nonzero. */
int dwp_fill(const struct dwp *d, int32_t b, int32_t c, int32_t mc, int16_t *plane);
/* The packed sub-kernels of channel c (its trained or flash weights): d->words words. */
void dwp_kernel(const struct dwp *d, int32_t c, uint32_t *words);
/* DWP_PITCH(d) int32 per row of accumulators: input_w + 8 (dwp_rows writes 4 outputs at a
 * time, up to input_w - 1 + 3 s_w). */
#define DWP_PITCH(d) ((d)->p.input_w + 8)
/* out[(y - y0) * pitch + x * xstep] = channel c's accumulator at input row y in [y0, y0 + ny),
 * column x < input_w. Unless d->whole4, it also writes (scribbles on) columns input_w to
 * input_w + 2 s_w of each row: pitch >= DWP_PITCH(d) with xstep 1 then. */
void dwp_rows(const struct dwp *d, const int16_t *plane, const uint32_t *words, int32_t y0,
              int32_t ny, int32_t *out, int32_t pitch, int32_t xstep);

/* The one-pass operator's variant over the engine (depthwise_conv2d_s8_grad_input_planes_dsp.c):
 * whether it takes the shape (multiplier 1, the engine's shapes, its buffers within the
 * operator's scratch past the accumulators, at least DWP_MIN_PIXELS output pixels: the
 * gradient's plane), and the kernel. */
#define DWP_MIN_PIXELS 64
/* dsp.h's dsp_grad_requantize_s32, one copy for both one-pass variants (flash is tight on the
 * Nucleo); in depthwise_conv2d_s8_grad_input_dsp.c. */
float dwgi_requantize(const int32_t *acc, size_t n, float acc_scale, int8_t *out);
int depthwise_conv2d_s8_grad_input_planes_dsp_takes(
    const struct depthwise_conv2d_s8_grad_input_params *p);
void depthwise_conv2d_s8_grad_input_planes_dsp_run(
    const struct depthwise_conv2d_s8_grad_input_params *p, void *const *operands, void *scratch);

#endif
