/* Weight and bias update of conv2d_s8, optimized: bit-identical with
 * conv2d_s8_grad_update_ref_run (conv2d_s8_grad_update.c) for every layer; 1x1 filters take the
 * path below, larger filters grad_update_kxk (SXTAB16 / SMLABB / SMLATT along runs of taps).
 *
 * Exactness. The weight gradient of a trained row c, acc[k] = sum over output positions of
 * g[pos, c] * (x[pos, k] - z_x), is the same sum of the same integer products in another order
 * (int32, wrapping as the reference's would: the sums are equal modulo 2^32, hence equal).
 * Positions whose gradient is zero or masked, or whose input lies in the padding, add nothing
 * and are skipped, as the reference skips them. The update itself (the QAS factor, the
 * stochastic rounding with its generator drawn once per weight in memory order) is the
 * reference's float arithmetic in the same order (dsp_step_weights, dsp.h), the bias update
 * the same integer sums (dsp_bias_sums) and the reference's conv_grad_step_bias, so the
 * weights, the biases and the generator's state after the call are the same too.
 *
 * Speed. The positions with a gradient are paired up; for a pair and 4 input channels, two
 * words of input (SXTAB16 adds the input offset while widening to 16-bit lanes), PKHBT / PKHTB
 * to put the two positions' values of one channel side by side, and one SMLAD per channel with
 * the pair's two gradients: 8 multiply-accumulates in about 16 instructions, against the
 * reference's load, multiply-add and store of an accumulator per MAC. Larger filters: see
 * grad_update_kxk and rows4_grads. */
#include "conv2d_s8_grad_update_dsp.h"
#include "conv2d_train.h"

/* conv_grad_update_bias_dsp_at (conv2d_s8_grad_update_dsp.h) once in this file for its three
 * callers (the header's function is inline: one copy of its loops, not three); pixels:
 * conv_grad_pixels of the layer (grad_broadcast). */
static __attribute__((noinline)) void update_bias(int32_t *bias, int32_t rows, size_t positions,
                                                  size_t channels, const int8_t *grad_out,
                                                  const uint8_t *mask, float lr, float grad_scale,
                                                  float input_scale, const float *scales,
                                                  int32_t per_channel, size_t pixels) {
    conv_grad_update_bias_dsp_at(bias, rows, positions, channels, grad_out, mask, lr, grad_scale,
                                 input_scale, scales, per_channel, pixels);
}

struct gu_pair {
    const int8_t *x0, *x1; /* the two positions' input pixels */
    uint32_t g;            /* their gradients as 16-bit lanes (g0 low, g1 high) */
};

/* The 1x1 path's position pairs gathered at once, in the operator's scratch after the row's
 * sums (at gu_pairs_offset): 768 B, 64 pairs on the Cortex-M (32 on a 64-bit host twin, whose
 * pointers are twice as wide; the sums are exact in any grouping), fewer where the layer has
 * fewer positions (conv2d_s8_grad_update_scratch_size). */
#define GU_PAIRS_BYTES 768
#define GU_PAIRS ((int32_t)(GU_PAIRS_BYTES / sizeof(struct gu_pair)))

static size_t gu_pairs_offset(const struct conv2d_s8_grad_update_params *p) {
    return ((size_t)p->input_c * sizeof(int32_t) + 7u) & ~(size_t)7u;
}

/* (a.lo, b.lo) and (a.hi, b.hi) as 16-bit lane pairs: PKHBT and PKHTB. */
static inline uint32_t pack_lo(uint32_t a, uint32_t b) {
    return (a & 0xFFFFu) | (b << 16);
}
static inline uint32_t pack_hi(uint32_t a, uint32_t b) {
    return (b & 0xFFFF0000u) | (a >> 16);
}

