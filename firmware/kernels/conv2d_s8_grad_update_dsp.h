/* What the DSP variants of conv2d_s8_grad_update share (conv2d_s8_grad_update_dsp.c selects one
 * of them): the operands and steps (conv2d_s8_grad_update.h, dsp.h) and each variant's entry.
 * Internal to conv2d_s8_grad_update_*dsp.c; the runtime calls conv2d_s8_grad_update_run.
 *
 * Variants (the selector picks one for the weights, then updates the biases itself):
 *   conv2d_s8_grad_update_dsp.c          1x1 filters: positions paired per input channel
 *                                        (sparse: zero gradients skipped); larger filters
 *                                        along runs of taps (grad_update_kxk);
 *   conv2d_s8_grad_update_spatial_dsp.c  few output positions (<= GU_SPATIAL_MAX_POSITIONS)
 *                                        and many rows: SMLAD over the positions, the input
 *                                        transposed once per call (its scratch:
 *                                        conv_grad_update_spatial_bytes). */
#ifndef KERNELS_CONV2D_S8_GRAD_UPDATE_DSP_H
#define KERNELS_CONV2D_S8_GRAD_UPDATE_DSP_H

#include "conv2d_s8_grad_input.h" /* conv_grad_masked */
#include "conv2d_s8_grad_update.h"
#include "dsp.h"

/* conv_grad_step_bias (conv2d_s8_grad_update.h), bit-identical, without its 64-bit float
 * conversion (a library call on the Cortex-M): below 2^31 in magnitude v truncates to int32
 * (VCVT), its fraction is exact (below 2^24 the truncation is exact, above it v is whole), and
 * the rounding and the saturated sum are the reference's; larger (or NaN) v takes the
 * reference's own steps. */
static inline int32_t dsp_step_bias(int32_t b, float v) {
    if (!(v > -2147483648.0f && v < 2147483648.0f)) return conv_grad_step_bias(b, v);
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP) && KERNELS_FPV5
    /* FPv5's VCVTA rounds halves away from zero (exact here: |v| < 2^31), QADD saturates the
     * sum: the reference's two steps in two instructions (against ~20 for the C below). */
    int32_t r;
    __asm__(
        "vcvta.s32.f32 %[v], %[v]\n"
        "vmov %[r], %[v]\n"
        "qadd %[r], %[r], %[b]\n"
        : [r] "=r"(r), [v] "+t"(v)
        : [b] "r"(b));
    return r;
#else
    int32_t d = (int32_t)v;
    const float frac = v - (float)d;
    d += (frac >= 0.5f) - (frac <= -0.5f);
    const int64_t n = (int64_t)b + d;
    return (int32_t)(n > INT32_MAX ? INT32_MAX : (n < INT32_MIN ? INT32_MIN : n));
#endif
}

/* sums[j] for channels c0 + j, j < 8, as dsp_bias_sums computes them (the same integers), when
 * channels and c0 are multiples of 8: each position's 8 gradients are two words and one byte
 * of the mask, and the four 16-bit lane sums stay in registers (at most 255 values of
 * magnitude <= 128 per lane before they are added to the int32 sums): about 2 instructions
 * per gradient against 8. pixels (conv_grad_pixels, conv2d_s8_grad_input.h): 0, or with
 * grad_broadcast the positions of an image, which share one gradient row: a chunk of positions
 * then stays in one image and reads its row with a stride of 0 (the mask bits move on as
 * before). gu_bias_sums8: pixels 0. */
