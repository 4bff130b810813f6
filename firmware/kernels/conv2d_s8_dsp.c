/* int8 2-D convolution with the Armv7E-M DSP SIMD instructions (dsp.h): bit-identical with
 * conv2d_s8_ref_run (conv2d_s8.c), which is TFLite's reference ConvPerChannel.
 *
 * Exactness: every product w * (x - zp) and every partial sum is the reference's, in
 * another order; int32 addition is associative and the sums cannot overflow (see
 * conv2d_s8.c), so the accumulators are equal. Requantization: requant_fast.h (5
 * instructions per output, proved bit-identical with fixedpoint.h) for channel pairs on its
 * fast path (right shifts, the usual case), hoisted per pair; the reference's otherwise.
 *
 * The GEMM path (whenever one output pixel's patch, filter_h * filter_w * input_c taps,
 * fits the stack buffers; 1x1 convolutions are the hot case):
 *   - a tile of output pixels has its patches widened once to 16-bit lanes, the input
 *     offset already added (x - zp fits 16 bits; taps in the padding become 0, which
 *     contributes nothing, exactly as the reference skips them);
 *   - the filter rows of two output channels are widened the same way (once per tile);
 *   - the inner loop computes 2 output channels x 2 pixels, 16 taps per iteration, with
 *     nothing but loads and SMLAD (two 16x16 multiply-accumulates per instruction); the two
 *     pixels (and the two filter rows) are interleaved 4 taps at a time, so one pointer each
 *     walks them. On the Cortex-M7 the block (bias, inner loop, requantization, stores) is one
 *     piece of assembly for the common case (full activation range, >= 16 taps), so nothing
 *     spills: 16 MACs in 11 instructions (LDM, 2 LDRD, 8 SMLAD), 1.01 MAC/instruction for a
 *     whole 16x16x64 -> 64 layer. When input_c % 4 == 0 both filter rows of a pair are
 *     widened in one pass (widen_rows2), and the fast full-range pairs run in a loop of their
 *     own (pairs_fast_full): 4x4x112 -> 1280 at 1.10 MAC/instruction.
 *   - the stem (3x3/2 over 3 channels: dense patches, 27 taps in 7 groups and a zero 8th):
 *     patches wholly inside the image are read straight from its three 9-byte runs
 *     (widen_stem), and the 2x2 block is unrolled over the 7 groups (pair_fast_m7_7): 0.71
 *     MAC/instruction for 37x39x3 -> 18x19x16 (0.42 before).
 * The narrow path (pointwise convolutions over 8, 16 or a few more input channels, a multiple
 * of 8; see "The narrow path" below) streams per-output-channel records past one pixel's
 * inputs held in registers, which takes 0.60-0.74 of the GEMM path's instructions at 8 or 16
 * input channels.
 * Both operands are widened in the same lane order (SXTB16 yields bytes 0,2 then, rotated,
 * bytes 1,3), so lanes pair up tap for tap. Larger patches take the direct path: per output
 * pixel and pair of channels, the taps' input channels four at a time, unpacked on the fly.
 * The stack holds the buffers (no scratch: plans and arenas are unchanged). The assembly is
 * checked against TFLite on the emulated board (tests/kernels/test_dsp_kernels.py and
 * test_dsp_conv_more.py); the host runs the portable C of the same steps. */
#include <stddef.h>

#include "conv2d_s8.h"
#include "dsp.h"
#include "fixedpoint.h"
#include "requant_fast.h"

#if defined(HOST_BUILD)
int kernels_dsp_host = 0;
#endif

/* Stack buffers, in groups (4 taps as 16-bit lanes, 8 bytes). */
/* One stack buffer: the widened filter rows of two output channels, then the widened patches
 * of a tile of output pixels, as many as fit. A larger tile widens each filter row fewer
 * times (once per tile). */
#define CONV_BUF_GROUPS 768  /* 6 KB */
#define CONV_WBUF_GROUPS 256 /* at most 2 KB of it for the two filter rows (else: direct path) */
#define CONV_TILE_MAX 64     /* output pixels per tile */

