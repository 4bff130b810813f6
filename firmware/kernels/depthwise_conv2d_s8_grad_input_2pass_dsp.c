/* Input gradient of depthwise_conv2d_s8 in two passes, optimized: bit-identical with
 * depthwise_conv2d_s8_grad_input_2pass_ref_run (depthwise_conv2d_s8_grad_input_2pass.c), with
 * the same scratch. Depth multiplier 1 (the MobileNet case) and input planes whose padded
 * gradient plane fits DW2_PLANE (below) take the path here; others the reference.
 *
 * Exactness. Each input gradient accumulator receives the same terms g' * W (g' by the same
 * rounding of the masked gradient with the same shift, from the same bound) as in the
 * reference, summed in another order. The shift bounds the sum of the terms' absolute values
 * by INT32_MAX, so no partial sum overflows in any order and the int32 sums are equal. Pass 1
 * takes max|acc| over every channel, pass 2 recomputes each accumulator and rounds it
 * exactly as the reference's 64-bit division does (dsp.h's dsp_grad_round_s32), so the int8
 * gradient and its float scale (the reference's expression) are the same bits.
 *
 * Speed. The reference scatters: per output pixel and tap an index computation, bounds
 * checks, a strided weight load and a read-modify-write of one accumulator, and it rounds
 * with a 64-bit division per element. Here the transpose is turned into a gather: one
 * channel's g' is written into a zero-bordered plane U (the stride's gaps left zero) laid out
 * so that every accumulator is the plain correlation
 *     acc[y][x] = sum over taps of W[fy][fx] * U[y + (fh - 1 - fy) dh][x + (fw - 1 - fx) dw],
 * with no bounds checks, the channel's taps held in registers and the accumulator in a
 * register (never stored: pass 1 needs its magnitude, pass 2 its rounded value). The
 * positions no output pixel writes are zeroed once per call, as they are the same for every
 * channel. Pixels whose output gradient is masked or zero write 0, as the reference adds
 * nothing for them. With strides above 1 most of U would be the stride's zeros (3 of 4 at
 * stride 2), so there the channel's nonzero g' are scattered instead (scatter()), as the
 * reference does, into a plane V holding every tap of every output pixel: no bounds checks,
 * the taps' weights in registers (MobileNetV2's 8x8 <- 4x4 layer: 1.62 M -> 1.24 M
 * instructions; at stride 1 the scatter costs more than the gather: 2.38 M against 2.06 M). */
#include "conv2d_s8_grad_input.h"
#include "depthwise_conv2d_s8_grad_input.h" /* the operand order */
#include "depthwise_conv2d_s8_grad_input_2pass.h"
#include "dsp.h"
#include "grad.h"

/* int32 entries of the padded plane U (or V) on the stack (1.6 KB): inputs up to 14x14 at 7x7
 * (MCUNet's 7x7/2 over 8x8 scatters into 13x13), 16x16 at 5x5, 18x18 at 3x3. */
#define DW2_PLANE 400
#define DW2_ROW 64  /* entries of one accumulator row: inputs up to 64 wide */
#define DW2_TAPS 49 /* filter taps held at once (7x7) */

/* The reference's g' (conv_grad_term of the masked gradient) without branches: |g * m|
 * rounded half up after the shift, the sign put back. */
static inline int32_t term(int32_t g, int32_t m, int32_t half, int shift) {
    const int32_t v = g * m, s = v >> 31;
    return ((((v ^ s) - s) + half) >> shift ^ s) - s;
}

struct dw2 {
    const struct depthwise_conv2d_s8_grad_input_2pass_params *p;
    const int8_t *grad_out;
    const uint8_t *mask;
    const int8_t *filter;
    const int8_t *trained;
    const int32_t *m;
    int shift;
    int32_t uh, uw;         /* U's size (scatter: V's) */
    int scatter;            /* strides above 1: scatter into V (see scatter()) */
    int32_t toff[DW2_TAPS]; /* scatter: tap t's offset in V */
};

/* U = channel c's g' of batch b at its positions (the rest stays zero). Returns whether any
 * is nonzero. Everything in locals: the stores into U could alias the structure's fields. */
