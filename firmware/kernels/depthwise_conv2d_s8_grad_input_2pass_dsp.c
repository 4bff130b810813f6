/* Input gradient of depthwise_conv2d_s8 in two passes, optimized: bit-identical with
 * depthwise_conv2d_s8_grad_input_2pass_ref_run (depthwise_conv2d_s8_grad_input_2pass.c), with
 * the operator's scratch laid out its own way (dwp_offset below: first input_c words the
 * reference gives the Q23 multipliers, here a block of accumulator rows, more kept channels
 * where room is left (kept_channels) and the kept channels' shifts; then the channel-plane engine's
 * g' plane, packed weights and accumulator row, at most 2.6 KB; the operator plans the larger of
 * this and the reference's layout). Shapes the channel-plane engine takes run here; others the
 * reference.
 *
 * Exactness. Each input gradient accumulator receives the same terms g' * W (g' by the same
 * rounding of the masked gradient with the same shift: the engine's filters need the smallest
 * one whatever their weights, dw_grad_worst_shift) as in the reference, summed in another
 * order. The shift bounds the sum of the terms' absolute values by INT32_MAX, so no partial
 * sum overflows in any order and the int32 sums are equal. Pass 1 takes max|acc| over every
 * channel, pass 2 rounds each accumulator exactly as the reference's 64-bit division does
 * (quotient below: dsp_round4's fixed-point estimate and one correction; dsp.h's
 * dsp_grad_round_s32 where max|acc| is outside its range), so the int8 gradient and its float
 * scale (the reference's expression) are the same bits. Half of
 * the channels (more on small maps) are not computed again in pass 2: their values kept from pass 1
 * (run_planes) give the rounded value unless a rounding boundary falls inside the kept interval,
 * and then the accumulator is computed again exactly (exact_acc).
 *
 * Speed. The reference scatters: per output pixel and tap an index computation, bounds
 * checks, a strided weight load and a read-modify-write of one accumulator, and it rounds
 * with a 64-bit division per element. Here the channel-plane engine
 * (depthwise_conv2d_s8_grad_input_planes.h) gathers a block of input rows' accumulators as
 * plain correlations of the channel's int16 g' plane, two taps per SMLAD, no product spent on
 * a stride's zeros: pass 1 needs their magnitude (and keeps half of the channels in the output
 * bytes), pass 2 their rounded value (one UMULL per element). Shapes the engine does not take
 * (depth multiplier above 1, dilation, strides above 2, planes beyond its buffers) run the
 * reference.
 *
 * keep (the header): channels [0, keep) keep their int32 accumulators in the scratch's kept part
 * (the reference's layout of keep 0 follows it, and this variant's own), so pass 2 only rounds
 * them; the engines above work past it. The channel-plane engine keeps them whole per channel
 * (channel-major, every batch); its own int16 keeping then starts at channel keep.
 *
 * Small maps (3x3 filters, channels a multiple of 4, up to 8x8 inputs, the buffers within the
 * scratch: MobileNetV2's 8x8x192 layers) run the channel-quad engine first
 * (depthwise_conv2d_s8_grad_input_quads.h: four channels a turn, each pixel's sums in registers,
 * one word read of the quad's gradient and one word written of its result; measured under QEMU
 * on MobileNetV2's streamed step: 3x3 8x8x192 1.06 M -> 0.84 M instructions, 3x3/2 from 8x8x192
 * 0.91 M -> 0.47 M; QEMU counts LDM/STM as one instruction). It keeps whole quads (keep rounded
 * down to a multiple of 4) in the kept part, and a quarter of the channels beyond them as int32 in
 * the output bytes between the passes (run_quads). */
#include "conv2d_s8_grad_input.h"
#include "depthwise_conv2d_s8_grad_input.h" /* the operand order */
#include "depthwise_conv2d_s8_grad_input_2pass.h"
#include "depthwise_conv2d_s8_grad_input_planes.h"
#include "depthwise_conv2d_s8_grad_input_quads.h"
#include "dsp.h"
#include "grad.h"

/* The DSP variant's scratch for a shape the engine takes: one Q23 multiplier per channel,
 * then, at the offset this returns (8-aligned), the engine's buffers (dwp_buffer_size). */
static size_t dwp_offset(const struct depthwise_conv2d_s8_grad_input_params *p) {
    return ((size_t)p->input_c * sizeof(int32_t) + 7u) & ~(size_t)7u;
}

