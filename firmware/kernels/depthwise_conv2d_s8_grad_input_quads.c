/* The channel-quad engine of the optimized depthwise input gradients: see
 * depthwise_conv2d_s8_grad_input_quads.h. */
#include "depthwise_conv2d_s8_grad_input_quads.h"

#include "conv2d_s8_grad_input.h"
#include "depthwise_conv2d_s8_grad_input_planes.h" /* dw_grad_worst_shift, dwp_q23's expression */
#include "dsp.h"
#include "grad.h"

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
#define DWQ_ASM 1
#endif

static inline int32_t floor_div(int32_t a, int32_t b) {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

int dwq_setup(struct dwq *q, const struct depthwise_conv2d_s8_grad_input_params *p) {
    q->p = *p;
    const int32_t sh = p->stride_h, sw = p->stride_w, fh = p->filter_h, fw = p->filter_w;
    if (p->depth_multiplier != 1 || p->input_c % 4 || p->dilation_h != 1 || p->dilation_w != 1 ||
        sh < 1 || sh > 2 || sw < 1 || sw > 2 || p->pad_h < 0 || p->pad_w < 0 || fh < 1 || fw < 1 ||
        fh * fw > DWQ_TAPS || p->input_h < 1 || p->input_w < 1 || p->output_h < 1 ||
        p->output_w < 1 || dw_grad_worst_shift(fh * fw) != CONV_GRAD_MIN_SHIFT_16)
        return 0;
    /* T covers every output pixel a tap reads: oy = (y + pad_h - fy) / s over the input rows */
    const int32_t lo_y = floor_div(p->pad_h - (fh - 1), sh),
                  hi_y = (p->input_h - 1 + p->pad_h) / sh;
    const int32_t lo_x = floor_div(p->pad_w - (fw - 1), sw),
                  hi_x = (p->input_w - 1 + p->pad_w) / sw;
    q->bt = lo_y < 0 ? -lo_y : 0;
    q->bl = lo_x < 0 ? -lo_x : 0;
    q->th = q->bt + (hi_y + 1 > p->output_h ? hi_y + 1 : p->output_h);
    q->tw = q->bl + (hi_x + 1 > p->output_w ? hi_x + 1 : p->output_w);
    /* 3x3 filters at strides 1 and 2 (MobileNets'): their rows in assembly read T at a
     * constant pitch, so the tap offsets are immediates (other filters: the channel-plane
     * engine, whose rows take any) */
    if (fh != 3 || fw != 3 || sh != sw || q->tw > DWQ_TW) return 0;
    q->kind = sh == 1 ? DWQ_S1_3X3 : DWQ_S2_3X3;
    q->tw = DWQ_TW;
    if ((int64_t)q->th * q->tw > DWQ_PIXELS) return 0;
    q->rb = 1; /* rows of sums a block (dwq_fit) */
    int32_t words = 0;
    for (int32_t py = 0; py < sh; ++py)
        for (int32_t px = 0; px < sw; ++px) {
            const int32_t i = py * sw + px;
            int32_t n = 0;
            for (int32_t fy = py; fy < fh; fy += sh)
                for (int32_t fx = px; fx < fw; fx += sw, ++n) {
                    q->off[i][n] = (int16_t)(-2 * (((fy - py) / sh) * q->tw + (fx - px) / sw));
                    q->tap[i][n] = (uint8_t)(fy * fw + fx);
                }
            q->nt[i] = (uint8_t)n;
            q->woff[i] = (int16_t)words;
            for (int32_t k = 0; k < n; ++k) q->order[words / 2 + k] = q->tap[i][k];
            words += 2 * n;
        }
    return 1;
}

size_t dwq_buffer_size(const struct dwq *q) {
    return ((size_t)q->th * (size_t)q->tw + (size_t)q->p.filter_h * (size_t)q->p.filter_w) * 8u +
           (size_t)q->rb * (size_t)q->p.input_w * 16u; /* T, the weights, rb rows of sums */
}

int dwq_fit(struct dwq *q, size_t bytes) {
    q->rb = 1;
    const size_t row = (size_t)q->p.input_w * 16u, one = dwq_buffer_size(q);
    if (one > bytes) return 0;
    const size_t more = (bytes - one) / row + 1;
    q->rb = more < (size_t)q->p.input_h ? (int32_t)more : q->p.input_h;
    return 1;
}

float dwq_operands(struct dwq *q, void *const *operands) {
    q->grad_out = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT];
    q->mask = q->p.has_mask ? (const uint8_t *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_MASK] : NULL;
    q->filter = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_FILTER];
    q->trained = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_TRAINED_FILTER];
    q->scales = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_WEIGHT_SCALES];
    q->max_scale = conv_grad_max_scale(q->scales, q->p.per_channel ? q->p.input_c : 1);
    return q->max_scale;
}

