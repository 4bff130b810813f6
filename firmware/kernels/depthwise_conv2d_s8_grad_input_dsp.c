/* Input gradient of depthwise_conv2d_s8, optimized: bit-identical with
 * depthwise_conv2d_s8_grad_input_ref_run (depthwise_conv2d_s8_grad_input.c). Depth multiplier 1
 * (the MobileNet case) takes the faster path below; other multipliers the reference.
 *
 * Exactness. The same terms g' * W (g' by the same conv_grad_term with the same shift, computed
 * by the same bound) are added to the same accumulators, in another order: per output pixel,
 * the g' of a block of channels first, then tap by tap the block's channels. The shift bounds
 * the sum of the terms' absolute values by INT32_MAX, so no partial sum overflows in any order
 * and the int32 sums are equal; the int8 requantization is grad_requantize_s32's (dsp.h's
 * bit-identical dsp_grad_requantize_s32). Zero terms (masked or
 * zero gradients, which the reference skips) add nothing.
 *
 * Speed. The reference walks the taps of one channel at a time (an index computation, a load,
 * a multiply-add and a store of one accumulator per MAC). Here each valid tap runs along the
 * channels, four at a time: one word of weights (two SXTB16), the four int16 g' (two words)
 * and the four accumulators adjacent in memory. This is the variant for small gradients (4x4: the
 * channel-plane engine's per-channel set-up costs more than walking the channels); from
 * DWP_MIN_PIXELS gradient pixels on the DSP entry below takes the channel-plane variant
 * (depthwise_conv2d_s8_grad_input_planes_dsp.c). Before either, 3x3 layers on small maps with
 * their channels in quads (depthwise_conv2d_s8_grad_input_quads.h, run_quads below) take the
 * channel-quad engine where its buffers fit past the accumulators (MobileNetV2's 3x3 4x4x336:
 * 0.276 M -> 0.265 M instructions under QEMU). */
#include "conv2d_s8_grad_input.h"
#include "depthwise_conv2d_s8_grad_input.h"
#include "depthwise_conv2d_s8_grad_input_planes.h"
#include "depthwise_conv2d_s8_grad_input_quads.h"
#include "dsp.h"
#include "grad.h"

#define DWGI_BLOCK 128 /* channels whose g' the stack holds at once (256 B) */

/* The g' of a block of channels are int16 (the shift is at least CONV_GRAD_MIN_SHIFT_16, so
 * every g' fits 16 bits), each group of 4 channels in the order g0 g2 g1 g3: its two words are
 * (g0, g2) and (g1, g3), the lanes SXTB16 makes of a word of 4 weights, (w0, w2) and (w1, w3);
 * the channels past the last whole group in order. */
static inline int32_t gpos(int32_t j) {
    return (j & ~3) | (j & 1) << 1 | (j >> 1 & 1);
}

/* a[i] += g[i] * w[i] for i < 4 * groups (w int8, g as gpos lays it out). On the Cortex-M in
 * assembly: per 4 channels LDRD (4 g'), LDR (4 weights), 2 SXTB16, LDM (4 accumulators),
 * SMLABB / SMLATT for each, STM (against 4 sign extractions and 4 MLA on int32 g'). */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
static __attribute__((noinline)) void axpy4(int32_t *a, const int16_t *g, const int8_t *w,
                                            int32_t groups) {
    register int32_t *r0 __asm__("r0") = a;
    register const int16_t *r1 __asm__("r1") = g;
    register const int8_t *r2 __asm__("r2") = w;
    register int32_t r3 __asm__("r3") = groups;
    __asm__ volatile(
        "1:\n"
        "ldrd r4, r5, [r1], #8\n"
        "ldr r12, [r2], #4\n"
        "ldm r0, {r6, r7, r8, r9}\n"
        "sxtb16 lr, r12\n"
        "sxtb16 r12, r12, ror #8\n"
        "smlabb r6, r4, lr, r6\n"
        "smlatt r8, r4, lr, r8\n"
        "smlabb r7, r5, r12, r7\n"
        "smlatt r9, r5, r12, r9\n"
        "stm r0!, {r6, r7, r8, r9}\n"
        "subs r3, r3, #1\n"
        "bne 1b\n"
        : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3)
        :
        : "r4", "r5", "r6", "r7", "r8", "r9", "r12", "lr", "cc", "memory");
}
#else
static void axpy4(int32_t *a, const int16_t *g, const int8_t *w, int32_t groups) {
    for (int32_t i = 0; i < 4 * groups; i += 4) {
        a[i] += g[i] * w[i];
        a[i + 1] += g[i + 2] * w[i + 1];
        a[i + 2] += g[i + 1] * w[i + 2];
        a[i + 3] += g[i + 3] * w[i + 3];
    }
}
#endif

