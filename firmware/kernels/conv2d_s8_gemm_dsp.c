/* conv2d_s8's GEMM variant: any layer whose patch fits the buffer (1x1 convolutions
 * are the hot case; the stem's dense patches are widened by conv2d_s8_stem_dsp.c). See
 * conv2d_s8_dsp.c for the method and its exactness. */
#include "conv2d_s8_dsp.h"

/* Zero groups of a row, from dst up to end. */
static void widen_zeros(uint64_t *dst, const uint64_t *end) {
    for (; dst < end; dst += 2) *dst = 0;
}

/* acc[0..3] += (x0.w0, x0.w1, x1.w0, x1.w1) over an interleaved pair of widened pixel
 * patches x (x0, x1) and of filter rows w (w0, w1), `groups` groups per row (a multiple of
 * 2): nothing but loads and SMLAD. On the Cortex-M7 it is one block of assembly: per group one
 * LDM (both pixels' four words), two LDRD (each channel's two words) and eight SMLAD, 16 MACs
 * in 11 instructions, with no spill (the portable C below needs 4 LDRD, and GCC's register
 * allocation around it spilled). */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
#define CONV_GROUP_ASM              \
    "ldm %[x]!, {r4, r5, r6, r8}\n" \
    "ldrd r9, r10, [%[w]], #8\n"    \
    "smlad %[a0], r4, r9, %[a0]\n"  \
    "smlad %[a0], r5, r10, %[a0]\n" \
    "smlad %[a2], r6, r9, %[a2]\n"  \
    "smlad %[a2], r8, r10, %[a2]\n" \
    "ldrd r9, r10, [%[w]], #8\n"    \
    "smlad %[a1], r4, r9, %[a1]\n"  \
    "smlad %[a1], r5, r10, %[a1]\n" \
    "smlad %[a3], r6, r9, %[a3]\n"  \
    "smlad %[a3], r8, r10, %[a3]\n"

CONV_INLINE void gemm_2x2(const uint64_t *x, const uint64_t *w, int32_t groups, int32_t acc[4]) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t n = groups >> 2;
    if (n > 0) /* 4 groups (64 MACs) per iteration */
        __asm__ volatile("1:\n" CONV_GROUP_ASM CONV_GROUP_ASM CONV_GROUP_ASM CONV_GROUP_ASM
                         "subs %[n], %[n], #1\n"
                         "bne 1b\n"
                         : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x),
                           [w] "+r"(w), [n] "+r"(n)
                         :
                         : "r4", "r5", "r6", "r8", "r9", "r10", "cc", "memory");
    if (groups & 2)
        __asm__ volatile(
            CONV_GROUP_ASM CONV_GROUP_ASM
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x), [w] "+r"(w)
            :
            : "r4", "r5", "r6", "r8", "r9", "r10", "memory");
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
#else
/* One group of both rows: 16 multiply-accumulates. */
CONV_INLINE void gemm_2x2_group(const uint64_t **x, const uint64_t **w, int32_t a[4]) {
    uint32_t xe, xo, we, wo, ve, vo;
    dsp_load_pair(x, &xe, &xo); /* pixel 0 */
    dsp_load_pair(w, &we, &wo); /* channel 0 */
    a[0] = dsp_smlad(xe, we, a[0]);
    a[0] = dsp_smlad(xo, wo, a[0]);
    dsp_load_pair(w, &ve, &vo); /* channel 1 */
    a[1] = dsp_smlad(xe, ve, a[1]);
    a[1] = dsp_smlad(xo, vo, a[1]);
    dsp_load_pair(x, &xe, &xo); /* pixel 1 */
    a[2] = dsp_smlad(xe, we, a[2]);
    a[2] = dsp_smlad(xo, wo, a[2]);
    a[3] = dsp_smlad(xe, ve, a[3]);
    a[3] = dsp_smlad(xo, vo, a[3]);
}

CONV_INLINE void gemm_2x2(const uint64_t *x, const uint64_t *w, int32_t groups, int32_t acc[4]) {
    int32_t a[4] = {acc[0], acc[1], acc[2], acc[3]};
    for (int32_t k = groups >> 2; k > 0; --k) {
        gemm_2x2_group(&x, &w, a);
        gemm_2x2_group(&x, &w, a);
        gemm_2x2_group(&x, &w, a);
        gemm_2x2_group(&x, &w, a);
    }
    if (groups & 2) {
        gemm_2x2_group(&x, &w, a);
        gemm_2x2_group(&x, &w, a);
    }
    acc[0] = a[0];
    acc[1] = a[1];
    acc[2] = a[2];
    acc[3] = a[3];
}
#endif

/* Widens output pixel `pix`'s input patch (taps in the padding are zero lanes) into one row
 * of an interleaved pair; dbl: doubled (widen). */