/* The accumulator rows' pitch: the engine's, or packed where it writes no column past a row's
 * end. */
static int32_t acc_pitch(const struct dwp *d) {
    return d->whole4 ? d->p.input_w : DWP_PITCH(d);
}

/* The one-pass kernel's parameters: the two-pass kernel's first fields (its header). */
static void params_1pass(const struct depthwise_conv2d_s8_grad_input_2pass_params *p2,
                         struct depthwise_conv2d_s8_grad_input_params *p) {
    __builtin_memcpy(p, p2, sizeof *p);
}

/* Channel c's accumulator at input (y, x) of batch 0 (multiplier mc), computed as the
 * reference computes it: one term g' * W per tap that meets an output (dilation 1), the same
 * int32 sum in another order. */
static int32_t exact_acc(const struct dwp *d, int32_t c, int32_t mc, int32_t y, int32_t x) {
    const struct depthwise_conv2d_s8_grad_input_params *p = &d->p;
    const int32_t tr = p->train_rows < p->input_c ? p->train_rows : p->input_c;
    const int8_t *w = c < tr ? d->trained + c : d->filter + c;
    const size_t stride = c < tr ? (size_t)tr : (size_t)p->input_c;
    const int32_t half = (int32_t)1 << (d->shift - 1);
    int32_t s = 0;
    for (int32_t fy = 0; fy < p->filter_h; ++fy) {
        const int32_t ty = y + p->pad_h - fy;
        if (ty < 0 || ty % p->stride_h || ty / p->stride_h >= p->output_h) continue;
        for (int32_t fx = 0; fx < p->filter_w; ++fx) {
            const int32_t tx = x + p->pad_w - fx;
            if (tx < 0 || tx % p->stride_w || tx / p->stride_w >= p->output_w) continue;
            const size_t i =
                ((size_t)(ty / p->stride_h) * (size_t)p->output_w + (size_t)(tx / p->stride_w)) *
                    (size_t)p->input_c +
                (size_t)c;
            const int32_t v = conv_grad_masked(d->grad_out, d->mask, i) * mc;
            s += ((v + half + (v >> 31)) >> d->shift) *
                 (int32_t)w[((size_t)fy * (size_t)p->filter_w + (size_t)fx) * stride];
        }
    }
    return s;
}

/* Pass 2's rounding (grad_requantize_s32's, as dsp_round4 does it): r = dsp_grad_recip(M), 128
 * <= M = max_abs < 2^30, half = M / 2. */
struct rounding {
    uint32_t max_abs, half, r;
};

/* For 0 <= a <= max_abs: q = floor(a r / 2^32) is floor(127 a / M) or one more and never above
 * the rounded quotient floor((127 a + half) / M) (dsp.h's dsp_round4), so the remainder
 * 127 a + half - q M lies in [0, 2 M) and one step corrects q: *rem is left in [0, M). */
static inline uint32_t quotient(uint32_t a, uint32_t max_abs, uint32_t half, uint32_t r,
                                uint32_t *rem) {
    const uint32_t q = (uint32_t)(((uint64_t)a * r) >> 32);
    const uint32_t t = a * 127u + half - q * max_abs;
    const uint32_t over = (uint32_t)((int32_t)(max_abs - 1u - t) >> 31); /* t >= M */
    *rem = t - (max_abs & over);
    return q - over;
}

/* Pass 2 of a channel whose int32 accumulators are at hand (kept by pass 1, keep): out[i * c_n] =
 * a[i] rounded, i < n, grad_requantize_s32's rounding (quotient where 128 <= max_abs < 2^30, else
 * dsp.h's dsp_grad_round_s32). */
static __attribute__((noinline)) void round_s32(const int32_t *a, size_t n, int8_t *out, size_t c_n,
                                                const struct rounding *k, int recip, float kf) {
    if (recip) {
        const uint32_t max_abs = k->max_abs, half = k->half, r = k->r;
        for (const int32_t *end = a + n; a != end; ++a, out += c_n) {
            const int32_t v = *a, sg = v >> 31;
            uint32_t rem;
            const uint32_t q = quotient((uint32_t)((v ^ sg) - sg), max_abs, half, r, &rem);
            *out = (int8_t)(((int32_t)q ^ sg) - sg);
        }
        return;
    }
    for (size_t i = 0; i < n; ++i, out += c_n)
        *out = dsp_grad_round_s32(a[i], k->max_abs, k->half, kf);
}

