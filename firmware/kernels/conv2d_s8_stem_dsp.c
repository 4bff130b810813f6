/* conv2d_s8's GEMM variant (conv2d_s8_gemm_dsp.c), its widening of dense patches: patches of
 * a few input channels that are not a multiple of 4 (the 3-channel stem), packed tap after
 * tap with no lanes between, read straight from the image where they lie inside it.
 * Bit-identical with conv2d_s8_ref_run (see conv2d_s8_dsp.c). */
#include "conv2d_s8_dsp.h"

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
    widen(dst, tmp, 4 * groups, off2, p->input_offset, 0);
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
 * word spans two runs. The 8th group is left as it is: the filter rows' 8th group is zero
 * (widen_row), so its products are 0 whatever the lanes hold (pair_fast_m7_7 skips it; the C
 * blocks multiply it by those zeros), 3 instructions a pixel saved. The lanes are
 * widen_dense's. */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
/* The same in one block: per group one STRD of both lane words (GCC stored them one word at a
 * time), the half of the second run's tail read with LDRH (no UXTH), the runs addressed from r0
 * with `step` as a register: 37 instructions per patch where GCC's took ~45. */
CONV_INLINE void widen_stem(uint64_t *dst, const int8_t *r0, size_t step, uint32_t off2,
                            uint32_t zp) {
    const uint32_t zp24 = zp << 24;
    __asm__ volatile(
        "ldr r4, [%[r]]\n"
        "sxtab16 r5, %[o], r4\n"
        "sxtab16 r6, %[o], r4, ror #8\n"
        "strd r5, r6, [%[d]]\n"
        "ldr r4, [%[r], #4]\n"
        "sxtab16 r5, %[o], r4\n"
        "sxtab16 r6, %[o], r4, ror #8\n"
        "strd r5, r6, [%[d], #16]\n"
        "ldrb r4, [%[r], #8]\n"
        "ldr r5, [%[r], %[s]]\n"
        "add %[r], %[r], %[s]\n"
        "orr r4, r4, r5, lsl #8\n"
        "sxtab16 r5, %[o], r4\n"
        "sxtab16 r6, %[o], r4, ror #8\n"
        "strd r5, r6, [%[d], #32]\n"
        "ldr r4, [%[r], #3]\n"
        "sxtab16 r5, %[o], r4\n"
        "sxtab16 r6, %[o], r4, ror #8\n"
        "strd r5, r6, [%[d], #48]\n"
        "ldrh r4, [%[r], #7]\n"
        "ldr r5, [%[r], %[s]]\n"
        "add %[r], %[r], %[s]\n"
        "orr r4, r4, r5, lsl #16\n"
        "sxtab16 r5, %[o], r4\n"
        "sxtab16 r6, %[o], r4, ror #8\n"
        "strd r5, r6, [%[d], #64]\n"
        "ldr r4, [%[r], #2]\n"
        "sxtab16 r5, %[o], r4\n"
        "sxtab16 r6, %[o], r4, ror #8\n"
        "strd r5, r6, [%[d], #80]\n"
        "ldr r4, [%[r], #5]\n"
        "orr r4, %[z], r4, lsr #8\n"
        "sxtab16 r5, %[o], r4\n"
        "sxtab16 r6, %[o], r4, ror #8\n"
        "strd r5, r6, [%[d], #96]\n"
        : [r] "+r"(r0)
        : [d] "r"(dst), [s] "r"(step), [o] "r"(off2), [z] "r"(zp24)
        : "r4", "r5", "r6", "cc", "memory");
}
#else
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
}
#endif

/* Pixels t0 .. t1 - 1 of the tile (consecutive in one output row, every patch inside the image,
 * the first at src) widened by widen_stem: pixel t is row t % 2 of pair t / 2, so the next
 * pixel's groups start 1 group on (t even) or 2 * 8 - 1 on (t odd); the pointers are stepped,
 * nothing is divided or tested per pixel. */
static void widen_stem_run(uint64_t *xbuf, int32_t t0, int32_t t1, const int8_t *src,
                           ptrdiff_t col_step, size_t row_step, uint32_t off2, uint32_t zp) {
    uint64_t *dst = xbuf + (t0 >> 1) * 16 + (t0 & 1);
    for (int32_t t = t0; t < t1; ++t, src += col_step) {
        widen_stem(dst, src, row_step, off2, zp);
        dst += (t & 1) ? 15 : 1;
    }
}

__attribute__((noinline)) void conv2d_s8_stem_dsp_widen_tile(uint64_t *xbuf, int32_t pix0,
                                                             int32_t n, int32_t groups,
                                                             const struct conv2d_s8_params *p,
                                                             const struct conv_ops *o,
                                                             uint32_t off2, int8_t *tmp) {
    const int32_t ic = p->input_c, fh = p->filter_h, fw = p->filter_w;
    const int32_t ih = p->input_h, iw = p->input_w, oh = p->output_h, ow = p->output_w;
    const int32_t run = fw * ic, bytes = 4 * groups;
    const size_t row_step = (size_t)p->dilation_h * (size_t)iw * (size_t)ic;
    const int8_t zp = (int8_t)(-p->input_offset);
    /* The bytes after the patch: the zero point (the fast copy writes only the patch). */
    for (int32_t k = fh * run; k < bytes; ++k) tmp[k] = zp;
    /* Output columns whose patch is inside the image's width: ox in [xlo, xhi), the first with
     * ox * stride_w >= pad_w, the last with ox * stride_w - pad_w + fw <= iw (worked out, not
     * searched: the search took ~130 instructions per tile of the 19-wide stem). */
    int32_t xlo = 0, xhi = 0;
    if (p->dilation_w == 1) {
        const int32_t sw = p->stride_w, room = iw - fw + p->pad_w;
        xlo = p->pad_w > 0 ? (p->pad_w + sw - 1) / sw : 0;
        if (xlo > ow) xlo = ow;
        xhi = room >= 0 ? room / sw + 1 : 0;
        if (xhi > ow) xhi = ow;
        if (xhi < xlo) xhi = xlo;
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
        int32_t k = 0;
        if (stem && y_in) { /* the run of patches inside the image, in one go */
            const int32_t a = ox >= xlo ? 0 : (xlo - ox < m ? xlo - ox : m);
            const int32_t e = ox + m < xhi ? m : xhi - ox;
            for (; k < a; ++k, ++t, at += col_step)
                widen_dense(xbuf + (t >> 1) * 2 * groups + (t & 1), pix0 + t, groups, p, o, off2,
                            tmp);
            if (e > k) {
                widen_stem_run(xbuf, t, t + e - k, o->input + at, col_step, row_step, off2,
                               (uint8_t)zp);
                at += (ptrdiff_t)(e - k) * col_step;
                t += e - k;
                k = e;
            }
        }
        for (; k < m; ++k, ++t, at += col_step) {
            uint64_t *dst = xbuf + (t >> 1) * 2 * groups + (t & 1);
            const int32_t x = ox + k;
            if (!stem && y_in && x >= xlo && x < xhi) { /* (the stem's took the run above) */
                copy_runs(tmp, o->input + at, row_step, fh, run);
                widen(dst, tmp, bytes, off2, p->input_offset, 0);
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

size_t conv2d_s8_stem_dsp_buffer_size(const struct conv2d_s8_params *p) {
    return dense_patch(p) ? CONV_DENSE_GROUPS * sizeof(uint64_t) : 0;
}
