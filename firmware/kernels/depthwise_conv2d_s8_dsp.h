/* What the depthwise DSP variants share (private to depthwise_conv2d_s8_dsp.c, the selector
 * and the 3x3 direct and padded forms, depthwise_conv2d_s8_3x3_dsp.c,
 * depthwise_conv2d_s8_kxk_dsp.c and depthwise_conv2d_s8_kxk_pair_dsp.c): the operands, a channel
 * group's widened taps and requantization constants, the per-channel fallback, the stores, the
 * k x k variants' tile search. */
#ifndef DEPTHWISE_CONV2D_S8_DSP_H
#define DEPTHWISE_CONV2D_S8_DSP_H

#include "depthwise_conv2d_s8.h"
#include "dsp.h"
#include "fixedpoint.h"
#include "requant_fast.h"

#define DW_TAPS_MAX 49 /* 7x7; larger filters run the reference */
/* Words of dw_group_padded's copy of a channel group's input (1.6 KB at most, in the
 * operator's scratch): windows spanning up to 20x20 pixels (a 3x3 filter over 18x18 outputs). */
#define DW_PAD_WORDS 400

struct dw {
    struct depthwise_conv2d_s8_params p;
    const int8_t *input, *filter, *trained_filter;
    const int32_t *bias, *trained_bias, *multipliers, *shifts;
    int8_t *out;
    size_t in_row;
    void *buf; /* the variants' copy: scratch from the arena (depthwise_conv2d_s8_scratch_size) */
    int32_t toff[DW_TAPS_MAX]; /* input offset of tap t from the window's corner, in bytes */
};

static inline int32_t bias_of(const struct dw *d, int32_t c) {
    if (c < d->p.train_bias_rows) return d->trained_bias[c];
    return d->bias ? d->bias[c] : 0;
}

static inline int8_t requantize(const struct dw *d, int32_t acc, int32_t c) {
    const int32_t q = d->p.per_channel ? c : 0;
    acc = fp_multiply_by_quantized_multiplier(acc, d->multipliers[q], (int)d->shifts[q]);
    acc += d->p.output_offset;
    return (int8_t)fp_clamp(acc, d->p.act_min, d->p.act_max);
}

/* A channel group's biases and requantization constants, and whether requant_fast.h takes
 * all four channels. */
struct dw_rq {
    int32_t bias[4], m2[4], s1[4];
    int fast;
};

/* The channel-pair engines' requantization in 4 instructions (rq_fused takes 5) on doubled
 * accumulators A = 2a: their weights and biases doubled (a weight's double fits a 16-bit lane),
 * then SMMLAR t, A, M, C; ADD t, t, A, ASR #31; ASR t, t, s1; SSAT #8 of t ASR #1, with M the
 * multiplier and C = (1 + 2 output_offset) << s1: conv2d_s8_dsp.h's rq4, whose proof is there
 * (it needs M in (2^30, 2^31), shift in [-31, -1], |C| <= 2^30 - 3 and |a| < 2^30); the one
 * definition is requant_fast.h's rq4 ("dwq_rq4" below names its use by the engines). */

/* Whether channel group c..c+3 (its biases in rq, on requant_fast.h's path) takes dwq_rq4: each
 * multiplier above 2^30, |C| = |1 + 2 output_offset| 2^s1 <= 2^30 - 3, and |bias| plus the largest
 * sum of the layer's products (taps 128 (128 + |input_offset|), below 2^26 for the engines'
 * filters and 16-bit offset inputs) below 2^30. */
