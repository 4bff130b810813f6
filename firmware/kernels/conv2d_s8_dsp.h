/* What the DSP variants of conv2d_s8 share (conv2d_s8_dsp.c selects one of them): the
 * operands, the reference's requantization and bias and filter-row choice per output channel,
 * the widening of int8 runs to 16-bit lanes, the scratch buffer's size, and the entry of each
 * variant. Internal to conv2d_s8_*_dsp.c; the runtime calls conv2d_s8_run (conv2d_s8.h).
 *
 * Variants (one file each):
 *   conv2d_s8_1x1_narrow_dsp.c  pointwise convolutions over few input channels (records of
 *                               each output channel streamed past one pixel in registers);
 *   conv2d_s8_1x1_wide_dsp.c    pointwise convolutions over more than 512 input channels
 *                               (4 widened pixels times int8 filter rows unpacked on the fly);
 *   conv2d_s8_gemm_dsp.c        any patch that fits the buffer: tiles of widened
 *                               patches times pairs of widened filter rows (2x2 SMLAD blocks);
 *   conv2d_s8_stem_dsp.c        the GEMM variant's widening of dense patches (input channels
 *                               not a multiple of 4: the 3-channel stem), straight from the
 *                               image;
 *   conv2d_s8_direct_dsp.c      patches too large for the buffer, tap by tap.
 * Each variant that keeps a buffer says its size (X_buffer_size), as CMSIS-NN's
 * *_get_buffer_size; conv2d_s8_scratch_size (conv2d_s8_dsp.c) plans the largest the layer may
 * take, and the buffer is the operator's scratch in the arena, not the stack. */
#ifndef KERNELS_CONV2D_S8_DSP_H
#define KERNELS_CONV2D_S8_DSP_H

#include <stddef.h>

#include "conv2d_s8.h"
#include "conv2d_train.h"
#include "dsp.h"
#include "fixedpoint.h"
#include "requant_fast.h"

/* Buffers, in groups (4 taps as 16-bit lanes, 8 bytes). */
/* One buffer (the scratch): the widened filter rows of two output channels, then the widened
 * patches of a tile of output pixels, as many as fit. A larger tile widens each filter row fewer
 * times (once per tile). */
#define CONV_BUF_GROUPS 768  /* 6 KB */
#define CONV_WBUF_GROUPS 256 /* at most 2 KB of it for the two filter rows (else: direct path) */
/* 1x1 convolutions take the GEMM variant up to 3 KB of filter rows (768 input channels), in
 * tiles of 2 pixels at least: each pair of rows is widened once per tile, about 1 instruction
 * per weight byte against 1.4 per 4 MACs, still far cheaper than the direct variant's
 * unpacking (4x4x576 -> 96: 0.36 MAC/instruction direct). Above 512 input channels (tiles of 2
 * pixels) the wide variant (conv2d_s8_1x1_wide_dsp.c) takes the same buffer for 4 pixels. */
#define CONV_WBUF_GROUPS_1X1 384
_Static_assert(2 * CONV_WBUF_GROUPS_1X1 <= CONV_BUF_GROUPS, "a GEMM tile holds 2 pixels");
#define CONV_TILE_MAX 64 /* output pixels per tile */

struct conv_ops {
    const int8_t *input, *filter, *trained_filter;
    int8_t *rows; /* two filter rows (scratch) when input channels are trained, else unused */
    const int32_t *bias, *trained_bias, *multipliers, *shifts;
    int8_t *out;
    uint64_t *buf; /* the variant's buffer: scratch from the arena (conv2d_s8_dsp_buffer_size) */
};

/* One output channel's requantization: the reference's fixed-point steps (fixedpoint.h),
 * with the channel's multiplier and shift and the layer's constants loaded once. */
struct requant {
    int32_t multiplier, shift, output_offset, act_min, act_max;
};

static inline struct requant requant_of(int32_t oc, const struct conv2d_s8_params *p,
                                        const struct conv_ops *o) {
    const int32_t q = p->per_channel ? oc : 0;
    const struct requant r = {o->multipliers[q], o->shifts[q], p->output_offset, p->act_min,
                              p->act_max};
    return r;
}

static inline int8_t requantize(int32_t acc, const struct requant *r) {
    acc = fp_multiply_by_quantized_multiplier(acc, r->multiplier, (int)r->shift);
    acc += r->output_offset;
    return (int8_t)fp_clamp(acc, r->act_min, r->act_max);
}