/* The rare path of round_kept, apart so that its loop keeps its registers: the accumulator at
 * position i computed again (exact_acc), rounded. */
static __attribute__((noinline)) int8_t round_exact(const struct dwp *d, int32_t c, int32_t mc,
                                                    size_t i, const struct rounding *k) {
    const int32_t y = (int32_t)(i / (size_t)d->p.input_w), x = (int32_t)(i % (size_t)d->p.input_w);
    return dsp_grad_round_s32_recip(exact_acc(d, c, mc, y, x), k->max_abs, k->half, k->r);
}

/* What kept_run needs (the assembly reads the fields in this order; n: kept_run's n). */
struct kept_k {
    uint32_t r, max_abs, half, edge, c_n, sh, from_step, n;
};

/* out[j * c_n] for j < n from the kept values from[j * from_step] (int16 acc >> sh) while no
 * rounding boundary falls inside a kept interval; returns the j where one first does
 * (out[j * c_n] not written), or n (n > 0, k->n == n). The element's steps are quotient's. */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
/* In assembly (GCC's loop kept two of its constants on the stack: 27 instructions an element,
 * here 21): a = v << sh where v >= 0, ((-1 - v) << sh) + 1 where v < 0 (the low end of |acc|'s
 * interval: v ^ (v >> 31) shifted, then 1 added back where v < 0), q = (a r) >> 32,
 * t = 127 a + half - q M, q + 1 and t - M where t >= M, then the boundary test and the sign put
 * back. */
static __attribute__((noinline)) uint32_t kept_run(const int8_t *from, int8_t *out, uint32_t n,
                                                   const struct kept_k *k) {
    register uint32_t r0 __asm__("r0") = (uint32_t)(uintptr_t)from;
    register int8_t *r1 __asm__("r1") = out;
    register uint32_t r2 __asm__("r2") = n;
    register const struct kept_k *r3 __asm__("r3") = k;
    __asm__ volatile(
        "push {r3}\n"
        "ldrd r4, r5, [r3]\n"
        "ldrd r6, r7, [r3, #8]\n"
        "ldrd r8, r9, [r3, #16]\n"
        "ldr r3, [r3, #24]\n"
        "1:\n"
        "ldrsh r10, [r0]\n"
        "eor r11, r10, r10, asr #31\n"
        "lsl r11, r11, r9\n"
        "sub r11, r11, r10, asr #31\n"
        "umull r12, lr, r11, r4\n"
        "rsb r11, r11, r11, lsl #7\n"
        "add r11, r11, r6\n"
        "mls r11, lr, r5, r11\n"
        "subs r12, r11, r5\n"
        "itt hs\n"
        "movhs r11, r12\n"
        "addhs lr, lr, #1\n"
        "cmp r11, r7\n"
        "bhs 2f\n"
        "eor lr, lr, r10, asr #31\n"
        "sub lr, lr, r10, asr #31\n"
        "strb lr, [r1]\n"
        "add r0, r0, r3\n"
        "add r1, r1, r8\n"
        "subs r2, r2, #1\n"
        "bne 1b\n"
        "2:\n"
        "pop {r3}\n"
        "ldr r3, [r3, #28]\n"
        "sub r0, r3, r2\n"
        : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3)
        :
        : "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
    return r0;
}
#else
static uint32_t kept_run(const int8_t *from, int8_t *out, uint32_t n, const struct kept_k *k) {
    for (uint32_t j = 0; j < n; ++j, from += k->from_step, out += k->c_n) {
        int16_t v16;
        __builtin_memcpy(&v16, from, 2);
        const int32_t v = v16, sg = v >> 31;
        uint32_t rem;
        const uint32_t q =
            quotient(((uint32_t)(v ^ sg) << k->sh) - (uint32_t)sg, k->max_abs, k->half, k->r, &rem);
        if (rem >= k->edge) return j;
        *out = (int8_t)(((int32_t)q ^ sg) - sg);
    }
    return n;
}
#endif

/* Pass 2 of a kept channel c (multiplier mc): grad_in[i * ch + c] for every position i (one
 * batch) from its kept value from[i * from_step] (int16, acc >> sh). A kept value v gives
 * |acc| in [a, a + 2^sh - 1], a = v << sh (v >= 0) or (-1 - v) << sh + 1; the quotient of every
 * |acc| there is a's unless a's remainder plus 127 (2^sh - 1) reaches max_abs (kept_run), and
 * then the accumulator is computed again (round_exact). */