void dwq_clear(const struct dwq *q, void *buf) {
    uint32_t *t = buf;
    for (int32_t i = 0; i < 2 * q->th * q->tw; ++i) t[i] = 0;
}

/* Channel c's Q23 multiplier: conv_grad_channel_q23's m[c]. */
static inline int32_t q23(const struct dwq *q, int32_t c) {
    return conv_grad_q23(q->scales[q->p.per_channel ? c : 0], q->max_scale);
}

#ifdef DWQ_ASM
/* terms' masked rows in assembly (GCC's took ~52 instructions a pixel, here 36): per pixel the
 * quad's gradient word, its mask nibble (bits SB.. of its byte: the quad's first flat index is
 * SB mod 8) to 0xFF lanes (dsp_spread4), then per channel SXTB, MUL, the rounding (3), and
 * PKHBT of the pairs. k: m0..m3, the channel count (the gradient's pixel step), dsp_spread4,
 * then `any` (ORed with every word written, stored back). */
#define DWQ_CH(reg_g, ror, m)          \
    "sxtb " reg_g ", r9" ror           \
    "\n"                               \
    "mul " reg_g ", " reg_g ", " m     \
    "\n"                               \
    "add " reg_g ", " reg_g ", " reg_g \
    ", asr #31\n"                      \
    "add " reg_g ", " reg_g            \
    ", #16384\n"                       \
    "asr " reg_g ", " reg_g ", #15\n"
_Static_assert(CONV_GRAD_MIN_SHIFT_16 == 15, "terms_row's rounding (half 16384, shift 15)");
#define DWQ_TERMS_ROW(name, sb)                                                                    \
    static __attribute__((noinline)) void name(const int8_t *g, const uint8_t *mk, uint32_t *t,    \
                                               int32_t n, uint32_t *k) {                           \
        register const int8_t *r0 __asm__("r0") = g;                                               \
        register const uint8_t *r1 __asm__("r1") = mk;                                             \
        register uint32_t *r2 __asm__("r2") = t;                                                   \
        register int32_t r3 __asm__("r3") = n;                                                     \
        register uint32_t *r4 __asm__("r4") = k;                                                   \
        __asm__ volatile("push {r4}\n"                                                           \
                         "ldr r8, [r4, #16]\n"                                                   \
                         "ldr lr, [r4, #20]\n"                                                   \
                         "ldr r12, [r4, #24]\n"                                                  \
                         "ldrd r6, r7, [r4, #8]\n"                                               \
                         "ldrd r4, r5, [r4]\n"                                                   \
                         "1:\n"                                                                  \
                         "ldr r9, [r0]\n"                                                        \
                         "add r0, r0, r8\n"                                                      \
                         "ldrb r10, [r1]\n"                                                      \
                         "add r1, r1, r8, lsr #3\n"                                              \
                         "ubfx r10, r10, #" sb ", #4\n"                                          \
                         "ldr r10, [lr, r10, lsl #2]\n"                                          \
                         "and r9, r9, r10\n" DWQ_CH("r10", "", "r4")                             \
                             DWQ_CH("r11", ", ror #16", "r6") "pkhbt r10, r10, r11, lsl #16\n"    \
                         "str r10, [r2]\n"                                                       \
                         "orr r12, r12, r10\n" DWQ_CH("r10", ", ror #8", "r5")                   \
                             DWQ_CH("r11", ", ror #24", "r7") "pkhbt r10, r10, r11, lsl #16\n"    \
                         "str r10, [r2, #4]\n"                                                   \
                         "orr r12, r12, r10\n"                                                   \
                         "add r2, r2, #8\n"                                                      \
                         "subs r3, r3, #1\n"                                                     \
                         "bne 1b\n"                                                              \
                         "pop {r4}\n"                                                            \
                         "str r12, [r4, #24]\n"                                                  \
                         : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3), "+r"(r4)                      \
                         :                                                                       \
                         : "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc",        \
                           "memory"); \
    }