static inline int8_t finish(int32_t acc, int32_t oc, const struct conv2d_s8_params *p,
                            const struct conv_ops *o) {
    const struct requant r = requant_of(oc, p, o);
    return requantize(acc, &r);
}

/* The variants' requantization in 4 instructions on doubled accumulators (requant_fast.h's
 * rq_fused takes 5): SMMLAR, ADD (with ASR #31), ASR, SSAT (with ASR #1). The narrow and GEMM
 * variants double one operand of every product (the narrow one its widened weights, the GEMM
 * one its widened pixels, or its weights for dense patches) and the bias, so their
 * accumulators hold A = 2a, a the reference's sum, exactly.
 *
 * Proof (M in (2^30, 2^31), shift in [-31, -1], e = -shift, s1 = e - 1, c = 1 + 2 offset as
 * in requant_fast.h, C = c 2^s1 with |C| <= 2^30 - 3, and |a| < 2^30, so A fits an int32):
 * 1. SMMLAR d, A, M, C = floor((C 2^32 + A M + 2^31) / 2^32) = C + floor((2aM + 2^31) / 2^32)
 *    = C + v, v the reference's SaturatingRoundingDoublingHighMul (requant_fast.h, step 1). The
 *    64-bit sum is below 2^63 in magnitude and |v| <= 2^30 + 1, so d = C + v exactly.
 * 2. [v < 0] = [a < 0]: v >= 0 for a >= 0; for a <= -2, aM <= -2^31 and v < 0; for a = -1,
 *    2aM + 2^31 < 0 as M > 2^30 (M = 2^30 exactly is left to the other paths). So
 *    d + (A >> 31) = C + v - [v < 0] = C + u, u of requant_fast.h's step 3.
 * 3. (C + u) >> s1 = c + (u >> s1) = c + t exactly (C is a multiple of 2^s1), and t + c cannot
 *    overflow (|t| <= 2^30 + 2, |c| <= 2^30 - 3), so SSAT #8 of it with ASR #1 is rq_fused's
 *    result: clamp(R + offset, -128, 127), R the reference's MultiplyByQuantizedMultiplier.
 * Undoubled sums (the GEMM variant where doubling its pixels would cost more than it saves)
 * take requant_fast.h's rq_fused instead.
 * On the host each instruction is requant_fast.h's portable C; tests/kernels/conv/
 * test_dsp_conv_rq4.py sweeps the conditions' edges against fixedpoint.h. */
struct rq4 {
    int32_t m, s1, cc; /* M, s1, C */
};

/* Whether output channel constants (multiplier, shift) and the layer's c = 1 + 2 offset take
 * rq4, and its constants. */
static inline int rq4_ok(int32_t multiplier, int32_t shift, int32_t c) {
    if (c == 0 || !(multiplier > (1 << 30) && shift <= -1 && shift >= -31)) return 0;
    /* |c| 2^s1 <= 2^30 - 3 exactly when |c| <= floor((2^30 - 3) / 2^s1) */
    const uint32_t ac = c < 0 ? 0u - (uint32_t)c : (uint32_t)c;
    return ac <= ((1u << 30) - 3u) >> (-shift - 1);
}
static inline struct rq4 rq4_of(int32_t multiplier, int32_t shift, int32_t c) {
    const struct rq4 r = {multiplier, -shift - 1, (int32_t)((uint32_t)c << (-shift - 1))};
    return r;
}
/* The layer's c = 1 + 2 offset (odd), or 0 where the offset is too large for rq4 (and for the
 * GEMM variant's undoubled path). */
static inline int32_t rq4_layer_c(const struct conv2d_s8_params *p) {
    return p->output_offset > -(1 << 20) && p->output_offset < (1 << 20) ? 1 + 2 * p->output_offset
                                                                         : 0;
}
/* rq4 itself, clamp(MultiplyByQuantizedMultiplier(a) + offset, -128, 127) from A = 2a, is
 * requant_fast.h's (the depthwise engines use it too). */