static inline int dwq_rq4_ok(const struct dw *d, const struct dw_rq *rq, int32_t c) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const uint32_t io =
        p->input_offset < 0 ? 0u - (uint32_t)p->input_offset : (uint32_t)p->input_offset;
    const int32_t cc = 1 + 2 * p->output_offset; /* fits: rq->fast bounds the offset */
    const uint32_t ac = cc < 0 ? 0u - (uint32_t)cc : (uint32_t)cc;
    const uint32_t sums = (uint32_t)(p->filter_h * p->filter_w) * 128u * (128u + io);
    if (!rq->fast || io > 255u || p->filter_h * p->filter_w > DW_TAPS_MAX) return 0;
    for (int k = 0; k < 4; ++k) {
        const int32_t q = p->per_channel ? c + k : 0, b = rq->bias[k];
        const uint32_t ab = b < 0 ? 0u - (uint32_t)b : (uint32_t)b;
        /* rq->fast: M >= 2^30, s1 = -shift - 1 in [0, 30] */
        if (d->multipliers[q] == (1 << 30) || ac > ((1u << 30) - 3u) >> rq->s1[k] ||
            ab >= (1u << 30) - sums)
            return 0;
    }
    return 1;
}

/* Whether the layer's doubled accumulators (dwq_rq4_ok) may take rq3 (requant_fast.h) instead of
 * rq4: an output offset of -128 and an activation range from -128 (conv2d_s8_dsp.h's rq3_ok and
 * its proof: every negative sum gives -128 either way; ReLU6 outputs quantized to [0, 6]). */
static inline int dwq_rq3_ok(const struct depthwise_conv2d_s8_params *p) {
    return p->output_offset == -128 && p->act_min <= -128;
}

/* Loads channel group c..c+3's biases and requantization constants. Once per group of every
 * engine: rq_fast_ok as unsigned range tests (M in [2^30, 2^31), shift in [-31, -1]) without a
 * branch per channel. */
static inline void dw_rq_load(const struct dw *d, struct dw_rq *rq, int32_t c) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    for (int k = 0; k < 4; ++k) rq->bias[k] = bias_of(d, c + k);
    const int32_t step = p->per_channel ? 1 : 0;
    const int32_t *m = d->multipliers + (p->per_channel ? c : 0),
                  *s = d->shifts + (m - d->multipliers);
    uint32_t ok = p->output_offset >= -(1 << 30) && p->output_offset < (1 << 30);
    for (int k = 0; k < 4; ++k, m += step, s += step) {
        const int32_t mk = *m, sk = *s;
        ok &=
            ((uint32_t)mk - (1u << 30) < (1u << 30)) & ((uint32_t)sk + 31u <= 30u); /* rq_fast_ok */
        rq->m2[k] = rq_m2(mk);
        rq->s1[k] = rq_s1(sk);
    }
    rq->fast = (int)ok;
}

/* A channel group's constants (w first: DW_LDRD_W addresses it from the group). */
struct group {
    uint64_t w[DW_TAPS_MAX]; /* tap t: (even lanes: channels c, c+2) | (odd: c+1, c+3) << 32 */
    struct dw_rq rq;
};

/* Loads channel group c..c+3 (whole, all trained or none): its taps widened to 16-bit lanes,
 * biases, requantization constants and whether requant_fast.h takes all four. */
static inline void dw_group_load(const struct dw *d, struct group *g, int32_t c) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int trained = c < p->train_rows;
    const int8_t *w = (trained ? d->trained_filter : d->filter) + c;
    const size_t wstride = trained ? (size_t)p->train_rows : (size_t)p->input_c;
    const int32_t taps = p->filter_h * p->filter_w;
    for (int32_t t = 0; t < taps; ++t) {
        const uint32_t wv = dsp_read4(w + (size_t)t * wstride);
        g->w[t] = (uint64_t)dsp_sxtb16(wv) | ((uint64_t)dsp_sxtb16_hi(wv) << 32);
    }
    dw_rq_load(d, &g->rq, c);
}

/* The output columns [lo, hi) whose window lies inside the image horizontally. */
static inline void dw_interior_columns(const struct depthwise_conv2d_s8_params *p, int32_t *lo,
                                       int32_t *hi) {
    const int32_t span = (p->filter_w - 1) * p->dilation_w;
    int32_t a = 0, b = p->output_w;
    while (a < b && a * p->stride_w - p->pad_w < 0) ++a;
    while (b > a && (b - 1) * p->stride_w - p->pad_w + span >= p->input_w) --b;
    *lo = a;
    *hi = b;
}

