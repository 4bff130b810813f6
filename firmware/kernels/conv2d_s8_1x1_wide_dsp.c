/* conv2d_s8's wide 1x1 variant: pointwise convolutions over more than 512 input channels (MCUNet's
 * 4x4x576 -> 96). Bit-identical with conv2d_s8_ref_run (see conv2d_s8_dsp.c for the exactness of
 * reordered int32 sums and of requant_fast.h).
 *
 * Why a variant of its own: the GEMM variant widens two filter rows per tile of pixels, and at
 * these depths its buffer holds only 2 pixels beside the two rows, so every filter byte is widened
 * once per 2 pixels (about 1 instruction per byte against 4 MACs), which took a quarter of the
 * layer (0.76 MAC/instruction). Here the same buffer holds the widened patches of 4 pixels and
 * nothing else; filter rows stay int8 and are unpacked on the fly (SXTB16, once per 4 taps, for
 * 4 pixels at a time). Per 4 taps of one output channel: LDR, 2 SXTB16, 4 LDRD and 8 SMLAD, 16
 * MACs in 15 instructions, with no widening of the filter at all. The 4 pixels' groups are
 * interleaved (group j of pixel t at xbuf[4 j + t]), so one pointer walks them. */
#include "conv2d_s8_dsp.h"

#define WIDE_TILE 4 /* pixels per tile */

/* Whether the variant takes the layer: a pointwise convolution (conv2d_s8_gemm_dsp's widen_patch
 * fast case) over whole groups, whose GEMM tile would be at most 2 pixels, and whose planned DSP
 * buffer (conv2d_s8_dsp_buffer_size, which this variant does not change) holds 4 widened pixels. */
int conv2d_s8_1x1_wide_dsp_ok(const struct conv2d_s8_params *p) {
    if (!(p->filter_h == 1 && p->filter_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
          p->pad_h == 0 && p->pad_w == 0 && p->input_h == p->output_h &&
          p->input_w == p->output_w && p->input_c % 4 == 0 && p->input_c > 0))
        return 0;
    const int32_t groups = patch_groups(p);
    if (2 * groups > CONV_WBUF_GROUPS_1X1 || gemm_tile(groups, 0) > 2) return 0;
    return conv2d_s8_dsp_buffer_size(p) >= conv2d_s8_1x1_wide_dsp_buffer_size(p);
}

size_t conv2d_s8_1x1_wide_dsp_buffer_size(const struct conv2d_s8_params *p) {
    return (size_t)WIDE_TILE * (size_t)p->input_c * sizeof(int16_t);
}

/* acc[t] += filter row w (int8, `groups` groups of 4 taps) . widened pixel t of the tile at x,
 * t = 0..3. */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
/* One group: the row's 4 taps unpacked (r5: taps 0 and 2, r4: taps 1 and 3), then each pixel's
 * two words (LDRD) against them. */
#define WIDE_GROUP_ASM             \
    "ldr r4, [%[w]], #4\n"         \
    "sxtb16 r5, r4\n"              \
    "sxtb16 r4, r4, ror #8\n"      \
    "ldrd r6, r8, [%[x]], #8\n"    \
    "smlad %[a0], r6, r5, %[a0]\n" \
    "smlad %[a0], r8, r4, %[a0]\n" \
    "ldrd r6, r8, [%[x]], #8\n"    \
    "smlad %[a1], r6, r5, %[a1]\n" \
    "smlad %[a1], r8, r4, %[a1]\n" \
    "ldrd r6, r8, [%[x]], #8\n"    \
    "smlad %[a2], r6, r5, %[a2]\n" \
    "smlad %[a2], r8, r4, %[a2]\n" \
    "ldrd r6, r8, [%[x]], #8\n"    \
    "smlad %[a3], r6, r5, %[a3]\n" \
    "smlad %[a3], r8, r4, %[a3]\n"