static int fill(const struct dw2 *d, int32_t b, int32_t c, int32_t *u) {
    const struct depthwise_conv2d_s8_grad_input_2pass_params *p = d->p;
    const size_t ch = (size_t)p->input_c;
    const int8_t *grad = d->grad_out;
    const uint8_t *mask = d->mask;
    const int32_t mc = d->m[p->per_channel ? c : 0];
    const int shift = d->shift;
    const int32_t half = shift ? (int32_t)1 << (shift - 1) : 0;
    const int32_t py = (p->filter_h - 1) * p->dilation_h - p->pad_h;
    const int32_t px = (p->filter_w - 1) * p->dilation_w - p->pad_w;
    const int32_t uh = d->uh, uw = d->uw, sh = p->stride_h, sw = p->stride_w;
    const int32_t oh = p->output_h, ow = p->output_w;
    /* The output columns whose position lies inside U (the same for every row). */
    int32_t ox0 = 0, ox1 = ow;
    while (ox0 < ox1 && ox0 * sw + px < 0) ++ox0;
    while (ox1 > ox0 && (ox1 - 1) * sw + px >= uw) --ox1;
    int32_t any = 0;
    for (int32_t oy = 0; oy < oh; ++oy) {
        const int32_t y = oy * sh + py;
        if (y < 0 || y >= uh) continue;
        int32_t *dst = u + (size_t)y * (size_t)uw + ox0 * sw + px;
        size_t i =
            (((size_t)b * (size_t)oh + (size_t)oy) * (size_t)ow + (size_t)ox0) * ch + (size_t)c;
        if (mask) {
            for (int32_t ox = ox0; ox < ox1; ++ox, i += ch, dst += sw) {
                const int32_t g = grad[i] & -(int32_t)((mask[i >> 3] >> (i & 7)) & 1);
                const int32_t t = term(g, mc, half, shift);
                *dst = t;
                any |= t;
            }
        } else {
            for (int32_t ox = ox0; ox < ox1; ++ox, i += ch, dst += sw) {
                const int32_t t = term(grad[i], mc, half, shift);
                *dst = t;
                any |= t;
            }
        }
    }
    return any != 0;
}

/* Strides above 1 (where most of U would be the stride's zeros): V = channel c's
 * accumulators of batch b with the padding around them, V[y + pad_h][x + pad_w] = acc[y][x],
 * by scattering each nonzero g' onto its taps as the reference does, but with no bounds
 * checks (V holds every tap of every output pixel) and the taps' weights in wt. Returns
 * whether any g' is nonzero. */
/* Adds t * wt[k] to the taps of the output pixel at row (dilation 1, V's row pitch uw): fh and
 * fw are constants in the 5x5 and 7x7 instances, so the taps unroll into a load of the tap, a
 * load of V, a multiply-accumulate and a store each, with no offset table. */
static inline __attribute__((always_inline)) void scatter_taps(int32_t *row, int32_t uw, int32_t t,
                                                               const int32_t *wt, int32_t fh,
                                                               int32_t fw) {
    for (int32_t fy = 0; fy < fh; ++fy, row += uw) {
#pragma GCC unroll 7
        for (int32_t fx = 0; fx < fw; ++fx) row[fx] += t * wt[fy * fw + fx];
    }
}

static int scatter(const struct dw2 *d, int32_t b, int32_t c, const int32_t *wt, int32_t *v) {
    const struct depthwise_conv2d_s8_grad_input_2pass_params *p = d->p;
    const size_t ch = (size_t)p->input_c;
    const int8_t *grad = d->grad_out;
    const uint8_t *mask = d->mask;
    const int32_t mc = d->m[p->per_channel ? c : 0];
    const int shift = d->shift;
    const int32_t half = shift ? (int32_t)1 << (shift - 1) : 0;
    const int32_t oh = p->output_h, ow = p->output_w, taps = p->filter_h * p->filter_w;
    const int32_t uw = d->uw;
    const int dil1 = p->dilation_h == 1 && p->dilation_w == 1;
    const int k77 = dil1 && p->filter_h == 7 && p->filter_w == 7;
    const int k55 = dil1 && p->filter_h == 5 && p->filter_w == 5;
    for (int32_t i = 0; i < d->uh * uw; ++i) v[i] = 0;
    int32_t any = 0;
    size_t i = ((size_t)b * (size_t)oh * (size_t)ow) * ch + (size_t)c;
    for (int32_t oy = 0; oy < oh; ++oy) {
        int32_t *row = v + (size_t)oy * (size_t)p->stride_h * (size_t)uw;
        for (int32_t ox = 0; ox < ow; ++ox, i += ch, row += p->stride_w) {
            int32_t g = grad[i];
            if (mask) g &= -(int32_t)((mask[i >> 3] >> (i & 7)) & 1);
            const int32_t t = term(g, mc, half, shift);
            if (t == 0) continue;
            any = 1;
            if (k77)
                scatter_taps(row, uw, t, wt, 7, 7);
            else if (k55)
                scatter_taps(row, uw, t, wt, 5, 5);
            else
                for (int32_t k = 0; k < taps; ++k) row[d->toff[k]] += t * wt[k];
        }
    }
    return any;
}