/* Whether channels c..c+3 form a whole group read from one filter array. */
static inline int dw_group_whole(const struct depthwise_conv2d_s8_params *p, int32_t c) {
    return c + 4 <= p->input_c && (c + 4 <= p->train_rows || c >= p->train_rows);
}

/* Whether channels c..c+3 straddle train_rows: the trained ones read the compact RAM copy, the
 * others the filter (the engines that take such a group read its weights by dw_group_filter;
 * the others run its channels one by one: dw_group_whole). */
static inline int dw_straddles(const struct depthwise_conv2d_s8_params *p, int32_t c) {
    return c < p->train_rows && c + 4 > p->train_rows;
}

/* Where channel group c..c+3's taps are: tap t's four weights at base + t * *stride. A group read
 * from one array points into it; a straddling one (dw_straddles) has its taps copied into buf
 * (four bytes each, from their arrays; 4 taps bytes of the engine's scratch that it rewrites
 * after loading the group, so no stack), so the engines load its weights as any other group's
 * (one test per group, against the reference's per-channel arithmetic for all four channels). */
static inline const int8_t *dw_group_filter(const struct dw *d, int32_t c, int8_t *buf,
                                            size_t *stride) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    if (!dw_straddles(p, c)) {
        const int trained = c < p->train_rows;
        *stride = trained ? (size_t)p->train_rows : (size_t)p->input_c;
        return (trained ? d->trained_filter : d->filter) + c;
    }
    const int32_t taps = p->filter_h * p->filter_w;
    for (int32_t t = 0; t < taps && t < DW_TAPS_MAX; ++t)
        for (int32_t k = 0; k < 4; ++k)
            buf[4 * t + k] =
                c + k < p->train_rows
                    ? d->trained_filter[(size_t)t * (size_t)p->train_rows + (size_t)(c + k)]
                    : d->filter[(size_t)t * (size_t)p->input_c + (size_t)(c + k)];
    *stride = 4;
    return buf;
}

/* Requantizes and stores the four channels of one output pixel (the biases are already in
 * the accumulators). */
static inline __attribute__((always_inline)) void dw_store(const struct dw *d,
                                                           const struct dw_rq *g, int8_t *dst,
                                                           int32_t c, int32_t a0, int32_t a1,
                                                           int32_t a2, int32_t a3, int32_t cc,
                                                           int full) {
    if (g->fast) {
        int32_t y0 = rq_fused(a0, g->m2[0], g->s1[0], cc),
                y1 = rq_fused(a1, g->m2[1], g->s1[1], cc);
        int32_t y2 = rq_fused(a2, g->m2[2], g->s1[2], cc),
                y3 = rq_fused(a3, g->m2[3], g->s1[3], cc);
        if (!full) {
            y0 = fp_clamp(y0, d->p.act_min, d->p.act_max);
            y1 = fp_clamp(y1, d->p.act_min, d->p.act_max);
            y2 = fp_clamp(y2, d->p.act_min, d->p.act_max);
            y3 = fp_clamp(y3, d->p.act_min, d->p.act_max);
        }
        dst[0] = (int8_t)y0;
        dst[1] = (int8_t)y1;
        dst[2] = (int8_t)y2;
        dst[3] = (int8_t)y3;
    } else {
        dst[0] = requantize(d, a0, c);
        dst[1] = requantize(d, a1, c + 1);
        dst[2] = requantize(d, a2, c + 2);
        dst[3] = requantize(d, a3, c + 3);
    }
}

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
/* lo, hi = the two words at p + off bytes (off a constant): one LDRD. */
#define DW_LDRD(p, off, lo, hi)     \
    __asm__("ldrd %0, %1, [%2, %3]" \
            : "=r"(lo), "=r"(hi)    \
            : "r"(p), "i"(off), "m"(*(const uint32_t(*)[(off) / 4 + 2])(p)))
/* we, wo = the group's widened weights of tap t (constant): one LDRD; the memory operand is
 * the group itself, so the compiler orders it after the stores of its uint64_t taps. */
