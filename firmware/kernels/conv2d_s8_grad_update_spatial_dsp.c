/* conv2d_s8_grad_update's weight gradient with SMLAD over the spatial dimension: the variant for
 * layers with few output positions (4x4 and 8x8 maps, MCUNet's and MobileNetV2's late 1x1
 * layers) and many trained rows. Bit-identical with conv2d_s8_grad_update_ref_run.
 *
 * acc[c, t] = sum over positions q of g[q, c] * X[t, q], with X[t, q] = x[q through tap t] - z_x
 * (0 where the tap reads the padding: the reference skips it). Once per call the saved input is
 * transposed into X: per tap t, the positions' values as 16-bit lanes, two positions a word
 * (filter_size * ceil(P / 2) words, the scratch). Per trained row c, its gradients (the clamp
 * mask applied) are packed the same way, two positions a word; then each acc[c, t] is one
 * SMLAD per two positions: per pair of rows sharing each word of X, 3 loads and 4 SMLAD for 8
 * MACs (the 1x1 path in conv2d_s8_grad_update_dsp.c pairs positions per input channel: about 16
 * instructions for 8 MACs, plus the gathering per row). A row whose gradient is zero everywhere
 * skips the sums. The sums are the reference's products in another order (exact in int32,
 * wrapping alike), and the weight step is the reference's (gu_step_row: same factor, same
 * draws in the same order), so the weights and the generator's state after the call are the
 * same. The 16-bit lanes hold x - z_x in [-255, 255] and g in [-128, 127]. */
#include "conv2d_s8_grad_update_dsp.h"

/* X for every tap and position, and where the rows' packed gradients and sums go. */
struct spatial {
    uint32_t *x;  /* [filter_size][pw] */
    uint32_t *g0; /* [pw], two rows' packed gradients */
    uint32_t *g1;
    int32_t *a0; /* [filter_size], two rows' sums */
    int32_t *a1;
    int32_t pw, taps; /* words per tap row (ceil(P / 2)), filter_size */
};

static inline uint32_t lanes(int32_t lo, int32_t hi) {
    return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16);
}

/* d[k * step] = src[k] + offset for k < kc: per 4 channels one word of input and SXTAB16
 * twice (the offset added while widening), the stride and offset in registers (GCC reloaded
 * both per value around the int16 stores). */
static void widen_column(int16_t *d, const int8_t *src, int32_t kc, size_t step, int32_t offset) {
    const uint32_t off2 = dsp_pair(offset);
    int32_t k = 0;
    for (; k + 4 <= kc; k += 4, d += 4 * step) {
        const uint32_t v = dsp_read4(src + k);
        const uint32_t e = dsp_sxtab16(off2, v), o = dsp_sxtab16_hi(off2, v);
        d[0] = (int16_t)e, d[step] = (int16_t)o;
        d[2 * step] = (int16_t)(e >> 16), d[3 * step] = (int16_t)(o >> 16);
    }
    for (; k < kc; ++k, d += step) *d = (int16_t)((int32_t)src[k] + offset);
}

/* Fills X: position q's input through each tap (the offset added), 0 in the padding. */
static void transpose_input(const struct conv2d_s8_grad_update_params *p, const int8_t *input,
                            const struct spatial *s) {
    const int32_t kc = p->input_c, fw = p->filter_w;
    const size_t step = 2 * (size_t)s->pw; /* int16 from one tap row to the next */
    int16_t *x16 = (int16_t *)s->x;        /* little-endian: lane 0 of word j is position 2j */
    int32_t q = 0;
    for (int32_t b = 0; b < p->batches; ++b)
        for (int32_t oy = 0; oy < p->output_h; ++oy)
            for (int32_t ox = 0; ox < p->output_w; ++ox, ++q)
                for (int32_t fy = 0; fy < p->filter_h; ++fy) {
                    const int32_t y = oy * p->stride_h - p->pad_h + fy * p->dilation_h;
                    for (int32_t fx = 0; fx < fw; ++fx) {
                        const int32_t xx = ox * p->stride_w - p->pad_w + fx * p->dilation_w;
                        int16_t *d = x16 + (size_t)((fy * fw + fx) * kc) * 2 * (size_t)s->pw + q;
                        if (y < 0 || y >= p->input_h || xx < 0 || xx >= p->input_w) {
                            for (int32_t k = 0; k < kc; ++k) d[(size_t)k * 2 * (size_t)s->pw] = 0;
                            continue;
                        }
                        const int8_t *src =
                            input +
                            ((size_t)(b * p->input_h + y) * (size_t)p->input_w + (size_t)xx) *
                                (size_t)kc;
                        widen_column(d, src, kc, step, p->input_offset);
                    }
                }
    if (q & 1) /* an odd count: the last word's upper lane is no position */
        for (int32_t t = 0; t < s->taps; ++t) x16[(size_t)t * 2 * (size_t)s->pw + q] = 0;
}