/* acc[k..k+3] += sum over n pairs of g0 * (x0[k + i] + offset) + g1 * (x1[k + i] + offset). */
static void accumulate4(const struct gu_pair *pp, int32_t n, int32_t k, uint32_t off2,
                        int32_t *acc) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (; n > 0; --n, ++pp) {
        const uint32_t v0 = dsp_read4(pp->x0 + k), v1 = dsp_read4(pp->x1 + k), g = pp->g;
        const uint32_t e0 = dsp_sxtab16(off2, v0), e1 = dsp_sxtab16(off2, v1); /* k, k + 2 */
        const uint32_t o0 = dsp_sxtab16_hi(off2, v0),
                       o1 = dsp_sxtab16_hi(off2, v1); /* k + 1, k + 3 */
        a0 = dsp_smlad(pack_lo(e0, e1), g, a0);
        a2 = dsp_smlad(pack_hi(e0, e1), g, a2);
        a1 = dsp_smlad(pack_lo(o0, o1), g, a1);
        a3 = dsp_smlad(pack_hi(o0, o1), g, a3);
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP) && KERNELS_FPV5
/* Per weight the float steps of dsp_step_weights' contiguous loop (dsp.h, which says why each
 * shortcut gives the reference's weight), two accumulators per 64-bit VLDM; floor(x) saturated
 * to 10 bits, not 16 (|r| >= 511 still takes w + r past [-127, 127] on its side), so w + r fits
 * a 16-bit lane. Per 4 weights one word: SXTAB16 adds two r to two sign-extended weights,
 * SSAT16 to [-128, 127], UXTB16 and ORR pack the bytes back, QSUB8 twice turns -128 into -127:
 * 16.25 instructions per weight against 21. */
/* clang-format off */
#define GU_STEP(acc, r)                    \
    "vcvt.f32.s32 " acc ", " acc "\n"      \
    "vmul.f32 " acc ", " acc ", %[f]\n"    \
    "eor %[s], %[s], %[s], lsl #13\n"      \
    "eor %[s], %[s], %[s], lsr #17\n"      \
    "eor %[s], %[s], %[s], lsl #5\n"       \
    "lsr " r ", %[s], #8\n"                \
    "vmov s11, " r "\n"                    \
    "vcvt.f32.u32 s11, s11, #24\n"         \
    "vadd.f32 " acc ", " acc ", s11\n"     \
    "vcvtm.s32.f32 " acc ", " acc "\n"     \
    "vmov " r ", " acc "\n"                \
    "ssat " r ", #10, " r "\n"
/* clang-format on */
void gu_step4_m7(int8_t *w, const int32_t *acc, uint32_t n4, float f, uint32_t *rng) {
    uint32_t s = *rng, r0, r1, r2, r3;
    __asm__ volatile(
        "1:\n"
        "vldmia %[a]!, {d6}\n"
        "vldmia %[a]!, {d7}\n" GU_STEP("s12", "%[r0]") GU_STEP("s13", "%[r1]")
            GU_STEP("s14", "%[r2]") GU_STEP("s15", "%[r3]")
        "pkhbt %[r0], %[r0], %[r2], lsl #16\n"
        "pkhbt %[r1], %[r1], %[r3], lsl #16\n"
        "ldr %[r2], [%[w]]\n"
        "sxtab16 %[r0], %[r0], %[r2]\n"
        "sxtab16 %[r1], %[r1], %[r2], ror #8\n"
        "ssat16 %[r0], #8, %[r0]\n"
        "ssat16 %[r1], #8, %[r1]\n"
        "uxtb16 %[r0], %[r0]\n"
        "uxtb16 %[r1], %[r1]\n"
        "orr %[r0], %[r0], %[r1], lsl #8\n"
        "qsub8 %[r0], %[z], %[r0]\n"
        "qsub8 %[r0], %[z], %[r0]\n"
        "str %[r0], [%[w]], #4\n"
        "subs %[n], %[n], #1\n"
        "bne 1b\n"
        : [a] "+r"(acc), [w] "+r"(w), [s] "+r"(s), [n] "+r"(n4), [r0] "=&r"(r0), [r1] "=&r"(r1),
          [r2] "=&r"(r2), [r3] "=&r"(r3)
        : [f] "t"(f), [z] "r"(0u)
        : "s11", "s12", "s13", "s14", "s15", "cc", "memory");
    *rng = s;
}
#undef GU_STEP
#endif

/* The input pixel output position q reads through a 1x1 filter, or NULL in the padding. */
static const int8_t *source(const struct conv2d_s8_grad_update_params *p, const int8_t *input,
                            int32_t q) {
    const int32_t ox = q % p->output_w, oy = (q / p->output_w) % p->output_h;
    const int32_t b = q / (p->output_w * p->output_h);
    const int32_t y = oy * p->stride_h - p->pad_h, x = ox * p->stride_w - p->pad_w;
    if (y < 0 || y >= p->input_h || x < 0 || x >= p->input_w) return NULL;
    return input +
           ((size_t)(b * p->input_h + y) * (size_t)p->input_w + (size_t)x) * (size_t)p->input_c;
}