/* rq4 without its sign step (the ADD of A >> 31): 3 instructions, SMMLAR, ASR, SSAT (with ASR
 * #1), bit-identical with rq4 where the layer's output offset is -128 and its activation range
 * starts at -128 (rq3_ok: the zero point of a ReLU6 expansion quantized to [0, 6]).
 * Proof: for a >= 0, A >> 31 = 0 and the steps are rq4's. For a <= -1, v <= -1 (2aM + 2^31 < 0
 * as M > 2^30), so with or without the step (C + v or C + v - 1) >> s1 = c + t with t <= -1
 * (C = c 2^s1), and c + t <= -255 - 1, whose SSAT #8 of it halved is -128: rq4's result too
 * (the reference's: MultiplyByQuantizedMultiplier of a negative sum is <= 0, plus -128, clamped
 * at -128). */
static inline int rq3_ok(const struct conv2d_s8_params *p) {
    return p->output_offset == -128 && p->act_min <= -128;
}
/* rq3 itself is requant_fast.h's (the depthwise channel-pair engine uses it too). */
/* The largest |bias| for which every accumulator of the layer stays below 2^30 in magnitude,
 * |a| <= |bias| + taps * 128 * (128 + |input offset|), or -1 if even a zero bias leaves no room
 * (the products' sum alone must stay below 2^29: doubled, below 2^30). */
static inline int32_t rq4_bias_limit(const struct conv2d_s8_params *p) {
    const int64_t io = p->input_offset < 0 ? -(int64_t)p->input_offset : p->input_offset;
    const int64_t sums = (int64_t)p->filter_h * p->filter_w * p->input_c * 128 * (128 + io);
    return sums < ((int64_t)1 << 29) ? (int32_t)(((int64_t)1 << 30) - 1 - sums) : -1;
}
static inline int rq4_bias_ok(int32_t bias, int32_t limit) {
    const uint32_t b = bias < 0 ? 0u - (uint32_t)bias : (uint32_t)bias;
    return limit >= 0 && b <= (uint32_t)limit;
}
/* Whether every output channel's bias (trained or flash) is within limit (rq4_bias_limit),
 * from the OR of their magnitudes (at least the largest; a bias near the limit may be refused). */
static inline int rq4_biases_ok(const struct conv2d_s8_params *p, const int32_t *bias,
                                const int32_t *trained_bias, int32_t limit) {
    if (limit < 0) return 0;
    const int32_t tr = p->train_bias_rows < p->output_c ? p->train_bias_rows : p->output_c;
    uint32_t m = 0;
    for (int32_t oc = 0; oc < tr; ++oc) {
        const int32_t b = trained_bias[oc];
        m |= b < 0 ? 0u - (uint32_t)b : (uint32_t)b; /* a bound: the largest |b| or more */
    }
    for (int32_t oc = tr; bias && oc < p->output_c; ++oc) {
        const int32_t b = bias[oc];
        m |= b < 0 ? 0u - (uint32_t)b : (uint32_t)b;
    }
    return m <= (uint32_t)limit;
}

/* The bias the reference adds to output channel oc (0 if none). */
static inline int32_t bias_of(int32_t oc, const struct conv2d_s8_params *p,
                              const struct conv_ops *o) {
    if (oc < p->train_bias_rows) return o->trained_bias[oc];
    return o->bias ? o->bias[oc] : 0;
}

/* Output channel oc's filter row, as the reference reads it (conv_train_row): with input
 * channels trained, composed in the row buffer of oc's parity (a pair oc, oc + 1 is live at
 * once). */
static inline const int8_t *row_of(int32_t oc, size_t filter_size, const struct conv2d_s8_params *p,
                                   const struct conv_ops *o) {
    if (p->train_cols <= 0)
        return (oc < p->train_rows ? o->trained_filter : o->filter) + (size_t)oc * filter_size;
    return conv_train_row(o->rows + (size_t)(oc & 1) * filter_size, o->filter, o->trained_filter,
                          oc, p->filter_h * p->filter_w, p->input_c, p->train_rows, p->train_cols);
}

/* A group: 4 taps as 16-bit lanes, in SXTB16 order (low word: taps 0 and 2, high word: taps
 * 1 and 3). Two rows (pixels, or filter rows) are interleaved group by group, so a row's
 * groups sit at dst[0], dst[2], dst[4], ... */
static inline uint64_t group(uint32_t even, uint32_t odd) {
    return (uint64_t)even | ((uint64_t)odd << 32);
}

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
/* widen()'s assembly loop, 8 values a pass: its two forms differ only in `twice`, which adds
 * the bytes once more (2 SXTAB16 per group) for the doubled lanes or nothing. */