/* Row c's gradients, masked, two positions a word; returns whether any is nonzero. pixels:
 * conv_grad_pixels (grad_broadcast: an image's positions share its gradient row). */
static int pack_row(const int8_t *grad_out, const uint8_t *mask, int32_t positions, size_t oc,
                    int32_t c, uint32_t *g, int32_t pw, size_t pixels) {
    uint32_t any = 0;
    for (int32_t j = 0; j < pw; ++j) {
        const size_t q = 2 * (size_t)j;
        const int32_t lo = conv_grad_masked_at(grad_out, mask, q, oc, (size_t)c, pixels);
        const int32_t hi = 2 * j + 1 < positions
                               ? conv_grad_masked_at(grad_out, mask, q + 1, oc, (size_t)c, pixels)
                               : 0;
        g[j] = lanes(lo, hi);
        any |= g[j];
    }
    return any != 0;
}

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
/* sums2's sums for two tap rows at once when a row is 32 words (128 bytes: the second tap's
 * and the second row's words at a fixed offset): per two words of positions 4 LDRD and 8
 * SMLAD (2 rows x 2 taps), against 6 LDRD for the same 8 SMLAD one tap at a time. */
static void sums2x2_32(const uint32_t *x, const uint32_t *g, int32_t *a0, int32_t *a1) {
    int32_t u00 = 0, u01 = 0, u10 = 0, u11 = 0;
    uint32_t xa, xb, ya, yb, ga, gb, n = 16;
    __asm__ volatile(
        "1:\n"
        "ldrd %[xa], %[xb], [%[x], #128]\n"
        "ldrd %[ga], %[gb], [%[g], #128]\n"
        "smlad %[u11], %[xa], %[ga], %[u11]\n"
        "smlad %[u11], %[xb], %[gb], %[u11]\n"
        "ldrd %[ya], %[yb], [%[x]], #8\n"
        "smlad %[u10], %[ya], %[ga], %[u10]\n"
        "smlad %[u10], %[yb], %[gb], %[u10]\n"
        "ldrd %[ga], %[gb], [%[g]], #8\n"
        "smlad %[u00], %[ya], %[ga], %[u00]\n"
        "smlad %[u00], %[yb], %[gb], %[u00]\n"
        "smlad %[u01], %[xa], %[ga], %[u01]\n"
        "smlad %[u01], %[xb], %[gb], %[u01]\n"
        "subs %[n], %[n], #1\n"
        "bne 1b\n"
        : [x] "+r"(x), [g] "+r"(g), [n] "+r"(n), [u00] "+r"(u00), [u01] "+r"(u01), [u10] "+r"(u10),
          [u11] "+r"(u11), [xa] "=&r"(xa), [xb] "=&r"(xb), [ya] "=&r"(ya), [yb] "=&r"(yb),
          [ga] "=&r"(ga), [gb] "=&r"(gb)
        :
        : "cc", "memory");
    a0[0] = u00, a0[1] = u01, a1[0] = u10, a1[1] = u11;
}
#endif

/* a0[t] = sum_j SMLAD(x[t][j], g0[j]), a1 likewise with g1, every tap row t. On the M7/M4 the
 * pairs of words in assembly: per 4 words of the two rows, 3 LDRD and 4 SMLAD. */