static void widen_patch(uint64_t *dst, int32_t pix, int32_t groups,
                        const struct conv2d_s8_params *p, const struct conv_ops *o, uint32_t off2,
                        int dbl) {
    const uint64_t *const end = dst + 2 * groups;
    if (p->filter_h == 1 && p->filter_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
        p->pad_h == 0 && p->pad_w == 0 && p->input_w == p->output_w &&
        p->input_h == p->output_h) { /* pointwise: output pixel = input pixel */
        dst = widen(dst, o->input + (size_t)pix * (size_t)p->input_c, p->input_c, off2,
                    p->input_offset, dbl);
        widen_zeros(dst, end);
        return;
    }
    const int32_t ox = pix % p->output_w;
    const int32_t oy = (pix / p->output_w) % p->output_h;
    const int32_t b = pix / (p->output_w * p->output_h);
    const int8_t *image =
        o->input + (size_t)b * (size_t)p->input_h * (size_t)p->input_w * (size_t)p->input_c;
    const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
    for (int32_t fy = 0; fy < p->filter_h; ++fy) {
        const int32_t y = y0 + fy * p->dilation_h;
        for (int32_t fx = 0; fx < p->filter_w; ++fx) {
            const int32_t x = x0 + fx * p->dilation_w;
            const int inside = y >= 0 && y < p->input_h && x >= 0 && x < p->input_w;
            const int8_t *src =
                inside ? image + ((size_t)y * (size_t)p->input_w + (size_t)x) * (size_t)p->input_c
                       : NULL;
            dst = widen(dst, src, p->input_c, off2, p->input_offset, dbl);
        }
    }
    widen_zeros(dst, end);
}

/* Widens output channel oc's filter row, tap by tap as widen_patch lays out the input; dbl:
 * doubled (dense patches, whose pixels are not). */
static void widen_row(uint64_t *dst, int32_t oc, int32_t groups, const struct conv2d_s8_params *p,
                      const struct conv_ops *o, int dbl) {
    const uint64_t *const end = dst + 2 * groups;
    const int32_t taps = p->filter_h * p->filter_w;
    const int8_t *row = row_of(oc, (size_t)taps * (size_t)p->input_c, p, o);
    if (p->input_c % 4 == 0 || dense_patch(p)) { /* whole groups, or dense: one run */
        dst = widen(dst, row, taps * p->input_c, 0, 0, dbl);
    } else {
        for (int32_t t = 0; t < taps; ++t)
            dst = widen(dst, row + (size_t)t * p->input_c, p->input_c, 0, 0, dbl);
    }
    widen_zeros(dst, end);
}

/* Both filter rows of an output channel pair, rows a and b of n bytes (a multiple of 4: whole
 * groups, input_c % 4 == 0), widened together in widen_row's layout (per group 4 words: a's
 * even and odd lanes, then b's, contiguous, so one STM stores them), the rest up to end zero.
 * 112 bytes: ~130 instructions for both rows, where two widen_row calls took ~400. */
static void widen_rows2(uint64_t *dst, const int8_t *a, const int8_t *b, int32_t n,
                        const uint64_t *end) {
    int32_t i = 0;
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    if (n >= 8) {
        int32_t k = n >> 3;
        __asm__ volatile(
            "1:\n"
            "ldr r4, [%[a]], #4\n"
            "ldr r5, [%[b]], #4\n"
            "sxtb16 r6, r4\n"
            "sxtb16 r7, r4, ror #8\n"
            "sxtb16 r8, r5\n"
            "sxtb16 r9, r5, ror #8\n"
            "stm %[d]!, {r6, r7, r8, r9}\n"
            "ldr r4, [%[a]], #4\n"
            "ldr r5, [%[b]], #4\n"
            "sxtb16 r6, r4\n"
            "sxtb16 r7, r4, ror #8\n"
            "sxtb16 r8, r5\n"
            "sxtb16 r9, r5, ror #8\n"
            "stm %[d]!, {r6, r7, r8, r9}\n"
            "subs %[k], %[k], #1\n"
            "bne 1b\n"
            : [a] "+r"(a), [b] "+r"(b), [d] "+r"(dst), [k] "+r"(k)
            :
            : "r4", "r5", "r6", "r7", "r8", "r9", "cc", "memory");
        i = n & ~7;
    }
#endif
    for (; i < n; i += 4, a += 4, b += 4, dst += 2) {
        const uint32_t u = dsp_read4(a), v = dsp_read4(b);
        dst[0] = group(dsp_sxtb16(u), dsp_sxtb16_hi(u));
        dst[1] = group(dsp_sxtb16(v), dsp_sxtb16_hi(v));
    }
    for (; dst < end; ++dst) *dst = 0;
}

/* A channel pair's constants, at the offsets pair_fast_m7's assembly reads: the biases (the
 * accumulators' start: doubled with the products, or not) and rq4's M, C and s1 (undoubled:
 * requant_fast.h's M2, c and s1) of both channels. */
struct pair_k {
    int32_t b0, b1, m0, m1, cc0, cc1, s10, s11;
};