static inline void gu_bias_sums8_at(const int8_t *g, const uint8_t *mask, size_t positions,
                                    size_t channels, int32_t c0, int32_t *sums, size_t pixels) {
    for (int32_t j = 0; j < 8; ++j) sums[j] = 0;
    const int8_t *gp = g + c0;
    const uint8_t *mp = mask ? mask + (c0 >> 3) : NULL;
    const size_t mstep = channels >> 3;
    const size_t gstep = pixels ? 0 : channels;
    for (size_t p0 = 0, p1; p0 < positions; p0 = p1) {
        p1 = positions - p0 < 255 ? positions : p0 + 255;
        if (pixels) { /* up to the image's end, from its row */
            const size_t image = p0 / pixels;
            if (p1 > (image + 1) * pixels) p1 = (image + 1) * pixels;
            gp = g + c0 + image * channels;
        }
        uint32_t l0 = 0, l1 = 0, l2 = 0, l3 = 0;
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
        if (mp) { /* the masked loop in assembly: 18 instructions per position (GCC's: ~22) */
            uint32_t a, b, t, lo, n = (uint32_t)(p1 - p0);
            __asm__ volatile(
                "1:\n"
                "ldr %[a], [%[gp]]\n"
                "ldr %[b], [%[gp], #4]\n"
                "add %[gp], %[gp], %[oc]\n"
                "ldrb %[t], [%[mp]]\n"
                "add %[mp], %[mp], %[ms]\n"
                "and %[n4], %[t], #15\n"
                "lsr %[t], %[t], #4\n"
                "ldr %[n4], [%[tab], %[n4], lsl #2]\n"
                "ldr %[t], [%[tab], %[t], lsl #2]\n"
                "and %[a], %[a], %[n4]\n"
                "and %[b], %[b], %[t]\n"
                "sxtab16 %[l0], %[l0], %[a]\n"
                "sxtab16 %[l1], %[l1], %[a], ror #8\n"
                "sxtab16 %[l2], %[l2], %[b]\n"
                "sxtab16 %[l3], %[l3], %[b], ror #8\n"
                "subs %[n], %[n], #1\n"
                "bne 1b\n"
                : [gp] "+r"(gp), [mp] "+r"(mp), [n] "+r"(n), [l0] "+r"(l0), [l1] "+r"(l1),
                  [l2] "+r"(l2), [l3] "+r"(l3), [a] "=&r"(a), [b] "=&r"(b), [t] "=&r"(t),
                  [n4] "=&r"(lo)
                : [oc] "r"(gstep), [ms] "r"(mstep), [tab] "r"(dsp_spread4)
                : "cc", "memory");
        } else
#endif
            for (size_t pos = p0; pos < p1; ++pos, gp += gstep) {
                uint32_t a = dsp_read4(gp), b = dsp_read4(gp + 4);
                if (mp) {
                    const uint32_t m = *mp;
                    mp += mstep;
                    a &= dsp_spread4[m & 15u];
                    b &= dsp_spread4[m >> 4];
                }
                l0 = dsp_sxtab16(l0, a);    /* channels 0, 2 */
                l1 = dsp_sxtab16_hi(l1, a); /* 1, 3 */
                l2 = dsp_sxtab16(l2, b);    /* 4, 6 */
                l3 = dsp_sxtab16_hi(l3, b); /* 5, 7 */
            }
        sums[0] += (int16_t)(l0 & 0xFFFFu), sums[2] += (int16_t)(l0 >> 16);
        sums[1] += (int16_t)(l1 & 0xFFFFu), sums[3] += (int16_t)(l1 >> 16);
        sums[4] += (int16_t)(l2 & 0xFFFFu), sums[6] += (int16_t)(l2 >> 16);
        sums[5] += (int16_t)(l3 & 0xFFFFu), sums[7] += (int16_t)(l3 >> 16);
    }
}

static inline void gu_bias_sums8(const int8_t *g, const uint8_t *mask, size_t positions,
                                 size_t channels, int32_t c0, int32_t *sums) {
    gu_bias_sums8_at(g, mask, positions, channels, c0, sums, 0);
}