/* a[i] += g[i] * w[i] for i < n (w int8, g as gpos lays it out for n channels). */
static inline void axpy(int32_t *a, const int16_t *g, const int8_t *w, int32_t n) {
    const int32_t n4 = n & ~3;
    if (n4) axpy4(a, g, w, n4 >> 2);
    for (int32_t i = n4; i < n; ++i) a[i] += g[i] * (int32_t)w[i];
}

/* The reference's g' (conv_grad_term of the masked gradient) for n elements from flat index
 * i0, without branches: |g * m| rounded half up after the shift, the sign put back; m steps
 * by mstep (0: one multiplier). */
static inline int32_t term(int32_t g, int32_t m, int32_t half, int shift) {
    const int32_t v = g * m, s = v >> 31;
    return ((((v ^ s) - s) + half) >> shift ^ s) - s;
}

/* terms for 8 elements a mask byte covers (i0 a multiple of 8): the mask bits and the gradient
 * bytes taken from one byte and two words by bit-field extracts, the rounding without the
 * sign's round trip (dwp_fill's: (v + half + (v >> 31)) >> shift, shift >= 1). */
static inline __attribute__((always_inline)) void terms8(int16_t *gp, const int8_t *g, uint32_t mk,
                                                         const int32_t *m, const int mstep,
                                                         int32_t half, int shift) {
    const uint32_t ga = dsp_read4(g), gb = dsp_read4(g + 4);
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
        const uint32_t w = k < 4 ? ga : gb;
        const int32_t keep = (int32_t)(mk << (31 - k)) >> 31;
        const int32_t gk = (int32_t)(w << (24 - 8 * (k & 3))) >> 24;
        const int32_t v = (gk & keep) * m[k * mstep];
        gp[gpos(k)] = (int16_t)((v + half + (v >> 31)) >> shift);
    }
}

static void terms(int16_t *gp, const int8_t *grad, const uint8_t *mask, size_t i0, int32_t n,
                  const int32_t *m, int32_t mstep, int shift) {
    const int32_t n4 = n & ~3; /* gpos's whole groups */
    const int32_t half = shift ? (int32_t)1 << (shift - 1) : 0;
    const int8_t *g = grad + i0;
    if (mask && ((i0 | (size_t)n) & 7u) == 0 && shift >= 1) {
        /* masked, whole mask bytes (channels a multiple of 8): MobileNets' layers */
        const uint8_t *mb = mask + (i0 >> 3);
        if (mstep)
            for (int32_t j = 0; j < n; j += 8) terms8(gp + j, g + j, *mb++, m + j, 1, half, shift);
        else
            for (int32_t j = 0; j < n; j += 8) terms8(gp + j, g + j, *mb++, m, 0, half, shift);
        return;
    }
    if (!mask) {
        for (int32_t j = 0; j < n; ++j, m += mstep)
            gp[j < n4 ? gpos(j) : j] = (int16_t)term(g[j], *m, half, shift);
        return;
    }
    for (int32_t j = 0; j < n; ++j, m += mstep) {
        const size_t i = i0 + (size_t)j;
        const int32_t keep = -(int32_t)((mask[i >> 3] >> (i & 7)) & 1); /* 0 or all ones */
        gp[j < n4 ? gpos(j) : j] = (int16_t)term(g[j] & keep, *m, half, shift);
    }
}

float dwgi_requantize(const int32_t *acc, size_t n, float acc_scale, int8_t *out) {
    return dsp_grad_requantize_s32(acc, n, acc_scale, out);
}

/* The reference's shift from its overflow bound: channel c receives one term per tap, sum |W|
 * of them (multipliers m), summed tap by tap along the contiguous channels into sums (input_c
 * words of the caller's, scribbled on). */
static int pick_shift(const struct depthwise_conv2d_s8_grad_input_params *p, const int8_t *filter,
                      const int8_t *trained, const int32_t *m, int32_t *sums_) {
    const int32_t ch = p->input_c, taps = p->filter_h * p->filter_w;
    const int32_t tr = p->train_rows < ch ? p->train_rows : ch;
    uint32_t *sums = (uint32_t *)sums_;
    for (int32_t c = 0; c < ch; ++c) sums[c] = 0;
    for (int32_t t = 0; t < taps; ++t) {
        const int8_t *wt = trained + (size_t)t * (size_t)tr;
        for (int32_t c = 0; c < tr; ++c) sums[c] += (uint32_t)(wt[c] < 0 ? -wt[c] : wt[c]);
        const int8_t *wf = filter + (size_t)t * (size_t)ch;
        for (int32_t c = tr; c < ch; ++c) sums[c] += (uint32_t)(wf[c] < 0 ? -wf[c] : wf[c]);
    }
    uint64_t b0 = 0, w1 = 0;
    for (int32_t c = 0; c < ch; ++c) {
        const uint64_t bk = (uint64_t)sums[c] * 128u * (uint64_t)m[p->per_channel ? c : 0];
        if (bk > b0) b0 = bk;
        if (sums[c] > w1) w1 = sums[c];
    }
    return conv_grad_pick_shift(b0, w1, CONV_GRAD_MIN_SHIFT_16);
}