/* A channel pair's block state: its constants, then what pair_fast_m7 also reads (dst is
 * updated as it goes; the blocks end where the pixel pointer reaches x_end). Filled in place
 * (pair_constants, pair_fast_full), not copied, as it is set up once per pair and tile. */
struct pair_m7 {
    struct pair_k k;
    const uint64_t *w;
    int32_t iters, tail;
    int8_t *dst;
    int32_t cout;
    const uint64_t *x_end;
};

/* `dbl` below: 0 for undoubled sums (rq_fused), else doubled ones, DBL_RQ3 where they take rq3
 * (conv2d_s8_dsp.h: an output offset of -128, ReLU6 expansions and the stem; pair_fast_m7z and
 * pair_fast_m7_7z, 4 instructions fewer per 2x2 block; pair_fast_m7_2, for 8 input channels
 * that the narrow variant mostly takes, keeps rq4, as exact there). */
#define DBL_RQ3 2

/* Output pixels 0 .. n - 1 of a tile (widened in xbuf, doubled) for the output channel pair
 * whose rows are widened in wbuf: requantized with rq4 (conv2d_s8_dsp.h; both channels on its
 * path, two channels; `full`: the activation range is all of int8, so SSAT is the whole
 * clamp). */
CONV_INLINE int32_t rq4_pair(int32_t acc, int32_t m, int32_t s1, int32_t cc, int dbl) {
    if (dbl == DBL_RQ3) return rq3(acc, m, s1, cc);
    return dbl ? rq4(acc, m, s1, cc) : rq_fused(acc, m, s1, cc);
}

/* Out of line: pair_fast_full, inlined in three places, calls it only for an odd tile's last
 * pixel on the M7, and each inlined copy of it took ~0.5 KB. */
static __attribute__((noinline)) void pair_fast(const uint64_t *x, const uint64_t *wbuf,
                                                int32_t groups, int32_t n, int8_t *dst,
                                                int32_t cout, const struct pair_k *k, int32_t lo,
                                                int32_t hi, int full, int dbl) {
    const struct pair_k q = *k;
    const size_t step = 2 * (size_t)groups;
    for (int32_t t = n >> 1; t > 0; --t, x += step) {
        int32_t acc[4] = {q.b0, q.b1, q.b0, q.b1};
        gemm_2x2(x, wbuf, groups, acc);
        int32_t y0 = rq4_pair(acc[0], q.m0, q.s10, q.cc0, dbl);
        int32_t y1 = rq4_pair(acc[1], q.m1, q.s11, q.cc1, dbl);
        int32_t y2 = rq4_pair(acc[2], q.m0, q.s10, q.cc0, dbl);
        int32_t y3 = rq4_pair(acc[3], q.m1, q.s11, q.cc1, dbl);
        if (!full) {
            y0 = fp_clamp(y0, lo, hi);
            y1 = fp_clamp(y1, lo, hi);
            y2 = fp_clamp(y2, lo, hi);
            y3 = fp_clamp(y3, lo, hi);
        }
        dst[0] = (int8_t)y0;
        dst[1] = (int8_t)y1;
        dst += cout;
        dst[0] = (int8_t)y2;
        dst[1] = (int8_t)y3;
        dst += cout;
    }
    if (n & 1) { /* the last pixel of an odd tile (its partner: zero lanes) */
        int32_t acc[4] = {q.b0, q.b1, q.b0, q.b1};
        gemm_2x2(x, wbuf, groups, acc);
        dst[0] = (int8_t)fp_clamp(rq4_pair(acc[0], q.m0, q.s10, q.cc0, dbl), lo, hi);
        dst[1] = (int8_t)fp_clamp(rq4_pair(acc[1], q.m1, q.s11, q.cc1, dbl), lo, hi);
    }
}

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
_Static_assert(offsetof(struct pair_m7, w) == 32 && offsetof(struct pair_m7, tail) == 40 &&
                   offsetof(struct pair_m7, dst) == 44 && offsetof(struct pair_m7, x_end) == 52,
               "pair_fast_m7's offsets");

/* One group of the 2x2 block: pixels at r0 (LDM), channels at r11; accumulators r2, r3, r12,
 * lr = (pixel 0, channel 0), (0, 1), (1, 0), (1, 1). */
#define M7_GROUP                  \
    "ldm r0!, {r4, r5, r6, r8}\n" \
    "ldrd r9, r10, [r11], #8\n"   \
    "smlad r2, r4, r9, r2\n"      \
    "smlad r2, r5, r10, r2\n"     \
    "smlad r12, r6, r9, r12\n"    \
    "smlad r12, r8, r10, r12\n"   \
    "ldrd r9, r10, [r11], #8\n"   \
    "smlad r3, r4, r9, r3\n"      \
    "smlad r3, r5, r10, r3\n"     \
    "smlad lr, r6, r9, lr\n"      \
    "smlad lr, r8, r10, lr\n"
/* A block's start: the biases, the filter rows and the iteration count (r7). */
#define M7_START               \
    "0:\n"                     \
    "ldrd r2, r3, [r1, #0]\n"  \
    "ldrd r12, lr, [r1, #0]\n" \
    "ldrd r11, r7, [r1, #32]\n"