/* acc[k] += the chunk's pairs' sums, every input channel. */
static void accumulate(const struct gu_pair *pp, int32_t n, int32_t kc, int32_t offset,
                       int32_t *acc) {
    const uint32_t off2 = dsp_pair(offset);
    int32_t k = 0;
    for (; k + 4 <= kc; k += 4) accumulate4(pp, n, k, off2, acc + k);
    for (; k < kc; ++k) {
        int32_t a = acc[k];
        for (int32_t i = 0; i < n; ++i) {
            const int32_t g0 = (int16_t)(pp[i].g & 0xFFFFu), g1 = (int16_t)(pp[i].g >> 16);
            a += g0 * ((int32_t)pp[i].x0[k] + offset) + g1 * ((int32_t)pp[i].x1[k] + offset);
        }
        acc[k] = a;
    }
}

static void zero_acc(int32_t *acc, int32_t n) {
    for (int32_t k = 0; k < n; ++k) acc[k] = 0;
}

/* a[j] = g * (x[j] + offset) for j < n: a row's sums when one position has a gradient (the
 * reference's one product per weight); per 4 values one word of input, SXTAB16 twice (the
 * offset added while widening) and 4 SMULxy-like SMLAxy from 0, against accumulate's pair of
 * positions (the second with a zero gradient) and its loads and stores of the sums. */
static void products(int32_t *a, const int8_t *x, int32_t n, int32_t g, int32_t offset) {
    const uint32_t gg = dsp_pair(g), off2 = dsp_pair(offset);
    int32_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const uint32_t v = dsp_read4(x + j);
        const uint32_t e = dsp_sxtab16(off2, v), o = dsp_sxtab16_hi(off2, v);
        a[j] = dsp_smlabb(e, gg, 0);
        a[j + 1] = dsp_smlabb(o, gg, 0);
        a[j + 2] = dsp_smlatt(e, gg, 0);
        a[j + 3] = dsp_smlatt(o, gg, 0);
    }
    for (; j < n; ++j) a[j] = g * ((int32_t)x[j] + offset);
}

/* The taps [lo, hi) along one axis whose input lies inside it: 0 <= o + f * d < size. */
static inline void tap_range(int32_t o, int32_t d, int32_t f_n, int32_t size, int32_t *lo,
                             int32_t *hi) {
    *lo = o >= 0 ? 0 : (-o + d - 1) / d;
    if (o + (f_n - 1) * d < size)
        *hi = f_n;
    else
        *hi = o >= size ? 0 : (size - o + d - 1) / d;
    if (*hi < *lo) *hi = *lo;
}

/* a[j] += g * (x[j] + offset) for j < n; gg = g in both 16-bit lanes, off2 the offset in both.
 * Per 4 values: one word of input, SXTAB16 (the offset added while widening), SMLABB / SMLATT. */
static inline void axpy_run(int32_t *a, const int8_t *x, int32_t n, int32_t g, uint32_t gg,
                            int32_t offset, uint32_t off2) {
    int32_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const uint32_t v = dsp_read4(x + j);
        const uint32_t e = dsp_sxtab16(off2, v), o = dsp_sxtab16_hi(off2, v);
        a[j] = dsp_smlabb(e, gg, a[j]);
        a[j + 1] = dsp_smlabb(o, gg, a[j + 1]);
        a[j + 2] = dsp_smlatt(e, gg, a[j + 2]);
        a[j + 3] = dsp_smlatt(o, gg, a[j + 3]);
    }
    for (; j < n; ++j) a[j] += g * ((int32_t)x[j] + offset);
}

/* Narrow inputs (fewer than 8 channels: first layers such as a 3x3 stem on RGB, where a run
 * of taps is a few values and the per-row path's overheads per position and run dominate)
 * take 4 rows per pass (rows4_grads). With wider inputs the per-row path was faster on sparse
 * gradients (measured on hapt_cnn1d: a position where 1 of the 4 rows has a gradient costs
 * rows4 all 4 rows' products). */
#define GU_ROWS4_MAX 128 /* filter sizes whose 4 rows of sums rows4 takes (2 KB of scratch) */

/* a[4 j + r] += g_r * (x[j] + offset) for j < n, r < 4; ge = (g0, g2), go = (g1, g3) as 16-bit
 * lanes. Per 4 values: one word of input, SXTAB16 twice, 16 SMLAxy (each product once). */