#define DW_LDRD_W(g, t, we, wo) \
    __asm__("ldrd %0, %1, [%2, %3]" : "=r"(we), "=r"(wo) : "r"(g), "i"((t)*8), "m"(*(g)))
#else
#define DW_LDRD(p, off, lo, hi)    \
    do {                           \
        (lo) = (p)[(off) / 4];     \
        (hi) = (p)[(off) / 4 + 1]; \
    } while (0)
#define DW_LDRD_W(g, t, we, wo)             \
    do {                                    \
        (we) = (uint32_t)(g)->w[t];         \
        (wo) = (uint32_t)((g)->w[t] >> 32); \
    } while (0)
#endif

/* Tap t, the input pair at row pointer r + off bytes. */
#define DW_WTAP(r, off, t)           \
    do {                             \
        uint32_t xe, xo, we, wo;     \
        DW_LDRD(r, off, xe, xo);     \
        DW_LDRD_W(g, t, we, wo);     \
        a0 = dsp_smlabb(xe, we, a0); \
        a2 = dsp_smlatt(xe, we, a2); \
        a1 = dsp_smlabb(xo, wo, a1); \
        a3 = dsp_smlatt(xo, wo, a3); \
    } while (0)

/* The four signed bytes of a word clamped to those of lo and hi (lo <= hi in every byte):
 * SSUB8 sets each byte's GE flag where a >= b, SEL picks by them (one block of assembly:
 * nothing may touch the flags in between). */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
static inline uint32_t dw_clamp8(uint32_t v, uint32_t lo, uint32_t hi) {
    uint32_t t, r;
    __asm__(
        "ssub8 %1, %2, %3\n"
        "sel %0, %2, %3\n"
        "ssub8 %1, %0, %4\n"
        "sel %0, %4, %0"
        : "=&r"(r), "=&r"(t)
        : "r"(v), "r"(lo), "r"(hi)
        : "cc");
    return r;
}
#else
static inline uint32_t dw_clamp8(uint32_t v, uint32_t lo, uint32_t hi) {
    uint32_t r = 0;
    for (int i = 0; i < 32; i += 8) {
        int8_t x = (int8_t)(v >> i);
        const int8_t l = (int8_t)(lo >> i), h = (int8_t)(hi >> i);
        x = x >= l ? x : l;
        x = x >= h ? h : x;
        r |= (uint32_t)(uint8_t)x << i;
    }
    return r;
}
#endif

/* dw_store on the fast path for a clamp inside the int8 range (lo4, hi4: act_min and act_max
 * in every byte) or none (clamp 0): the four saturated outputs packed into one word, clamped
 * four at a time (the same min and max, per byte) and stored at once. */
static inline __attribute__((always_inline)) void dw_store_packed(
    const struct dw_rq *g, int8_t *dst, int32_t a0, int32_t a1, int32_t a2, int32_t a3, int32_t cc,
    uint32_t lo4, uint32_t hi4, int clamp) {
    const int32_t y0 = rq_fused(a0, g->m2[0], g->s1[0], cc),
                  y1 = rq_fused(a1, g->m2[1], g->s1[1], cc);
    const int32_t y2 = rq_fused(a2, g->m2[2], g->s1[2], cc),
                  y3 = rq_fused(a3, g->m2[3], g->s1[3], cc);
    uint32_t v = ((uint32_t)y0 & 0xFFu) | ((uint32_t)y1 & 0xFFu) << 8 |
                 ((uint32_t)y2 & 0xFFu) << 16 | (uint32_t)y3 << 24;
    if (clamp) v = dw_clamp8(v, lo4, hi4);
    __builtin_memcpy(dst, &v, sizeof v);
}

/* How a group's outputs are stored: the reference's requantization and clamp (dw_store), or the
 * fast one (requant_fast.h) without a clamp, or with one inside int8 (per byte). */
enum { DW_STORE_ANY, DW_PACK, DW_PACK_CLAMP };