static __attribute__((noinline)) void round_kept(const struct dwp *d, int32_t c, int32_t mc,
                                                 int8_t *grad_in, const struct rounding *k, int sh,
                                                 const int8_t *from, uint32_t from_step) {
    const size_t c_n = (size_t)d->p.input_c;
    const uint32_t n = (uint32_t)d->p.input_h * (uint32_t)d->p.input_w;
    /* a remainder from `edge` on has a boundary within 127 (2^sh - 1) (< max_abs / 128: the
     * kept shift leaves 15 bits of the channel's largest |acc|, itself <= max_abs) */
    struct kept_k kk = {
        k->r,          k->max_abs,   k->half,   k->max_abs - 127u * ((1u << sh) - 1u),
        (uint32_t)c_n, (uint32_t)sh, from_step, 0};
    int8_t *out = grad_in + (size_t)c;
    for (uint32_t i = 0; i < n;) {
        kk.n = n - i;
        i += kept_run(from + i * from_step, out + i * c_n, n - i, &kk);
        if (i < n) out[i * c_n] = round_exact(d, c, mc, i, k), ++i;
    }
}

/* The plane engine's path (depthwise_conv2d_s8_grad_input_planes.h): the reference's two
 * passes, channel by channel, the accumulators of a block of input rows at a time from the
 * engine, never kept: pass 1 takes their magnitude, pass 2 rounds them. The rows go to the
 * scratch the reference gives the Q23 multipliers (computed when needed here, dwp_q23) when
 * two rows or more fit there, else to the engine's one-row buffer. Returns 0 when the engine
 * does not take the shape. */
/* The rows of a block of accumulators: in the scratch before the kept shifts where two rows
 * or more fit there (*in_scratch), else one row in the engine's buffer; and how many channels
 * are kept: ch / 2 in the output bytes where one batch's every row fits a block, else none
 * (run_planes), and *extra more (channels ch / 2 on) in what the block leaves of that scratch
 * (small maps with many channels: 4x4 ones), each plane_n int16 values and a shift byte. */
static int32_t kept_channels(const struct depthwise_conv2d_s8_grad_input_params *p,
                             const struct dwp *d, int32_t *block_rows, int *in_scratch,
                             int32_t *extra) {
    const size_t acc_bytes = dwp_offset(p) - (size_t)(p->input_c / 2);
    int32_t block = (int32_t)(acc_bytes / ((size_t)DWP_PITCH(d) * sizeof(int32_t)));
    *in_scratch = block >= 2;
    if (block < 2) block = 1;
    if (block > p->input_h) block = p->input_h;
    *block_rows = block;
    *extra = 0;
    if (p->batches != 1 || block != p->input_h) return 0;
    if (!*in_scratch) return p->input_c / 2; /* the rows in the engine's buffer: no room */
    const size_t used = (size_t)block * (size_t)acc_pitch(d) * sizeof(int32_t);
    const size_t plane_n = (size_t)p->input_h * (size_t)p->input_w;
    const int32_t fit = (int32_t)((acc_bytes - used) / (2 * plane_n + 1));
    const int32_t rest = p->input_c - p->input_c / 2;
    *extra = fit < rest ? fit : rest;
    return p->input_c / 2;
}