static inline void axpy4_run(int32_t *a, const int8_t *x, int32_t n, uint32_t ge, uint32_t go,
                             int32_t offset, uint32_t off2) {
    int32_t j = 0;
    for (; j + 4 <= n; j += 4, a += 16) {
        const uint32_t v = dsp_read4(x + j);
        const uint32_t e = dsp_sxtab16(off2, v),
                       o = dsp_sxtab16_hi(off2, v); /* (x0, x2), (x1, x3) */
        a[0] = dsp_smlabb(ge, e, a[0]);
        a[1] = dsp_smlabb(go, e, a[1]);
        a[2] = dsp_smlatb(ge, e, a[2]);
        a[3] = dsp_smlatb(go, e, a[3]);
        a[4] = dsp_smlabb(ge, o, a[4]);
        a[5] = dsp_smlabb(go, o, a[5]);
        a[6] = dsp_smlatb(ge, o, a[6]);
        a[7] = dsp_smlatb(go, o, a[7]);
        a[8] = dsp_smlabt(ge, e, a[8]);
        a[9] = dsp_smlabt(go, e, a[9]);
        a[10] = dsp_smlatt(ge, e, a[10]);
        a[11] = dsp_smlatt(go, e, a[11]);
        a[12] = dsp_smlabt(ge, o, a[12]);
        a[13] = dsp_smlabt(go, o, a[13]);
        a[14] = dsp_smlatt(ge, o, a[14]);
        a[15] = dsp_smlatt(go, o, a[15]);
    }
    for (; j < n; ++j, a += 4) {
        const uint32_t v = (uint32_t)((int32_t)x[j] + offset);
        a[0] = dsp_smlabb(ge, v, a[0]);
        a[1] = dsp_smlabb(go, v, a[1]);
        a[2] = dsp_smlatb(ge, v, a[2]);
        a[3] = dsp_smlatb(go, v, a[3]);
    }
}

/* acc[4 t + r] = the weight gradient of row c0 + r (r < nr <= 4) at filter element t: the
 * gradients of 4 rows are one word per position (masked, SXTB16 into (g0, g2), (g1, g3)), so
 * positions are scanned once for 4 rows and each input value, widened once, feeds 4 rows. */
static void rows4_grads(const struct conv2d_s8_grad_update_params *p, const int8_t *grad_out,
                        const uint8_t *mask, const int8_t *input, int32_t c0, int32_t nr,
                        int32_t *acc) {
    const int32_t kc = p->input_c, fw = p->filter_w;
    const size_t oc = (size_t)p->output_c;
    const size_t in_row = (size_t)p->input_w * (size_t)kc;
    const size_t in_image = (size_t)p->input_h * in_row;
    const uint32_t off2 = dsp_pair(p->input_offset);
    size_t gi = (size_t)c0; /* the mask's bit of g[pos, c0] */
    /* the gradient row's stride per position: 0 with grad_broadcast (one row per image) */
    const size_t gstep = p->grad_broadcast ? 0 : oc;
    const int8_t *gr = grad_out + c0;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *image = input + (size_t)b * in_image;
        if (p->grad_broadcast) gr = grad_out + (size_t)b * oc + (size_t)c0;
        for (int32_t oy = 0; oy < p->output_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t fy_lo, fy_hi;
            tap_range(y0, p->dilation_h, p->filter_h, p->input_h, &fy_lo, &fy_hi);
            for (int32_t ox = 0; ox < p->output_w; ++ox, gi += oc, gr += gstep) {
                if (fy_lo == fy_hi) continue;
                uint32_t g;
                if (nr == 4) {
                    g = dsp_read4(gr);
                } else {
                    g = 0;
                    for (int32_t r = 0; r < nr; ++r) g |= (uint32_t)(uint8_t)gr[r] << (8 * r);
                }
                if (mask) g &= dsp_mask_bytes(mask, gi, nr);
                if (g == 0) continue;
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t fx_lo, fx_hi;
                tap_range(x0, p->dilation_w, fw, p->input_w, &fx_lo, &fx_hi);
                if (fx_lo == fx_hi) continue;
                const uint32_t ge = dsp_sxtb16(g), go = dsp_sxtb16_hi(g);
                for (int32_t fy = fy_lo; fy < fy_hi; ++fy) {
                    const int8_t *x = image + (size_t)(y0 + fy * p->dilation_h) * in_row +
                                      (size_t)(x0 + fx_lo * p->dilation_w) * (size_t)kc;
                    int32_t *a = acc + (size_t)(fy * fw + fx_lo) * (size_t)kc * 4u;
                    if (p->dilation_w == 1) { /* the valid taps' inputs are contiguous */
                        axpy4_run(a, x, (fx_hi - fx_lo) * kc, ge, go, p->input_offset, off2);
                        continue;
                    }
                    for (int32_t fx = fx_lo; fx < fx_hi; ++fx) {
                        axpy4_run(a, x, kc, ge, go, p->input_offset, off2);
                        a += (size_t)kc * 4u;
                        x += (size_t)p->dilation_w * (size_t)kc;
                    }
                }
            }
        }
    }
}