/* rq4 (conv2d_s8_dsp.h) of the 4 outputs, stores, the next pair of pixels while r0 has not
 * reached x_end; M7_FINISH_SINGLE: requant_fast.h's rq_fused of undoubled sums (SMMLAR, ADD
 * of v's sign, ASR, QADD of c, SSAT), one instruction more per output. */
#define M7_STORE               \
    "ldrd r5, r6, [r1, #44]\n" \
    "strb r8, [r5]\n"          \
    "strb r10, [r5, #1]\n"     \
    "add r5, r5, r6\n"         \
    "strb r9, [r5]\n"          \
    "strb r11, [r5, #1]\n"     \
    "add r5, r5, r6\n"         \
    "str r5, [r1, #44]\n"      \
    "ldr r8, [r1, #52]\n"      \
    "cmp r0, r8\n"             \
    "bne 0b\n"
/* SIGN: rq4's four ADDs of the sign, or nothing for rq3 (conv2d_s8_dsp.h: an output offset of
 * -128). */
#define M7_FINISH_WITH(SIGN)        \
    "ldrd r4, r5, [r1, #8]\n"       \
    "ldrd r6, r7, [r1, #16]\n"      \
    "smmlar r8, r2, r4, r6\n"       \
    "smmlar r9, r12, r4, r6\n"      \
    "smmlar r10, r3, r5, r7\n"      \
    "smmlar r11, lr, r5, r7\n" SIGN \
    "ldrd r4, r5, [r1, #24]\n"      \
    "asr r8, r8, r4\n"              \
    "asr r9, r9, r4\n"              \
    "asr r10, r10, r5\n"            \
    "asr r11, r11, r5\n"            \
    "ssat r8, #8, r8, asr #1\n"     \
    "ssat r9, #8, r9, asr #1\n"     \
    "ssat r10, #8, r10, asr #1\n"   \
    "ssat r11, #8, r11, asr #1\n" M7_STORE
#define M7_FINISH                     \
    M7_FINISH_WITH(                   \
        "add r8, r8, r2, asr #31\n"   \
        "add r9, r9, r12, asr #31\n"  \
        "add r10, r10, r3, asr #31\n" \
        "add r11, r11, lr, asr #31\n")
#define M7_FINISH_Z M7_FINISH_WITH("")
#define M7_FINISH_SINGLE           \
    "ldrd r4, r5, [r1, #8]\n"      \
    "smmlar r8, r2, r4, r2\n"      \
    "smmlar r9, r12, r4, r12\n"    \
    "smmlar r10, r3, r5, r3\n"     \
    "smmlar r11, lr, r5, lr\n"     \
    "add r8, r8, r8, asr #31\n"    \
    "add r9, r9, r9, asr #31\n"    \
    "add r10, r10, r10, asr #31\n" \
    "add r11, r11, r11, asr #31\n" \
    "ldrd r4, r5, [r1, #24]\n"     \
    "asr r8, r8, r4\n"             \
    "asr r9, r9, r4\n"             \
    "asr r10, r10, r5\n"           \
    "asr r11, r11, r5\n"           \
    "ldr r4, [r1, #16]\n"          \
    "qadd r8, r8, r4\n"            \
    "qadd r9, r9, r4\n"            \
    "qadd r10, r10, r4\n"          \
    "qadd r11, r11, r4\n"          \
    "ssat r8, #8, r8, asr #1\n"    \
    "ssat r9, #8, r9, asr #1\n"    \
    "ssat r10, #8, r10, asr #1\n"  \
    "ssat r11, #8, r11, asr #1\n" M7_STORE
#define M7_CLOBBERS \
    "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory"

/* pair_fast for the pixel pairs from x to k->x_end (at least one), full activation range, at
 * least 4 groups: the same instructions as gemm_2x2 and its requantization, written as one block
 * so that nothing spills. FINISH: M7_FINISH (rq4 on doubled sums: the 2x2 block's bias,
 * multiply-accumulates, requantization and stores take 3 + 46 per 4 groups + 30 instructions;
 * 37 with requant_fast.h's rq_fused and a count) or M7_FINISH_SINGLE (rq_fused on undoubled
 * sums). */
#define PAIR_FAST_M7(name, FINISH)                                                     \
    static __attribute__((noinline)) void name(const uint64_t *x, struct pair_m7 *k) { \
        register const uint64_t *rx __asm__("r0") = x;                                 \
        register struct pair_m7 *rk __asm__("r1") = k;                                 \
        __asm__ volatile(M7_START "1:\n" M7_GROUP M7_GROUP M7_GROUP M7_GROUP           \
                                  "subs r7, r7, #1\n"                                  \
                                  "bne 1b\n"                                           \
                                  "ldr r7, [r1, #40]\n"                                \
                                  "cbz r7, 2f\n" M7_GROUP M7_GROUP "2:\n" FINISH       \
                         : "+r"(rx)                                                    \
                         : "r"(rk)                                                     \
                         : M7_CLOBBERS);                                               \
    }