static __attribute__((noinline)) int run_planes(
    const struct depthwise_conv2d_s8_grad_input_2pass_params *p2, void *const *operands,
    void *scratch_all) {
    struct depthwise_conv2d_s8_grad_input_params p;
    params_1pass(p2, &p);
    struct dwp d;
    if (!dwp_setup(&d, &p)) return 0;
    /* The kept channels' int32 accumulators (channel-major, every batch) at the scratch's start,
     * the layout of keep 0 after them (the header). */
    const int32_t keep = dw2_keep(p2);
    int32_t *const kept32 = scratch_all;
    void *const scratch = (uint8_t *)scratch_all + dw2_kept_bytes(p2);
    const float max_scale = dwp_operands(&d, operands);
    const float grad_out_scale =
        *(const float *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE];
    int8_t *grad_in = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT];
    float *grad_in_scale = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE];
    const int32_t ch = p.input_c; /* = output channels (multiplier 1) */
    const int32_t in_w =
        p.input_w; /* (p's address escapes: its fields are reloaded after stores) */
    const size_t plane_n = (size_t)p.input_h * (size_t)p.input_w;
    const size_t n_plane = (size_t)p.batches * plane_n;

    int16_t *plane;
    uint32_t *words;
    int32_t *row;
    dwp_buffers(&d, (uint8_t *)scratch + dwp_offset(&p), &plane, &words, &row);
    dwp_clear(&d, plane);
    /* Pass 1 computes every channel for max|acc|. The output is free until pass 2, and its
     * bytes keep half of the channels' accumulators, so pass 2 rounds those without computing
     * them again: channel c < kept = ch / 2 as int16 acc >> shifts[c] at grad_in[pos * ch + 2 c]
     * (shifts[c]: the fewest bits that bring its largest |acc| below 2^15). Pass 2 goes up the
     * channels; channel j's output bytes grad_in[pos * ch + j] (j <= 2 j) hold channel j / 2's
     * values, read by then (at pos itself, before the write, for j = 0). A kept value gives an
     * interval of 2^shift accumulators; where one rounding boundary falls inside it (rarely: the
     * interval is ~2^-7 of a rounding step), the accumulator is computed again exactly
     * (exact_acc). The channel's rows go to the scratch the reference gives the multipliers
     * (computed when needed, dwp_q23), then the kept shifts; this needs every row of a channel
     * there at once (one batch), else nothing is kept. */
    /* Rows at the engine's pitch, or packed where it writes no column past a row's end */
    const int32_t pitch = acc_pitch(&d);
    const size_t c_n = (size_t)ch;
    uint8_t *shifts = (uint8_t *)scratch + dwp_offset(&p) - (size_t)(ch / 2);
    int32_t block, extra;
    int in_scratch;
    /* int16 values of channels [keep, kept) in the output bytes, of [e0, e0 + extra) in the
     * scratch past the rows; channels below keep have their int32 ones */
    const int32_t kept = kept_channels(&p, &d, &block, &in_scratch, &extra);
    const int32_t e0 = keep > kept ? keep : kept;
    if (extra > ch - e0) extra = ch - e0;
    int32_t *acc = in_scratch ? scratch : row;
    /* the extra kept channels' values (plane_n int16 each), then their shifts, past the rows */
    int16_t *ext = (int16_t *)(acc + (size_t)block * (size_t)pitch);
    uint8_t *ext_shifts = (uint8_t *)(ext + (size_t)extra * plane_n);

    uint32_t max_abs = 0;
    for (int32_t c = 0; c < ch; ++c) {
        const int32_t mc = dwp_q23(&d, c);
        dwp_kernel(&d, c, words);
        for (int32_t b = 0; b < p.batches; ++b) {
            int32_t *k32 =
                c < keep ? kept32 + ((size_t)c * (size_t)p.batches + (size_t)b) * plane_n : NULL;
            if (!dwp_fill(&d, b, c, mc, plane)) {
                if (k32) {
                    __builtin_memset(k32, 0, plane_n * sizeof(int32_t));
                } else if (c < kept) {
                    shifts[c] = 0;
                    for (size_t i = 0; i < plane_n; ++i)
                        __builtin_memset(grad_in + i * c_n + 2 * (size_t)c, 0, 2);
                } else if (c >= e0 && c < e0 + extra) {
                    ext_shifts[c - e0] = 0;
                    __builtin_memset(ext + (size_t)(c - e0) * plane_n, 0, 2 * plane_n);
                }
                continue;
            }
            uint32_t cmax = 0;
            /* a kept channel's rows straight into its place where they are packed (pitch) */
            const int direct = k32 && pitch == p.input_w;
            for (int32_t y0 = 0; y0 < p.input_h; y0 += block) {
                const int32_t ny = p.input_h - y0 < block ? p.input_h - y0 : block;
                int32_t *dst = direct ? k32 + (size_t)y0 * (size_t)in_w : acc;
                dwp_rows(&d, plane, words, y0, ny, dst, pitch, 1);
                if (pitch == p.input_w)
                    cmax = dsp_max_abs_s32(dst, (size_t)ny * (size_t)pitch, cmax);
                else
                    for (int32_t y = 0; y < ny; ++y)
                        cmax = dsp_max_abs_s32(acc + (size_t)y * (size_t)pitch, (size_t)p.input_w,
                                               cmax);
                if (k32 && !direct)
                    for (int32_t y = 0; y < ny; ++y)
                        __builtin_memcpy(k32 + (size_t)(y0 + y) * (size_t)in_w,
                                         acc + (size_t)y * (size_t)pitch,
                                         (size_t)in_w * sizeof(int32_t));
            }
            if (cmax > max_abs) max_abs = cmax;
            if (k32) {
                /* kept whole */
            } else if (c < kept) { /* every row of the channel is in acc (block == input_h) */
                const int sh = cmax >> 15 ? 17 - __builtin_clz(cmax) : 0;
                shifts[c] = (uint8_t)sh;
                int8_t *to = grad_in + 2 * (size_t)c;
                for (int32_t y = 0; y < p.input_h; ++y) {
                    const int32_t *a = acc + (size_t)y * (size_t)pitch, *row_end = a + in_w;
                    for (; a != row_end; ++a, to += c_n) {
                        const int16_t v = (int16_t)(*a >> sh);
                        __builtin_memcpy(to, &v, 2);
                    }
                }
            } else if (c >= e0 && c < e0 + extra) { /* the same, into the scratch past the rows */
                const int sh = cmax >> 15 ? 17 - __builtin_clz(cmax) : 0;
                ext_shifts[c - e0] = (uint8_t)sh;
                int16_t *to = ext + (size_t)(c - e0) * plane_n;
                for (int32_t y = 0; y < p.input_h; ++y) {
                    const int32_t *a = acc + (size_t)y * (size_t)pitch, *row_end = a + in_w;
                    for (; a != row_end; ++a) *to++ = (int16_t)(*a >> sh);
                }
            }
        }
    }
    if (max_abs == 0) {
        for (size_t i = 0; i < n_plane * c_n; ++i) grad_in[i] = 0;
        *grad_in_scale = 0.0f;
        return 1;
    }
    /* Pass 2: each channel, kept or computed again, rounded as grad_requantize_s32 rounds
     * (dsp.h's twins). The kept values need the reciprocal rounding (128 <= max_abs < 2^30);
     * otherwise every channel is computed again. */
    const uint32_t half = max_abs / 2u;
    const float k = 127.0f / (float)max_abs;
    const int recip = max_abs >= 128u && max_abs < (1u << 30);
    const uint32_t r = recip ? dsp_grad_recip(max_abs) : 0u;
    const struct rounding rk = {max_abs, half, r};
    for (int32_t c = 0; c < ch; ++c) {
        if (c < keep) { /* the accumulators kept whole: only rounded */
            for (int32_t b = 0; b < p.batches; ++b)
                round_s32(kept32 + ((size_t)c * (size_t)p.batches + (size_t)b) * plane_n, plane_n,
                          grad_in + (size_t)b * plane_n * c_n + (size_t)c, c_n, &rk, recip, k);
            continue;
        }
        const int32_t mc = dwp_q23(&d, c);
        if (c < kept && recip) {
            round_kept(&d, c, mc, grad_in, &rk, shifts[c], grad_in + 2 * (size_t)c, (uint32_t)c_n);
            continue;
        }
        if (c >= e0 && c < e0 + extra && recip) {
            round_kept(&d, c, mc, grad_in, &rk, ext_shifts[c - e0],
                       (const int8_t *)(ext + (size_t)(c - e0) * plane_n), 2u);
            continue;
        }
        dwp_kernel(&d, c, words);
        for (int32_t b = 0; b < p.batches; ++b) {
            int8_t *out = grad_in + (size_t)b * plane_n * c_n + (size_t)c;
            if (!dwp_fill(&d, b, c, mc, plane)) {
                for (size_t i = 0; i < plane_n; ++i) out[i * c_n] = 0;
                continue;
            }
            for (int32_t y0 = 0; y0 < p.input_h; y0 += block) {
                const int32_t ny = p.input_h - y0 < block ? p.input_h - y0 : block;
                dwp_rows(&d, plane, words, y0, ny, acc, pitch, 1);
                for (int32_t y = 0; y < ny; ++y) {
                    const int32_t *a = acc + (size_t)y * (size_t)pitch;
                    if (recip)
                        for (const int32_t *row_end = a + in_w; a != row_end; ++a, out += c_n) {
                            const int32_t v = *a, sg = v >> 31;
                            uint32_t rem;
                            const uint32_t q =
                                quotient((uint32_t)((v ^ sg) - sg), max_abs, half, r, &rem);
                            *out = (int8_t)(((int32_t)q ^ sg) - sg);
                        }
                    else /* max_abs < 128 or >= 2^30: rare, the rounding for every range */
                        for (int32_t x = 0; x < p.input_w; ++x, out += c_n)
                            *out = dsp_grad_round_s32(a[x], max_abs, half, k);
                }
            }
        }
    }
    *grad_in_scale =
        (float)max_abs * (grad_out_scale * max_scale * conv_grad_unit(d.shift)) / 127.0f;
    return 1;
}