DWQ_TERMS_ROW(terms_row0, "0")
DWQ_TERMS_ROW(terms_row4, "4")
#undef DWQ_TERMS_ROW
#undef DWQ_CH
#endif

/* The quad's g' of batch b into T's output pixels (g0 g2, g1 g3); returns whether any is
 * nonzero. conv_grad_term without branches: (v + half + (v >> 31)) >> shift (dwp_fill's). */
static int terms(const struct dwq *q, uint32_t *t, int32_t b, int32_t c0) {
    const int32_t oh = q->p.output_h, ow = q->p.output_w, tw = q->tw;
    const size_t ch = (size_t)q->p.input_c;
    int32_t m[4];
    for (int k = 0; k < 4; ++k) m[k] = q23(q, c0 + k);
    const int32_t half = (int32_t)1 << (CONV_GRAD_MIN_SHIFT_16 - 1);
    const uint8_t *mask = q->mask;
    size_t i = (size_t)b * (size_t)oh * (size_t)ow * ch + (size_t)c0;
    uint32_t any = 0;
#ifdef DWQ_ASM
    if (mask && ch % 8u == 0) { /* every pixel's nibble at one place in its byte */
        uint32_t k[7] = {(uint32_t)m[0],
                         (uint32_t)m[1],
                         (uint32_t)m[2],
                         (uint32_t)m[3],
                         (uint32_t)ch,
                         (uint32_t)(uintptr_t)dsp_spread4,
                         0u};
        for (int32_t oy = 0; oy < oh; ++oy, i += (size_t)ow * ch) {
            uint32_t *row = t + 2 * ((size_t)(oy + q->bt) * (size_t)tw + (size_t)q->bl);
            if (i & 4u)
                terms_row4(q->grad_out + i, mask + (i >> 3), row, ow, k);
            else
                terms_row0(q->grad_out + i, mask + (i >> 3), row, ow, k);
        }
        return k[6] != 0;
    }
#endif
    for (int32_t oy = 0; oy < oh; ++oy) {
        uint32_t *row = t + 2 * ((size_t)(oy + q->bt) * (size_t)tw + (size_t)q->bl);
        for (int32_t ox = 0; ox < ow; ++ox, i += ch, row += 2) {
            uint32_t g = dsp_read4(q->grad_out + i);
            if (mask) g &= grad_mask_lanes4((uint32_t)(mask[i >> 3] >> (i & 7u)) & 0xFu);
            int32_t v[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; ++k) {
                const int32_t x = ((int32_t)(g << (24 - 8 * k)) >> 24) * m[k];
                v[k] = (x + half + (x >> 31)) >> CONV_GRAD_MIN_SHIFT_16;
            }
            row[0] = dsp_pack_lo((uint32_t)v[0], (uint32_t)v[2]);
            row[1] = dsp_pack_lo((uint32_t)v[1], (uint32_t)v[3]);
            any |= row[0] | row[1];
        }
    }
    return any != 0;
}

/* The quad's weights, phase by phase in its taps' order, widened: w0 w2, w1 w3 (its trained rows
 * or the model's; a word of four where the quad is all one or all the other). */