struct conv_ops {
    const int8_t *input, *filter, *trained_filter;
    const int32_t *bias, *trained_bias, *multipliers, *shifts;
    int8_t *out;
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

/* The bias the reference adds to output channel oc (0 if none). */
static inline int32_t bias_of(int32_t oc, const struct conv2d_s8_params *p,
                              const struct conv_ops *o) {
    if (oc < p->train_bias_rows) return o->trained_bias[oc];
    return o->bias ? o->bias[oc] : 0;
}

/* Output channel oc's filter row: the trained RAM copy below train_rows, as the reference. */
static inline const int8_t *row_of(int32_t oc, size_t filter_size, const struct conv2d_s8_params *p,
                                   const struct conv_ops *o) {
    return (oc < p->train_rows ? o->trained_filter : o->filter) + (size_t)oc * filter_size;
}

/* A group: 4 taps as 16-bit lanes, in SXTB16 order (low word: taps 0 and 2, high word: taps
 * 1 and 3). Two rows (pixels, or filter rows) are interleaved group by group, so a row's
 * groups sit at dst[0], dst[2], dst[4], ... */
static inline uint64_t group(uint32_t even, uint32_t odd) {
    return (uint64_t)even | ((uint64_t)odd << 32);
}

/* n int8 values (+ offset, as 16-bit lanes) into ceil(n / 4) groups of a row; a partial last
 * group is padded with zero lanes (not offset). src == NULL: n zero lanes (a tap in the
 * padding). Returns the row's next group. */
static uint64_t *widen(uint64_t *dst, const int8_t *src, int32_t n, uint32_t off2, int32_t off) {
    int32_t i = 0;
    if (src == NULL) {
        for (; i < n; i += 4, dst += 2) *dst = 0;
        return dst;
    }
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    /* The same as the loop below, 8 values in 10 instructions (GCC's took 14): LDR (any
     * alignment), SXTAB16 and a post-indexed STRD per group. */
    if (n >= 8) {
        const int8_t *s8 = src;
        int32_t k = n >> 3;
        __asm__ volatile(
            "1:\n"
            "ldr r4, [%[s]], #4\n"
            "ldr r5, [%[s]], #4\n"
            "sxtab16 r6, %[o], r4\n"
            "sxtab16 r7, %[o], r4, ror #8\n"
            "strd r6, r7, [%[d]], #16\n"
            "sxtab16 r6, %[o], r5\n"
            "sxtab16 r7, %[o], r5, ror #8\n"
            "strd r6, r7, [%[d]], #16\n"
            "subs %[k], %[k], #1\n"
            "bne 1b\n"
            : [s] "+r"(s8), [d] "+r"(dst), [k] "+r"(k)
            : [o] "r"(off2)
            : "r4", "r5", "r6", "r7", "cc", "memory");
        i = n & ~7;
    }
#endif
    for (; i + 8 <= n; i += 8, dst += 4) { /* two groups per iteration */
        const uint32_t v = dsp_read4(src + i), u = dsp_read4(src + i + 4);
        dst[0] = group(dsp_sxtab16(off2, v), dsp_sxtab16_hi(off2, v));
        dst[2] = group(dsp_sxtab16(off2, u), dsp_sxtab16_hi(off2, u));
    }
    for (; i + 4 <= n; i += 4, dst += 2) {
        const uint32_t v = dsp_read4(src + i);
        *dst = group(dsp_sxtab16(off2, v), dsp_sxtab16_hi(off2, v));
    }
    if (i < n) { /* 1 to 3 values left (the tail lanes stay zero, not offset) */
        const int32_t r = n - i;
        const uint32_t l0 = (uint32_t)((int32_t)src[i] + off) & 0xFFFFu;
        const uint32_t l1 = r > 1 ? (uint32_t)((int32_t)src[i + 1] + off) & 0xFFFFu : 0u;
        const uint32_t l2 = r > 2 ? (uint32_t)((int32_t)src[i + 2] + off) << 16 : 0u;
        *dst = group(l0 | l2, l1);
        dst += 2;
    }
    return dst;
}

#define CONV_INLINE static inline __attribute__((always_inline))

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

#define CONV_DENSE_MAX 256 /* taps x input channels of a densely packed patch */
#define CONV_DENSE_GROUPS ((CONV_DENSE_MAX + 8) / 8) /* its bytes, in buffer groups */

/* Whether patches pack densely, tap after tap with no lanes between (the stem's 3x3x3 = 27
 * taps take 7 groups instead of 9): a filter wider than 1x1 over input channels that are not
 * a multiple of 4, a small patch, and an input zero point that is an int8 (the padding taps
 * are written as it, which the input offset turns into a zero lane). The filter row is then
 * widened in one run too, as its layout is the same (fh, fw, input channel). */
static int dense_patch(const struct conv2d_s8_params *p) {
    const int32_t taps = p->filter_h * p->filter_w;
    return taps > 1 && p->input_c % 4 != 0 && taps * p->input_c <= CONV_DENSE_MAX &&
           p->input_offset >= -127 && p->input_offset <= 128;
}

/* Groups in one widened patch: each tap's channels padded to 4 lanes (dense: the whole patch
 * padded to 4 lanes once), the patch to 8. */
static int32_t patch_groups(const struct conv2d_s8_params *p) {
    const int32_t groups = dense_patch(p) ? (p->filter_h * p->filter_w * p->input_c + 3) / 4
                                          : p->filter_h * p->filter_w * ((p->input_c + 3) / 4);
    return (groups + 1) & ~1;
}

/* widen_patch for dense patches (dense_patch): the patch's bytes in a row (padding taps and
 * the tail: the zero point) in tmp (the end of conv_gemm's buffer), widened in one run: every
 * lane gets the offset, so those lanes are 0. */
static __attribute__((noinline)) void widen_dense(uint64_t *dst, int32_t pix, int32_t groups,
                                                  const struct conv2d_s8_params *p,
                                                  const struct conv_ops *o, uint32_t off2,
                                                  int8_t *tmp) {
    const int32_t ox = pix % p->output_w;
    const int32_t oy = (pix / p->output_w) % p->output_h;
    const int32_t b = pix / (p->output_w * p->output_h);
    const int8_t *image =
        o->input + (size_t)b * (size_t)p->input_h * (size_t)p->input_w * (size_t)p->input_c;
    const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
    const int8_t zp = (int8_t)(-p->input_offset);
    const int32_t ic = p->input_c;
    int8_t *t = tmp;
    for (int32_t fy = 0; fy < p->filter_h; ++fy) {
        const int32_t y = y0 + fy * p->dilation_h;
        for (int32_t fx = 0; fx < p->filter_w; ++fx, t += ic) {
            const int32_t x = x0 + fx * p->dilation_w;
            if (y >= 0 && y < p->input_h && x >= 0 && x < p->input_w) {
                const int8_t *src =
                    image + ((size_t)y * (size_t)p->input_w + (size_t)x) * (size_t)ic;
                if (ic == 3) { /* the stem: one halfword and one byte */
                    __builtin_memcpy(t, src, 3);
                } else {
                    for (int32_t k = 0; k < ic; ++k) t[k] = src[k];
                }
            } else {
                for (int32_t k = 0; k < ic; ++k) t[k] = zp;
            }
        }
    }
    for (; t < tmp + 4 * groups; ++t) *t = zp;
    widen(dst, tmp, 4 * groups, off2, p->input_offset);
}

/* The dense patches of a tile's n output pixels from pix0 on (pixel t: row t % 2 of pair t / 2).
 * The output position is stepped, not divided out per pixel; a patch wholly inside the image
 * (the stem's patches: VALID padding) is fh runs of filter_w * input_c contiguous bytes, copied
 * a word at a time into tmp (37x39x3 -> 18x19x16 stem: ~420 -> ~110 instructions per pixel
 * to widen). Others (the padding, dilation_w > 1) take widen_dense. The bytes copied are the
 * ones widen_dense gathers, so the lanes are the same. */
/* fh runs of `run` contiguous bytes, `step` apart, into d: a word at a time (LDR and STR take
 * any alignment on the Cortex-M7). */
CONV_INLINE void copy_runs(int8_t *d, const int8_t *src, size_t step, int32_t fh, int32_t run) {
    for (int32_t fy = 0; fy < fh; ++fy, src += step, d += run) {
        int32_t k = 0;
        for (; k + 4 <= run; k += 4) __builtin_memcpy(d + k, src + k, 4);
        for (; k < run; ++k) d[k] = src[k];
    }
}

/* The stem's patch (3x3 taps over 3 channels, wholly inside: three runs of 9 bytes, `step`
 * apart) widened straight into its 8 groups, without the copy: the 27 bytes and the zero
 * point (lane 27, which the offset makes 0) as 7 words, each read where it starts (LDR takes
 * any alignment; no read past the third run's last byte), one byte or half spliced in where a
 * word spans two runs; the 8th group is zero. The lanes are widen_dense's. */
CONV_INLINE void widen_stem(uint64_t *dst, const int8_t *r0, size_t step, uint32_t off2,
                            uint32_t zp) {
    const int8_t *r1 = r0 + step, *r2 = r1 + step;
    uint32_t v = dsp_read4(r0);
    dst[0] = group(dsp_sxtab16(off2, v), dsp_sxtab16_hi(off2, v));
    v = dsp_read4(r0 + 4);
    dst[2] = group(dsp_sxtab16(off2, v), dsp_sxtab16_hi(off2, v));
    v = (uint32_t)(uint8_t)r0[8] | (dsp_read4(r1) << 8);
    dst[4] = group(dsp_sxtab16(off2, v), dsp_sxtab16_hi(off2, v));
    v = dsp_read4(r1 + 3);
    dst[6] = group(dsp_sxtab16(off2, v), dsp_sxtab16_hi(off2, v));
    v = (dsp_read4(r1 + 7) & 0xFFFFu) | (dsp_read4(r2) << 16);
    dst[8] = group(dsp_sxtab16(off2, v), dsp_sxtab16_hi(off2, v));
    v = dsp_read4(r2 + 2);
    dst[10] = group(dsp_sxtab16(off2, v), dsp_sxtab16_hi(off2, v));
    v = (dsp_read4(r2 + 5) >> 8) | (zp << 24);
    dst[12] = group(dsp_sxtab16(off2, v), dsp_sxtab16_hi(off2, v));
    dst[14] = 0;
}

static __attribute__((noinline)) void widen_dense_tile(uint64_t *xbuf, int32_t pix0, int32_t n,
                                                       int32_t groups,
                                                       const struct conv2d_s8_params *p,
                                                       const struct conv_ops *o, uint32_t off2,
                                                       int8_t *tmp) {
    const int32_t ic = p->input_c, fh = p->filter_h, fw = p->filter_w;
    const int32_t ih = p->input_h, iw = p->input_w, oh = p->output_h, ow = p->output_w;
    const int32_t run = fw * ic, bytes = 4 * groups;
    const size_t row_step = (size_t)p->dilation_h * (size_t)iw * (size_t)ic;
    const int8_t zp = (int8_t)(-p->input_offset);
    /* The bytes after the patch: the zero point (the fast copy writes only the patch). */
    for (int32_t k = fh * run; k < bytes; ++k) tmp[k] = zp;
    /* Output columns whose patch is inside the image's width: ox in [xlo, xhi). */
    int32_t xlo = 0, xhi = 0;
    if (p->dilation_w == 1) {
        while (xlo < ow && xlo * p->stride_w - p->pad_w < 0) ++xlo;
        xhi = xlo;
        while (xhi < ow && xhi * p->stride_w - p->pad_w + fw <= iw) ++xhi;
    }
    const ptrdiff_t col_step = (ptrdiff_t)p->stride_w * (ptrdiff_t)ic;
    const int stem = fh == 3 && fw == 3 && ic == 3 && groups == 8; /* widen_stem */
    int32_t ox = pix0 % ow, oy = (pix0 / ow) % oh, b = pix0 / (ow * oh);
    for (int32_t t = 0; t < n;) {
        /* A stretch of one output row: pixels ox .. ox + m - 1. */
        int32_t m = ow - ox;
        if (m > n - t) m = n - t;
        const int32_t y0 = oy * p->stride_h - p->pad_h;
        const int y_in = y0 >= 0 && y0 + (fh - 1) * p->dilation_h < ih;
        /* The patch's first byte, as an offset (a pointer only once inside the image). */
        ptrdiff_t at = (((ptrdiff_t)b * ih + y0) * iw + (ptrdiff_t)ox * p->stride_w - p->pad_w) *
                       (ptrdiff_t)ic;
        for (int32_t k = 0; k < m; ++k, ++t, at += col_step) {
            uint64_t *dst = xbuf + (t >> 1) * 2 * groups + (t & 1);
            const int32_t x = ox + k;
            if (y_in && x >= xlo && x < xhi) {
                const int8_t *src = o->input + at;
                if (stem) {
                    widen_stem(dst, src, row_step, off2, (uint8_t)zp);
                } else {
                    copy_runs(tmp, src, row_step, fh, run);
                    widen(dst, tmp, bytes, off2, p->input_offset);
                }
            } else {
                widen_dense(dst, pix0 + t, groups, p, o, off2, tmp);
            }
        }
        ox += m;
        if (ox == ow) {
            ox = 0;
            if (++oy == oh) {
                oy = 0;
                ++b;
            }
        }
    }
}

/* Widens output pixel `pix`'s input patch (taps in the padding are zero lanes) into one row
 * of an interleaved pair. */
static void widen_patch(uint64_t *dst, int32_t pix, int32_t groups,
                        const struct conv2d_s8_params *p, const struct conv_ops *o, uint32_t off2) {
    const uint64_t *const end = dst + 2 * groups;
    if (p->filter_h == 1 && p->filter_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
        p->pad_h == 0 && p->pad_w == 0 && p->input_w == p->output_w &&
        p->input_h == p->output_h) { /* pointwise: output pixel = input pixel */
        dst = widen(dst, o->input + (size_t)pix * (size_t)p->input_c, p->input_c, off2,
                    p->input_offset);
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
            dst = widen(dst, src, p->input_c, off2, p->input_offset);
        }
    }
    widen_zeros(dst, end);
}