/* U (gather) or V (scatter) for channel c of batch b; whether any g' is nonzero. */
static int prepare(const struct dw2 *d, int32_t b, int32_t c, const int32_t *wt, int32_t *u) {
    return d->scatter ? scatter(d, b, c, wt, u) : fill(d, b, c, u);
}

/* The plain correlation of U with the channel's taps w (3x3, dilation 1) at input row y:
 * out[x] for x < width. */
static inline void correlate3x3_row(const int32_t *u, int32_t uw, int32_t y, const int32_t *w,
                                    int32_t width, int32_t *out) {
    const int32_t *r2 = u + (size_t)y * (size_t)uw; /* taps fy = 2 */
    const int32_t *r1 = r2 + uw, *r0 = r1 + uw;
    const int32_t w00 = w[0], w01 = w[1], w02 = w[2], w10 = w[3], w11 = w[4], w12 = w[5],
                  w20 = w[6], w21 = w[7], w22 = w[8];
    for (int32_t x = 0; x < width; ++x) {
        int32_t s = r0[x + 2] * w00;
        s += r0[x + 1] * w01;
        s += r0[x] * w02;
        s += r1[x + 2] * w10;
        s += r1[x + 1] * w11;
        s += r1[x] * w12;
        s += r2[x + 2] * w20;
        s += r2[x + 1] * w21;
        s += r2[x] * w22;
        out[x] = s;
    }
}

/* The same for a fh x fw filter, dilation 1: constants in the 5x5 and 7x7 instances, so the
 * taps unroll into a load of U, a load of the tap and a multiply-accumulate each (the loop
 * below for any filter costs about three times that). */
static inline __attribute__((always_inline)) void correlate_kxk_row(const int32_t *u, int32_t uw,
                                                                    int32_t y, const int32_t *w,
                                                                    int32_t width, int32_t *out,
                                                                    int32_t fh, int32_t fw) {
    int32_t x = 0;
    /* Four outputs at a time: each tap's weight loaded once for four multiply-accumulates. */
    for (; x + 4 <= width; x += 4) {
        int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        const int32_t *r = u + (size_t)(y + fh - 1) * (size_t)uw + x; /* taps fy = 0 */
        for (int32_t fy = 0; fy < fh; ++fy, r -= uw) {
#pragma GCC unroll 7
            for (int32_t fx = 0; fx < fw; ++fx) {
                const int32_t wv = w[fy * fw + fx], *q = r + (fw - 1 - fx);
                s0 += q[0] * wv;
                s1 += q[1] * wv;
                s2 += q[2] * wv;
                s3 += q[3] * wv;
            }
        }
        out[x] = s0;
        out[x + 1] = s1;
        out[x + 2] = s2;
        out[x + 3] = s3;
    }
    for (; x < width; ++x) {
        int32_t s = 0;
        const int32_t *r = u + (size_t)(y + fh - 1) * (size_t)uw + x; /* taps fy = 0 */
        for (int32_t fy = 0; fy < fh; ++fy, r -= uw) {
#pragma GCC unroll 7
            for (int32_t fx = 0; fx < fw; ++fx) s += r[fw - 1 - fx] * w[fy * fw + fx];
        }
        out[x] = s;
    }
}
static void correlate5x5_row(const int32_t *u, int32_t uw, int32_t y, const int32_t *w,
                             int32_t width, int32_t *out) {
    correlate_kxk_row(u, uw, y, w, width, out, 5, 5);
}
static void correlate7x7_row(const int32_t *u, int32_t uw, int32_t y, const int32_t *w,
                             int32_t width, int32_t *out) {
    correlate_kxk_row(u, uw, y, w, width, out, 7, 7);
}