/* The channel-pair engines (depthwise_conv2d_s8_3x3_dsp.c for 3x3, _kxk_pair_dsp.c for 5x5 at
 * stride 1 and 7x7 at stride 1 and 2): a copy row holds blocks of four pixels, channel by channel
 * (channel k of the group: the words (x0, x1), (x2, x3) in 16-bit lanes, the input offset added,
 * at byte 8k; padding 0), so that one channel's outputs take two filter taps per SMLAD with its
 * weights loaded once per four outputs. One channel's requantization constants and the row its
 * block of assembly is on (in the engines' structs, at the fixed offsets their blocks read): */
struct dwq {
    int32_t m2, s1;    /* rq_fused's (doubled: dwq_rq4's M) */
    uint32_t lo4, hi4; /* act_min, act_max in each byte */
    int32_t bias, cc;  /* cc = 1 + 2 output_offset (rq_fused; doubled: the bias 2 b, C) */
    uintptr_t end;     /* where the block's row walk ends */
    int8_t *dst;       /* the row's first output */
    int32_t ch;        /* the output pixel step */
    int32_t next;      /* bytes from the row walk's end to the next channel's start (0: the last) */
};

/* Channel j's (of the group rq holds) constants, and the layer's; doubled: dwq_rq4's (the engines'
 * blocks of assembly requantize only so). */
static inline void dwq_load(const struct dw *d, const struct dw_rq *rq, struct dwq *q, int32_t j,
                            int doubled) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    q->m2 = doubled ? (int32_t)((uint32_t)rq->m2[j] >> 1) : rq->m2[j]; /* M: m2 = 2 M wrapped */
    q->s1 = rq->s1[j];
    q->bias = doubled ? 2 * rq->bias[j] : rq->bias[j];
    q->cc = 1 + 2 * p->output_offset;
    if (doubled) q->cc = (int32_t)((uint32_t)q->cc << q->s1);
    q->lo4 = (uint32_t)(uint8_t)(int8_t)p->act_min * 0x01010101u;
    q->hi4 = (uint32_t)(uint8_t)(int8_t)p->act_max * 0x01010101u;
    q->ch = p->input_c;
}

/* Both 16-bit lanes of x doubled (2 w of an int8 w fits a lane): one SADD16. */
static inline uint32_t dw_twice16(uint32_t x) {
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    uint32_t r;
    __asm__("sadd16 %0, %1, %1" : "=r"(r) : "r"(x) : "cc");
    return r;
#else
    return (x << 1) & 0xFFFEFFFEu; /* no carry across the lanes */
#endif
}

/* Filter row fy of channel group c..c+3 (fw taps, fw <= 8) as pair words (w_a, w_b) in 16-bit
 * lanes: out[j * stride + i] = (tap a_i, tap b_i) of channel c + j, a_i = pairs[2 i], b_i =
 * pairs[2 i + 1] (a tap index of fw or more: 0), i < n; doubled: 2 w (dwq_rq4); the group's
 * taps at wg, wstride apart (dw_group_filter). Each tap's four
 * channels are one word, widened once (SXTB16: channels c, c + 2; of the word rotated by 8: c + 1,
 * c + 3). Inlined with fw, pairs and n constants (the layer's filter width is the caller's
 * instance): the taps then stay in registers and the pairs unroll (the loops over a table took ~4x
 * as long). */
static inline __attribute__((always_inline)) void dw_weight_pairs(const int8_t *wg, size_t wstride,
                                                                  int32_t fy, int32_t fw,
                                                                  const uint8_t *pairs, int32_t n,
                                                                  uint32_t *out, size_t stride,
                                                                  int doubled) {
    const int8_t *w = wg + (size_t)fy * (size_t)fw * wstride;
    uint32_t e[9], o[9];
#pragma GCC unroll 8
    for (int32_t t = 0; t < fw; ++t) {
        const uint32_t v = dsp_read4(w + (size_t)t * wstride);
        e[t] = dsp_sxtb16(v);
        o[t] = dsp_sxtb16_hi(v);
        if (doubled) {
            e[t] = dw_twice16(e[t]);
            o[t] = dw_twice16(o[t]);
        }
    }
    e[fw] = o[fw] = 0;
#pragma GCC unroll 8
    for (int32_t i = 0; i < n; ++i) {
        const int32_t a = pairs[2 * i], b = pairs[2 * i + 1];
        out[i] = dsp_pack_lo(e[a], e[b]);
        out[stride + i] = dsp_pack_lo(o[a], o[b]);
        out[2 * stride + i] = dsp_pack_hi(e[a], e[b]);
        out[3 * stride + i] = dsp_pack_hi(o[a], o[b]);
    }
}