PAIR_FAST_M7(pair_fast_m7, M7_FINISH)
PAIR_FAST_M7(pair_fast_m7z, M7_FINISH_Z)
PAIR_FAST_M7(pair_fast_m7_single, M7_FINISH_SINGLE)

/* The same for exactly 2 groups (8 input channels of a 1x1 convolution): no loop. */
static __attribute__((noinline)) void pair_fast_m7_2(const uint64_t *x, struct pair_m7 *k) {
    register const uint64_t *rx __asm__("r0") = x;
    register struct pair_m7 *rk __asm__("r1") = k;
    __asm__ volatile(M7_START M7_GROUP M7_GROUP M7_FINISH : "+r"(rx) : "r"(rk) : M7_CLOBBERS);
}

/* The same for 8 groups of which the 8th is zero in both operands (the stem's 3x3x3 = 27
 * taps densely packed: 7 groups; conv2d_s8_gemm_dsp keeps the pixel pairs 8 groups apart): 7 groups
 * unrolled, no loop, the pixel pointer stepped past the zero group (3 + 77 + 1 + 30
 * instructions per 2x2 block; the loop over 8 took 3 + 92 + 6 + 37). Skipping zero lanes
 * drops products that are 0. */
#define PAIR_FAST_M7_7(name, FINISH)                                                             \
    static __attribute__((noinline)) void name(const uint64_t *x, struct pair_m7 *k) {           \
        register const uint64_t *rx __asm__("r0") = x;                                           \
        register struct pair_m7 *rk __asm__("r1") = k;                                           \
        __asm__ volatile(M7_START M7_GROUP M7_GROUP M7_GROUP M7_GROUP M7_GROUP M7_GROUP M7_GROUP \
                         "add r0, r0, #16\n" FINISH                                              \
                         : "+r"(rx)                                                              \
                         : "r"(rk)                                                               \
                         : M7_CLOBBERS);                                                         \
    }
/* pair_fast_m7_7z: with rq3 (an output offset of -128: the stem's ReLU6), 4 instructions fewer
 * per block. */
PAIR_FAST_M7_7(pair_fast_m7_7, M7_FINISH)
PAIR_FAST_M7_7(pair_fast_m7_7z, M7_FINISH_Z)
#undef PAIR_FAST_M7_7
#undef M7_CLOBBERS
#undef M7_FINISH
#undef M7_FINISH_Z
#undef M7_FINISH_WITH
#undef M7_FINISH_SINGLE
#undef M7_STORE
#undef M7_START
#undef M7_GROUP
#endif

/* last_zero: the last of the groups is zero in every pixel and row (the stem). m->k: the pair's
 * constants (pair_constants); the rest is filled here. dbl: the sums are doubled (rq4), else
 * rq_fused (groups >= 4, no last_zero). */
CONV_INLINE void pair_fast_full(const uint64_t *x, const uint64_t *wbuf, int32_t groups, int32_t n,
                                int8_t *dst, int32_t cout, struct pair_m7 *m, int last_zero,
                                int dbl) {
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    if (n >= 2) {
        const uint64_t *const x_end = x + (size_t)(n & ~1) * (size_t)groups;
        m->w = wbuf, m->iters = groups >> 2, m->tail = groups & 2;
        m->dst = dst, m->cout = cout, m->x_end = x_end;
        if (!dbl)
            pair_fast_m7_single(x, m);
        else if (last_zero && groups == 8)
            (dbl == DBL_RQ3 ? pair_fast_m7_7z : pair_fast_m7_7)(x, m);
        else if (groups == 2)
            pair_fast_m7_2(x, m);
        else
            (dbl == DBL_RQ3 ? pair_fast_m7z : pair_fast_m7)(x, m);
        x = x_end;
        dst += (size_t)(n & ~1) * (size_t)cout;
        n &= 1;
    }
#else
    (void)last_zero;
#endif
    if (n > 0) pair_fast(x, wbuf, groups, n, dst, cout, &m->k, -128, 127, 1, dbl);
}
static void pair_fast_clamp(const uint64_t *x, const uint64_t *wbuf, int32_t groups, int32_t n,
                            int8_t *dst, int32_t cout, const struct pair_k *k, int32_t lo,
                            int32_t hi, int dbl) {
    pair_fast(x, wbuf, groups, n, dst, cout, k, lo, hi, 0, dbl);
}

/* The same with the reference's requantization (channels off rq4's path, a lone last channel),
 * of the reference's sums: doubled products (dbl) are summed from 0 and halved (exact: below
 * 2^30, rq4_bias_limit) before the bias is added, so a bias of any size is the reference's. */