/* The channel-quad engine's path (depthwise_conv2d_s8_grad_input_quads.h), small maps: four
 * channels at a time, their accumulators in registers. Pass 1 takes max|acc| (and stores the
 * accumulators of the kept quads, keep rounded down to a multiple of 4, in the scratch's kept
 * part: quad c0's at kept + c0 * n_plane, four per position), pass 2 rounds the kept ones and
 * computes the others again, rounding them in registers; the engine's buffers go where the
 * layout of keep 0 starts. Returns 0 when the engine does not take the shape or its buffers do
 * not fit the operator's scratch. */
static int quads_take(const struct depthwise_conv2d_s8_grad_input_2pass_params *p2, struct dwq *q) {
    struct depthwise_conv2d_s8_grad_input_params p;
    params_1pass(p2, &p);
    /* the cheap tests first: the others' shapes pay only these */
    return dwq_shape(&p) && dwq_setup(q, &p) &&
           dwq_fit(q, depthwise_conv2d_s8_grad_input_2pass_scratch_size(p2) - dw2_kept_bytes(p2));
}

/* The end of the quads that keep their sums between the passes, kq (keep rounded down to whole
 * quads) or more: quads [kq, end) in the output bytes (run_quads), where the output is 4-aligned
 * (aligned), a quarter of the channels in whole quads. */