/* Stores n (<= 4) accumulators of channel c (bias included), ch bytes apart from dst (doubled:
 * dwq_load's, the accumulators 2a). */
static inline void dwq_store(const struct dw *d, const struct dwq *q, const int32_t a[4], int32_t n,
                             int8_t *dst, int32_t c, int mode, int doubled) {
    for (int32_t i = 0; i < n; ++i, dst += q->ch) {
        int32_t y;
        if (mode == DW_STORE_ANY) {
            y = requantize(d, a[i], c);
        } else {
            y = doubled ? rq4(a[i], q->m2, q->s1, q->cc) : rq_fused(a[i], q->m2, q->s1, q->cc);
            if (mode == DW_PACK_CLAMP) y = fp_clamp(y, d->p.act_min, d->p.act_max);
        }
        *dst = (int8_t)y;
    }
}

/* q[0] = lo, q[1] = hi, q += 2: one STRD with post-increment on the Cortex-M (the compiler
 * makes it two STR and an ADD). Volatile: the store is the point, even where q's new value is
 * not read again (GCC drops a plain asm whose outputs are unused, "memory" clobber or not). */
static inline void dw_store2(uint32_t **q, uint32_t lo, uint32_t hi) {
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    __asm__ volatile("strd %1, %2, [%0], #8" : "+r"(*q) : "r"(lo), "r"(hi) : "memory");
#else
    (*q)[0] = lo;
    (*q)[1] = hi;
    *q += 2;
#endif
}

#define DW_WIDEN_EDGE 2 /* border blocks each side the table takes (pad_w up to 8) */

/* The layer's constants for dw_widen_blocks (dw_widen_init: once per layer): the blocks per copy
 * row, the blocks [lo, hi) inside the image, the input offset in both lanes and the padding
 * word. */
struct dw_widen {
    const struct dw *d;
    int32_t blocks, lo, hi;
    uint32_t off2, padw;
    /* The border blocks [0, lo) and [hi, blocks) when they are at most DW_WIDEN_EDGE each side
     * (edges; else 0 and the per-pixel selects): per block its four pixels' byte offsets in
     * the row, clamped into it (a pixel in the padding reads a pixel inside), and the masks of
     * its widened words (m01: pixels 0 and 1, m23: 2 and 3; 0 in a padding pixel's lane). */
    int32_t edges;
    struct dw_edge {
        int32_t off[4];
        uint32_t m01, m23;
    } edge[2 * DW_WIDEN_EDGE];
};
void dw_widen_init(const struct dw *d, struct dw_widen *w, int32_t blocks);
/* Widens input row y (outside the image: zeros) of channels c..c+3 (image: batch b's first row
 * at channel c) into w->blocks blocks at q, the block's first pixel 4 i - pad_w. For layers
 * dw_widen_ok takes. */
void dw_widen_blocks(const struct dw_widen *w, const int8_t *image, uint32_t *q, int32_t y);
/* dw_widen_blocks of n consecutive rows from y into consecutive copy rows at q. */
void dw_widen_rows(const struct dw_widen *w, const int8_t *image, uint32_t *q, int32_t y,
                   int32_t n);

/* Whether dw_widen_blocks takes the layer's input offset: -input_offset fits a byte (its padding
 * word; any int8 zero point gives such an offset); else the caller keeps its older engine. */