/* Whether grad_update_kxk takes 4 rows at a time (its 4 rows of sums at the scratch's start,
 * 4 filter_size int32). */
static int gu_rows4(const struct conv2d_s8_grad_update_params *p) {
    const size_t filter_size = (size_t)p->filter_h * (size_t)p->filter_w * (size_t)p->input_c;
    return (p->filter_h != 1 || p->filter_w != 1) && filter_size <= GU_ROWS4_MAX && p->input_c < 8;
}

/* Filters larger than 1x1: per trained row, the positions with a gradient (scanned once,
 * zeros skipped as the reference skips them), the taps inside the input bounded once per
 * position (not checked per tap), and per filter row the valid taps' inputs, contiguous in
 * memory when the dilation along x is 1, as one run into the accumulators (the same
 * [fy][fx][k] order); then the reference's update, weight by weight in memory order. */
static void grad_update_kxk(const struct conv2d_s8_grad_update_params *pp, void *const *operands,
                            void *scratch) {
    const struct conv2d_s8_grad_update_params p = *pp;
    const int8_t *grad_out = operands[CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT];
    const float grad_scale = *(const float *)operands[CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT_SCALE];
    const uint8_t *mask = p.has_mask ? (const uint8_t *)operands[CONV2D_S8_GRAD_UPDATE_MASK] : NULL;
    const int8_t *input = operands[CONV2D_S8_GRAD_UPDATE_INPUT];
    const float *scales = operands[CONV2D_S8_GRAD_UPDATE_WEIGHT_SCALES];
    int8_t *filter = operands[CONV2D_S8_GRAD_UPDATE_TRAINED_FILTER];
    int32_t *bias = operands[CONV2D_S8_GRAD_UPDATE_TRAINED_BIAS];
    uint32_t *rng = operands[CONV2D_S8_GRAD_UPDATE_RNG_STATE];
    const int32_t kc = p.input_c, fw = p.filter_w;
    const size_t oc = (size_t)p.output_c;
    const size_t in_row = (size_t)p.input_w * (size_t)kc;
    const size_t in_image = (size_t)p.input_h * in_row;
    const size_t filter_size = (size_t)p.filter_h * (size_t)fw * (size_t)kc;
    const int32_t positions = p.batches * p.output_h * p.output_w;
    const uint32_t off2 = dsp_pair(p.input_offset);
    const size_t pixels = conv_grad_pixels(p.grad_broadcast, p.output_h, p.output_w);

    const int32_t weight_rows = p.update_weights ? p.train_rows : 0;
    int32_t c = 0;
    if (gu_rows4(&p)) { /* 4 rows at a time, the sums in the scratch (gu_rows4) */
        int32_t *const acc4 = scratch;
        for (; c < weight_rows; c += 4) {
            const int32_t nr = weight_rows - c < 4 ? weight_rows - c : 4;
            for (size_t t = 0; t < 4 * filter_size; ++t) acc4[t] = 0;
            rows4_grads(&p, grad_out, mask, input, c, nr, acc4);
            for (int32_t r = 0; r < nr; ++r) { /* the reference's steps, row by row */
                const float f = conv_grad_weight_factor(p.lr, grad_scale, p.input_scale,
                                                        scales[p.per_channel ? c + r : 0]);
                dsp_step_weights(filter + (size_t)(c + r) * filter_size, 1, acc4 + r, 4,
                                 filter_size, f, rng);
            }
        }
    }
    for (; c < weight_rows; ++c) {
        int32_t *acc = scratch;
        for (size_t t = 0; t < filter_size; ++t) acc[t] = 0;
        size_t pos = 0; /* flat output position */
        for (int32_t b = 0; b < p.batches; ++b) {
            const int8_t *image = input + (size_t)b * in_image;
            for (int32_t oy = 0; oy < p.output_h; ++oy) {
                const int32_t y0 = oy * p.stride_h - p.pad_h;
                int32_t fy_lo, fy_hi;
                tap_range(y0, p.dilation_h, p.filter_h, p.input_h, &fy_lo, &fy_hi);
                for (int32_t ox = 0; ox < p.output_w; ++ox, ++pos) {
                    const int32_t g =
                        conv_grad_masked_at(grad_out, mask, pos, oc, (size_t)c, pixels);
                    if (g == 0 || fy_lo == fy_hi) continue;
                    const int32_t x0 = ox * p.stride_w - p.pad_w;
                    int32_t fx_lo, fx_hi;
                    tap_range(x0, p.dilation_w, fw, p.input_w, &fx_lo, &fx_hi);
                    if (fx_lo == fx_hi) continue;
                    const uint32_t gg = dsp_pair(g);
                    for (int32_t fy = fy_lo; fy < fy_hi; ++fy) {
                        const int8_t *x = image + (size_t)(y0 + fy * p.dilation_h) * in_row +
                                          (size_t)(x0 + fx_lo * p.dilation_w) * (size_t)kc;
                        int32_t *a = acc + (size_t)(fy * fw + fx_lo) * (size_t)kc;
                        if (p.dilation_w == 1) { /* the valid taps' inputs are contiguous */
                            axpy_run(a, x, (fx_hi - fx_lo) * kc, g, gg, p.input_offset, off2);
                            continue;
                        }
                        for (int32_t fx = fx_lo; fx < fx_hi; ++fx) {
                            axpy_run(a, x, kc, g, gg, p.input_offset, off2);
                            a += kc;
                            x += (size_t)p.dilation_w * (size_t)kc;
                        }
                    }
                }
            }
        }
        const float f =
            conv_grad_weight_factor(p.lr, grad_scale, p.input_scale, scales[p.per_channel ? c : 0]);
        gu_step_row(filter + (size_t)c * filter_size, acc, filter_size, f, rng);
    }

    update_bias(bias, p.update_bias ? p.train_bias_rows : 0, (size_t)positions, oc, grad_out, mask,
                p.lr, grad_scale, p.input_scale, scales, p.per_channel, pixels);
}