/* conv_grad_update_bias_at (conv2d_s8_grad_update.h), bit-identical: the same sums
 * (gu_bias_sums8_at where the channels come in whole mask bytes, else dsp_bias_sums, or with a
 * broadcast row the reference's sums) and the same float factor per channel (its numerator's
 * two products hoisted: the same operations in the same order), then dsp_step_bias. For the
 * conv, depthwise and fully connected updates (channels: the gradient's innermost dimension;
 * conv_grad_update_bias_dsp: pixels 0). */
static inline void conv_grad_update_bias_dsp_at(int32_t *bias, int32_t rows, size_t positions,
                                                size_t channels, const int8_t *grad_out,
                                                const uint8_t *mask, float lr, float grad_scale,
                                                float input_scale, const float *scales,
                                                int32_t per_channel, size_t pixels) {
    int32_t sums[DSP_BIAS_CHUNK];
    const float num = lr * grad_lr_scale * grad_scale; /* conv_grad_bias_factor's numerator */
    int32_t c0 = 0;
    while (c0 < rows) {
        int32_t n = rows - c0 < DSP_BIAS_CHUNK ? rows - c0 : DSP_BIAS_CHUNK;
        if (channels % 8u == 0 && n >= 8) {
            n = 8;
            gu_bias_sums8_at(grad_out, mask, positions, channels, c0, sums, pixels);
        } else if (pixels) { /* a broadcast row, channels off whole mask bytes: element-wise */
            for (int32_t j = 0; j < n; ++j) {
                sums[j] = 0;
                for (size_t pos = 0; pos < positions; ++pos)
                    sums[j] += conv_grad_masked_at(grad_out, mask, pos, channels, (size_t)(c0 + j),
                                                   pixels);
            }
        } else {
            dsp_bias_sums(grad_out, mask, positions, channels, c0, n, sums);
        }
        for (int32_t j = 0; j < n; ++j) {
            const int32_t c = c0 + j;
            const float f = -(num / (scales[per_channel ? c : 0] * input_scale));
            bias[c] = dsp_step_bias(bias[c], f * (float)sums[j]);
        }
        c0 += n;
    }
}

static inline void conv_grad_update_bias_dsp(int32_t *bias, int32_t rows, size_t positions,
                                             size_t channels, const int8_t *grad_out,
                                             const uint8_t *mask, float lr, float grad_scale,
                                             float input_scale, const float *scales,
                                             int32_t per_channel) {
    conv_grad_update_bias_dsp_at(bias, rows, positions, channels, grad_out, mask, lr, grad_scale,
                                 input_scale, scales, per_channel, 0);
}

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP) && KERNELS_FPV5
/* dsp_step_weights (dsp.h) on a contiguous row of n4 >= 1 groups of 4 weights, 4 weights per
 * word (conv2d_s8_grad_update_dsp.c): the same float steps and draws per weight, in order. */
void gu_step4_m7(int8_t *w, const int32_t *acc, uint32_t n4, float f, uint32_t *rng);
#endif

/* dsp_step_weights(w, 1, acc, 1, n, f, rng): one trained row's step, its groups of 4 weights
 * through gu_step4_m7 where the build has it (the Cortex-M7), the rest weight by weight. */
static inline void gu_step_row(int8_t *w, const int32_t *acc, size_t n, float f, uint32_t *rng) {
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP) && KERNELS_FPV5
    if (n >= 4) {
        gu_step4_m7(w, acc, (uint32_t)(n >> 2), f, rng);
        w += n & ~(size_t)3, acc += n & ~(size_t)3, n &= 3u;
    }
#endif
    dsp_step_weights(w, 1, acc, 1, n, f, rng);
}

/* conv2d_s8_grad_update_spatial_dsp.c: whether it takes the layer (p as the update kernels view
 * it, CONV_TRAIN_COLS_AS_LAYER), and the weight update (not the biases). */
int conv2d_s8_grad_update_spatial_ok(const struct conv2d_s8_grad_update_params *p);
void conv2d_s8_grad_update_spatial_dsp(const struct conv2d_s8_grad_update_params *p,
                                       void *const *operands, void *scratch);

#endif