static int32_t quads_kept_end(int32_t ch, int32_t kq, int aligned) {
    const int32_t end = aligned ? (ch / 4) & ~3 : 0;
    return end < kq ? kq : end;
}

static __attribute__((noinline)) int run_quads(
    const struct depthwise_conv2d_s8_grad_input_2pass_params *p2, void *const *operands,
    void *scratch_all) {
    struct dwq q;
    if (!quads_take(p2, &q)) return 0;
    const struct depthwise_conv2d_s8_grad_input_params *p = &q.p;
    void *buf = (uint8_t *)scratch_all + dw2_kept_bytes(p2);
    int32_t *const kept32 = scratch_all;
    const int32_t kq = dw2_keep(p2) & ~3, ch = p->input_c;
    const float max_scale = dwq_operands(&q, operands);
    const float grad_out_scale =
        *(const float *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE];
    int8_t *grad_in = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT];
    float *grad_in_scale = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE];
    const size_t n_plane = (size_t)p->batches * (size_t)p->input_h * (size_t)p->input_w;
    dwq_clear(&q, buf);
    /* Quads [kq, free_end) keep their sums between the passes in the output bytes, free until
     * pass 2: quad c0's at bytes [4 c0, 4 c0 + 16) of each pixel (4 c0 + 16 <= ch). Pass 2 goes
     * up the quads, quad j writing bytes [j, j + 4): before 4 c0 for every j < c0, and a quad
     * reads its own sums before writing (dwq_round_free), so none is overwritten unread. */
    const int32_t free_end = quads_kept_end(ch, kq, ((uintptr_t)grad_in & 3u) == 0);
    uint32_t max_abs = 0;
    for (int32_t c0 = 0; c0 < ch; c0 += 4)
        for (int32_t b = 0; b < p->batches; ++b) {
            uint32_t m;
            if (c0 < kq)
                m = dwq_run(&q, buf, b, c0, DWQ_STORE, kept32 + (size_t)c0 * n_plane, 4, NULL,
                            NULL);
            else if (c0 < free_end)
                m = dwq_run(&q, buf, b, c0, DWQ_STORE, (int32_t *)(void *)(grad_in + 4 * c0),
                            ch / 4, NULL, NULL);
            else
                m = dwq_run(&q, buf, b, c0, DWQ_MAX, NULL, 0, NULL, NULL);
            if (m > max_abs) max_abs = m;
        }
    if (max_abs == 0) {
        for (size_t i = 0; i < n_plane * (size_t)ch; ++i) grad_in[i] = 0;
        *grad_in_scale = 0.0f;
        return 1;
    }
    struct dwq_round rnd = {max_abs, max_abs / 2u, 0u, 127.0f / (float)max_abs};
    if (max_abs >= 128u && max_abs < (1u << 30)) rnd.r = dsp_grad_recip(max_abs);
    for (int32_t c0 = 0; c0 < ch; c0 += 4) {
        if (c0 < kq) {
            dwq_round_kept(kept32 + (size_t)c0 * n_plane, n_plane, grad_in + c0, (size_t)ch, &rnd);
            continue;
        }
        if (c0 < free_end) {
            dwq_round_free(&q, buf, grad_in, c0, &rnd);
            continue;
        }
        for (int32_t b = 0; b < p->batches; ++b)
            (void)dwq_run(&q, buf, b, c0, DWQ_ROUND, NULL, 0, grad_in, &rnd);
    }
    *grad_in_scale = (float)max_abs *
                     (grad_out_scale * max_scale * conv_grad_unit(CONV_GRAD_MIN_SHIFT_16)) / 127.0f;
    return 1;
}