/* The same for any filter. */
static void correlate_any(const struct dw2 *d, const int32_t *u, int32_t y, const int32_t *w,
                          int32_t *out) {
    const struct depthwise_conv2d_s8_grad_input_2pass_params *p = d->p;
    const int dil1 = p->dilation_h == 1 && p->dilation_w == 1;
    if (p->filter_h == 3 && p->filter_w == 3 && dil1) {
        correlate3x3_row(u, d->uw, y, w, p->input_w, out);
        return;
    }
    if (p->filter_h == 5 && p->filter_w == 5 && dil1) {
        correlate5x5_row(u, d->uw, y, w, p->input_w, out);
        return;
    }
    if (p->filter_h == 7 && p->filter_w == 7 && dil1) {
        correlate7x7_row(u, d->uw, y, w, p->input_w, out);
        return;
    }
    for (int32_t x = 0; x < p->input_w; ++x) {
        int32_t s = 0;
        for (int32_t fy = 0; fy < p->filter_h; ++fy) {
            const int32_t *r =
                u + (size_t)(y + (p->filter_h - 1 - fy) * p->dilation_h) * (size_t)d->uw + x;
            for (int32_t fx = 0; fx < p->filter_w; ++fx)
                s += r[(p->filter_w - 1 - fx) * p->dilation_w] * w[fy * p->filter_w + fx];
        }
        out[x] = s;
    }
}

/* Accumulator row y of the prepared channel: V's row (scatter) or the correlation of U. */
static const int32_t *acc_row(const struct dw2 *d, const int32_t *u, int32_t y, const int32_t *w,
                              int32_t *row) {
    const struct depthwise_conv2d_s8_grad_input_2pass_params *p = d->p;
    if (d->scatter) return u + (size_t)(y + p->pad_h) * (size_t)d->uw + (size_t)p->pad_w;
    correlate_any(d, u, y, w, row);
    return row;
}