static void weights(const struct dwq *q, uint32_t *w, int32_t c0) {
    const int32_t ch = q->p.input_c, phases = q->p.stride_h * q->p.stride_w;
    const int32_t tr = q->p.train_rows < ch ? q->p.train_rows : ch;
    const int whole = c0 + 4 <= tr || c0 >= tr;
    const int8_t *src = c0 < tr ? q->trained + c0 : q->filter + c0;
    const size_t step = c0 < tr ? (size_t)tr : (size_t)ch;
    if (whole) { /* the taps in the weights' order (q->order), a word each */
        const int32_t taps = q->p.filter_h * q->p.filter_w;
        for (int32_t j = 0; j < taps; ++j, w += 2) {
            const uint32_t word = dsp_read4(src + (size_t)q->order[j] * step);
            w[0] = dsp_sxtb16(word);
            w[1] = dsp_sxtb16(dsp_ror8(word));
        }
        return;
    }
    for (int32_t i = 0; i < phases; ++i)
        for (int32_t n = 0; n < q->nt[i]; ++n) {
            const int32_t t = q->tap[i][n];
            uint32_t word = 0;
            if (whole) {
                word = dsp_read4(src + (size_t)t * step);
            } else {
                for (int k = 0; k < 4; ++k) {
                    const int32_t c = c0 + k;
                    const int8_t v = c < tr ? q->trained[(size_t)t * (size_t)tr + (size_t)c]
                                            : q->filter[(size_t)t * (size_t)ch + (size_t)c];
                    word |= (uint32_t)(uint8_t)v << (8 * k);
                }
            }
            uint32_t *to = w + q->woff[i] + 2 * n;
            to[0] = dsp_sxtb16(word);
            to[1] = dsp_sxtb16(dsp_ror8(word));
        }
}

static inline uint32_t mag(int32_t a) {
    return a < 0 ? 0u - (uint32_t)a : (uint32_t)a;
}

/* One element rounded (grad_requantize_s32's): dsp.h's reciprocal form or its general one. */
static inline uint32_t round1(int32_t v, const struct dwq_round *r) {
    if (r->r) return (uint8_t)dsp_grad_round_s32_recip(v, r->max_abs, r->half, r->r);
    return (uint8_t)dsp_grad_round_s32(v, r->max_abs, r->half, r->k);
}

/* Input rows of a 3x3 stride-1 quad: acc[(y * n + x) * 4 + k] for x < n, y < rows, T's pitch
 * DWQ_TW (rows 2 * DWQ_TW words apart), base at the first pixel's place (Y, X) in T, w the 9 taps'
 * widened weights in order (fy, fx): the tap reads T at base - fy DWQ_TW - fx (pixels). */
#ifdef DWQ_ASM
#define DWQ_T(fy, fx, first)                        \
    "ldrd r8, r9, [r0, #-" #fy "*" DWQ_ROWB "-" #fx \
    "*8]\n"                                         \
    "ldrd r10, r11, [r1, #(" #fy "*3+" #fx ")*8]\n" first
#define DWQ_MUL "smulbb r4, r8, r10\nsmultt r6, r8, r10\nsmulbb r5, r9, r11\nsmultt r7, r9, r11\n"
#define DWQ_MLA                                                                               \
    "smlabb r4, r8, r10, r4\nsmlatt r6, r8, r10, r6\nsmlabb r5, r9, r11, r5\nsmlatt r7, r9, " \
    "r11, r7\n"
#define DWQ_ROWB "80" /* DWQ_TW * 8 bytes */
_Static_assert(DWQ_TW == 10, "row_s1's row offset");
/* In assembly (GCC spilled the nine weight pairs: ~120 instructions a pixel): per tap LDRD of
 * the g' pair, LDRD of the weight pair, four SMULxy / SMLAxy; STM of the four sums. */