void depthwise_conv2d_s8_grad_input_2pass_dsp_run(const void *params, void *const *operands,
                                                  void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct depthwise_conv2d_s8_grad_input_2pass_params p =
        *(const struct depthwise_conv2d_s8_grad_input_2pass_params *)params;
    if (run_quads(&p, operands, scratch)) return;
    if (!run_planes(&p, operands, scratch))
        depthwise_conv2d_s8_grad_input_2pass_ref_run(params, operands, scratch);
}

/* Whether the DSP variant runs the channel-quad engine for these parameters (for the tests). */
int32_t depthwise_conv2d_s8_grad_input_2pass_dsp_quads(const void *params) {
    const struct depthwise_conv2d_s8_grad_input_2pass_params p2 =
        *(const struct depthwise_conv2d_s8_grad_input_2pass_params *)params;
    struct dwq q;
    return quads_take(&p2, &q);
}

int32_t depthwise_conv2d_s8_grad_input_2pass_dsp_kept(const void *params) {
    const struct depthwise_conv2d_s8_grad_input_2pass_params p2 =
        *(const struct depthwise_conv2d_s8_grad_input_2pass_params *)params;
    struct depthwise_conv2d_s8_grad_input_params p;
    params_1pass(&p2, &p);
    struct dwp d;
    struct dwq q;
    int32_t block, extra;
    int in_scratch;
    if (quads_take(&p2, &q)) { /* whole quads, and those in the output bytes (run_quads) */
        return quads_kept_end(p.input_c, dw2_keep(&p2) & ~3, 1); /* plans' outputs are aligned */
    }
    if (!dwp_setup(&d, &p)) return -1;
    const int32_t kept = kept_channels(&p, &d, &block, &in_scratch, &extra);
    const int32_t keep = dw2_keep(&p2), e0 = keep > kept ? keep : kept;
    if (extra > p.input_c - e0) extra = p.input_c - e0;
    return e0 + extra; /* channels [0, keep), [keep, kept) and [e0, e0 + extra) */
}

size_t depthwise_conv2d_s8_grad_input_2pass_scratch_size(const void *params) {
    const struct depthwise_conv2d_s8_grad_input_2pass_params p2 =
        *(const struct depthwise_conv2d_s8_grad_input_2pass_params *)params;
    struct depthwise_conv2d_s8_grad_input_params p;
    params_1pass(&p2, &p);
    const size_t ref = depthwise_conv2d_s8_grad_input_2pass_ref_scratch_size(params);
    const size_t bytes = dwp_buffer_size(&p), dsp = dw2_kept_bytes(&p2) + dwp_offset(&p) + bytes;
    return bytes > 0 && dsp > ref ? dsp : ref;
}

/* The selector, the runtime's entry for depthwise_conv2d_s8_grad_input_2pass (ops.def): the DSP
 * variant above when the build enables it (KERNELS_USE_DSP(), dsp.h), else the reference
 * (depthwise_conv2d_s8_grad_input_2pass.c). The DSP variant falls back to the reference itself for
 * the shapes it does not take. */
void depthwise_conv2d_s8_grad_input_2pass_run(const void *params, void *const *operands,
                                              void *scratch) {
    if (KERNELS_USE_DSP())
        depthwise_conv2d_s8_grad_input_2pass_dsp_run(params, operands, scratch);
    else
        depthwise_conv2d_s8_grad_input_2pass_ref_run(params, operands, scratch);
}