/* clang-format off */
#define WIDEN_ONCE(r) ""
#define WIDEN_TWICE(r)                                                                             \
    "sxtab16 r6, r6, " r "\n"                                                                      \
    "sxtab16 r7, r7, " r ", ror #8\n"
#define WIDEN_GROUP(r, twice)                                                                      \
    "sxtab16 r6, %[o], " r "\n"                                                                    \
    "sxtab16 r7, %[o], " r ", ror #8\n"                                                            \
    twice(r)                                                                                       \
    "strd r6, r7, [%[d]], #16\n"
#define WIDEN_LOOP(twice)                                                                          \
    __asm__ volatile("1:\n"                                                                        \
                     "ldr r4, [%[s]], #4\n"                                                        \
                     "ldr r5, [%[s]], #4\n"                                                        \
                     WIDEN_GROUP("r4", twice)                                                      \
                     WIDEN_GROUP("r5", twice)                                                      \
                     "subs %[k], %[k], #1\n"                                                       \
                     "bne 1b\n"                                                                    \
                     : [s] "+r"(s8), [d] "+r"(dst), [k] "+r"(k)                                    \
                     : [o] "r"(off2)                                                                \
                     : "r4", "r5", "r6", "r7", "cc", "memory")
/* clang-format on */
#endif

/* n int8 values (+ offset, as 16-bit lanes) into ceil(n / 4) groups of a row; a partial last
 * group is padded with zero lanes (not offset). src == NULL: n zero lanes (a tap in the
 * padding). dbl: the lanes doubled, 2 (x + offset), and off2 then holds 2 offset in both lanes
 * (the operand the variants double for rq4; 2 (x + offset) fits a 16-bit lane). Returns the
 * row's next group. */
__attribute__((unused)) static uint64_t *widen(uint64_t *dst, const int8_t *src, int32_t n,
                                               uint32_t off2, int32_t off, int dbl) {
    int32_t i = 0;
    if (src == NULL) {
        for (; i < n; i += 4, dst += 2) *dst = 0;
        return dst;
    }
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    /* The same as the loops below, 8 values in 10 instructions (GCC's took 14), 14 doubled: LDR
     * (any alignment), SXTAB16 (twice: the offset's pair, then the bytes once more) and a
     * post-indexed STRD per group. */
    if (n >= 8) {
        const int8_t *s8 = src;
        int32_t k = n >> 3;
        if (dbl)
            WIDEN_LOOP(WIDEN_TWICE);
        else
            WIDEN_LOOP(WIDEN_ONCE);
        i = n & ~7;
    }
#endif
    for (; i + 4 <= n; i += 4, dst += 2) {
        const uint32_t v = dsp_read4(src + i);
        uint32_t e = dsp_sxtab16(off2, v), o = dsp_sxtab16_hi(off2, v);
        if (dbl) e = dsp_sxtab16(e, v), o = dsp_sxtab16_hi(o, v);
        *dst = group(e, o);
    }
    if (i < n) { /* 1 to 3 values left (the tail lanes stay zero, not offset) */
        const int32_t r = n - i, k = dbl ? 2 : 1;
        const uint32_t l0 = (uint32_t)(k * ((int32_t)src[i] + off)) & 0xFFFFu;
        const uint32_t l1 = r > 1 ? (uint32_t)(k * ((int32_t)src[i + 1] + off)) & 0xFFFFu : 0u;
        const uint32_t l2 = r > 2 ? (uint32_t)(k * ((int32_t)src[i + 2] + off)) << 16 : 0u;
        *dst = group(l0 | l2, l1);
        dst += 2;
    }
    return dst;
}

#define CONV_INLINE static inline __attribute__((always_inline))

#define CONV_DENSE_MAX 256 /* taps x input channels of a densely packed patch */
#define CONV_DENSE_GROUPS ((CONV_DENSE_MAX + 8) / 8) /* its bytes, in buffer groups */

/* Whether patches pack densely, tap after tap with no lanes between (the stem's 3x3x3 = 27
 * taps take 7 groups instead of 9): a filter wider than 1x1 over input channels that are not
 * a multiple of 4, a small patch, and an input zero point that is an int8 (the padding taps
 * are written as it, which the input offset turns into a zero lane). The filter row is then
 * widened in one run too, as its layout is the same (fh, fw, input channel). */