/* The channel-vectorized variant (this file's header comment); not inlined into the DSP entry,
 * whose other branch would crowd its registers. */
static __attribute__((noinline)) void run_channels(const void *params, void *const *operands,
                                                   void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct depthwise_conv2d_s8_grad_input_params p =
        *(const struct depthwise_conv2d_s8_grad_input_params *)params;
    if (p.depth_multiplier != 1) {
        depthwise_conv2d_s8_grad_input_ref_run(params, operands, scratch);
        return;
    }
    const int8_t *grad_out = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT];
    const float grad_out_scale =
        *(const float *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE];
    const uint8_t *mask =
        p.has_mask ? (const uint8_t *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_MASK] : NULL;
    const int8_t *filter = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_FILTER];
    const int8_t *trained = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_TRAINED_FILTER];
    const float *scales = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_WEIGHT_SCALES];
    int8_t *grad_in = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT];
    float *grad_in_scale = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE];

    const int32_t ch = p.input_c; /* = output channels (multiplier 1) */
    const int32_t tr = p.train_rows < ch ? p.train_rows : ch;
    const size_t in_row = (size_t)p.input_w * (size_t)ch;
    const size_t in_image = (size_t)p.input_h * in_row;
    const size_t n_in = (size_t)p.batches * in_image;
    const int32_t taps = p.filter_h * p.filter_w;
    int32_t *acc = scratch;
    int32_t *m = acc + n_in; /* Q23 channel multipliers, as the reference's scratch */
    const float max_scale = conv_grad_channel_q23(scales, p.per_channel ? ch : 1, m);

    /* The reference's shift: the smallest one when even the worst weights need no more
     * (dw_grad_worst_shift), else from the weights, their sums in the accumulators (n_in >= ch,
     * cleared below). */
    int shift = dw_grad_worst_shift(taps);
    if (shift > CONV_GRAD_MIN_SHIFT_16) shift = pick_shift(&p, filter, trained, m, acc);

    for (size_t i = 0; i < n_in; ++i) acc[i] = 0;
    int16_t gbuf[DWGI_BLOCK] __attribute__((aligned(8)));
    for (int32_t b = 0; b < p.batches; ++b) {
        int32_t *image = acc + (size_t)b * in_image;
        for (int32_t oy = 0; oy < p.output_h; ++oy) {
            const int32_t y0 = oy * p.stride_h - p.pad_h;
            for (int32_t ox = 0; ox < p.output_w; ++ox) {
                const int32_t x0 = ox * p.stride_w - p.pad_w;
                const size_t idx0 =
                    (((size_t)b * (size_t)p.output_h + (size_t)oy) * (size_t)p.output_w +
                     (size_t)ox) *
                    (size_t)ch;
                for (int32_t c0 = 0, n; c0 < ch; c0 += n) {
                    /* A block's channels all read trained rows (below tr) or all flash rows, so
                     * that its g' groups (gpos) start where its weights do. */
                    n = ch - c0 < DWGI_BLOCK ? ch - c0 : DWGI_BLOCK;
                    if (c0 < tr && tr < c0 + n) n = tr - c0;
                    terms(gbuf, grad_out, mask, idx0 + (size_t)c0, n, m + (p.per_channel ? c0 : 0),
                          p.per_channel ? 1 : 0, shift);
                    const int8_t *wt = c0 < tr ? trained + c0 : filter + c0;
                    const size_t wstep = c0 < tr ? (size_t)tr : (size_t)ch;
                    for (int32_t fy = 0; fy < p.filter_h; ++fy) {
                        const int32_t y = y0 + fy * p.dilation_h;
                        if (y < 0 || y >= p.input_h) continue;
                        for (int32_t fx = 0; fx < p.filter_w; ++fx) {
                            const int32_t x = x0 + fx * p.dilation_w;
                            if (x < 0 || x >= p.input_w) continue;
                            const size_t t = (size_t)fy * (size_t)p.filter_w + (size_t)fx;
                            int32_t *a = image + (size_t)y * in_row + (size_t)x * (size_t)ch;
                            axpy(a + c0, gbuf, wt + t * wstep, n);
                        }
                    }
                }
            }
        }
    }
    *grad_in_scale =
        dwgi_requantize(acc, n_in, grad_out_scale * max_scale * conv_grad_unit(shift), grad_in);
}