void depthwise_conv2d_s8_grad_input_2pass_dsp_run(const void *params, void *const *operands,
                                                  void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct depthwise_conv2d_s8_grad_input_2pass_params p =
        *(const struct depthwise_conv2d_s8_grad_input_2pass_params *)params;
    const int scatter_mode = p.stride_h > 1 || p.stride_w > 1;
    int32_t uh = p.input_h + (p.filter_h - 1) * p.dilation_h;
    int32_t uw = p.input_w + (p.filter_w - 1) * p.dilation_w;
    if (scatter_mode) { /* V: every tap of every output pixel, and every input pixel */
        uh = (p.output_h - 1) * p.stride_h + (p.filter_h - 1) * p.dilation_h + 1;
        uw = (p.output_w - 1) * p.stride_w + (p.filter_w - 1) * p.dilation_w + 1;
        if (uh < p.pad_h + p.input_h) uh = p.pad_h + p.input_h;
        if (uw < p.pad_w + p.input_w) uw = p.pad_w + p.input_w;
    }
    const int32_t taps = p.filter_h * p.filter_w;
    if (p.depth_multiplier != 1 || (int64_t)uh * uw > DW2_PLANE || taps > DW2_TAPS || p.pad_h < 0 ||
        p.pad_w < 0 || p.input_w > DW2_ROW) {
        depthwise_conv2d_s8_grad_input_2pass_ref_run(params, operands, scratch);
        return;
    }
    struct dw2 d;
    d.p = &p;
    d.uh = uh;
    d.uw = uw;
    d.scatter = scatter_mode;
    for (int32_t t = 0; t < taps; ++t)
        d.toff[t] = (t / p.filter_w) * p.dilation_h * uw + (t % p.filter_w) * p.dilation_w;
    d.grad_out = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT];
    const float grad_out_scale =
        *(const float *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE];
    d.mask = p.has_mask ? (const uint8_t *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_MASK] : NULL;
    d.filter = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_FILTER];
    d.trained = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_TRAINED_FILTER];
    const float *scales = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_WEIGHT_SCALES];
    int8_t *grad_in = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT];
    float *grad_in_scale = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE];

    const int32_t ch = p.input_c; /* = output channels (multiplier 1) */
    const size_t n_plane = (size_t)p.batches * (size_t)p.input_h * (size_t)p.input_w;
    int32_t *m = (int32_t *)scratch + n_plane; /* the reference's scratch layout */
    d.m = m;
    const float max_scale = conv_grad_channel_q23(scales, p.per_channel ? ch : 1, m);

    /* The reference's overflow bound: channel c receives one term per tap. */
    uint64_t b0 = 0, w1 = 0;
    for (int32_t c = 0; c < ch; ++c) {
        const int tr = c < p.train_rows;
        const int8_t *w = tr ? d.trained + c : d.filter + c;
        const size_t stride = tr ? (size_t)p.train_rows : (size_t)ch;
        uint64_t s = 0;
        for (int32_t t = 0; t < taps; ++t) {
            const int32_t v = w[(size_t)t * stride];
            s += (uint64_t)(v < 0 ? -v : v);
        }
        const uint64_t bk = s * 128u * (uint64_t)m[p.per_channel ? c : 0];
        if (bk > b0) b0 = bk;
        if (s > w1) w1 = s;
    }
    d.shift = conv_grad_pick_shift(b0, w1, 0);

    int32_t u[DW2_PLANE];
    int32_t row[DW2_ROW];
    int32_t wt[DW2_TAPS];
    for (int32_t i = 0; i < uh * uw; ++i) u[i] = 0; /* gather: once (see fill) */

    /* Pass 1: max|acc| over every channel. */
    uint32_t max_abs = 0;
    for (int32_t c = 0; c < ch; ++c) {
        const int tr = c < p.train_rows;
        const int8_t *w = tr ? d.trained + c : d.filter + c;
        const size_t stride = tr ? (size_t)p.train_rows : (size_t)ch;
        for (int32_t t = 0; t < taps; ++t) wt[t] = w[(size_t)t * stride];
        for (int32_t b = 0; b < p.batches; ++b) {
            if (!prepare(&d, b, c, wt, u)) continue;
            for (int32_t y = 0; y < p.input_h; ++y) {
                const int32_t *r = acc_row(&d, u, y, wt, row);
                for (int32_t x = 0; x < p.input_w; ++x) {
                    const int32_t v = r[x];
                    const uint32_t a = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
                    if (a > max_abs) max_abs = a;
                }
            }
        }
    }
    const size_t c_n = (size_t)ch;
    if (max_abs == 0) {
        for (size_t i = 0; i < n_plane * c_n; ++i) grad_in[i] = 0;
        *grad_in_scale = 0.0f;
        return;
    }
    /* Pass 2: each channel again, rounded as grad_requantize_s32 rounds. */
    const uint32_t half = max_abs / 2u;
    const float k = 127.0f / (float)max_abs;
    for (int32_t c = 0; c < ch; ++c) {
        const int tr = c < p.train_rows;
        const int8_t *w = tr ? d.trained + c : d.filter + c;
        const size_t stride = tr ? (size_t)p.train_rows : (size_t)ch;
        for (int32_t t = 0; t < taps; ++t) wt[t] = w[(size_t)t * stride];
        for (int32_t b = 0; b < p.batches; ++b) {
            int8_t *out =
                grad_in + (size_t)b * (size_t)p.input_h * (size_t)p.input_w * c_n + (size_t)c;
            if (!prepare(&d, b, c, wt, u)) {
                for (size_t i = 0; i < (size_t)p.input_h * (size_t)p.input_w; ++i) out[i * c_n] = 0;
                continue;
            }
            for (int32_t y = 0; y < p.input_h; ++y) {
                const int32_t *r = acc_row(&d, u, y, wt, row);
                for (int32_t x = 0; x < p.input_w; ++x, out += c_n)
                    *out = dsp_grad_round_s32(r[x], max_abs, half, k);
            }
        }
    }
    *grad_in_scale =
        (float)max_abs * (grad_out_scale * max_scale * conv_grad_unit(d.shift)) / 127.0f;
}

/* The selector, the runtime's entry for depthwise_conv2d_s8_grad_input_2pass (ops.def): the DSP
 * variant above when the build enables it (KERNELS_USE_DSP(), dsp.h), else the reference
 * (depthwise_conv2d_s8_grad_input_2pass.c). The DSP variant falls back to the reference itself for
 * the shapes it does not take. */
void depthwise_conv2d_s8_grad_input_2pass_run(const void *params, void *const *operands,
                                              void *scratch) {
    if (KERNELS_USE_DSP())
        depthwise_conv2d_s8_grad_input_2pass_dsp_run(params, operands, scratch);
    else
        depthwise_conv2d_s8_grad_input_2pass_ref_run(params, operands, scratch);
}
