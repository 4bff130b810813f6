/* Input gradient of conv2d_s8, optimized: bit-identical with conv2d_s8_grad_input_ref_run
 * (conv2d_s8_grad_input.c) for every layer; 1x1 filters (all of MobileNetV2's backward convs)
 * take a faster path, any other filter the reference.
 *
 * Exactness. The reference scatters: for each output-gradient element (pixel, c) it adds
 * g'[pixel, c] * W[c, k] to acc[input pixel, k] for every k. With a 1x1 filter an input pixel
 * receives from at most one output pixel, so the same sums can be gathered instead:
 *   acc[pixel', k] = sum over c of g'[pixel, c] * W[c, k]
 * with the same terms (g' computed by the same conv_grad_term, the same shift) in another
 * order. The shift bounds the sum of the terms' absolute values by INT32_MAX
 * (conv_grad_pick_shift), so no partial sum overflows in any order and the int32 results are
 * equal; the int8 requantization (grad_requantize_s32) is then the same call. Zero terms (masked
 * or zero gradients, which the reference skips) add nothing.
 *
 * Speed. The gather keeps 2 pixels x 4 input channels in registers: per output channel c one
 * LDRD (the two pixels' g', laid out in pairs on the stack), one LDR (4 int8 weights, W[c,
 * k..k+3]), 4 SXTB (with their built-in rotation) and 8 MLA, against the reference's load,
 * multiply, add and store of an int32 accumulator per MAC. g' does not fit 16 bits (it carries the
 * channel's Q23 scale), hence MLA rather than SMLAD. The overflow bound is one pass over the
 * weights, output channel by output channel, with per-input-channel sums kept in the accumulators'
 * scratch while it is free. */
#include "conv2d_s8_grad_input.h"
#include "dsp.h"
#include "grad.h"

/* Output channels whose g' the stack holds at once (for 2 pixels: 512 B). */
#define GI_CHUNK 64

struct gi {
    const int8_t *grad_out;
    const uint8_t *mask;
    const int8_t *filter, *trained;
    const int32_t *m;
    int32_t input_c, output_c, train_rows, per_channel, shift;
};

/* The reference's bound (conv_grad_pick_shift's b0 and w1), for any filter: per input channel
 * k, the sums over (c, taps) of |W| * 128 * m[c] and of |W|. */
static int shift_reference(const struct conv2d_s8_grad_input_params *p, const int8_t *filter,
                           const int8_t *trained, const int32_t *m) {
    const size_t filter_size = (size_t)p->filter_h * (size_t)p->filter_w * (size_t)p->input_c;
    const size_t taps = (size_t)p->filter_h * (size_t)p->filter_w;
    uint64_t b0 = 0, w1 = 0;
    for (int32_t k = 0; k < p->input_c; ++k) {
        uint64_t bk = 0, wk = 0;
        for (int32_t c = 0; c < p->output_c; ++c) {
            const int8_t *w = (c < p->train_rows ? trained : filter) + (size_t)c * filter_size;
            uint64_t s = 0;
            for (size_t t = 0; t < taps; ++t) {
                const int32_t v = w[t * (size_t)p->input_c + (size_t)k];
                s += (uint64_t)(v < 0 ? -v : v);
            }
            bk += s * 128u * (uint64_t)m[p->per_channel ? c : 0];
            wk += s;
        }
        if (bk > b0) b0 = bk;
        if (wk > w1) w1 = wk;
    }
    return conv_grad_pick_shift(b0, w1);
}

/* The same bound for a 1x1 filter, with the loops exchanged (the weights read in memory
 * order): bk and wk per input channel in `sums` (3 words per channel: bk as two, then wk).
 * The sums are the reference's, exactly (integers). */
static int shift_1x1(const struct gi *g, uint32_t *sums) {
    const int32_t n = g->input_c;
    uint64_t *bk = (uint64_t *)(void *)sums;
    uint32_t *wk = sums + 2 * n;
    for (int32_t k = 0; k < n; ++k) bk[k] = 0, wk[k] = 0;
    for (int32_t c = 0; c < g->output_c; ++c) {
        const int8_t *w = (c < g->train_rows ? g->trained : g->filter) + (size_t)c * (size_t)n;
        const uint32_t mc = 128u * (uint32_t)g->m[g->per_channel ? c : 0]; /* <= 2^30 */
        for (int32_t k = 0; k < n; ++k) {
            const int32_t v = w[k];
            const uint32_t a = (uint32_t)(v < 0 ? -v : v);
            bk[k] += (uint64_t)a * mc;
            wk[k] += a; /* < 2^32: at most 128 per output channel, and output_c < 2^24 */
        }
    }
    uint64_t b0 = 0, w1 = 0;
    for (int32_t k = 0; k < n; ++k) {
        if (bk[k] > b0) b0 = bk[k];
        if (wk[k] > w1) w1 = wk[k];
    }
    return conv_grad_pick_shift(b0, w1);
}