/* Widens output channel oc's filter row, tap by tap as widen_patch lays out the input. */
static void widen_row(uint64_t *dst, int32_t oc, int32_t groups, const struct conv2d_s8_params *p,
                      const struct conv_ops *o) {
    const uint64_t *const end = dst + 2 * groups;
    const int32_t taps = p->filter_h * p->filter_w;
    const int8_t *row = row_of(oc, (size_t)taps * (size_t)p->input_c, p, o);
    if (p->input_c % 4 == 0 || dense_patch(p)) { /* whole groups, or dense: one run */
        dst = widen(dst, row, taps * p->input_c, 0, 0);
    } else {
        for (int32_t t = 0; t < taps; ++t)
            dst = widen(dst, row + (size_t)t * p->input_c, p->input_c, 0, 0);
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

/* Output pixels 0 .. n - 1 of a tile (widened in xbuf) for the output channel pair whose
 * rows are widened in wbuf: requantized with requant_fast.h (both channels on its fast path,
 * two channels; `full`: the activation range is all of int8, so SSAT is the whole clamp). */
CONV_INLINE void pair_fast(const uint64_t *x, const uint64_t *wbuf, int32_t groups, int32_t n,
                           int8_t *dst, int32_t cout, const int32_t b[2], const int32_t m2[2],
                           const int32_t s1[2], int32_t c, int32_t lo, int32_t hi, int full) {
    const int32_t b0 = b[0], b1 = b[1], m20 = m2[0], m21 = m2[1], s10 = s1[0], s11 = s1[1];
    const size_t step = 2 * (size_t)groups;
    for (int32_t t = n >> 1; t > 0; --t, x += step) {
        int32_t acc[4] = {b0, b1, b0, b1};
        gemm_2x2(x, wbuf, groups, acc);
        int32_t y0 = rq_fused(acc[0], m20, s10, c), y1 = rq_fused(acc[1], m21, s11, c);
        int32_t y2 = rq_fused(acc[2], m20, s10, c), y3 = rq_fused(acc[3], m21, s11, c);
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
        int32_t acc[4] = {b0, b1, b0, b1};
        gemm_2x2(x, wbuf, groups, acc);
        dst[0] = (int8_t)fp_clamp(rq_fused(acc[0], m20, s10, c), lo, hi);
        dst[1] = (int8_t)fp_clamp(rq_fused(acc[1], m21, s11, c), lo, hi);
    }
}

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
/* The constants of pair_fast_m7, at the offsets its assembly reads (dst and pairs are
 * updated as it goes). */
struct pair_m7 {
    int32_t b0, b1, m20, m21, s10, s11, c;
    const uint64_t *w;
    int32_t iters, tail;
    int8_t *dst;
    int32_t cout, pairs;
};
_Static_assert(offsetof(struct pair_m7, w) == 28 && offsetof(struct pair_m7, tail) == 36 &&
                   offsetof(struct pair_m7, dst) == 40 && offsetof(struct pair_m7, pairs) == 48,
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
    "ldrd r11, r7, [r1, #28]\n"
/* Requantization (requant_fast.h's rq_fused, 4 outputs), stores, the next pair. */
#define M7_FINISH                  \
    "ldrd r4, r5, [r1, #8]\n"      \
    "smmlar r2, r2, r4, r2\n"      \
    "smmlar r12, r12, r4, r12\n"   \
    "smmlar r3, r3, r5, r3\n"      \
    "smmlar lr, lr, r5, lr\n"      \
    "add r2, r2, r2, asr #31\n"    \
    "add r12, r12, r12, asr #31\n" \
    "add r3, r3, r3, asr #31\n"    \
    "add lr, lr, lr, asr #31\n"    \
    "ldrd r4, r5, [r1, #16]\n"     \
    "asr r2, r2, r4\n"             \
    "asr r12, r12, r4\n"           \
    "asr r3, r3, r5\n"             \
    "asr lr, lr, r5\n"             \
    "ldr r4, [r1, #24]\n"          \
    "qadd r2, r2, r4\n"            \
    "qadd r12, r12, r4\n"          \
    "qadd r3, r3, r4\n"            \
    "qadd lr, lr, r4\n"            \
    "ssat r2, #8, r2, asr #1\n"    \
    "ssat r12, #8, r12, asr #1\n"  \
    "ssat r3, #8, r3, asr #1\n"    \
    "ssat lr, #8, lr, asr #1\n"    \
    "ldrd r5, r6, [r1, #40]\n"     \
    "strb r2, [r5]\n"              \
    "strb r3, [r5, #1]\n"          \
    "add r5, r5, r6\n"             \
    "strb r12, [r5]\n"             \
    "strb lr, [r5, #1]\n"          \
    "add r5, r5, r6\n"             \
    "ldr r8, [r1, #48]\n"          \
    "str r5, [r1, #40]\n"          \
    "subs r8, r8, #1\n"            \
    "str r8, [r1, #48]\n"          \
    "bne 0b\n"
#define M7_CLOBBERS \
    "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory"

/* pair_fast for k->pairs pixel pairs (k->pairs >= 1), full activation range, at least 4
 * groups: the same instructions as gemm_2x2 and rq_fused (SMMLAR, ADD with ASR #31, ASR,
 * QADD, SSAT with ASR #1), written as one block so that nothing spills: the 2x2 block's bias,
 * multiply-accumulates, requantization and stores take 3 + 46 per 4 groups + 37
 * instructions. */
static __attribute__((noinline)) void pair_fast_m7(const uint64_t *x, struct pair_m7 *k) {
    register const uint64_t *rx __asm__("r0") = x;
    register struct pair_m7 *rk __asm__("r1") = k;
    __asm__ volatile(M7_START "1:\n" M7_GROUP M7_GROUP M7_GROUP M7_GROUP
                              "subs r7, r7, #1\n"
                              "bne 1b\n"
                              "ldr r7, [r1, #36]\n"
                              "cbz r7, 2f\n" M7_GROUP M7_GROUP "2:\n" M7_FINISH
                     : "+r"(rx)
                     : "r"(rk)
                     : M7_CLOBBERS);
}

/* The same for exactly 2 groups (8 input channels of a 1x1 convolution): no loop. */
static __attribute__((noinline)) void pair_fast_m7_2(const uint64_t *x, struct pair_m7 *k) {
    register const uint64_t *rx __asm__("r0") = x;
    register struct pair_m7 *rk __asm__("r1") = k;
    __asm__ volatile(M7_START M7_GROUP M7_GROUP M7_FINISH : "+r"(rx) : "r"(rk) : M7_CLOBBERS);
}

/* The same for 8 groups of which the 8th is zero in both operands (the stem's 3x3x3 = 27
 * taps densely packed: 7 groups; conv_gemm keeps the pixel pairs 8 groups apart): 7 groups
 * unrolled, no loop, the pixel pointer stepped past the zero group (3 + 77 + 1 + 37
 * instructions per 2x2 block; the loop over 8 took 3 + 92 + 6 + 37). Skipping zero lanes
 * drops products that are 0. */
static __attribute__((noinline)) void pair_fast_m7_7(const uint64_t *x, struct pair_m7 *k) {
    register const uint64_t *rx __asm__("r0") = x;
    register struct pair_m7 *rk __asm__("r1") = k;
    __asm__ volatile(M7_START M7_GROUP M7_GROUP M7_GROUP M7_GROUP M7_GROUP M7_GROUP M7_GROUP
                     "add r0, r0, #16\n" M7_FINISH
                     : "+r"(rx)
                     : "r"(rk)
                     : M7_CLOBBERS);
}
#undef M7_CLOBBERS
#undef M7_FINISH
#undef M7_START
#undef M7_GROUP
#endif

/* last_zero: the last of the groups is zero in every pixel and row (the stem). */
CONV_INLINE void pair_fast_full(const uint64_t *x, const uint64_t *wbuf, int32_t groups, int32_t n,
                                int8_t *dst, int32_t cout, const int32_t b[2], const int32_t m2[2],
                                const int32_t s1[2], int32_t c, int last_zero) {
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    if (n >= 2) {
        struct pair_m7 k = {b[0], b[1],        m2[0],      m2[1], s1[0], s1[1], c,
                            wbuf, groups >> 2, groups & 2, dst,   cout,  n >> 1};
        if (last_zero && groups == 8)
            pair_fast_m7_7(x, &k);
        else if (groups == 2)
            pair_fast_m7_2(x, &k);
        else
            pair_fast_m7(x, &k);
        x += (size_t)(n & ~1) * (size_t)groups;
        dst += (size_t)(n & ~1) * (size_t)cout;
        n &= 1;
    }
#else
    (void)last_zero;
#endif
    pair_fast(x, wbuf, groups, n, dst, cout, b, m2, s1, c, -128, 127, 1);
}
static void pair_fast_clamp(const uint64_t *x, const uint64_t *wbuf, int32_t groups, int32_t n,
                            int8_t *dst, int32_t cout, const int32_t b[2], const int32_t m2[2],
                            const int32_t s1[2], int32_t c, int32_t lo, int32_t hi) {
    pair_fast(x, wbuf, groups, n, dst, cout, b, m2, s1, c, lo, hi, 0);
}

/* The same with the reference's requantization (channels off the fast path, a lone last
 * channel). */
static void pair_ref(const uint64_t *x, const uint64_t *wbuf, int32_t groups, int32_t n,
                     int8_t *dst, int32_t cout, const int32_t b[2], const struct requant *r0,
                     const struct requant *r1, int two) {
    for (int32_t t = 0; t < n; t += 2, x += 2 * (size_t)groups) {
        int32_t acc[4] = {b[0], b[1], b[0], b[1]};
        gemm_2x2(x, wbuf, groups, acc);
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

/* conv_gemm's channel pairs from 0 on while both channels are on requant_fast.h's fast path,
 * for a full-range layer whose filter rows are whole groups (input_c % 4 == 0): the same
 * steps as conv_gemm's loop, in a function of their own so that the per-pair setup keeps its
 * values in registers (4x4x112 -> 1280, 640 pairs: ~1/3 fewer instructions between blocks).
 * Returns the first output channel left to conv_gemm's loop. */
static __attribute__((noinline)) int32_t pairs_fast_full(const uint64_t *xbuf, uint64_t *wbuf,
                                                         int32_t groups, int32_t n, int8_t *out,
                                                         const struct conv2d_s8_params *p,
                                                         const struct conv_ops *o, int32_t c) {
    const int32_t cout = p->output_c;
    const size_t size = (size_t)p->filter_h * (size_t)p->filter_w * (size_t)p->input_c;
    const uint64_t *const wend = wbuf + 2 * groups;
    int32_t oc = 0;
    for (; oc + 1 < cout; oc += 2) {
        const struct requant r0 = requant_of(oc, p, o), r1 = requant_of(oc + 1, p, o);
        if (!rq_fast_ok(r0.multiplier, r0.shift) || !rq_fast_ok(r1.multiplier, r1.shift)) break;
        widen_rows2(wbuf, row_of(oc, size, p, o), row_of(oc + 1, size, p, o), (int32_t)size, wend);
        const int32_t b[2] = {bias_of(oc, p, o), bias_of(oc + 1, p, o)};
        const int32_t m2[2] = {rq_m2(r0.multiplier), rq_m2(r1.multiplier)};
        const int32_t s1[2] = {rq_s1(r0.shift), rq_s1(r1.shift)};
        pair_fast_full(xbuf, wbuf, groups, n, out + oc, cout, b, m2, s1, c, 0);
    }
    return oc;
}

static void conv_gemm(const struct conv2d_s8_params *p, const struct conv_ops *o, int32_t groups) {
    uint64_t buf[CONV_BUF_GROUPS];
    uint64_t *const wbuf = buf, *const xbuf = buf + 2 * groups;
    /* Dense patches are gathered in the buffer's last CONV_DENSE_GROUPS groups. */
    const int dense = dense_patch(p);
    const int32_t reserved = dense ? CONV_DENSE_GROUPS : 0;
    int8_t *const tmp = dense ? (int8_t *)(buf + CONV_BUF_GROUPS - CONV_DENSE_GROUPS) : NULL;
    int32_t tile = (CONV_BUF_GROUPS - reserved - 2 * groups) / groups;
    if (tile > CONV_TILE_MAX) tile = CONV_TILE_MAX;
    tile &= ~1;
    const uint32_t off2 = dsp_pair(p->input_offset);
    const int32_t cout = p->output_c;
    const int32_t npix = p->batches * p->output_h * p->output_w;
    /* Layer constants of the fast requantization (requant_fast.h, step 4). */
    const int offset_ok = p->output_offset >= -(1 << 30) && p->output_offset < (1 << 30);
    const int32_t c = offset_ok ? 1 + 2 * p->output_offset : 0;
    const int full = p->act_min <= -128 && p->act_max >= 127;
    /* Dense patches of 4k + 1 .. 4k + 4 bytes fill an odd number of groups, padded to even by
     * a zero group (widen_dense, widen_stem, widen_row). */
    const int last_zero = dense && ((p->filter_h * p->filter_w * p->input_c + 3) / 4) % 2 == 1;
    for (int32_t pix0 = 0; pix0 < npix; pix0 += tile) {
        const int32_t n = npix - pix0 < tile ? npix - pix0 : tile;
        /* Pixel t is row t % 2 of pair t / 2. */
        if (tmp != NULL) { /* dense: one test per tile */
            widen_dense_tile(xbuf, pix0, n, groups, p, o, off2, tmp);
        } else {
            for (int32_t t = 0; t < n; ++t)
                widen_patch(xbuf + (t / 2) * 2 * groups + t % 2, pix0 + t, groups, p, o, off2);
        }
        if (n & 1) widen_zeros(xbuf + (n / 2) * 2 * groups + 1, xbuf + (n / 2 + 1) * 2 * groups);
        int32_t oc = 0;
        if (full && offset_ok && p->input_c % 4 == 0)
            oc = pairs_fast_full(xbuf, wbuf, groups, n, o->out + (size_t)pix0 * (size_t)cout, p, o,
                                 c);
        for (; oc < cout; oc += 2) {
            const int two = oc + 1 < cout;
            if (two && p->input_c % 4 == 0) {
                const size_t size = (size_t)p->filter_h * (size_t)p->filter_w * (size_t)p->input_c;
                widen_rows2(wbuf, row_of(oc, size, p, o), row_of(oc + 1, size, p, o), (int32_t)size,
                            wbuf + 2 * groups);
            } else {
                widen_row(wbuf, oc, groups, p, o);
                if (two)
                    widen_row(wbuf + 1, oc + 1, groups, p, o);
                else
                    widen_zeros(wbuf + 1, wbuf + 2 * groups);
            }
            const int32_t b[2] = {bias_of(oc, p, o), two ? bias_of(oc + 1, p, o) : 0};
            const struct requant r0 = requant_of(oc, p, o),
                                 r1 = requant_of(two ? oc + 1 : oc, p, o);
            int8_t *dst = o->out + (size_t)pix0 * (size_t)cout + (size_t)oc;
            if (two && offset_ok && rq_fast_ok(r0.multiplier, r0.shift) &&
                rq_fast_ok(r1.multiplier, r1.shift)) {
                const int32_t m2[2] = {rq_m2(r0.multiplier), rq_m2(r1.multiplier)};
                const int32_t s1[2] = {rq_s1(r0.shift), rq_s1(r1.shift)};
                if (full)
                    pair_fast_full(xbuf, wbuf, groups, n, dst, cout, b, m2, s1, c, last_zero);
                else
                    pair_fast_clamp(xbuf, wbuf, groups, n, dst, cout, b, m2, s1, c, p->act_min,
                                    p->act_max);
            } else {
                pair_ref(xbuf, wbuf, groups, n, dst, cout, b, &r0, &r1, two);
            }
        }
    }
}

/* acc += sum over n channels of w * (x + offset): 4 channels per step unpacked on the fly. */
static inline int32_t dot_direct(const int8_t *x, const int8_t *w, int32_t n, uint32_t off2,
                                 int32_t off, int32_t acc) {
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint32_t xv = dsp_read4(x + i), wv = dsp_read4(w + i);
        acc = dsp_smlad(dsp_sxtab16(off2, xv), dsp_sxtb16(wv), acc);
        acc = dsp_smlad(dsp_sxtab16_hi(off2, xv), dsp_sxtb16_hi(wv), acc);
    }
    for (; i < n; ++i) acc += (int32_t)w[i] * ((int32_t)x[i] + off);
    return acc;
}

/* Patches too large for the buffers: per output pixel and channel, tap by tap. */
static void conv_direct(const struct conv2d_s8_params *p, const struct conv_ops *o) {
    const uint32_t off2 = dsp_pair(p->input_offset);
    const size_t filter_row = (size_t)p->filter_w * (size_t)p->input_c;
    const size_t filter_size = (size_t)p->filter_h * filter_row;
    int8_t *out = o->out;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *image =
            o->input + (size_t)b * (size_t)p->input_h * (size_t)p->input_w * (size_t)p->input_c;
        for (int32_t oy = 0; oy < p->output_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < p->output_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                for (int32_t oc = 0; oc < p->output_c; ++oc) {
                    const int8_t *kernel = row_of(oc, filter_size, p, o);
                    int32_t acc = bias_of(oc, p, o);
                    for (int32_t fy = 0; fy < p->filter_h; ++fy) {
                        const int32_t y = y0 + fy * p->dilation_h;
                        if (y < 0 || y >= p->input_h) continue;
                        for (int32_t fx = 0; fx < p->filter_w; ++fx) {
                            const int32_t x = x0 + fx * p->dilation_w;
                            if (x < 0 || x >= p->input_w) continue;
                            const int8_t *in_px =
                                image +
                                ((size_t)y * (size_t)p->input_w + (size_t)x) * (size_t)p->input_c;
                            const int8_t *w =
                                kernel + (size_t)fy * filter_row + (size_t)fx * p->input_c;
                            acc = dot_direct(in_px, w, p->input_c, off2, p->input_offset, acc);
                        }
                    }
                    *out++ = finish(acc, oc, p, o);
                }
            }
        }
    }
}

/* The narrow path: pointwise convolutions over few input channels, 8 per pass (MobileNetV2's
 * expansions 8 -> 48 and 16 -> 96 and projections 16 -> 8 in the patched first stages, and
 * the projections to 8-24 channels). With 8 or 16 MACs per output, the GEMM path's per-output
 * requantization, stores and per-pair setup weigh as much as the MACs (0.42-0.50
 * MAC/instruction). Here each output channel has records packed once per call, and each
 * output pixel keeps 8 widened input channels in 4 registers while the records stream past:
 *   - the last pass (input channels input_c - 8 .. input_c - 1): 8 words per output channel
 *     (its 8 filter taps widened to 16-bit lanes in SXTB16 order, the accumulator's start,
 *     rq_m2, rq_s1 and the layer's c); per output one LDM of 8 registers, 4 SMLAD,
 *     requant_fast.h's 5 instructions and one STRB: 11 instructions for 8 MACs;
 *   - each earlier pass (input_c > 8): 5 words per output channel (8 taps and the
 *     accumulator's start: the bias for the first pass, else the partial sum the previous
 *     pass stored there); per output LDM, 4 SMLAD and a STR of the partial sum into the
 *     next pass's record: 6 instructions for 8 MACs.
 * The records live on the stack (no scratch: plans and arenas are unchanged), hence the
 * limit on output_c * (5 * passes + 3) words. Only for the full activation range and channels
 * all on requant_fast.h's fast path, output channels a multiple of 4 (the loops are unrolled
 * 8 times, entered halfway when output_c % 8 == 4); the rest takes the GEMM path. The partial
 * sums are the reference's products in another order (exact, see above). */
#define NARROW_BUF_WORDS 1536 /* 6 KB, as conv_gemm's buffer */
/* Where the narrow path measured faster than the GEMM path (MobileNetV2 at 0.35, instructions
 * on the emulated board): 8 and 16 input channels always (one chunk); more only from 64 output
 * pixels (24 -> 144, 32 -> 192, 48 -> 8/16, 64 -> 64, 96 -> 16/24; at 16 pixels 56 -> 336 was
 * 5% slower: packing the records is not amortized), up to 64 input channels in chunks of output
 * channels, 96 in one chunk. */
#define NARROW_MIN_PIXELS 64
#define NARROW_MAX_C 64
#define NARROW_MAX_C_ONE_CHUNK 96

/* The pass state shared with the assembly (its offsets are fixed below). */
struct narrow_frame {
    uint32_t off2;      /* the input offset in both 16-bit lanes */
    int32_t head;       /* output_c % 8 == 4: the loops (8 outputs per iteration) start halfway */
    const int8_t *in;   /* the next pixel's input channels */
    uint32_t *rec0;     /* the first pass's records (5 words each; = rec1 for 8 channels) */
    int8_t *out;        /* the next pixel's outputs */
    int32_t npix;       /* pixels left */
    uint32_t *rec_end;  /* the end of the last pass's records */
    int32_t mid;        /* passes between the first and the last (input_c / 8 - 2, or 0) */
    int32_t pass_bytes; /* an earlier pass's records: 20 * output_c */
    int32_t skip;       /* output channels of other chunks between two pixels' outputs */
    uint32_t *rec1;     /* the last pass's records (8 words each) */
};

/* Words of records per output channel, input_c / 8 passes. */
static int32_t narrow_words(int32_t input_c) {
    return 5 * (input_c / 8 - 1) + 8;
}

static int narrow_ok(const struct conv2d_s8_params *p, const struct conv_ops *o) {
    if (!(p->input_c % 8 == 0 && p->input_c > 0 && p->filter_h == 1 && p->filter_w == 1 &&
          p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 && p->pad_w == 0 &&
          p->input_h == p->output_h && p->input_w == p->output_w && p->output_c % 4 == 0 &&
          p->output_c > 0))
        return 0;
    const int one_chunk = p->output_c * narrow_words(p->input_c) <= NARROW_BUF_WORDS;
    if (p->input_c <= 16 ? !one_chunk
                         : (p->batches * p->output_h * p->output_w < NARROW_MIN_PIXELS ||
                            p->input_c > (one_chunk ? NARROW_MAX_C_ONE_CHUNK : NARROW_MAX_C)))
        return 0;
    if (!(p->act_min <= -128 && p->act_max >= 127 && p->output_offset >= -(1 << 30) &&
          p->output_offset < (1 << 30) && p->input_offset >= -32768 && p->input_offset < 32768))
        return 0;
    for (int32_t oc = 0; oc < (p->per_channel ? p->output_c : 1); ++oc) {
        const struct requant r = requant_of(oc, p, o);
        if (!rq_fast_ok(r.multiplier, r.shift)) return 0;
    }
    return 1;
}

/* 8 filter taps widened into 4 words, in the order the pixel's inputs are (SXTB16). */
static uint32_t *narrow_taps(uint32_t *dst, const int8_t *w) {
    const uint32_t a = dsp_read4(w), b = dsp_read4(w + 4);
    dst[0] = dsp_sxtb16(a);
    dst[1] = dsp_sxtb16_hi(a);
    dst[2] = dsp_sxtb16(b);
    dst[3] = dsp_sxtb16_hi(b);
    return dst + 4;
}

/* The records of all passes (struct narrow_frame) for output channels oc0 .. oc0 + cout - 1:
 * cout * narrow_words(input_c) words. */
static void narrow_pack(uint32_t *buf, struct narrow_frame *f, int32_t oc0, int32_t cout,
                        const struct conv2d_s8_params *p, const struct conv_ops *o) {
    const int32_t passes = p->input_c / 8;
    uint32_t *const last = buf + 5 * (size_t)(passes - 1) * (size_t)cout;
    f->rec0 = buf;
    f->rec1 = last;
    f->rec_end = last + 8 * (size_t)cout;
    f->mid = passes > 2 ? passes - 2 : 0;
    f->pass_bytes = 20 * cout;
    const uint32_t c = (uint32_t)(1 + 2 * p->output_offset);
    for (int32_t k = 0; k < cout; ++k) {
        const int32_t oc = oc0 + k;
        const int8_t *row = row_of(oc, (size_t)p->input_c, p, o);
        const uint32_t bias = (uint32_t)bias_of(oc, p, o);
        for (int32_t j = 0; j + 1 < passes; ++j) {
            uint32_t *r = buf + 5 * ((size_t)j * (size_t)cout + (size_t)k);
            narrow_taps(r, row + 8 * j);
            r[4] = j == 0 ? bias : 0; /* later passes: the partial sum, per pixel */
        }
        uint32_t *r = last + 8 * (size_t)k;
        narrow_taps(r, row + 8 * (passes - 1));
        r[4] = passes == 1 ? bias : 0;
        const struct requant q = requant_of(oc, p, o);
        r[5] = (uint32_t)rq_m2(q.multiplier);
        r[6] = (uint32_t)rq_s1(q.shift);
        r[7] = c;
    }
}

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
_Static_assert(offsetof(struct narrow_frame, head) == 4 && offsetof(struct narrow_frame, in) == 8 &&
                   offsetof(struct narrow_frame, rec0) == 12 &&
                   offsetof(struct narrow_frame, out) == 16 &&
                   offsetof(struct narrow_frame, npix) == 20 &&
                   offsetof(struct narrow_frame, rec_end) == 24 &&
                   offsetof(struct narrow_frame, mid) == 28 &&
                   offsetof(struct narrow_frame, pass_bytes) == 32 &&
                   offsetof(struct narrow_frame, skip) == 36 &&
                   offsetof(struct narrow_frame, rec1) == 40 && sizeof(struct narrow_frame) == 44,
               "narrow_m7's offsets: the assembly copies the frame to its stack");

/* Registers: r0-r3 the pixel's 8 widened inputs, r12 the record pointer; in the last pass lr
 * the output pointer; in the earlier ones r9 the next pass's accumulator words, r10 the pass's
 * end, r11 the input pointer and lr the middle passes left. The frame is copied to the stack
 * (the same offsets from sp), so that one LDM starts a pixel. The loops take 8 outputs per
 * iteration (the last pass's end test costs 3 instructions: no register is free for
 * rec_end). */
/* One output of the last pass: its record in r4-r11 (taps r4-r7, accumulator r8, m2 r9, s1
 * r10, c r11), 8 MACs, rq_fused, one byte out. */
#define NARROW_OUT              \
    "ldm r12!, {r4-r11}\n"      \
    "smlad r8, r0, r4, r8\n"    \
    "smlad r8, r1, r5, r8\n"    \
    "smlad r8, r2, r6, r8\n"    \
    "smlad r8, r3, r7, r8\n"    \
    "smmlar r9, r8, r9, r8\n"   \
    "add r9, r9, r9, asr #31\n" \
    "asr r9, r9, r10\n"         \
    "qadd r9, r9, r11\n"        \
    "ssat r9, #8, r9, asr #1\n" \
    "strb r9, [lr], #1\n"
/* One output of an earlier pass: taps r4-r7 and the accumulator's start r8; the partial sum
 * goes to the accumulator word of the next pass's record (r9, records of STRIDE bytes). */
#define NARROW_PART(STRIDE)  \
    "ldm r12!, {r4-r8}\n"    \
    "smlad r8, r0, r4, r8\n" \
    "smlad r8, r1, r5, r8\n" \
    "smlad r8, r2, r6, r8\n" \
    "smlad r8, r3, r7, r8\n" \
    "str r8, [r9], #" #STRIDE "\n"
/* The next 8 input bytes (r11, advanced) widened (+ the offset, r6) into r0-r3. */
#define NARROW_WIDEN_R6            \
    "ldr r7, [r11, #4]\n"          \
    "ldr r5, [r11], #8\n"          \
    "sxtab16 r0, r6, r5\n"         \
    "sxtab16 r1, r6, r5, ror #8\n" \
    "sxtab16 r2, r6, r7\n"         \
    "sxtab16 r3, r6, r7, ror #8\n"
/* The same with the offset reloaded (after records overwrote r6). */
#define NARROW_WIDEN "ldr r6, [sp, #0]\n" NARROW_WIDEN_R6
/* An earlier pass over the records at r12 up to r10 (8 per iteration, entered halfway per
 * head); A, B: a fresh pair of local labels. */
#define NARROW_PASS(STRIDE, A, B) \
    "ldr r4, [sp, #4]\n"                                                                 \
    "cmp r4, #0\n"                                                                       \
    "bne " #B "f\n" #A ":\n" NARROW_PART(STRIDE) NARROW_PART(STRIDE) NARROW_PART(STRIDE) \
        NARROW_PART(STRIDE) #B ":\n" NARROW_PART(STRIDE) NARROW_PART(STRIDE)             \
            NARROW_PART(STRIDE) NARROW_PART(STRIDE) "cmp r12, r10\n"                     \
    "bne " #A "b\n"

/* f->npix pixels (npix >= 1) of input_c channels: the earlier passes (FIRST: none for 8
 * channels, else the middle ones and the penultimate; each widens its inputs; they leave r12
 * at rec1, lr at out and r8 the head flag), the last pass's inputs widened (LAST), the last
 * pass, SKIP (chunks: the other chunks' outputs). */
#define NARROW_BODY(FIRST, LAST, SKIP)                 \
    "push {r4-r11, lr}\n"                              \
    "sub sp, sp, #44\n"                                \
    "ldm r0, {r1-r11}\n"                               \
    "stm sp, {r1-r11}\n"                               \
    "2:\n"                                             \
    "ldm sp, {r6, r8, r11, r12, lr}\n" FIRST LAST      \
    "str r11, [sp, #8]\n"                              \
    "cmp r8, #0\n"                                     \
    "bne 5f\n"                                         \
    "1:\n" NARROW_OUT NARROW_OUT NARROW_OUT NARROW_OUT \
    "5:\n" NARROW_OUT NARROW_OUT NARROW_OUT NARROW_OUT \
    "ldr r4, [sp, #24]\n"                              \
    "cmp r12, r4\n"                                    \
    "bne 1b\n" SKIP                                    \
    "str lr, [sp, #16]\n"                              \
    "ldr r4, [sp, #20]\n"                              \
    "subs r4, r4, #1\n"                                \
    "str r4, [sp, #20]\n"                              \
    "bne 2b\n"                                         \
    "add sp, sp, #44\n"                                \
    "pop {r4-r11, pc}\n"
/* The middle passes (input_c >= 24: mid >= 1 of them), into 5-word records. */
#define NARROW_MID \
    "ldr lr, [sp, #28]\n"                      \
    "7:\n" NARROW_WIDEN                        \
    "ldr r4, [sp, #32]\n"                      \
    "add r10, r12, r4\n"                       \
    "add r9, r10, #16\n" NARROW_PASS(20, 3, 6) \
    "subs lr, lr, #1\n"                        \
    "bne 7b\n"                                 \
    "ldr lr, [sp, #16]\n"
/* The last earlier pass, into the last pass's 8-word records (WIDEN: its inputs). */
#define NARROW_PENULTIMATE(WIDEN) \
    WIDEN                         \
    "ldr r10, [sp, #40]\n"        \
    "add r9, r10, #16\n" NARROW_PASS(32, 8, 9) "ldr r8, [sp, #4]\n"
#define NARROW_SKIP       \
    "ldr r4, [sp, #36]\n" \
    "add lr, lr, r4\n"

/* 8 input channels: the last pass only. */
static __attribute__((naked, noinline)) void narrow8_m7(struct narrow_frame *f) {
    (void)f;
    __asm__ volatile(NARROW_BODY("", NARROW_WIDEN_R6, ""));
}

/* 16 input channels: two passes. */
static __attribute__((naked, noinline)) void narrow16_m7(struct narrow_frame *f) {
    (void)f;
    __asm__ volatile(NARROW_BODY(NARROW_PENULTIMATE(NARROW_WIDEN_R6), NARROW_WIDEN, ""));
}

/* 24 or more input channels, all output channels. */
static __attribute__((naked, noinline)) void narrow_passes_m7(struct narrow_frame *f) {
    (void)f;
    __asm__ volatile(NARROW_BODY(NARROW_MID NARROW_PENULTIMATE(NARROW_WIDEN), NARROW_WIDEN, ""));
}

/* The same for a chunk of the output channels (skip: the others). */
static __attribute__((naked, noinline)) void narrow_chunk_m7(struct narrow_frame *f) {
    (void)f;
    __asm__ volatile(
        NARROW_BODY(NARROW_MID NARROW_PENULTIMATE(NARROW_WIDEN), NARROW_WIDEN, NARROW_SKIP));
}
#undef NARROW_SKIP
#undef NARROW_PENULTIMATE
#undef NARROW_MID
#undef NARROW_BODY
#undef NARROW_PASS
#undef NARROW_WIDEN
#undef NARROW_WIDEN_R6
#undef NARROW_PART
#undef NARROW_OUT
#else
/* 8 input bytes (+ the offset) as 4 words of 16-bit lanes, in SXTB16 order. */
static void narrow_widen(uint32_t x[4], const int8_t *in, uint32_t off2) {
    const uint32_t a = dsp_read4(in), b = dsp_read4(in + 4);
    x[0] = dsp_sxtab16(off2, a);
    x[1] = dsp_sxtab16_hi(off2, a);
    x[2] = dsp_sxtab16(off2, b);
    x[3] = dsp_sxtab16_hi(off2, b);
}

static int32_t narrow_dot(const uint32_t x[4], const uint32_t *r, int32_t acc) {
    acc = dsp_smlad(x[0], r[0], acc);
    acc = dsp_smlad(x[1], r[1], acc);
    acc = dsp_smlad(x[2], r[2], acc);
    return dsp_smlad(x[3], r[3], acc);
}

/* The assembly's steps in portable C (the host twin). */
static void narrow_c(struct narrow_frame *f) {
    const int32_t earlier = f->rec1 == f->rec0 ? 0 : f->mid + 1;
    const size_t cout = (size_t)f->pass_bytes / 20;
    for (; f->npix > 0; --f->npix) {
        uint32_t x[4];
        const uint32_t *r = f->rec0;
        for (int32_t j = 0; j < earlier; ++j) {
            narrow_widen(x, f->in, f->off2);
            f->in += 8;
            /* the next pass's accumulator words: 5-word records, or the last pass's 8 */
            const size_t stride = j + 1 < earlier ? 5 : 8;
            uint32_t *q = (j + 1 < earlier ? (uint32_t *)r + 5 * cout : f->rec1) + 4;
            for (size_t oc = 0; oc < cout; ++oc, r += 5, q += stride)
                *q = (uint32_t)narrow_dot(x, r, (int32_t)r[4]);
        }
        narrow_widen(x, f->in, f->off2);
        f->in += 8;
        for (r = f->rec1; r < f->rec_end; r += 8) {
            const int32_t acc = narrow_dot(x, r, (int32_t)r[4]);
            *f->out++ = (int8_t)rq_fused(acc, (int32_t)r[5], (int32_t)r[6], (int32_t)r[7]);
        }
        f->out += f->skip;
    }
}
#endif

static __attribute__((noinline)) void conv_narrow(const struct conv2d_s8_params *p,
                                                  const struct conv_ops *o) {
    uint32_t buf[NARROW_BUF_WORDS];
    const int32_t npix = p->batches * p->output_h * p->output_w, cout = p->output_c;
    if (npix <= 0) return;
    /* Output channels per chunk (a multiple of 4); 8 and 16 input channels: one chunk. */
    int32_t chunk = (NARROW_BUF_WORDS / narrow_words(p->input_c)) & ~3;
    if (chunk > cout) chunk = cout;
    for (int32_t oc0 = 0; oc0 < cout; oc0 += chunk) {
        const int32_t n = cout - oc0 < chunk ? cout - oc0 : chunk;
        struct narrow_frame f = {.in = o->input,
                                 .out = o->out + oc0,
                                 .npix = npix,
                                 .off2 = dsp_pair(p->input_offset),
                                 .head = n % 8 == 4,
                                 .skip = cout - n};
        narrow_pack(buf, &f, oc0, n, p, o);
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
        if (p->input_c > 16 && n < cout)
            narrow_chunk_m7(&f);
        else if (p->input_c > 16)
            narrow_passes_m7(&f);
        else if (p->input_c == 16)
            narrow16_m7(&f);
        else
            narrow8_m7(&f);
#else
        narrow_c(&f);
#endif
    }
}

void conv2d_s8_dsp_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct conv2d_s8_params p = *(const struct conv2d_s8_params *)params;
    const struct conv_ops o = {
        .input = operands[CONV2D_S8_INPUT],
        .filter = operands[CONV2D_S8_FILTER],
        .trained_filter = operands[CONV2D_S8_TRAINED_FILTER],
        .bias = p.has_bias ? (const int32_t *)operands[CONV2D_S8_BIAS] : NULL,
        .trained_bias = operands[CONV2D_S8_TRAINED_BIAS],
        .multipliers = operands[CONV2D_S8_MULTIPLIERS],
        .shifts = operands[CONV2D_S8_SHIFTS],
        .out = operands[CONV2D_S8_OUTPUT],
    };
    const int32_t groups = patch_groups(&p);
    if (narrow_ok(&p, &o))
        conv_narrow(&p, &o);
    else if (2 * groups <= CONV_WBUF_GROUPS)
        conv_gemm(&p, &o, groups);
    else
        conv_direct(&p, &o);
}

/* The selector, the runtime's entry for conv2d_s8 (ops.def): the DSP variant above when the
 * build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (conv2d_s8.c). The DSP
 * variant falls back to the reference itself for the shapes it does not take. */
void conv2d_s8_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        conv2d_s8_dsp_run(params, operands, scratch);
    else
        conv2d_s8_ref_run(params, operands, scratch);
}