CONV_INLINE void wide_1x4(const uint64_t *x, const int8_t *w, int32_t groups, int32_t acc[4]) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t n = groups >> 2;
    if (n > 0) /* 4 groups (64 MACs) per iteration */
        __asm__ volatile("1:\n" WIDE_GROUP_ASM WIDE_GROUP_ASM WIDE_GROUP_ASM WIDE_GROUP_ASM
                         "subs %[n], %[n], #1\n"
                         "bne 1b\n"
                         : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x),
                           [w] "+r"(w), [n] "+r"(n)
                         :
                         : "r4", "r5", "r6", "r8", "cc", "memory");
    for (n = groups & 3; n > 0; --n)
        __asm__ volatile(
            WIDE_GROUP_ASM
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x), [w] "+r"(w)
            :
            : "r4", "r5", "r6", "r8", "memory");
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
#undef WIDE_GROUP_ASM
#else
CONV_INLINE void wide_1x4(const uint64_t *x, const int8_t *w, int32_t groups, int32_t acc[4]) {
    for (int32_t j = 0; j < groups; ++j, w += 4) {
        const uint32_t v = dsp_read4(w), we = dsp_sxtb16(v), wo = dsp_sxtb16_hi(v);
        for (int32_t t = 0; t < WIDE_TILE; ++t) {
            uint32_t xe, xo;
            dsp_load_pair(&x, &xe, &xo);
            acc[t] = dsp_smlad(xo, wo, dsp_smlad(xe, we, acc[t]));
        }
    }
}
#endif

/* Pixels pix0 .. pix0 + n - 1 (n <= 4) widened (+ the input offset) into the tile, interleaved;
 * the groups of missing pixels (a last tile of fewer than 4) are zero, their sums unused. */
static void wide_widen_tile(uint64_t *xbuf, const int8_t *in, int32_t n, int32_t groups,
                            uint32_t off2) {
    for (int32_t t = 0; t < WIDE_TILE; ++t) {
        uint64_t *dst = xbuf + t;
        if (t >= n) {
            for (int32_t j = 0; j < groups; ++j, dst += WIDE_TILE) *dst = 0;
            continue;
        }
        const int8_t *src = in + (size_t)t * 4 * (size_t)groups;
        for (int32_t j = 0; j < groups; ++j, src += 4, dst += WIDE_TILE) {
            const uint32_t v = dsp_read4(src);
            *dst = group(dsp_sxtab16(off2, v), dsp_sxtab16_hi(off2, v));
        }
    }
}

void conv2d_s8_1x1_wide_dsp(const struct conv2d_s8_params *p, const struct conv_ops *o) {
    uint64_t *const xbuf = o->buf; /* conv2d_s8_1x1_wide_dsp_buffer_size bytes */
    const int32_t groups = p->input_c / 4, cout = p->output_c;
    const int32_t npix = p->batches * p->output_h * p->output_w;
    const uint32_t off2 = dsp_pair(p->input_offset);
    const int offset_ok = p->output_offset >= -(1 << 30) && p->output_offset < (1 << 30);
    const int32_t c = offset_ok ? 1 + 2 * p->output_offset : 0;
    for (int32_t pix0 = 0; pix0 < npix; pix0 += WIDE_TILE) {
        const int32_t n = npix - pix0 < WIDE_TILE ? npix - pix0 : WIDE_TILE;
        wide_widen_tile(xbuf, o->input + (size_t)pix0 * (size_t)p->input_c, n, groups, off2);
        int8_t *const out = o->out + (size_t)pix0 * (size_t)cout;
        for (int32_t oc = 0; oc < cout; ++oc) {
            const int32_t b = bias_of(oc, p, o);
            int32_t acc[WIDE_TILE] = {b, b, b, b};
            wide_1x4(xbuf, row_of(oc, (size_t)p->input_c, p, o), groups, acc);
            const struct requant r = requant_of(oc, p, o);
            if (offset_ok && rq_fast_ok(r.multiplier, r.shift)) {
                const int32_t m2 = rq_m2(r.multiplier), s1 = rq_s1(r.shift);
                for (int32_t t = 0; t < n; ++t)
                    out[(size_t)t * (size_t)cout + (size_t)oc] =
                        (int8_t)fp_clamp(rq_fused(acc[t], m2, s1, c), p->act_min, p->act_max);
            } else {
                for (int32_t t = 0; t < n; ++t)
                    out[(size_t)t * (size_t)cout + (size_t)oc] = requantize(acc[t], &r);
            }
        }
    }
}