/* g' for output channels [c0, c0 + n) of output pixels q0 and q1 (q1 < 0: none), into gp as
 * pairs (q0's, q1's); a pixel whose input lies in the padding gets zeros. */
static void load_terms(const struct gi *g, int32_t *gp, int32_t c0, int32_t n, int32_t q0,
                       int32_t q1) {
    const size_t i0 = (size_t)q0 * (size_t)g->output_c + (size_t)c0;
    const size_t i1 = (size_t)(q1 < 0 ? 0 : q1) * (size_t)g->output_c + (size_t)c0;
    for (int32_t j = 0; j < n; ++j) {
        const int32_t mc = g->m[g->per_channel ? c0 + j : 0];
        const int32_t v0 = q0 < 0 ? 0 : conv_grad_masked(g->grad_out, g->mask, i0 + (size_t)j);
        const int32_t v1 = q1 < 0 ? 0 : conv_grad_masked(g->grad_out, g->mask, i1 + (size_t)j);
        gp[2 * j] = v0 ? conv_grad_term(v0, mc, g->shift) : 0;
        gp[2 * j + 1] = v1 ? conv_grad_term(v1, mc, g->shift) : 0;
    }
}

/* a[0..3] (pixel 0) and a[4..7] (pixel 1) += sum over n output channels of g' * W[c, k..k+3];
 * w points at W[c0, k], rows `stride` bytes apart. The weight rows of trained and flash
 * channels differ, so the caller splits a chunk at train_rows. */
static inline __attribute__((always_inline)) void gather_2x4(const int32_t *gp, int32_t n,
                                                             const int8_t *w, size_t stride,
                                                             int32_t a[8]) {
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    int32_t b0 = a[4], b1 = a[5], b2 = a[6], b3 = a[7];
    for (; n > 0; --n, gp += 2, w += stride) {
        const int32_t g0 = gp[0], g1 = gp[1];
        const uint32_t wv = dsp_read4(w);
        const int32_t w0 = (int8_t)wv, w1 = (int8_t)(wv >> 8), w2 = (int8_t)(wv >> 16);
        const int32_t w3 = (int32_t)wv >> 24;
        a0 += g0 * w0;
        b0 += g1 * w0;
        a1 += g0 * w1;
        b1 += g1 * w1;
        a2 += g0 * w2;
        b2 += g1 * w2;
        a3 += g0 * w3;
        b3 += g1 * w3;
    }
    a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3;
    a[4] = b0, a[5] = b1, a[6] = b2, a[7] = b3;
}

/* One tail input channel k (input_c % 4 of them). */
static inline void gather_2x1(const int32_t *gp, int32_t n, const int8_t *w, size_t stride,
                              int32_t a[2]) {
    int32_t a0 = a[0], b0 = a[1];
    for (; n > 0; --n, gp += 2, w += stride) {
        a0 += gp[0] * (int32_t)*w;
        b0 += gp[1] * (int32_t)*w;
    }
    a[0] = a0, a[1] = b0;
}

/* acc rows d0 and d1 (d1 NULL: none) += the gathered sums over output channels [c0, c0 + n)
 * (first: = instead of +=). */
static void gather_chunk(const struct gi *g, const int32_t *gp, int32_t c0, int32_t n, int32_t *d0,
                         int32_t *d1, int first) {
    const int32_t kc = g->input_c;
    const size_t stride = (size_t)kc;
    /* The chunk's channels read from one weight array at a time (trained rows, then flash). */
    int32_t parts[2][2] = {{c0, 0}, {0, 0}}; /* {first channel, count} */
    int32_t np = 1;
    if (c0 < g->train_rows && c0 + n > g->train_rows) {
        parts[0][1] = g->train_rows - c0;
        parts[1][0] = g->train_rows;
        parts[1][1] = c0 + n - g->train_rows;
        np = 2;
    } else {
        parts[0][1] = n;
    }
    int32_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        int32_t a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if (!first) {
            for (int32_t j = 0; j < 4; ++j) {
                a[j] = d0[k + j];
                a[4 + j] = d1 ? d1[k + j] : 0;
            }
        }
        for (int32_t q = 0; q < np; ++q) {
            const int32_t c = parts[q][0];
            const int8_t *w = (c < g->train_rows ? g->trained : g->filter) + (size_t)c * stride;
            gather_2x4(gp + 2 * (c - c0), parts[q][1], w + k, stride, a);
        }
        for (int32_t j = 0; j < 4; ++j) d0[k + j] = a[j];
        if (d1)
            for (int32_t j = 0; j < 4; ++j) d1[k + j] = a[4 + j];
    }
    for (; k < kc; ++k) {
        int32_t a[2] = {first ? 0 : d0[k], first || !d1 ? 0 : d1[k]};
        for (int32_t q = 0; q < np; ++q) {
            const int32_t c = parts[q][0];
            const int8_t *w = (c < g->train_rows ? g->trained : g->filter) + (size_t)c * stride;
            gather_2x1(gp + 2 * (c - c0), parts[q][1], w + k, stride, a);
        }
        d0[k] = a[0];
        if (d1) d1[k] = a[1];
    }
}