static inline int dw_widen_ok(const struct depthwise_conv2d_s8_params *p) {
    return p->input_offset >= -127 && p->input_offset <= 128;
}

/* The engines' blocks of assembly: dwq_rq4 of the doubled accumulator a (m, s1, C: registers; t
 * a scratch register), and the
 * four outputs a0..a3 stored ch bytes apart from dst (dst advanced past them), plain or packed
 * into one word (t: a scratch register; a0..a3 clobbered), clamped per byte (SSUB8 sets GE
 * where a >= b, SEL picks by it) by lo4 and hi4 and stored byte by byte. */
#define DWQ_RQ(a, m, s1, cc, t)       \
    "smmlar " t ", " a ", " m ", " cc \
    "\n\t"                            \
    "add " t ", " t ", " a            \
    ", asr #31\n\t"                   \
    "asr " t ", " t ", " s1           \
    "\n\t"                            \
    "ssat " a ", #8, " t ", asr #1\n\t"
/* DWQ_RQ without its sign step (rq3, requant_fast.h: an output offset of -128 and an activation
 * range from -128, dwq_rq3_ok). */
#define DWQ_RQ3(a, m, s1, cc, t)      \
    "smmlar " t ", " a ", " m ", " cc \
    "\n\t"                            \
    "asr " t ", " t ", " s1           \
    "\n\t"                            \
    "ssat " a ", #8, " t ", asr #1\n\t"
#define DWQ_STORE(a0, a1, a2, a3, dst, ch) \
    "strb " a0 ", [" dst                   \
    "]\n\t"                                \
    "strb " a1 ", [" dst ", " ch           \
    "]\n\t"                                \
    "add " dst ", " dst ", " ch            \
    ", lsl #1\n\t"                         \
    "strb " a2 ", [" dst                   \
    "]\n\t"                                \
    "strb " a3 ", [" dst ", " ch           \
    "]\n\t"                                \
    "add " dst ", " dst ", " ch ", lsl #1\n\t"
#define DWQ_STORE_CLAMP(a0, a1, a2, a3, t, lo, hi, dst, ch) \
    "pkhbt " a0 ", " a0 ", " a2                             \
    ", lsl #16\n\t"                                         \
    "pkhbt " a1 ", " a1 ", " a3                             \
    ", lsl #16\n\t"                                         \
    "uxtb16 " a0 ", " a0                                    \
    "\n\t"                                                  \
    "uxtb16 " a1 ", " a1                                    \
    "\n\t"                                                  \
    "orr " a0 ", " a0 ", " a1                               \
    ", lsl #8\n\t"                                          \
    "ssub8 " t ", " a0 ", " lo                              \
    "\n\t"                                                  \
    "sel " a0 ", " a0 ", " lo                               \
    "\n\t"                                                  \
    "ssub8 " t ", " a0 ", " hi                              \
    "\n\t"                                                  \
    "sel " a0 ", " hi ", " a0                               \
    "\n\t"                                                  \
    "strb " a0 ", [" dst                                    \
    "]\n\t"                                                 \
    "lsr " a0 ", " a0                                       \
    ", #8\n\t"                                              \
    "strb " a0 ", [" dst ", " ch                            \
    "]\n\t"                                                 \
    "add " dst ", " dst ", " ch                             \
    ", lsl #1\n\t"                                          \
    "lsr " a0 ", " a0                                       \
    ", #8\n\t"                                              \
    "strb " a0 ", [" dst                                    \
    "]\n\t"                                                 \
    "lsr " a0 ", " a0                                       \
    ", #8\n\t"                                              \
    "strb " a0 ", [" dst ", " ch                            \
    "]\n\t"                                                 \
    "add " dst ", " dst ", " ch ", lsl #1\n\t"

/* A tile of output rows and columns of the k x k variants' copy of their input window. */
struct dw_tile {
    int32_t rows, cols;
};

/* The tile of outputs whose input window fits a copy of `limit` units with the fewest units
 * copied per output, for the k x k variants: a unit is `per_unit` pixel columns of one row
 * (a widened pixel: 1; a pair of pixels: 2), and a tile's copy row for cols outputs holds
 * (cols - 1) * stride_w / per_unit + first units. Runs once per layer (not a hot path). */