static void sums2(const struct spatial *s) {
    const uint32_t *x = s->x, *g0 = s->g0, *g1 = s->g1;
    const int32_t pw = s->pw;
    int32_t t = 0;
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    if (pw == 32) /* 63 or 64 positions (an 8x8 map): two taps a pass, see sums2x2_32 */
        for (; t + 2 <= s->taps; t += 2, x += 2 * pw) sums2x2_32(x, g0, s->a0 + t, s->a1 + t);
#endif
    for (; t < s->taps; ++t, x += pw) {
        int32_t u0 = 0, u1 = 0;
        int32_t j = 0;
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
        if (pw >= 2) {
            const uint32_t *xp = x, *p0 = g0, *p1 = g1;
            uint32_t xa, xb, ga, gb, n = (uint32_t)pw >> 1;
            __asm__ volatile(
                "1:\n"
                "ldrd %[xa], %[xb], [%[xp]], #8\n"
                "ldrd %[ga], %[gb], [%[p0]], #8\n"
                "smlad %[u0], %[xa], %[ga], %[u0]\n"
                "smlad %[u0], %[xb], %[gb], %[u0]\n"
                "ldrd %[ga], %[gb], [%[p1]], #8\n"
                "smlad %[u1], %[xa], %[ga], %[u1]\n"
                "smlad %[u1], %[xb], %[gb], %[u1]\n"
                "subs %[n], %[n], #1\n"
                "bne 1b\n"
                : [xp] "+r"(xp), [p0] "+r"(p0), [p1] "+r"(p1), [u0] "+r"(u0), [u1] "+r"(u1),
                  [n] "+r"(n), [xa] "=&r"(xa), [xb] "=&r"(xb), [ga] "=&r"(ga), [gb] "=&r"(gb)
                :
                : "cc", "memory");
            j = pw & ~1;
        }
#else
        int32_t v0 = 0, v1 = 0; /* two chains per row: shorter dependencies */
        for (; j + 2 <= pw; j += 2) {
            const uint32_t xa = x[j], xb = x[j + 1];
            u0 = dsp_smlad(xa, g0[j], u0);
            u1 = dsp_smlad(xa, g1[j], u1);
            v0 = dsp_smlad(xb, g0[j + 1], v0);
            v1 = dsp_smlad(xb, g1[j + 1], v1);
        }
        u0 = (int32_t)((uint32_t)u0 + (uint32_t)v0);
        u1 = (int32_t)((uint32_t)u1 + (uint32_t)v1);
#endif
        if (j < pw) {
            u0 = dsp_smlad(x[j], g0[j], u0);
            u1 = dsp_smlad(x[j], g1[j], u1);
        }
        s->a0[t] = u0;
        s->a1[t] = u1;
    }
}

/* One row's sums over 16 positions (a 4x4 map): its 8 words of gradients in registers, per tap
 * row 4 LDRD and 8 SMLAD for 16 MACs (assembly on the M7/M4: two tap rows per turn of the loop,
 * 14 instructions per tap row; an odd count's first row alone). */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
#define SUMS1_8_TAP           \
    "ldrd r1, ip, [r0], #8\n" \
    "smuad lr, r1, r4\n"      \
    "smlad lr, ip, r5, lr\n"  \
    "ldrd r1, ip, [r0], #8\n" \
    "smlad lr, r1, r6, lr\n"  \
    "smlad lr, ip, r7, lr\n"  \
    "ldrd r1, ip, [r0], #8\n" \
    "smlad lr, r1, r8, lr\n"  \
    "smlad lr, ip, r9, lr\n"  \
    "ldrd r1, ip, [r0], #8\n" \
    "smlad lr, r1, r10, lr\n" \
    "smlad lr, ip, r11, lr\n" \
    "str lr, [r2], #4\n"
static __attribute__((naked, noinline)) void sums1_8_m7(const uint32_t *x, const uint32_t *g,
                                                        int32_t *a, int32_t taps) {
    (void)x, (void)g, (void)a, (void)taps;
    __asm__ volatile(
        "push {r4-r11, lr}\n"
        "ldm r1, {r4-r11}\n" /* the row's 8 words of gradients */
        "lsrs r3, r3, #1\n"  /* tap-row pairs; carry: an odd one first */
        "bcc 1f\n" SUMS1_8_TAP
        "cmp r3, #0\n"
        "beq 2f\n"
        "1:\n" SUMS1_8_TAP SUMS1_8_TAP
        "subs r3, r3, #1\n"
        "bne 1b\n"
        "2:\n"
        "pop {r4-r11, pc}\n");
}
#undef SUMS1_8_TAP
#endif