static void pair_ref(const uint64_t *x, const uint64_t *wbuf, int32_t groups, int32_t n,
                     int8_t *dst, int32_t cout, const int32_t b[2], const struct requant *r0,
                     const struct requant *r1, int two, int dbl) {
    for (int32_t t = 0; t < n; t += 2, x += 2 * (size_t)groups) {
        int32_t acc[4] = {b[0], b[1], b[0], b[1]};
        if (dbl) acc[0] = acc[1] = acc[2] = acc[3] = 0;
        gemm_2x2(x, wbuf, groups, acc);
        for (int32_t i = 0; dbl && i < 4; ++i)
            acc[i] = (int32_t)((uint32_t)(acc[i] >> 1) + (uint32_t)b[i & 1]);
        dst[0] = requantize(acc[0], r0);
        if (two) dst[1] = requantize(acc[1], r1);
        dst += cout;
        if (t + 1 < n) {
            dst[0] = requantize(acc[2], r0);
            if (two) dst[1] = requantize(acc[3], r1);
            dst += cout;
        }
    }
}

/* Output channels oc and oc + 1's constants for pair_fast, or 0: dbl (the layer's products
 * doubled), rq4's where both channels take it and their biases are within limit
 * (rq4_bias_limit); else requant_fast.h's where both are on its fast path (c: the layer's
 * 1 + 2 offset, 0 where the offset is too large for it). */
CONV_INLINE int pair_constants(struct pair_k *k, int32_t oc, const struct conv2d_s8_params *p,
                               const struct conv_ops *o, int32_t c, int32_t limit, int dbl) {
    const struct requant r0 = requant_of(oc, p, o), r1 = requant_of(oc + 1, p, o);
    const int32_t b0 = bias_of(oc, p, o), b1 = bias_of(oc + 1, p, o);
    if (dbl) {
        if (!rq4_ok(r0.multiplier, r0.shift, c) || !rq4_ok(r1.multiplier, r1.shift, c)) return 0;
        if (!rq4_bias_ok(b0, limit) || !rq4_bias_ok(b1, limit)) return 0;
        /* rq4_of, written out so that nothing is returned in memory */
        const int32_t s10 = -r0.shift - 1, s11 = -r1.shift - 1;
        k->b0 = 2 * b0, k->b1 = 2 * b1, k->m0 = r0.multiplier, k->m1 = r1.multiplier;
        k->cc0 = (int32_t)((uint32_t)c << s10), k->cc1 = (int32_t)((uint32_t)c << s11);
        k->s10 = s10, k->s11 = s11;
        return 1;
    }
    if (!c || !rq_fast_ok(r0.multiplier, r0.shift) || !rq_fast_ok(r1.multiplier, r1.shift))
        return 0;
    k->b0 = b0, k->b1 = b1, k->m0 = rq_m2(r0.multiplier), k->m1 = rq_m2(r1.multiplier);
    k->cc0 = k->cc1 = c, k->s10 = rq_s1(r0.shift), k->s11 = rq_s1(r1.shift);
    return 1;
}

/* the GEMM variant's channel pairs from 0 on while both channels are on rq4's path, for a
 * full-range layer whose filter rows are whole groups (input_c % 4 == 0) and doubled pixels:
 * the same steps as the GEMM variant's loop, in a function of their own so that the per-pair
 * setup keeps its values in registers (4x4x112 -> 1280, 640 pairs: ~1/3 fewer instructions
 * between blocks). Returns the first output channel left to the GEMM variant's loop. */
static __attribute__((noinline)) int32_t pairs_fast_full(const uint64_t *xbuf, uint64_t *wbuf,
                                                         int32_t groups, int32_t n, int8_t *out,
                                                         const struct conv2d_s8_params *p,
                                                         const struct conv_ops *o, int32_t c,
                                                         int32_t limit, int dbl) {
    const int32_t cout = p->output_c;
    const size_t size = (size_t)p->filter_h * (size_t)p->filter_w * (size_t)p->input_c;
    const uint64_t *const wend = wbuf + 2 * groups;
    int32_t oc = 0;
    for (; oc + 1 < cout; oc += 2) {
        struct pair_m7 m;
        if (!pair_constants(&m.k, oc, p, o, c, limit, dbl)) break;
        widen_rows2(wbuf, row_of(oc, size, p, o), row_of(oc + 1, size, p, o), (int32_t)size, wend);
        pair_fast_full(xbuf, wbuf, groups, n, out + oc, cout, &m, 0, dbl);
    }
    return oc;
}

/* Dense patches (the stem) over several tiles: the tile that leaves room, in the buffer the
 * layer already plans (conv2d_s8_gemm_dsp_buffer_size), for the filter rows of every output
 * channel, widened once instead of once per tile (a dense row of 27 taps took ~140 instructions
 * to widen, 16 of them per 64-pixel tile of the 3-channel stem: 5 % of the layer), and for every
 * channel pair's constants (HOIST_STATE_GROUPS each: struct pair_k, worked out once,
 * hoisted_states), or 0 where it would be smaller than HOIST_MIN_TILE pixels. */