/* The channel-quad variant (depthwise_conv2d_s8_grad_input_quads.h) on small maps (up to
 * DWQ_MAX_PLANE input pixels: MobileNetV2's 4x4 layers), its buffers past the accumulators (in the
 * scratch the reference gives the Q23 multipliers): each quad's accumulators into the whole
 * input's, their max|acc| on the way, then dsp.h's rounding (in place: int8 element i written
 * after accumulator i is read, as the output-over-scratch overlap requires). Returns 0 where it
 * does not take the shape. */
static int quads_take(const struct depthwise_conv2d_s8_grad_input_params *p, struct dwq *q,
                      size_t *at) {
    const size_t n_in =
        (size_t)p->batches * (size_t)p->input_h * (size_t)p->input_w * (size_t)p->input_c;
    *at = (n_in * sizeof(int32_t) + 7u) & ~(size_t)7u;
    /* the cheap tests first: the others' shapes pay only these */
    return dwq_shape(p) && dwq_setup(q, p) &&
           dwq_fit(q, depthwise_conv2d_s8_grad_input_scratch_size(p) - *at);
}

int32_t depthwise_conv2d_s8_grad_input_dsp_quads(const void *params) {
    const struct depthwise_conv2d_s8_grad_input_params p =
        *(const struct depthwise_conv2d_s8_grad_input_params *)params;
    struct dwq q;
    size_t at;
    return quads_take(&p, &q, &at);
}

static __attribute__((noinline)) int run_quads(
    const struct depthwise_conv2d_s8_grad_input_params *p, void *const *operands, void *scratch) {
    struct dwq q;
    size_t at;
    if (!quads_take(p, &q, &at)) return 0;
    const size_t n_in =
        (size_t)p->batches * (size_t)p->input_h * (size_t)p->input_w * (size_t)p->input_c;
    const float max_scale = dwq_operands(&q, operands);
    const float grad_out_scale =
        *(const float *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE];
    int8_t *grad_in = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT];
    float *grad_in_scale = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE];
    int32_t *acc = scratch;
    void *buf = (uint8_t *)scratch + at;
    dwq_clear(&q, buf);
    uint32_t max_abs = 0;
    for (int32_t c0 = 0; c0 < p->input_c; c0 += 4)
        for (int32_t b = 0; b < p->batches; ++b) {
            const uint32_t m = dwq_run(&q, buf, b, c0, DWQ_STORE, acc + c0, p->input_c, NULL, NULL);
            if (m > max_abs) max_abs = m;
        }
    struct dsp_round r;
    dsp_round_prepare(&r, max_abs);
    dsp_round_apply(&r, acc, n_in, grad_in);
    const float acc_scale = grad_out_scale * max_scale * conv_grad_unit(CONV_GRAD_MIN_SHIFT_16);
    *grad_in_scale = max_abs ? (float)max_abs * acc_scale / 127.0f : 0.0f;
    return 1;
}

/* The DSP variant: the channel-plane one (depthwise_conv2d_s8_grad_input_planes_dsp.c) for the
 * shapes it takes (8x8 gradients and up), else the channel-vectorized one above (which runs the
 * reference itself for depth multipliers above 1). */
void depthwise_conv2d_s8_grad_input_dsp_run(const void *params, void *const *operands,
                                            void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct depthwise_conv2d_s8_grad_input_params p =
        *(const struct depthwise_conv2d_s8_grad_input_params *)params;
    if (run_quads(&p, operands, scratch)) return;
    if (depthwise_conv2d_s8_grad_input_planes_dsp_takes(&p))
        depthwise_conv2d_s8_grad_input_planes_dsp_run(&p, operands, scratch);
    else
        run_channels(params, operands, scratch);
}

/* The selector, the runtime's entry for depthwise_conv2d_s8_grad_input (ops.def): the DSP variant
 * above when the build enables it (KERNELS_USE_DSP(), dsp.h), else the reference
 * (depthwise_conv2d_s8_grad_input.c). */
void depthwise_conv2d_s8_grad_input_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        depthwise_conv2d_s8_grad_input_dsp_run(params, operands, scratch);
    else
        depthwise_conv2d_s8_grad_input_ref_run(params, operands, scratch);
}