static void sums1_8(const struct spatial *s) {
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    sums1_8_m7(s->x, s->g0, s->a0, s->taps);
#else
    const uint32_t *x = s->x;
    const uint32_t g0 = s->g0[0], g1 = s->g0[1], g2 = s->g0[2], g3 = s->g0[3];
    const uint32_t g4 = s->g0[4], g5 = s->g0[5], g6 = s->g0[6], g7 = s->g0[7];
    int32_t *a = s->a0;
    for (int32_t t = 0; t < s->taps; ++t, x += 8) {
        int32_t u = dsp_smlad(x[0], g0, 0), v = dsp_smlad(x[1], g1, 0);
        u = dsp_smlad(x[2], g2, u);
        v = dsp_smlad(x[3], g3, v);
        u = dsp_smlad(x[4], g4, u);
        v = dsp_smlad(x[5], g5, v);
        u = dsp_smlad(x[6], g6, u);
        v = dsp_smlad(x[7], g7, v);
        a[t] = (int32_t)((uint32_t)u + (uint32_t)v);
    }
#endif
}

/* One row's sums (the last of an odd count). */
static void sums1(const struct spatial *s) {
    const uint32_t *x = s->x, *g0 = s->g0;
    const int32_t pw = s->pw;
    for (int32_t t = 0; t < s->taps; ++t, x += pw) {
        int32_t u0 = 0, v0 = 0;
        int32_t j = 0;
        for (; j + 2 <= pw; j += 2) {
            u0 = dsp_smlad(x[j], g0[j], u0);
            v0 = dsp_smlad(x[j + 1], g0[j + 1], v0);
        }
        if (j < pw) u0 = dsp_smlad(x[j], g0[j], u0);
        s->a0[t] = (int32_t)((uint32_t)u0 + (uint32_t)v0);
    }
}

/* dsp_step_weights (dsp.h) for n weights whose gradient sums are all 0: v = f * 0 is 0 (or
 * NaN, which counts as 0), so x = u in [0, 1) floors to 0; each weight takes its draw and only
 * saturates (-128 to -127). 6 instructions a weight against 25. */
static __attribute__((noinline)) void step_zero_row(int8_t *w, int32_t n, uint32_t *rng) {
    uint32_t s = *rng;
    for (int32_t i = 0; i < n; ++i) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        if (w[i] < -127) w[i] = -127;
    }
    *rng = s;
}

int conv2d_s8_grad_update_spatial_ok(const struct conv2d_s8_grad_update_params *p) {
    return conv_grad_update_spatial_bytes(p) > 0;
}

/* Rows c0 .. c0 + 7's gradients, masked, packed as pack_row packs them (g: 8 rows of pw words),
 * when the output channels come in whole mask bytes (output_c and c0 multiples of 8): per
 * position two words of gradients and one byte of the mask, against a byte load and a mask bit
 * per gradient row by row; any[r]: whether row r has a nonzero gradient (the words ORed as
 * they pass, not a second pass over the packed rows). */
static void pack_rows8(const int8_t *grad_out, const uint8_t *mask, int32_t positions, size_t oc,
                       int32_t c0, uint32_t *g, int32_t pw, int *any, size_t pixels) {
    uint32_t ora = 0, orb = 0;
    int16_t *g16 = (int16_t *)g; /* row r, position q: g16[r * 2 pw + q] (little-endian lanes) */
    const size_t row = 2 * (size_t)pw;
    const int8_t *gp = grad_out + c0;
    const uint8_t *mp = mask ? mask + (c0 >> 3) : NULL;
    for (int32_t q = 0; q < positions; ++q, gp += oc) {
        const int8_t *gq = pixels ? grad_out + c0 + conv_grad_row((size_t)q, pixels) * oc : gp;
        uint32_t a = dsp_read4(gq), b = dsp_read4(gq + 4);
        if (mp) {
            const uint32_t m = *mp;
            mp += oc >> 3;
            a &= dsp_spread4[m & 15u];
            b &= dsp_spread4[m >> 4];
        }
        ora |= a, orb |= b;
        int16_t *d = g16 + q;
        d[0] = (int8_t)a, d[row] = (int8_t)(a >> 8), d[2 * row] = (int8_t)(a >> 16);
        d[3 * row] = (int8_t)(a >> 24), d[4 * row] = (int8_t)b, d[5 * row] = (int8_t)(b >> 8);
        d[6 * row] = (int8_t)(b >> 16), d[7 * row] = (int8_t)(b >> 24);
    }
    if (positions & 1) /* the last word's upper lane is no position */
        for (int32_t r = 0; r < 8; ++r) g16[(size_t)r * row + (size_t)positions] = 0;
    for (int32_t r = 0; r < 4; ++r) any[r] = ((ora >> (8 * r)) & 0xFFu) != 0;
    for (int32_t r = 0; r < 4; ++r) any[4 + r] = ((orb >> (8 * r)) & 0xFFu) != 0;
}