/* The input pixel output pixel q reads through a 1x1 filter (flat NHW index), or -1 if it
 * lies in the padding. */
static int32_t source_pixel(const struct conv2d_s8_grad_input_params *p, int32_t q) {
    const int32_t ox = q % p->output_w, oy = (q / p->output_w) % p->output_h;
    const int32_t b = q / (p->output_w * p->output_h);
    const int32_t y = oy * p->stride_h - p->pad_h, x = ox * p->stride_w - p->pad_w;
    if (y < 0 || y >= p->input_h || x < 0 || x >= p->input_w) return -1;
    return (b * p->input_h + y) * p->input_w + x;
}

static void grad_input_1x1(const struct conv2d_s8_grad_input_params *p, struct gi *g,
                           int32_t *acc) {
    const size_t n_in =
        (size_t)p->batches * (size_t)p->input_h * (size_t)p->input_w * (size_t)p->input_c;
    const int32_t n_out = p->batches * p->output_h * p->output_w;
    const int32_t n_pix = p->batches * p->input_h * p->input_w;
    /* The bound's sums fit in the accumulators while they are still unused (3 words per input
     * channel); else the reference's loop order. */
    if (n_pix >= 3)
        g->shift = shift_1x1(g, (uint32_t *)acc);
    else
        g->shift = shift_reference(p, g->filter, g->trained, g->m);
    /* Every input pixel receives from exactly one output pixel when the map is the identity;
     * otherwise the pixels no output reads keep a zero gradient. */
    const int identity = p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 && p->pad_w == 0 &&
                         p->output_h == p->input_h && p->output_w == p->input_w;
    if (!identity)
        for (size_t i = 0; i < n_in; ++i) acc[i] = 0;
    int32_t gp[2 * GI_CHUNK];
    for (int32_t q = 0; q < n_out; q += 2) {
        const int32_t s0 = identity ? q : source_pixel(p, q);
        const int32_t s1 = q + 1 >= n_out ? -1 : (identity ? q + 1 : source_pixel(p, q + 1));
        if (s0 < 0 && s1 < 0) continue;
        /* A lone pixel runs as pixel 0 of the pair (the other's terms zero). */
        const int32_t q0 = s0 >= 0 ? q : q + 1, q1 = s0 >= 0 && s1 >= 0 ? q + 1 : -1;
        int32_t *d0 = acc + (size_t)(s0 >= 0 ? s0 : s1) * (size_t)p->input_c;
        int32_t *d1 = q1 >= 0 ? acc + (size_t)s1 * (size_t)p->input_c : NULL;
        for (int32_t c0 = 0; c0 < p->output_c; c0 += GI_CHUNK) {
            const int32_t n = p->output_c - c0 < GI_CHUNK ? p->output_c - c0 : GI_CHUNK;
            load_terms(g, gp, c0, n, q0, q1);
            gather_chunk(g, gp, c0, n, d0, d1, c0 == 0);
        }
    }
}

void conv2d_s8_grad_input_dsp_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct conv2d_s8_grad_input_params p =
        *(const struct conv2d_s8_grad_input_params *)params;
    if (p.filter_h != 1 || p.filter_w != 1) {
        conv2d_s8_grad_input_ref_run(params, operands, scratch);
        return;
    }
    const float grad_out_scale = *(const float *)operands[CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE];
    const float *scales = operands[CONV2D_S8_GRAD_INPUT_WEIGHT_SCALES];
    int8_t *grad_in = operands[CONV2D_S8_GRAD_INPUT_GRAD_INPUT];
    float *grad_in_scale = operands[CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE];
    const size_t n_in =
        (size_t)p.batches * (size_t)p.input_h * (size_t)p.input_w * (size_t)p.input_c;
    int32_t *acc = scratch;
    int32_t *m = acc + n_in; /* Q23 channel multipliers, as the reference's scratch */
    const int32_t n_scales = p.per_channel ? p.output_c : 1;
    const float max_scale = conv_grad_channel_q23(scales, n_scales, m);
    struct gi g = {
        .grad_out = operands[CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT],
        .mask = p.has_mask ? (const uint8_t *)operands[CONV2D_S8_GRAD_INPUT_MASK] : NULL,
        .filter = operands[CONV2D_S8_GRAD_INPUT_FILTER],
        .trained = operands[CONV2D_S8_GRAD_INPUT_TRAINED_FILTER],
        .m = m,
        .input_c = p.input_c,
        .output_c = p.output_c,
        .train_rows = p.train_rows,
        .per_channel = p.per_channel,
        .shift = 0,
    };
    grad_input_1x1(&p, &g, acc);
    *grad_in_scale = grad_requantize_s32(
        acc, n_in, grad_out_scale * max_scale * conv_grad_unit(g.shift), grad_in);
}