static __attribute__((noinline)) void row_s1(const uint32_t *base, const uint32_t *w, int32_t *acc,
                                             int32_t n, int32_t rows) {
    register const uint32_t *r0 __asm__("r0") = base;
    register const uint32_t *r1 __asm__("r1") = w;
    register int32_t *r2 __asm__("r2") = acc;
    register int32_t r12 __asm__("r12") = n;
    register int32_t lr __asm__("lr") = rows;
    __asm__ volatile("2:\n"
                     "mov r3, r12\n"
                     "1:\n" DWQ_T(0, 0, DWQ_MUL) DWQ_T(0, 1, DWQ_MLA) DWQ_T(0, 2, DWQ_MLA)
                         DWQ_T(1, 0, DWQ_MLA) DWQ_T(1, 1, DWQ_MLA) DWQ_T(1, 2, DWQ_MLA)
                             DWQ_T(2, 0, DWQ_MLA) DWQ_T(2, 1, DWQ_MLA) DWQ_T(2, 2, DWQ_MLA)
                     "stmia r2!, {r4, r5, r6, r7}\n"
                     "adds r0, r0, #8\n"
                     "subs r3, r3, #1\n"
                     "bne 1b\n"
                     "sub r0, r0, r12, lsl #3\n"
                     "add r0, r0, #" DWQ_ROWB "\n"
                     "subs lr, lr, #1\n"
                     "bne 2b\n"
                     : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r12), "+r"(lr)
                     :
                     : "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "cc", "memory");
}
#undef DWQ_T
#undef DWQ_MUL
#undef DWQ_MLA
#undef DWQ_ROWB
#else
static void row_s1(const uint32_t *base, const uint32_t *w, int32_t *acc, int32_t n, int32_t rows) {
    for (int32_t y = 0; y < rows; ++y, base += 2 * DWQ_TW - 2 * n)
        for (int32_t x = 0; x < n; ++x, base += 2, acc += 4) {
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (int32_t fy = 0; fy < 3; ++fy)
                for (int32_t fx = 0; fx < 3; ++fx) {
                    const uint32_t *g = base - 2 * (fy * DWQ_TW + fx), *wk = w + 2 * (fy * 3 + fx);
                    a0 = dsp_smlabb(g[0], wk[0], a0);
                    a2 = dsp_smlatt(g[0], wk[0], a2);
                    a1 = dsp_smlabb(g[1], wk[1], a1);
                    a3 = dsp_smlatt(g[1], wk[1], a3);
                }
            acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
        }
}
#endif

#ifdef DWQ_ASM
/* A 3x3 stride-2 row in assembly: pairs of pixels, the first of column phase 0 and the second of
 * phase 1, both at the pair's place in T (r0); row phase 0 (py0: taps rows 0 and 2 of the
 * filter, phases 0 and 1 with 4 and 2 taps) or 1 (taps row 1: 2 and 1 taps); w the row phase's
 * first widened weights (woff[2 py], the column phase 1's follow). */
#define DWQ_T(off_t, off_w, first) \
    "ldrd r8, r9, [r0, #-" off_t   \
    "]\n"                          \
    "ldrd r10, r11, [r1, #" off_w "]\n" first
#define DWQ_MUL "smulbb r4, r8, r10\nsmultt r6, r8, r10\nsmulbb r5, r9, r11\nsmultt r7, r9, r11\n"
#define DWQ_MLA                                                                               \
    "smlabb r4, r8, r10, r4\nsmlatt r6, r8, r10, r6\nsmlabb r5, r9, r11, r5\nsmlatt r7, r9, " \
    "r11, r7\n"