void conv2d_s8_grad_update_spatial_dsp(const struct conv2d_s8_grad_update_params *p,
                                       void *const *operands, void *scratch) {
    const int8_t *grad_out = operands[CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT];
    const float grad_scale = *(const float *)operands[CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT_SCALE];
    const uint8_t *mask =
        p->has_mask ? (const uint8_t *)operands[CONV2D_S8_GRAD_UPDATE_MASK] : NULL;
    const float *scales = operands[CONV2D_S8_GRAD_UPDATE_WEIGHT_SCALES];
    int8_t *filter = operands[CONV2D_S8_GRAD_UPDATE_TRAINED_FILTER];
    uint32_t *rng = operands[CONV2D_S8_GRAD_UPDATE_RNG_STATE];
    const int32_t positions = p->batches * p->output_h * p->output_w;
    const int32_t taps = p->filter_h * p->filter_w * p->input_c;
    const int32_t pw = (positions + 1) / 2;
    const size_t oc = (size_t)p->output_c;
    const size_t pixels = conv_grad_pixels(p->grad_broadcast, p->output_h, p->output_w);
    /* The scratch (conv_grad_update_spatial_bytes): X, 8 rows of packed gradients, 2 rows of
     * sums. */
    uint32_t *const x = scratch, *const gb = x + (size_t)taps * (size_t)pw;
    struct spatial s = {x, gb, gb, (int32_t *)(gb + 8 * (size_t)pw), NULL, pw, taps};
    s.a1 = s.a0 + taps;
    transpose_input(p, operands[CONV2D_S8_GRAD_UPDATE_INPUT], &s);

    const int32_t rows = p->train_rows;
    const int bytes = oc % 8u == 0;
    for (int32_t c0 = 0; c0 < rows; c0 += 8) {
        const int32_t nb = rows - c0 < 8 ? rows - c0 : 8;
        int any[8];
        if (bytes) /* c0 + 8 <= output_c: the block's gradients all exist */
            pack_rows8(grad_out, mask, positions, oc, c0, gb, pw, any, pixels);
        else
            for (int32_t r = 0; r < nb; ++r)
                any[r] = pack_row(grad_out, mask, positions, oc, c0 + r,
                                  gb + (size_t)r * (size_t)pw, pw, pixels);
        for (int32_t r = 0; r < nb;) {
            const int two = pw != 8 && r + 1 < nb; /* 16 positions: row by row, in registers */
            s.g0 = gb + (size_t)r * (size_t)pw;
            s.g1 = s.g0 + pw;
            if (two && (any[r] || any[r + 1]))
                sums2(&s);
            else if (any[r])
                pw == 8 ? sums1_8(&s) : sums1(&s);
            for (int32_t k = 0; k < 1 + two; ++k) {
                const int32_t c = c0 + r + k;
                if (!any[r + k]) { /* a row no gradient reached */
                    step_zero_row(filter + (size_t)c * (size_t)taps, taps, rng);
                    continue;
                }
                const float f = conv_grad_weight_factor(p->lr, grad_scale, p->input_scale,
                                                        scales[p->per_channel ? c : 0]);
                gu_step_row(filter + (size_t)c * (size_t)taps, k ? s.a1 : s.a0, (size_t)taps, f,
                            rng);
            }
            r += 1 + two;
        }
    }
}