#define HOIST_MIN_TILE 32
#define HOIST_STATE_GROUPS ((int32_t)((sizeof(struct pair_k) + 7) / 8))
static int32_t hoisted_tile(const struct conv2d_s8_params *p, int32_t groups, int32_t tile) {
    const int32_t npix = p->batches * p->output_h * p->output_w;
    const int32_t total = gemm_used_groups(p, groups, tile) + CONV_DENSE_GROUPS;
    const int32_t pairs = (p->output_c + 1) / 2;
    const int32_t rows = pairs * (2 * groups + HOIST_STATE_GROUPS);
    if (npix <= tile || total < rows + CONV_DENSE_GROUPS) return 0;
    int32_t t = (total - CONV_DENSE_GROUPS - rows) / groups;
    if (t > CONV_TILE_MAX) t = CONV_TILE_MAX;
    t &= ~1;
    return t >= HOIST_MIN_TILE ? t : 0;
}

/* Hoisted layers: each channel pair's constants for pair_fast_full, from pair_constants once per
 * layer (gemm_pair worked them out per tile: ~170 instructions a pair, 6 % of the stem), or
 * m0 = 0 where the pair takes gemm_pair (not both channels on the fast path, a lone last channel,
 * a clamped activation range; the fast path never has M = 0). */
static void hoisted_states(struct pair_k *k, const struct conv2d_s8_params *p,
                           const struct conv_ops *o, int32_t groups, int32_t c, int32_t limit,
                           int dbl, int full, int last_zero) {
    const int single_ok = dbl || (groups >= 4 && !last_zero); /* as gemm_pair */
    for (int32_t oc = 0; oc < p->output_c; oc += 2, ++k)
        if (!(full && single_ok && oc + 1 < p->output_c &&
              pair_constants(k, oc, p, o, c, limit, dbl)))
            k->m0 = 0;
}

/* One channel pair's outputs for a tile (its rows widened in wbuf): the fast path where both
 * channels take rq4, else the reference's requantization. A function of its own, so that its
 * state (the block's constants, the reference's) is on the stack only while it runs, not in
 * conv2d_s8_gemm_dsp's frame on every call below it. */
struct gemm_pair {
    const uint64_t *xbuf, *wbuf;
    int8_t *dst;
    int32_t groups, n, oc, c, limit;
    int dbl, full, last_zero;
};
static __attribute__((noinline)) void gemm_pair(const struct gemm_pair *g,
                                                const struct conv2d_s8_params *p,
                                                const struct conv_ops *o) {
    const int32_t cout = p->output_c, oc = g->oc;
    const int two = oc + 1 < cout;
    struct pair_m7 m;
    const int single_ok = g->dbl || (g->groups >= 4 && !g->last_zero); /* pair_fast_m7_single */
    if (two && single_ok && pair_constants(&m.k, oc, p, o, g->c, g->limit, g->dbl)) {
        if (g->full)
            pair_fast_full(g->xbuf, g->wbuf, g->groups, g->n, g->dst, cout, &m, g->last_zero,
                           g->dbl);
        else
            pair_fast_clamp(g->xbuf, g->wbuf, g->groups, g->n, g->dst, cout, &m.k, p->act_min,
                            p->act_max, g->dbl);
    } else {
        const int32_t b[2] = {bias_of(oc, p, o), two ? bias_of(oc + 1, p, o) : 0};
        const struct requant r0 = requant_of(oc, p, o), r1 = requant_of(two ? oc + 1 : oc, p, o);
        pair_ref(g->xbuf, g->wbuf, g->groups, g->n, g->dst, cout, b, &r0, &r1, two, g->dbl);
    }
}