void conv2d_s8_grad_update_dsp_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    struct conv2d_s8_grad_update_params p = *(const struct conv2d_s8_grad_update_params *)params;
    CONV_TRAIN_COLS_AS_LAYER(p);                /* an input-channel slice: conv2d_train.h */
    if (conv2d_s8_grad_update_spatial_ok(&p)) { /* few positions, many rows */
        conv2d_s8_grad_update_spatial_dsp(&p, operands, scratch);
        const float grad_scale = *(const float *)operands[CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT_SCALE];
        update_bias(operands[CONV2D_S8_GRAD_UPDATE_TRAINED_BIAS],
                    p.update_bias ? p.train_bias_rows : 0,
                    (size_t)p.batches * (size_t)p.output_h * (size_t)p.output_w, (size_t)p.output_c,
                    operands[CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT],
                    p.has_mask ? (const uint8_t *)operands[CONV2D_S8_GRAD_UPDATE_MASK] : NULL, p.lr,
                    grad_scale, p.input_scale, operands[CONV2D_S8_GRAD_UPDATE_WEIGHT_SCALES],
                    p.per_channel, conv_grad_pixels(p.grad_broadcast, p.output_h, p.output_w));
        return;
    }
    if (p.filter_h != 1 || p.filter_w != 1) {
        grad_update_kxk(&p, operands, scratch);
        return;
    }
    const int8_t *grad_out = operands[CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT];
    const float grad_scale = *(const float *)operands[CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT_SCALE];
    const uint8_t *mask = p.has_mask ? (const uint8_t *)operands[CONV2D_S8_GRAD_UPDATE_MASK] : NULL;
    const int8_t *input = operands[CONV2D_S8_GRAD_UPDATE_INPUT];
    const float *scales = operands[CONV2D_S8_GRAD_UPDATE_WEIGHT_SCALES];
    int8_t *filter = operands[CONV2D_S8_GRAD_UPDATE_TRAINED_FILTER];
    int32_t *bias = operands[CONV2D_S8_GRAD_UPDATE_TRAINED_BIAS];
    uint32_t *rng = operands[CONV2D_S8_GRAD_UPDATE_RNG_STATE];
    const int32_t kc = p.input_c;
    const size_t oc = (size_t)p.output_c;
    const int32_t positions = p.batches * p.output_h * p.output_w;
    const size_t pixels = conv_grad_pixels(p.grad_broadcast, p.output_h, p.output_w);

    const int32_t weight_rows = p.update_weights ? p.train_rows : 0;
    struct gu_pair *const pairs = (struct gu_pair *)((uint8_t *)scratch + gu_pairs_offset(&p));
    for (int32_t c = 0; c < weight_rows; ++c) {
        int32_t *acc = scratch;
        int32_t n = 0, half = 0; /* pairs gathered; 1: pairs[n] has its first position */
        int zeroed = 0;          /* acc is zeroed before the first chunk adds into it */
        for (int32_t q = 0; q < positions; ++q) {
            const int32_t g = conv_grad_masked_at(grad_out, mask, (size_t)q, oc, (size_t)c, pixels);
            if (g == 0) continue;
            const int8_t *x = source(&p, input, q);
            if (x == NULL) continue; /* padding: x_real = 0 */
            if (!half) {
                pairs[n].x0 = pairs[n].x1 = x; /* a lone last position pairs with itself, g1 = 0 */
                pairs[n].g = (uint32_t)g & 0xFFFFu;
                half = 1;
                continue;
            }
            pairs[n].x1 = x;
            pairs[n].g |= (uint32_t)g << 16;
            half = 0;
            if (++n == GU_PAIRS) {
                if (!zeroed) zero_acc(acc, kc), zeroed = 1;
                accumulate(pairs, n, kc, p.input_offset, acc);
                n = 0;
            }
        }
        if (!zeroed && n == 0 && half) { /* one position (a fully connected layer's batch of 1) */
            products(acc, pairs[0].x0, kc, (int16_t)(pairs[0].g & 0xFFFFu), p.input_offset);
        } else {
            if (!zeroed) zero_acc(acc, kc);
            if (n + half) accumulate(pairs, n + half, kc, p.input_offset, acc);
        }
        const float f =
            conv_grad_weight_factor(p.lr, grad_scale, p.input_scale, scales[p.per_channel ? c : 0]);
        gu_step_row(filter + (size_t)c * (size_t)kc, acc, (size_t)kc, f, rng);
    }

    update_bias(bias, p.update_bias ? p.train_bias_rows : 0, (size_t)positions, oc, grad_out, mask,
                p.lr, grad_scale, p.input_scale, scales, p.per_channel, pixels);
}