static inline struct dw_tile dw_tile_pick(const struct depthwise_conv2d_s8_params *p, int32_t limit,
                                          int32_t per_unit, int32_t first) {
    struct dw_tile best = {1, 1};
    int64_t best_num = (int64_t)first * p->filter_h, best_den = 1;
    for (int32_t cols = 1; cols <= p->output_w; ++cols) {
        const int32_t w = (cols - 1) * p->stride_w / per_unit + first;
        if (w * p->filter_h > limit) break;
        int32_t rows = ((limit / w) - p->filter_h) / p->stride_h + 1;
        if (rows > p->output_h) rows = p->output_h;
        /* Rows spread evenly over the tiles (no thin last tile). */
        const int32_t n = (p->output_h + rows - 1) / rows;
        rows = (p->output_h + n - 1) / n;
        const int32_t in_h = (rows - 1) * p->stride_h + p->filter_h;
        const int64_t num = (int64_t)in_h * w, den = (int64_t)rows * cols;
        if (num * best_den < best_num * den) {
            best = (struct dw_tile){rows, cols};
            best_num = num;
            best_den = den;
        }
    }
    return best;
}

/* One channel c over every output pixel of batch b, as the reference
 * (depthwise_conv2d_s8_dsp.c). */
void depthwise_conv2d_s8_dsp_channel(const struct dw *d, int32_t b, int32_t c);

/* The k x k variant (depthwise_conv2d_s8_kxk_dsp.c): whether it takes the layer, and the
 * layer through it. */
int depthwise_conv2d_s8_kxk_dsp_takes(const struct depthwise_conv2d_s8_params *p);
void depthwise_conv2d_s8_kxk_dsp_run(const struct dw *d);
/* The bytes of its copy (the tile dw_tile_pick picks), for a layer it takes. */
size_t depthwise_conv2d_s8_kxk_dsp_buffer_size(const struct depthwise_conv2d_s8_params *p);

/* The k x k variant with two taps per SMLAD (depthwise_conv2d_s8_kxk_pair_dsp.c): whether it
 * takes the layer, the layer through it (its copy and weight sets at d->buf), and the bytes of
 * those buffers (in the operator's scratch: depthwise_conv2d_s8_scratch_size). */
int depthwise_conv2d_s8_kxk_pair_dsp_takes(const struct depthwise_conv2d_s8_params *p);
void depthwise_conv2d_s8_kxk_pair_dsp_run(const struct dw *d);
size_t depthwise_conv2d_s8_kxk_pair_dsp_buffer_size(const void *params);
/* Whether it slides its copy down the map for a layer it takes (else it copies tiles). */
int depthwise_conv2d_s8_kxk_pair_dsp_slides(const struct depthwise_conv2d_s8_params *p);
/* Whether it runs the layer on its channel-pair engine (5x5 at stride 1, 7x7 at 1 and 2, in the
 * same bytes), else on tiles or the sliding copy (for the tests). */
int depthwise_conv2d_s8_kxk_pair_dsp_quads(const void *params);

/* The 3x3 variant from a pre-widened copy (depthwise_conv2d_s8_3x3_dsp.c): the band of
 * output rows it takes at once (0: not its layer), the layer through it (its copy and
 * constants at d->buf), and the bytes of those buffers (in the operator's scratch:
 * depthwise_conv2d_s8_scratch_size). */
int32_t depthwise_conv2d_s8_3x3_dsp_band(const struct depthwise_conv2d_s8_params *p);
void depthwise_conv2d_s8_3x3_dsp_run(const struct dw *d);
size_t depthwise_conv2d_s8_3x3_dsp_buffer_size(const void *params);
/* Whether it runs the layer on its channel-pair engine (a ring of three rows in those bytes),
 * else on its band copy (for the tests). */
int depthwise_conv2d_s8_3x3_dsp_pairs(const void *params);

#endif