void conv2d_s8_gemm_dsp(const struct conv2d_s8_params *p, const struct conv_ops *o,
                        int32_t groups) {
    uint64_t *const buf = o->buf; /* conv2d_s8_gemm_dsp_buffer_size bytes */
    /* Dense patches are gathered in CONV_DENSE_GROUPS groups after the tile's patches. */
    const int dense = dense_patch(p);
    const int32_t reserved = dense ? CONV_DENSE_GROUPS : 0;
    int32_t tile = gemm_tile(groups, reserved);
    const int32_t cout = p->output_c;
    const int32_t npix = p->batches * p->output_h * p->output_w;
    /* rq4 where the products' sums stay below 2^29 (rq4_bias_limit). Doubled sums (rq4) where
     * that pays: dense patches (widened by the stem variant) double their filter rows, hoisted
     * or widened once per tile; other layers double their pixels, about half an instruction
     * per patch byte per pixel, against 4 per 2x2 block of outputs (rq4_single's ADDs) saved,
     * so where output channels outnumber half the patch (expansions, not projections). */
    const int32_t limit = rq4_bias_limit(p);
    const int32_t patch = p->filter_h * p->filter_w * p->input_c;
    const int dbl = limit >= 0 && (dense || 2 * cout > patch) ? (rq3_ok(p) ? DBL_RQ3 : 1) : 0;
    const int dbl_x = dbl && !dense, dbl_w = dbl && dense;
    /* The filter rows: one pair at a time in wbuf, or (hoist) every pair's, widened once. */
    const int32_t hoist = dense ? hoisted_tile(p, groups, tile) : 0;
    uint64_t *wbuf = buf;
    const int32_t pairs = (cout + 1) / 2;
    /* hoisted: the rows, then the pairs' constants (hoisted_states) */
    struct pair_k *const states = (struct pair_k *)(buf + pairs * 2 * groups);
    uint64_t *const xbuf =
        hoist ? buf + pairs * (2 * groups + HOIST_STATE_GROUPS) : buf + 2 * groups;
    if (hoist) {
        tile = hoist;
        for (int32_t oc = 0; oc < cout; oc += 2) {
            uint64_t *const w = buf + oc * groups;
            widen_row(w, oc, groups, p, o, dbl_w);
            if (oc + 1 < cout)
                widen_row(w + 1, oc + 1, groups, p, o, dbl_w);
            else
                widen_zeros(w + 1, w + 2 * groups);
        }
    }
    int8_t *const tmp =
        dense ? (int8_t *)(xbuf + gemm_used_groups(p, groups, tile) - 2 * groups) : NULL;
    const uint32_t off2 = dsp_pair(dbl_x ? 2 * p->input_offset : p->input_offset);
    const int32_t c = rq4_layer_c(p);
    const int full = p->act_min <= -128 && p->act_max >= 127;
    /* Dense patches of 4k + 1 .. 4k + 4 bytes fill an odd number of groups, padded to even by
     * a zero group: in the filter rows (widen_row) and widen_dense's pixels; widen_stem leaves
     * its pixels' 8th group as it is, as the rows' zeros cancel it. */
    const int last_zero = dense && ((p->filter_h * p->filter_w * p->input_c + 3) / 4) % 2 == 1;
    if (hoist) hoisted_states(states, p, o, groups, c, limit, dbl, full, last_zero);
    for (int32_t pix0 = 0; pix0 < npix; pix0 += tile) {
        const int32_t n = npix - pix0 < tile ? npix - pix0 : tile;
        /* Pixel t is row t % 2 of pair t / 2. */
        if (tmp != NULL) { /* dense: one test per tile */
            conv2d_s8_stem_dsp_widen_tile(xbuf, pix0, n, groups, p, o, off2, tmp);
        } else {
            for (int32_t t = 0; t < n; ++t)
                widen_patch(xbuf + (t / 2) * 2 * groups + t % 2, pix0 + t, groups, p, o, off2,
                            dbl_x);
        }
        if (n & 1) widen_zeros(xbuf + (n / 2) * 2 * groups + 1, xbuf + (n / 2 + 1) * 2 * groups);
        int32_t oc = 0;
        if (full && p->input_c % 4 == 0 && (dbl || groups >= 4))
            oc = pairs_fast_full(xbuf, wbuf, groups, n, o->out + (size_t)pix0 * (size_t)cout, p, o,
                                 c, limit, dbl);
        for (; oc < cout; oc += 2) {
            const int two = oc + 1 < cout;
            if (hoist) {
                wbuf = buf + oc * groups;
                if (states[oc / 2].m0 != 0) { /* full range, both channels on the fast path */
                    struct pair_m7 m;
                    m.k = states[oc / 2];
                    pair_fast_full(xbuf, wbuf, groups, n,
                                   o->out + (size_t)pix0 * (size_t)cout + (size_t)oc, cout, &m,
                                   last_zero, dbl);
                    continue;
                }
            } else if (two && p->input_c % 4 == 0) {
                const size_t size = (size_t)p->filter_h * (size_t)p->filter_w * (size_t)p->input_c;
                widen_rows2(wbuf, row_of(oc, size, p, o), row_of(oc + 1, size, p, o), (int32_t)size,
                            wbuf + 2 * groups);
            } else {
                widen_row(wbuf, oc, groups, p, o, dbl_w);
                if (two)
                    widen_row(wbuf + 1, oc + 1, groups, p, o, dbl_w);
                else
                    widen_zeros(wbuf + 1, wbuf + 2 * groups);
            }
            const struct gemm_pair g = {
                xbuf,   wbuf,     o->out + (size_t)pix0 * (size_t)cout + (size_t)oc,
                groups, n,        oc,
                c,      limit,    dbl,
                full,   last_zero};
            gemm_pair(&g, p, o);
        }
    }
}

/* What conv2d_s8_gemm_dsp uses of its at most CONV_BUF_GROUPS: the two filter rows, the
 * largest tile's patches and, for dense patches, their gathering groups. Sized per layer, so
 * small layers plan small scratch. */
size_t conv2d_s8_gemm_dsp_buffer_size(const struct conv2d_s8_params *p) {
    const int32_t groups = patch_groups(p);
    const int32_t reserved = dense_patch(p) ? CONV_DENSE_GROUPS : 0;
    const int32_t used = gemm_used_groups(p, groups, gemm_tile(groups, reserved));
    return (size_t)(used + reserved) * sizeof(uint64_t);
}