#define DWQ_S2_ROW(name, body)                                                                \
    static __attribute__((noinline)) void name(const uint32_t *base, const uint32_t *w,       \
                                               int32_t *acc, int32_t pairs) {                 \
        register const uint32_t *r0 __asm__("r0") = base;                                     \
        register const uint32_t *r1 __asm__("r1") = w;                                        \
        register int32_t *r2 __asm__("r2") = acc;                                             \
        register int32_t r3 __asm__("r3") = pairs;                                            \
        __asm__ volatile("1:\n" body                                                          \
                         "adds r0, r0, #8\n"                                                  \
                         "subs r3, r3, #1\n"                                                  \
                         "bne 1b\n"                                                           \
                         : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3)                             \
                         :                                                                    \
                         : "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "cc", "memory"); \
    }
_Static_assert(DWQ_TW == 10, "the rows' offsets (80 bytes a row of T)");
/* row phase 0: phase (0, 0) taps (r, c) at T - (r DWQ_TW + c), weights 0..3; phase (0, 1) taps
 * (r, 0), weights 4..5 */
DWQ_S2_ROW(row_s2_py0,
           DWQ_T("0", "0", DWQ_MUL) DWQ_T("8", "8", DWQ_MLA) DWQ_T("80", "16", DWQ_MLA)
               DWQ_T("88", "24", DWQ_MLA) "stmia r2!, {r4, r5, r6, r7}\n" DWQ_T("0", "32", DWQ_MUL)
                   DWQ_T("80", "40", DWQ_MLA) "stmia r2!, {r4, r5, r6, r7}\n")
/* row phase 1: phase (1, 0) taps (0, c), weights 0..1; phase (1, 1) tap (0, 0), weight 2 */
DWQ_S2_ROW(row_s2_py1,
           DWQ_T("0", "0", DWQ_MUL) DWQ_T("8", "8", DWQ_MLA) "stmia r2!, {r4, r5, r6, r7}\n" DWQ_T(
               "0", "16", DWQ_MUL) "stmia r2!, {r4, r5, r6, r7}\n")
#undef DWQ_T
#undef DWQ_MUL
#undef DWQ_MLA
#undef DWQ_S2_ROW
#endif

static void pixel_any(const struct dwq *q, const uint32_t *t, const uint32_t *w, int32_t y,
                      int32_t x, int32_t *acc);

/* One 3x3 stride-2 input row y: the pixel pairs (column phases 0 then 1 at one place in T) in
 * assembly, a first pixel of phase 1 and a last of phase 0 alone. */
static void row_s2(const struct dwq *q, const uint32_t *t, const uint32_t *w, int32_t y,
                   int32_t *acc) {
    const int32_t iw = q->p.input_w;
    int32_t x = 0;
#ifdef DWQ_ASM
    const int32_t py = (y + q->p.pad_h) & 1, yy = (y + q->p.pad_h) >> 1;
    if ((x + q->p.pad_w) & 1) pixel_any(q, t, w, y, x++, acc), acc += 4;
    const int32_t pairs = (iw - x) / 2;
    if (pairs > 0) {
        const uint32_t *base = t + 2 * ((yy + q->bt) * DWQ_TW + q->bl + ((x + q->p.pad_w) >> 1));
        if (py == 0)
            row_s2_py0(base, w + q->woff[0], acc, pairs);
        else
            row_s2_py1(base, w + q->woff[2], acc, pairs);
        x += 2 * pairs, acc += 8 * pairs;
    }
#endif
    for (; x < iw; ++x, acc += 4) pixel_any(q, t, w, y, x, acc);
}

/* One pixel (y, x) of any shape the engine takes: acc[k], its phase's taps. */
static void pixel_any(const struct dwq *q, const uint32_t *t, const uint32_t *w, int32_t y,
                      int32_t x, int32_t *acc) {
    const int32_t sh = q->p.stride_h, sw = q->p.stride_w, tw = q->tw;
    const int32_t py = (y + q->p.pad_h) % sh, yy = (y + q->p.pad_h - py) / sh;
    const int32_t px = (x + q->p.pad_w) % sw, xx = (x + q->p.pad_w - px) / sw;
    const int32_t i = py * sw + px;
    const uint32_t *base = t + 2 * (size_t)((yy + q->bt) * tw + q->bl + xx), *wk = w + q->woff[i];
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (int32_t k = 0; k < q->nt[i]; ++k, wk += 2) {
        const uint32_t *g = base + q->off[i][k];
        a0 = dsp_smlabb(g[0], wk[0], a0);
        a2 = dsp_smlatt(g[0], wk[0], a2);
        a1 = dsp_smlabb(g[1], wk[1], a1);
        a3 = dsp_smlatt(g[1], wk[1], a3);
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

#ifdef DWQ_ASM
/* round_row's reciprocal branch in assembly (GCC's took ~22 instructions an element): LDM of a
 * pixel's four sums, per sum |v|, the estimate UMULL, the remainder (RSB, ADD, MLS), one
 * correction, the sign put back (11), BFI of the four bytes into one word, STR. k: R, M, half. */
static __attribute__((noinline)) void round_row_asm(const int32_t *acc, int8_t *out, int32_t n,
                                                    size_t ch, const uint32_t *k) {
    register const int32_t *r0 __asm__("r0") = acc;
    register int8_t *r1 __asm__("r1") = out;
    register int32_t r2 __asm__("r2") = n;
    register size_t r3 __asm__("r3") = ch;
    register const uint32_t *r4 __asm__("r4") = k;
#define DWQ_R(v)                  \
    "eor r11, " v ", " v          \
    ", asr #31\n"                 \
    "sub r11, r11, " v            \
    ", asr #31\n"                 \
    "umull r12, lr, r11, r4\n"    \
    "rsb r11, r11, r11, lsl #7\n" \
    "add r11, r11, r6\n"          \
    "mls r11, lr, r5, r11\n"      \
    "cmp r11, r5\n"               \
    "it hs\n"                     \
    "addhs lr, lr, #1\n"          \
    "eor lr, lr, " v              \
    ", asr #31\n"                 \
    "sub " v ", lr, " v ", asr #31\n"
    __asm__ volatile(
        "ldr r6, [r4, #8]\n"
        "ldr r5, [r4, #4]\n"
        "ldr r4, [r4]\n"
        "1:\n"
        "ldmia r0!, {r7, r8, r9, r10}\n"
        DWQ_R("r7") DWQ_R("r8") DWQ_R("r9") DWQ_R("r10")
        "bfi r7, r8, #8, #8\n"
        "bfi r7, r9, #16, #8\n"
        "bfi r7, r10, #24, #8\n"
        "str r7, [r1]\n"
        "add r1, r1, r3\n"
        "subs r2, r2, #1\n"
        "bne 1b\n"
        : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3), "+r"(r4)
        :
        : "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
#undef DWQ_R
}
#endif

/* out[x * ch + k] = acc[x * 4 + k] rounded, x < n. */
static void round_row(const int32_t *acc, int32_t n, int8_t *out, size_t ch,
                      const struct dwq_round *rnd) {
#ifdef DWQ_ASM
    if (rnd->r && n > 0) {
        const uint32_t k[3] = {rnd->r, rnd->max_abs, rnd->half};
        round_row_asm(acc, out, n, ch, k);
        return;
    }
#endif
    for (int32_t x = 0; x < n; ++x, acc += 4, out += ch) {
        uint32_t word;
        if (rnd->r) {
            const uint32_t m = rnd->max_abs, h = rnd->half, r = rnd->r;
            uint32_t b[4];
            for (int k = 0; k < 4; ++k) {
                const int32_t v = acc[k], sg = v >> 31;
                const uint32_t a = (uint32_t)((v ^ sg) - sg);
                uint32_t qt = (uint32_t)(((uint64_t)a * r) >> 32);
                const uint32_t t = a * 127u + h - qt * m;
                qt += t >= m;
                b[k] = (uint32_t)(((int32_t)qt ^ sg) - sg) & 0xFFu;
            }
            word = b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24;
        } else {
            word = round1(acc[0], rnd) | round1(acc[1], rnd) << 8 | round1(acc[2], rnd) << 16 |
                   round1(acc[3], rnd) << 24;
        }
        __builtin_memcpy(out, &word, 4);
    }
}

uint32_t dwq_run(const struct dwq *q, void *buf, int32_t b, int32_t c0, enum dwq_mode mode,
                 int32_t *to, int32_t to_step, int8_t *out, const struct dwq_round *rnd) {
    uint32_t *t = buf, *w = t + 2 * (size_t)q->th * (size_t)q->tw;
    int32_t *rowbuf = (int32_t *)(w + 2 * q->p.filter_h * q->p.filter_w);
    const int32_t ih = q->p.input_h, iw = q->p.input_w;
    const size_t ch = (size_t)q->p.input_c, plane = (size_t)ih * (size_t)iw;
    size_t pos = (size_t)b * plane;
    if (!terms(q, t, b, c0)) { /* every g' zero: so is every accumulator */
        if (mode == DWQ_STORE)
            for (size_t i = 0; i < plane; ++i)
                __builtin_memset(to + (pos + i) * (size_t)to_step, 0, 16);
        else if (mode == DWQ_ROUND)
            for (size_t i = 0; i < plane; ++i)
                __builtin_memset(out + (pos + i) * ch + (size_t)c0, 0, 4);
        return 0;
    }
    weights(q, w, c0);
    uint32_t mx = 0;
    for (int32_t y = 0; y < ih; y += q->rb) {
        /* a block of rows; kept quads (to_step 4) straight into their place */
        const int32_t rows = ih - y < q->rb ? ih - y : q->rb, n = rows * iw;
        int32_t *acc = mode == DWQ_STORE && to_step == 4 ? to + pos * 4u : rowbuf;
        if (q->kind == DWQ_S1_3X3)
            row_s1(t + 2 * (size_t)((y + q->p.pad_h + q->bt) * DWQ_TW + q->p.pad_w + q->bl), w, acc,
                   iw, rows);
        else
            for (int32_t r = 0; r < rows; ++r) row_s2(q, t, w, y + r, acc + 4 * r * iw);
        if (mode == DWQ_ROUND) {
            round_row(acc, n, out + pos * ch + (size_t)c0, ch, rnd);
        } else {
            mx = dsp_max_abs_s32(acc, 4u * (size_t)n, mx);
            if (mode == DWQ_STORE && acc == rowbuf)
                for (int32_t x = 0; x < n; ++x)
                    __builtin_memcpy(to + (pos + (size_t)x) * (size_t)to_step, acc + 4 * x, 16);
        }
        pos += (size_t)n;
    }
    return mx;
}

void dwq_round_free(const struct dwq *q, void *buf, int8_t *grad_in, int32_t c0,
                    const struct dwq_round *rnd) {
    int32_t *rowbuf = (int32_t *)((uint32_t *)buf + 2 * (size_t)q->th * (size_t)q->tw +
                                  2 * (size_t)q->p.filter_h * (size_t)q->p.filter_w);
    const size_t ch = (size_t)q->p.input_c;
    const size_t n = (size_t)q->p.batches * (size_t)q->p.input_h * (size_t)q->p.input_w;
    const size_t block = (size_t)q->rb * (size_t)q->p.input_w;
    for (size_t pos = 0; pos < n; pos += block) {
        const size_t m = n - pos < block ? n - pos : block;
        /* the block's sums first: rounding pixel x writes bytes of pixel x's own row only, but
         * the sums of a pixel sit in its own bytes: all read before any is written */
        for (size_t x = 0; x < m; ++x)
            __builtin_memcpy(rowbuf + 4 * x, grad_in + (pos + x) * ch + 4 * (size_t)c0, 16);
        round_row(rowbuf, (int32_t)m, grad_in + pos * ch + (size_t)c0, ch, rnd);
    }
}

void dwq_round_kept(const int32_t *from, size_t n, int8_t *out, size_t c_n,
                    const struct dwq_round *rnd) {
    round_row(from, (int32_t)n, out, c_n, rnd);
}