static inline int dense_patch(const struct conv2d_s8_params *p) {
    const int32_t taps = p->filter_h * p->filter_w;
    return taps > 1 && p->input_c % 4 != 0 && taps * p->input_c <= CONV_DENSE_MAX &&
           p->input_offset >= -127 && p->input_offset <= 128;
}

/* Groups in one widened patch: each tap's channels padded to 4 lanes (dense: the whole patch
 * padded to 4 lanes once), the patch to 8. */
static inline int32_t patch_groups(const struct conv2d_s8_params *p) {
    const int32_t groups = dense_patch(p) ? (p->filter_h * p->filter_w * p->input_c + 3) / 4
                                          : p->filter_h * p->filter_w * ((p->input_c + 3) / 4);
    return (groups + 1) & ~1;
}

/* The GEMM variant's tile (output pixels widened at once, even) with `reserved` groups of its
 * buffer kept for dense patches, and the groups its filter rows and largest tile use. */
static inline int32_t gemm_tile(int32_t groups, int32_t reserved) {
    int32_t tile = (CONV_BUF_GROUPS - reserved - 2 * groups) / groups;
    if (tile > CONV_TILE_MAX) tile = CONV_TILE_MAX;
    return tile & ~1;
}

static inline int32_t gemm_used_groups(const struct conv2d_s8_params *p, int32_t groups,
                                       int32_t tile) {
    const int32_t npix = p->batches * p->output_h * p->output_w;
    const int32_t n = npix < tile ? (npix + 1) & ~1 : tile;
    return (2 + n) * groups;
}

/* The variants' entries (p: the layer, o: its operands). */
/* conv2d_s8_1x1_narrow_dsp.c: whether the narrow variant takes the layer, and the variant. */
int conv2d_s8_1x1_narrow_dsp_ok(const struct conv2d_s8_params *p, const struct conv_ops *o);
void conv2d_s8_1x1_narrow_dsp(const struct conv2d_s8_params *p, const struct conv_ops *o);
/* Whether the layer's shape is one the narrow variant may take (its channels' requantization
 * decides the rest), and the bytes of its records for such a layer. */
/* The DSP variants' buffer in the operator's scratch (conv2d_s8_dsp.c): its offset and size. */
size_t conv2d_s8_dsp_buffer_offset(const void *params);
size_t conv2d_s8_dsp_buffer_size(const void *params);
int conv2d_s8_1x1_narrow_dsp_shape_ok(const struct conv2d_s8_params *p);
size_t conv2d_s8_1x1_narrow_dsp_buffer_size(const struct conv2d_s8_params *p);
/* conv2d_s8_1x1_wide_dsp.c: whether the wide variant takes the layer (within the buffer
 * conv2d_s8_dsp_buffer_size already plans for it), its buffer, and the variant. */
int conv2d_s8_1x1_wide_dsp_ok(const struct conv2d_s8_params *p);
size_t conv2d_s8_1x1_wide_dsp_buffer_size(const struct conv2d_s8_params *p);
void conv2d_s8_1x1_wide_dsp(const struct conv2d_s8_params *p, const struct conv_ops *o);
/* conv2d_s8_gemm_dsp.c: groups = patch_groups(p), with 2 * groups <= CONV_WBUF_GROUPS (or
 * CONV_WBUF_GROUPS_1X1 for a 1x1 filter; at most CONV_BUF_GROUPS / 2, so a tile holds 2
 * pixels). */
void conv2d_s8_gemm_dsp(const struct conv2d_s8_params *p, const struct conv_ops *o, int32_t groups);
size_t conv2d_s8_gemm_dsp_buffer_size(const struct conv2d_s8_params *p);
/* conv2d_s8_stem_dsp.c: a tile's dense patches (dense_patch(p)) widened into xbuf, gathered
 * through tmp (CONV_DENSE_GROUPS groups after the tile's patches in the GEMM variant's buffer). */
void conv2d_s8_stem_dsp_widen_tile(uint64_t *xbuf, int32_t pix0, int32_t n, int32_t groups,
                                   const struct conv2d_s8_params *p, const struct conv_ops *o,
                                   uint32_t off2, int8_t *tmp);
size_t conv2d_s8_stem_dsp_buffer_size(const struct conv2d_s8_params *p);
/* conv2d_s8_direct_dsp.c: any layer (no buffer). */
void conv2d_s8_direct_dsp(const struct conv2d_s8_params *p, const struct conv_ops *o);

#endif