size_t conv2d_s8_grad_update_scratch_size(const void *params) {
    struct conv2d_s8_grad_update_params p = *(const struct conv2d_s8_grad_update_params *)params;
    const size_t ref = conv2d_s8_grad_update_ref_scratch_size(params);
    CONV_TRAIN_COLS_AS_LAYER(p); /* as conv2d_s8_grad_update_dsp_run views the layer */
    if (!p.update_weights || p.train_rows <= 0) return ref;
    /* The variant conv2d_s8_grad_update_dsp_run picks, in its order. */
    size_t dsp = conv_grad_update_spatial_bytes(&p);
    if (dsp == 0 && gu_rows4(&p))
        dsp = 4 * (size_t)p.filter_h * (size_t)p.filter_w * (size_t)p.input_c * sizeof(int32_t);
    else if (dsp == 0 && p.filter_h == 1 && p.filter_w == 1) {
        /* A row gathers at most one pair per two positions. */
        const int32_t positions = p.batches * p.output_h * p.output_w;
        const int32_t n = (positions + 1) / 2 < GU_PAIRS ? (positions + 1) / 2 : GU_PAIRS;
        dsp = gu_pairs_offset(&p) + (size_t)n * sizeof(struct gu_pair);
    }
    return dsp > ref ? dsp : ref;
}

/* The selector, the runtime's entry for conv2d_s8_grad_update (ops.def): the DSP variant above when
 * the build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (conv2d_s8_grad_update.c).
 * The DSP variant falls back to the reference itself for the shapes it does not take. */
void conv2d_s8_grad_update_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        conv2d_s8_grad_update_dsp_run(params, operands, scratch);
    else
        conv2d_s8_grad_update_ref_run(params, operands, scratch);
}
