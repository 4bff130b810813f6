/* int8 depthwise 2-D convolution, 3x3 filters at stride 1 or 2 from a pre-widened copy (dilation
 * 1, depth multiplier 1), with the Armv7E-M DSP SIMD instructions (dsp.h): bit-identical with
 * depthwise_conv2d_s8_ref_run (depthwise_conv2d_s8.c), TFLite's reference
 * DepthwiseConvPerChannel.
 *
 * Two engines share the operator's scratch (depthwise_conv2d_s8_3x3_dsp_buffer_size, sized for
 * the band copy below): the channel-pair engine (further down: widened rows in bands, one
 * channel's four outputs per block of SMLAD, weights loaded once per four outputs) wherever a
 * ring of three of its rows fits those bytes and where it measured faster (8 outputs wide or
 * more: d3p_fits); else the band copy.
 *
 * The band copy: each channel group of four is the outer loop. The copy (in the operator's scratch)
 * holds each input pixel of the group already widened (two words: SXTAB16 of the even and of the
 * odd channels, the input offset added), so every output pixel's nine taps are one LDRD of the
 * input pair, one LDRD of the widened weight pair and four multiply-accumulates (SMLABB / SMLATT,
 * one lane each): the nine-fold widening of each input word is gone. Padding is a pair of zero
 * words (an offset input of 0 adds nothing, as the reference's skipped tap). The copy holds D3_PIX
 * pixels, so larger maps go in bands of output rows (each band widens its rows plus the two below
 * it).
 *
 * On the fast requantization (requant_fast.h) the rows of outputs run in one block of assembly
 * (d3_rows): the group's biases, widened taps, requantization constants and clamp sit in one
 * struct (struct d3k) addressed from one register, so every constant is one LDRD at an
 * immediate offset, the four outputs are packed with PKHBT / UXTB16 / ORR, clamped per byte
 * (SSUB8 / SEL) and stored as one word: 100 instructions per output pixel of four channels (95
 * without a clamp) against about 120 from the C loop, whose 13 live values the compiler spilled
 * to the stack (MobileNetV2's 16x16x96 layer: 127 -> 111 instructions per pixel and group, copy
 * included; QEMU counts LDM/STM as one instruction).
 * The host twin and the other requantizations run the C loop (the same products and sums).
 * The last c % 4 channels run the reference's arithmetic (depthwise_conv2d_s8_dsp_channel); a
 * group straddling train_rows has its taps copied per group (dw_group_filter). Every product and
 * sum is the reference's, in another order (int32 sums of these products cannot overflow: see
 * depthwise_conv2d_s8.c). */
#include "depthwise_conv2d_s8_dsp.h"

#define D3_PIX (DW_PAD_WORDS / 2) /* widened pixels in the copy (two words each) */

/* A channel group's constants, laid out for d3_rows's immediate offsets (bytes): bias 0,
 * taps 16 (tap t: even lanes, odd lanes), (m2, s1) pairs 88, cc 120, lo4 124, hi4 128,
 * the output pixel step 132, the end of the row's first copy row 136. */
struct d3k {
    int32_t bias[4];
    uint32_t w[9][2];
    int32_t rq[4][2];
    int32_t cc;
    uint32_t lo4, hi4;
    int32_t step;
    const uint32_t *end;
};
_Static_assert(__builtin_offsetof(struct d3k, w) == 16 &&
                   __builtin_offsetof(struct d3k, rq) == 88 &&
                   __builtin_offsetof(struct d3k, cc) == 120 &&
                   __builtin_offsetof(struct d3k, lo4) == 124 &&
                   __builtin_offsetof(struct d3k, step) == 132 &&
                   __builtin_offsetof(struct d3k, end) == 136,
               "d3_rows's offsets");

int32_t depthwise_conv2d_s8_3x3_dsp_band(const struct depthwise_conv2d_s8_params *p) {
    const int32_t st = p->stride_h;
    if ((st != 1 && st != 2) || p->stride_w != st || p->filter_h != 3 || p->filter_w != 3 ||
        p->dilation_h != 1 || p->dilation_w != 1 || p->pad_h < 0 || p->pad_w < 0 ||
        p->depth_multiplier != 1 || p->output_h < 1 || p->output_w < 1)
        return 0;
    /* A band of R output rows reads (R - 1) st + 3 input rows of pw pixels; a band of one
     * row (three input rows in the copy) still pays against the selector's direct path at
     * either stride, measured on the emulated board, QEMU counting LDM/STM as one instruction
     * (64x64x16 SAME 2.83 M -> 2.04 M instructions, 64x64x48 /2 SAME 2.14 M -> 1.83 M,
     * 17x17x48 /2 VALID 139 K -> 119 K, 32x32x48 /2 SAME 565 K -> 450 K). */
    const int32_t pw = (p->output_w - 1) * st + 3;
    return pw <= D3_PIX / 3 ? (D3_PIX / pw - 3) / st + 1 : 0;
}

/* The buffers' layout: the group's constants (struct d3k), then at D3_COPY_OFFSET the copy of
 * the first (the tallest) band: (rows - 1) stride + 3 input rows of pw widened pixels. */
#define D3_COPY_OFFSET ((sizeof(struct d3k) + 7u) & ~(size_t)7u)

size_t depthwise_conv2d_s8_3x3_dsp_buffer_size(const void *params) {
    const struct depthwise_conv2d_s8_params p = *(const struct depthwise_conv2d_s8_params *)params;
    const int32_t band = depthwise_conv2d_s8_3x3_dsp_band(&p);
    if (band == 0) return 0;
    const int32_t rows = band < p.output_h ? band : p.output_h, st = p.stride_h;
    const size_t pw = (size_t)(p.output_w - 1) * (size_t)st + 3u;
    return D3_COPY_OFFSET + (size_t)((rows - 1) * st + 3) * pw * 2u * sizeof(uint32_t);
}

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
#define D3_ASM 1
/* clang-format off */
/* Tap t at byte offset off of copy row r, its weights at woff in struct d3k. */
#define D3_TAP(r, off, woff)                                                                      \
    "ldrd %[x0], %[x1], [%[" #r "], #" #off "]\n\t"                                               \
    "ldrd %[w0], %[w1], [%[k], #" #woff "]\n\t"                                                   \
    "smlabb %[a0], %[x0], %[w0], %[a0]\n\t"                                                       \
    "smlatt %[a2], %[x0], %[w0], %[a2]\n\t"                                                       \
    "smlabb %[a1], %[x1], %[w1], %[a1]\n\t"                                                       \
    "smlatt %[a3], %[x1], %[w1], %[a3]\n\t"
/* rq_fused (requant_fast.h) of accumulator a with its (m2, s1) at off, cc in w1. */
#define D3_RQ(a, off)                                                                             \
    "ldrd %[x0], %[x1], [%[k], #" #off "]\n\t"                                                    \
    "smmlar %[" #a "], %[" #a "], %[x0], %[" #a "]\n\t"                                           \
    "add %[" #a "], %[" #a "], %[" #a "], asr #31\n\t"                                            \
    "asr %[" #a "], %[" #a "], %[x1]\n\t"                                                         \
    "qadd %[" #a "], %[" #a "], %[w1]\n\t"                                                        \
    "ssat %[" #a "], #8, %[" #a "], asr #1\n\t"
#define D3_BODY                                                                                   \
    "1:\n\t"                                                                                      \
    "ldrd %[a0], %[a1], [%[k], #0]\n\t"                                                           \
    "ldrd %[a2], %[a3], [%[k], #8]\n\t"                                                           \
    D3_TAP(r0, 0, 16) D3_TAP(r0, 8, 24) D3_TAP(r0, 16, 32)                                        \
    D3_TAP(r1, 0, 40) D3_TAP(r1, 8, 48) D3_TAP(r1, 16, 56)                                        \
    D3_TAP(r2, 0, 64) D3_TAP(r2, 8, 72) D3_TAP(r2, 16, 80)                                        \
    "ldr %[w1], [%[k], #120]\n\t"                                                                 \
    D3_RQ(a0, 88) D3_RQ(a1, 96) D3_RQ(a2, 104) D3_RQ(a3, 112)                                     \
    /* bytes y0 y1 y2 y3 in one word */                                                           \
    "pkhbt %[a0], %[a0], %[a2], lsl #16\n\t"                                                      \
    "pkhbt %[a1], %[a1], %[a3], lsl #16\n\t"                                                      \
    "uxtb16 %[a0], %[a0]\n\t"                                                                     \
    "uxtb16 %[a1], %[a1]\n\t"                                                                     \
    "orr %[a0], %[a0], %[a1], lsl #8\n\t"
/* dw_clamp8: per byte, max with lo4 then min with hi4. */
#define D3_CLAMP                                                                                  \
    "ldrd %[x0], %[x1], [%[k], #124]\n\t"                                                         \
    "ssub8 %[w0], %[a0], %[x0]\n\t"                                                               \
    "sel %[a0], %[a0], %[x0]\n\t"                                                                 \
    "ssub8 %[w0], %[a0], %[x1]\n\t"                                                               \
    "sel %[a0], %[x1], %[a0]\n\t"
#define D3_NEXT(step)                                                                             \
    "str %[a0], [%[dst]]\n\t"                                                                     \
    "ldr %[x0], [%[k], #132]\n\t"                                                                 \
    "add %[dst], %[dst], %[x0]\n\t"                                                               \
    "add %[r0], %[r0], #" #step "\n\t"                                                            \
    "add %[r1], %[r1], #" #step "\n\t"                                                            \
    "add %[r2], %[r2], #" #step "\n\t"                                                            \
    "ldr %[x0], [%[k], #136]\n\t"                                                                 \
    "cmp %[r0], %[x0]\n\t"                                                                        \
    "bne 1b\n\t"
#define D3_OPERANDS                                                                               \
    : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [x0] "=&r"(x0),             \
      [x1] "=&r"(x1), [w0] "=&r"(w0), [w1] "=&r"(w1), [r0] "+r"(r0), [r1] "+r"(r1), [r2] "+r"(r2), \
      [dst] "+r"(dst)                                                                             \
    : [k] "r"(k)                                                                                  \
    : "cc", "memory"

/* clang-format on */

/* Rows of output pixels (at least one each) of the fast requantization, from copy rows first on
 * (pitch words apart; an output row is st of them on, its outputs span words of its top row): the
 * C loop's arithmetic in one block of assembly per row (see the top of the file). The rows' loop
 * is here, one per block (D3_ROWS), not the caller's: the call and the choice of block once per
 * band, not per row (on 4x4 maps about 30 instructions per row, 6 % of MobileNetV2's 4x4x336).
 * Output rows follow each other in dst (a row's last output is ch bytes before the next's first).
 */
#define D3_ROWS(BLOCK)                                                                  \
    for (const uint32_t *row = first; rows > 0; --rows, row += (size_t)st * pitch) {    \
        const uint32_t *r0 = row, *r1 = row + pitch, *r2 = r1 + pitch;                  \
        uint32_t a0, a1, a2, a3, x0, x1, w0, w1;                                        \
        k->end = row + span;                                                            \
        __asm__ volatile(BLOCK D3_OPERANDS);                                            \
        (void)a0, (void)a1, (void)a2, (void)a3, (void)x0, (void)x1, (void)w0, (void)w1; \
    }
static __attribute__((noinline)) void d3_rows(struct d3k *k, const uint32_t *first, int8_t *dst,
                                              int32_t st, int clamp, int32_t rows, size_t pitch,
                                              size_t span) {
    if (st == 1 && clamp)
        D3_ROWS(D3_BODY D3_CLAMP D3_NEXT(8))
    else if (st == 1)
        D3_ROWS(D3_BODY D3_NEXT(8))
    else if (clamp)
        D3_ROWS(D3_BODY D3_CLAMP D3_NEXT(16))
    else
        D3_ROWS(D3_BODY D3_NEXT(16))
}
#else
#define D3_ASM 0
#endif

/* Tap t, the input pair at row pointer r + off (in words) (the C loop). */
#define D3_WTAP(r, off, t)                                 \
    do {                                                   \
        const uint32_t xe = (r)[off], xo = (r)[(off) + 1]; \
        const uint32_t we = k->w[t][0], wo = k->w[t][1];   \
        a0 = dsp_smlabb(xe, we, a0);                       \
        a2 = dsp_smlatt(xe, we, a2);                       \
        a1 = dsp_smlabb(xo, wo, a1);                       \
        a3 = dsp_smlatt(xo, wo, a3);                       \
    } while (0)

/* One channel group (constants k, requantization rq) over every output pixel of batch b; pads:
 * write the copy's padding too (else it still holds the zeros a previous group wrote there:
 * see depthwise_conv2d_s8_3x3_dsp_run). */
static void d3_group(const struct dw *d, struct d3k *k, const struct dw_rq *rq, int32_t b,
                     int32_t c, uint32_t *buf, int32_t band, int mode, int pads) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c, st = p->stride_h, pw = (p->output_w - 1) * st + 3;
    const uint32_t off2 = dsp_pair(p->input_offset);
    const int8_t *image = d->input + (size_t)b * (size_t)p->input_h * d->in_row + (size_t)c;
    int8_t *dst =
        d->out + (size_t)b * (size_t)p->output_h * (size_t)p->output_w * (size_t)ch + (size_t)c;
    /* The copy's columns [ilo, ihi) lie inside the image. */
    const int32_t ilo = p->pad_w < pw ? p->pad_w : pw;
    const int32_t ihi = p->input_w + p->pad_w < pw ? p->input_w + p->pad_w : pw;
    for (int32_t oy0 = 0; oy0 < p->output_h; oy0 += band) {
        const int32_t rows = p->output_h - oy0 < band ? p->output_h - oy0 : band;
        uint32_t *q = buf;
        for (int32_t r = 0; pads && r < (rows - 1) * st + 3; ++r) {
            const int32_t y = oy0 * st - p->pad_h + r;
            if (y < 0 || y >= p->input_h) {
                memset(q, 0, (size_t)pw * 8);
                q += 2 * pw;
                continue;
            }
            int32_t i = 0;
            for (; i < ilo; ++i) dw_store2(&q, 0, 0);
            const int8_t *s = image + (size_t)y * d->in_row + (ptrdiff_t)(ilo - p->pad_w) * ch;
            for (uint32_t *qe = q + 2 * (ihi - i); q < qe; s += ch) {
                const uint32_t v = dsp_read4(s);
                dw_store2(&q, dsp_sxtab16(off2, v), dsp_sxtab16_hi(off2, v));
            }
            for (i = ihi; i < pw; ++i) dw_store2(&q, 0, 0);
        }
        /* The padding kept (one band: oy0 0): only the pixels inside the image. */
        for (int32_t y = 0; !pads && y < p->input_h && y + p->pad_h < (rows - 1) * st + 3; ++y) {
            q = buf + 2 * ((size_t)(y + p->pad_h) * (size_t)pw + (size_t)ilo);
            const int8_t *s = image + (size_t)y * d->in_row + (ptrdiff_t)(ilo - p->pad_w) * ch;
            for (uint32_t *qe = q + 2 * (ihi - ilo); q < qe; s += ch) {
                const uint32_t v = dsp_read4(s);
                dw_store2(&q, dsp_sxtab16(off2, v), dsp_sxtab16_hi(off2, v));
            }
        }
#if D3_ASM
        if (mode != DW_STORE_ANY) {
            d3_rows(k, buf, dst, st, mode == DW_PACK_CLAMP, rows, 2 * (size_t)pw,
                    2 * (size_t)st * (size_t)p->output_w);
            dst += (size_t)rows * (size_t)p->output_w * (size_t)ch;
            continue;
        }
#endif
        for (int32_t oy = 0; oy < rows; ++oy) {
            const uint32_t *r0 = buf + (size_t)oy * (size_t)st * 2 * (size_t)pw;
            const uint32_t *r1 = r0 + 2 * pw, *r2 = r1 + 2 * pw;
            for (int32_t ox = 0; ox < p->output_w;
                 ++ox, dst += ch, r0 += 2 * st, r1 += 2 * st, r2 += 2 * st) {
                int32_t a0 = k->bias[0], a1 = k->bias[1], a2 = k->bias[2], a3 = k->bias[3];
                D3_WTAP(r0, 0, 0);
                D3_WTAP(r0, 2, 1);
                D3_WTAP(r0, 4, 2);
                D3_WTAP(r1, 0, 3);
                D3_WTAP(r1, 2, 4);
                D3_WTAP(r1, 4, 5);
                D3_WTAP(r2, 0, 6);
                D3_WTAP(r2, 2, 7);
                D3_WTAP(r2, 4, 8);
                if (mode == DW_STORE_ANY)
                    dw_store(d, rq, dst, c, a0, a1, a2, a3, k->cc, 0);
                else
                    dw_store_packed(rq, dst, a0, a1, a2, a3, k->cc, k->lo4, k->hi4,
                                    mode == DW_PACK_CLAMP);
            }
        }
    }
}

/* ---- The channel-pair engine (taken wherever its ring of three rows fits the copy's bytes) ----
 *
 * The engine above spends per output pixel of four channels 18 LDRD and 36 single multiplies
 * on its nine taps, and re-widens each input row once per band (three times on a 64-wide map,
 * whose band is one output row). Here a copy row holds blocks of four pixels, each block
 * channel by channel: channel k's two words (x0, x1) and (x2, x3) in 16-bit lanes (the input
 * offset added, padding as 0, as above) at byte 8k. One channel's filter row (w0, w1, w2) is two
 * words, W01 = (w0, w1) and W12 = (w1, w2), and four outputs of one channel in a row take, per
 * filter row, one LDRD of the weights, two or three loads of inputs and eight multiplies of
 * which four are SMLAD (two products each):
 *   stride 1, inputs A = (x0, x1), B = (x2, x3), C = (x4, x5):
 *     o0 = SMLAD(A, W01) + SMLABT(B, W12)    o1 = SMLATB(A, W01) + SMLAD(B, W12)
 *     o2 = SMLAD(B, W01) + SMLABT(C, W12)    o3 = SMLATB(B, W01) + SMLAD(C, W12)
 *   stride 2, pairs P0..P4 of (x_2i, x_2i+1): o_j = SMLAD(P_j, W01) + SMLABT(P_j+1, W12).
 * The four outputs share the channel's requantization constants (two loads) and the weights
 * are loaded once per four outputs, not once per tap and pixel. Each input row is widened once
 * per channel group. Outputs are stored one byte each (a channel's outputs are ch bytes apart);
 * with a clamp inside int8 the four are packed into a word first and clamped per byte
 * (SSUB8/SEL); ReLU6 outputs (zero point -128) take rq3, the others rq4 (doubled weights).
 * On the board the rows fill the operator's scratch in bands (d3p_group_bands) and a band's
 * rows of whole quads, the group's four channels, run in one block of assembly (d3p_band_*: all
 * fourteen registers, so it is a function of its own; the band's counters on its stack); the
 * host twin and the exact requantization keep a ring of three rows and the C quad (d3p_quad,
 * d3p_group), the same products and sums. */

/* One channel's constants, laid out for d3p_band's immediate offsets (bytes): the filter rows'
 * (W01, W12) 0, then struct dwq: (m2, s1) 24, (lo4, hi4) 32, bias 40, cc 44, end 48 (the row's
 * walk end, moved a row on by the block), dst 52, ch 56, next 60 (bytes from the band's walk end
 * to the next channel's start; 0: the last); the group's four channels 64 bytes apart. */
struct d3c {
    uint32_t w[3][2];
    struct dwq q;
};
#if D3_ASM
_Static_assert(__builtin_offsetof(struct d3c, q.m2) == 24 &&
                   __builtin_offsetof(struct d3c, q.lo4) == 32 &&
                   __builtin_offsetof(struct d3c, q.bias) == 40 &&
                   __builtin_offsetof(struct d3c, q.cc) == 44 &&
                   __builtin_offsetof(struct d3c, q.end) == 48 &&
                   __builtin_offsetof(struct d3c, q.dst) == 52 &&
                   __builtin_offsetof(struct d3c, q.ch) == 56 &&
                   __builtin_offsetof(struct d3c, q.next) == 60 && sizeof(struct d3c) == 64,
               "d3p_band's offsets");
#endif

/* A band of output rows for the blocks of assembly (d3p_band_*; offsets fixed): the bytes from
 * one copy row to the next, the rows, and per row the walk's step to the next row's start, the
 * outputs' step from the walk's last store to the next row's first output and the walk end's
 * step (a row of st copy rows). */
struct d3band {
    int32_t pitch, rows, row_step, dst_step, end_step;
};

/* Blocks of four pixels per copy row: the quads' inputs (a last partial quad's whole) plus the
 * next block's first pair. */
static int32_t d3p_blocks(const struct depthwise_conv2d_s8_params *p) {
    return (p->output_w + 3) / 4 * p->stride_w + 1;
}

/* Whether the engine takes a layer of the 3x3 variant: two quads wide or more (8 outputs) at
 * either stride, its input offset one dw_widen_blocks takes, and three of its rows fit the bytes
 * the variant plans for its band copy (depthwise_conv2d_s8_3x3_dsp_buffer_size, unchanged). Where
 * it pays, measured on the emulated Cortex-M7 (QEMU counts LDM/STM as one instruction; one layer
 * per kernel call, band copy -> channel pairs): 16x16x96 with a clamp 710,880 -> 671,200,
 * 32x32x48 /2 447,520 -> 438,080; in MobileNetV2's step (no clamp) 16x16x96 681,000 -> 583,120,
 * 17x17x48 -> 16x16x48 341,760 -> 288,680; since the rows' widening got cheaper
 * (dw_widen_blocks), 17x17x48 VALID (15 wide) 303,360 -> 271,680, 8x8x144 278,840 -> 275,880;
 * since rq3, the bands and the widening's border table, 8 wide at stride 2 too (MobileNetV2's
 * 17x17x48 /2 -> 8x8 patches 113,240 on the band copy, 98,680 here). The group's set-up and its
 * rows' widening weigh more on 4-wide maps, which keep the band copy (4x4x336 189,680 on it,
 * 197,440 on the engine). */
static int d3p_fits(const struct depthwise_conv2d_s8_params *p) {
    if (p->output_w < 8 || !dw_widen_ok(p)) return 0;
    return (size_t)3 * (size_t)d3p_blocks(p) * 32u <= depthwise_conv2d_s8_3x3_dsp_buffer_size(p);
}

int depthwise_conv2d_s8_3x3_dsp_pairs(const void *params) {
    const struct depthwise_conv2d_s8_params p = *(const struct depthwise_conv2d_s8_params *)params;
    return depthwise_conv2d_s8_3x3_dsp_band(&p) > 0 && d3p_fits(&p);
}

/* The four accumulators of one channel's quad of outputs (r[fy]: its words in copy row fy at the
 * quad's first block; the next block 8 words on). */
static inline void d3p_quad(const struct d3c *k, const uint32_t *const r[3], int32_t st,
                            int32_t a[4]) {
    int32_t a0 = k->q.bias, a1 = k->q.bias, a2 = k->q.bias, a3 = k->q.bias;
    for (int fy = 0; fy < 3; ++fy) {
        const uint32_t *x = r[fy], w01 = k->w[fy][0], w12 = k->w[fy][1];
        if (st == 1) {
            a0 = dsp_smlabt(x[1], w12, dsp_smlad(x[0], w01, a0));
            a1 = dsp_smlad(x[1], w12, dsp_smlatb(x[0], w01, a1));
            a2 = dsp_smlabt(x[8], w12, dsp_smlad(x[1], w01, a2));
            a3 = dsp_smlad(x[8], w12, dsp_smlatb(x[1], w01, a3));
        } else {
            a0 = dsp_smlabt(x[1], w12, dsp_smlad(x[0], w01, a0));
            a1 = dsp_smlabt(x[8], w12, dsp_smlad(x[1], w01, a1));
            a2 = dsp_smlabt(x[9], w12, dsp_smlad(x[8], w01, a2));
            a3 = dsp_smlabt(x[16], w12, dsp_smlad(x[9], w01, a3));
        }
    }
    a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3;
}

#if D3_ASM
/* clang-format off */
/* Registers: r0 k, r1..r3 copy rows 0..2, r4..r7 a0..a3, r8 r9 inputs, r10 W01, r11 W12,
 * r12 dst, lr ch. Filter row fy from row pointer r (post-incremented by the quad's blocks);
 * row 0 starts the accumulators from the bias (in r7, a3's last use of it is its first
 * multiply). */
#define D3P_S1(r, fy, i0, i1, i2, i3)                                                             \
    "ldrd r10, r11, [r0, #" #fy "*8]\n\t"                                                         \
    "ldrd r8, r9, [" #r "], #32\n\t"                                                              \
    "smlad r4, r8, r10, " i0 "\n\t"                                                               \
    "smlatb r5, r8, r10, " i1 "\n\t"                                                              \
    "smlad r6, r9, r10, " i2 "\n\t"                                                               \
    "smlatb r7, r9, r10, " i3 "\n\t"                                                              \
    "smlabt r4, r9, r11, r4\n\t"                                                                  \
    "smlad r5, r9, r11, r5\n\t"                                                                   \
    "ldr r8, [" #r "]\n\t"                                                                        \
    "smlabt r6, r8, r11, r6\n\t"                                                                  \
    "smlad r7, r8, r11, r7\n\t"
#define D3P_S2(r, fy, i0, i1, i2, i3)                                                             \
    "ldrd r10, r11, [r0, #" #fy "*8]\n\t"                                                         \
    "ldrd r8, r9, [" #r "], #32\n\t"                                                              \
    "smlad r4, r8, r10, " i0 "\n\t"                                                               \
    "smlad r5, r9, r10, " i1 "\n\t"                                                               \
    "smlabt r4, r9, r11, r4\n\t"                                                                  \
    "ldrd r8, r9, [" #r "], #32\n\t"                                                              \
    "smlabt r5, r8, r11, r5\n\t"                                                                  \
    "smlad r6, r8, r10, " i2 "\n\t"                                                               \
    "smlabt r6, r9, r11, r6\n\t"                                                                  \
    "smlad r7, r9, r10, " i3 "\n\t"                                                               \
    "ldr r8, [" #r "]\n\t"                                                                        \
    "smlabt r7, r8, r11, r7\n\t"
#define D3P_TAPS(ROW)                                                                             \
    "ldr r7, [r0, #40]\n\t"                                                                       \
    ROW(r1, 0, "r7", "r7", "r7", "r7")                                                            \
    ROW(r2, 1, "r4", "r5", "r6", "r7")                                                            \
    ROW(r3, 2, "r4", "r5", "r6", "r7")
/* The four outputs' requantization: RQ DWQ_RQ (rq4) or DWQ_RQ3 (rq3, z). */
#define D3P_REQUANT(RQ)                                                                           \
    "ldrd r10, r11, [r0, #24]\n\t"                                                                \
    "ldr r8, [r0, #44]\n\t"                                                                       \
    RQ("r4", "r10", "r11", "r8", "r9") RQ("r5", "r10", "r11", "r8", "r9")                         \
    RQ("r6", "r10", "r11", "r8", "r9") RQ("r7", "r10", "r11", "r8", "r9")
#define D3P_STORE DWQ_STORE("r4", "r5", "r6", "r7", "r12", "lr")
#define D3P_STORE_CLAMP                                                                           \
    "ldrd r10, r11, [r0, #32]\n\t"                                                                \
    DWQ_STORE_CLAMP("r4", "r5", "r6", "r7", "r9", "r10", "r11", "r12", "lr")
/* The band's rows (struct d3band) of the group's four channels: per channel (r0 its struct, r1
 * its row 0 start) each row's whole quads (the walk ends at its q.end, moved a row on after each
 * row), then the next channel's start q.next bytes on (0: the last). The row count sits on the
 * stack ([sp, #4]), the band's pointer at [sp]: the quads need every register. */
#define D3P_BAND_FN(name, ROW, RQ, STORE)                                                         \
    static __attribute__((naked, noinline)) void name(struct d3c *k, const uint32_t *r0,          \
                                                      const struct d3band *band) {                \
        (void)k, (void)r0, (void)band;                                                            \
        __asm__ volatile(                                                                         \
            "push {r4-r11, lr}\n\t"                                                               \
            "sub sp, sp, #8\n\t"                                                                  \
            "str r2, [sp]\n\t"                                                                    \
            "3:\n\t"                                                                              \
            "ldr r8, [sp]\n\t"                                                                    \
            "ldrd r9, r10, [r8]\n\t"                                                              \
            "str r10, [sp, #4]\n\t"                                                               \
            "add r2, r1, r9\n\t"                                                                  \
            "add r3, r2, r9\n\t"                                                                  \
            "ldr r12, [r0, #52]\n\t"                                                              \
            "ldr lr, [r0, #56]\n\t"                                                               \
            "1:\n\t"                                                                              \
            D3P_TAPS(ROW) D3P_REQUANT(RQ) STORE                                                   \
            "ldr r8, [r0, #48]\n\t"                                                               \
            "cmp r1, r8\n\t"                                                                      \
            "bne 1b\n\t"                                                                          \
            /* the row's end: the next row of the band, or the next channel */                    \
            "ldr r10, [sp, #4]\n\t"                                                               \
            "subs r10, r10, #1\n\t"                                                               \
            "beq 4f\n\t"                                                                          \
            "str r10, [sp, #4]\n\t"                                                               \
            "ldr r9, [sp]\n\t"                                                                    \
            "ldrd r10, r11, [r9, #8]\n\t"                                                         \
            "add r1, r1, r10\n\t"                                                                 \
            "add r2, r2, r10\n\t"                                                                 \
            "add r3, r3, r10\n\t"                                                                 \
            "add r12, r12, r11\n\t"                                                               \
            "ldr r10, [r9, #16]\n\t"                                                              \
            "add r8, r8, r10\n\t"                                                                 \
            "str r8, [r0, #48]\n\t"                                                               \
            "b 1b\n\t"                                                                            \
            "4:\n\t"                                                                              \
            "ldr r8, [r0, #60]\n\t"                                                               \
            "cmp r8, #0\n\t"                                                                      \
            "beq 2f\n\t"                                                                          \
            "add r1, r1, r8\n\t"                                                                  \
            "add r0, r0, #64\n\t"                                                                 \
            "b 3b\n\t"                                                                            \
            "2:\n\t"                                                                              \
            "add sp, sp, #8\n\t"                                                                  \
            "pop {r4-r11, pc}\n\t");                                                              \
    }
/* clang-format on */
/* A band's rows of whole quads (at least one) of the group's four channels (k[0..3], see
 * d3p_band_run), from its copy rows: the six instances by stride, clamp and, without a clamp,
 * rq3 (_z: ReLU6 outputs, 4 instructions a quad fewer: 16x16x96 533,960 -> 510,360). */
D3P_BAND_FN(d3p_band_s1, D3P_S1, DWQ_RQ, D3P_STORE)
D3P_BAND_FN(d3p_band_s1_z, D3P_S1, DWQ_RQ3, D3P_STORE)
D3P_BAND_FN(d3p_band_s1_clamp, D3P_S1, DWQ_RQ, D3P_STORE_CLAMP)
D3P_BAND_FN(d3p_band_s2, D3P_S2, DWQ_RQ, D3P_STORE)
D3P_BAND_FN(d3p_band_s2_z, D3P_S2, DWQ_RQ3, D3P_STORE)
D3P_BAND_FN(d3p_band_s2_clamp, D3P_S2, DWQ_RQ, D3P_STORE_CLAMP)
#endif

/* Quads [q0, (ow + 3) / 4) of one output row of the group's four channels (out: channel c's
 * first output of the row) from its three copy rows, in C: the host twin's whole rows, and on the
 * board a last row's partial quad (the blocks of assembly store whole quads). */
static void d3p_quads_c(const struct dw *d, const struct d3c k[4], const uint32_t *const rows[3],
                        int8_t *out, int32_t c, int32_t q0, int mode, int doubled, int z) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c, st = p->stride_h, ow = p->output_w, quads_all = (ow + 3) / 4;
    for (int32_t j = 0; j < 4 && q0 < quads_all; ++j) {
        for (int32_t q = q0; q < quads_all; ++q) {
            const size_t at = (size_t)q * 8u * (size_t)st + 2u * (size_t)j;
            const uint32_t *const r[3] = {rows[0] + at, rows[1] + at, rows[2] + at};
            int32_t a[4];
            d3p_quad(&k[j], r, st, a);
            const int32_t n = ow - 4 * q < 4 ? ow - 4 * q : 4;
            int8_t *const o = out + j + (size_t)(4 * q) * (size_t)ch;
            if (z) /* the blocks' rq3 (DW_PACK: no clamp) */
                for (int32_t i = 0; i < n; ++i)
                    o[(size_t)i * (size_t)ch] = (int8_t)rq3(a[i], k[j].q.m2, k[j].q.s1, k[j].q.cc);
            else
                dwq_store(d, &k[j].q, a, n, o, c + j, mode, doubled);
        }
    }
}

/* One channel group (constants k[0..3], the group's mode as d3_group's; wd: the layer's widening
 * constants, dw_widen_init once per layer; doubled: d3p_load's weights, bias and constants for
 * dwq_rq4; z: rq3 instead, doubled and DW_PACK only) over every output pixel of batch b, in C
 * (the host twin, and on the board a group the blocks of assembly do not take: not doubled): its
 * rows widened into a ring of three at buf, a row's quads once its three rows are in. */
static void d3p_group(const struct dw *d, const struct dw_widen *wd, struct d3c k[4], int32_t b,
                      int32_t c, uint32_t *buf, int mode, int doubled, int z) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c, st = p->stride_h, ow = p->output_w;
    const size_t slot = (size_t)wd->blocks * 8u; /* words of a ring slot */
    const int8_t *image = d->input + (size_t)b * (size_t)p->input_h * d->in_row + (size_t)c;
    int8_t *out = d->out + (size_t)b * (size_t)p->output_h * (size_t)ow * (size_t)ch + (size_t)c;
    /* The next copy row to widen (copy row i: input row i - pad_h) and its ring slot; the ring
     * slot of the window's top row. */
    int32_t next = 0, wslot = 0, s0 = 0;
    for (int32_t oy = 0; oy < p->output_h;
         ++oy, out += (size_t)ow * (size_t)ch, s0 = s0 + st >= 3 ? s0 + st - 3 : s0 + st) {
        for (; next <= oy * st + 2; ++next, wslot = wslot == 2 ? 0 : wslot + 1)
            dw_widen_blocks(wd, image, buf + (size_t)wslot * slot, next - p->pad_h);
        const int32_t s1 = s0 == 2 ? 0 : s0 + 1, s2 = s1 == 2 ? 0 : s1 + 1;
        const uint32_t *const rows[3] = {buf + (size_t)s0 * slot, buf + (size_t)s1 * slot,
                                         buf + (size_t)s2 * slot};
        d3p_quads_c(d, k, rows, out, c, 0, mode, doubled, z);
    }
}

#if D3_ASM
/* Rows [0, n) of a band (copy row 0 at first, rows st copy rows apart) of the group's four
 * channels k[0..3], nq whole quads each (their outputs from dst, channel c's), through the block
 * of assembly fn: the channels' walk ends, outputs and steps, and the band's. */
static void d3p_band_run(const struct dw *d, struct d3c k[4], const uint32_t *first, int8_t *dst,
                         int32_t n, int32_t nq, size_t pitch,
                         void (*fn)(struct d3c *, const uint32_t *, const struct d3band *)) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t st = p->stride_h, walk = nq * 32 * st, rowb = st * (int32_t)pitch * 4;
    const struct d3band band = {(int32_t)pitch * 4, n, rowb - walk,
                                (p->output_w - 4 * nq) * p->input_c, rowb};
#pragma GCC unroll 4
    for (int32_t j = 0; j < 4; ++j) {
        k[j].q.end = (uintptr_t)((const uint8_t *)first + 8 * j + walk);
        k[j].q.dst = dst + j;
        k[j].q.next = j < 3 ? 8 - walk - (n - 1) * rowb : 0;
    }
    fn(k, first, &band);
}

/* The layer's bands (d3p_bands_init, once per layer): the output rows a band holds, the words of
 * a copy row, the blocks of assembly by requantization (rq4, rq3) and clamp. */
struct d3p_bands {
    int32_t band;
    size_t pitch;
    void (*fn[3])(struct d3c *, const uint32_t *, const struct d3band *);
};

static void d3p_bands_init(const struct depthwise_conv2d_s8_params *p, const struct dw_widen *wd,
                           struct d3p_bands *bs) {
    const int32_t st = p->stride_h;
    bs->pitch = (size_t)wd->blocks * 8u;
    const int32_t slots = (int32_t)(depthwise_conv2d_s8_3x3_dsp_buffer_size(p) / (bs->pitch * 4u));
    bs->band = (slots - 3) / st + 1; /* d3p_fits: 3 slots at least */
    bs->fn[0] = st == 1 ? d3p_band_s1 : d3p_band_s2;
    bs->fn[1] = st == 1 ? d3p_band_s1_z : d3p_band_s2_z;
    bs->fn[2] = st == 1 ? d3p_band_s1_clamp : d3p_band_s2_clamp;
}

/* d3p_group on the board (doubled: the blocks of assembly's requantization): the copy rows in
 * bands as many as the operator's scratch holds (copy row i of a band at buf + i pitch, rows of
 * the blocks' layout), each band's output rows in one call of a block of assembly (its rows and
 * channels in the block: per row and channel about 15 instructions where a call per row took ~110
 * and its channels ~8 each; 8x8x144 245,200 -> 239,240, 16x16x96 503,200 -> 484,560, emulated
 * Cortex-M7, QEMU counting LDM/STM as one instruction). A band's last 3 - st copy rows are the
 * next band's first: moved up, not widened again (an in-place layer has written over their input
 * rows by then: depthwise_conv2d_s8_inplace_dsp.c). The layer's last row, where its last quad is
 * partial, runs its whole quads alone and that quad in C (the block stores whole quads: a row's
 * partial last quad spills onto the next row's first pixels of the same channel, which that row
 * overwrites later, band or not). */
static void d3p_group_bands(const struct dw *d, const struct dw_widen *wd,
                            const struct d3p_bands *bs, struct d3c k[4], int32_t b, int32_t c,
                            uint32_t *buf, int mode, int z) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c, st = p->stride_h, ow = p->output_w, oh = p->output_h;
    const int32_t quads = ow / 4, quads_all = (ow + 3) / 4, band = bs->band;
    const size_t pitch = bs->pitch;
    const int which = mode == DW_PACK_CLAMP ? 2 : z ? 1 : 0;
    void (*const fn)(struct d3c *, const uint32_t *, const struct d3band *) = bs->fn[which];
    const int8_t *image = d->input + (size_t)b * (size_t)p->input_h * d->in_row + (size_t)c;
    int8_t *out = d->out + (size_t)b * (size_t)oh * (size_t)ow * (size_t)ch + (size_t)c;
    const size_t out_row = (size_t)ow * (size_t)ch;
    int32_t first = 0, have = 0; /* copy rows [first, first + have) at buf */
    for (int32_t oy0 = 0; oy0 < oh; oy0 += band) {
        const int32_t rows = oh - oy0 < band ? oh - oy0 : band;
        const int32_t from = oy0 * st, to = (oy0 + rows - 1) * st + 3; /* copy rows [from, to) */
        const int32_t keep = first + have - from;
        if (keep > 0 && from != first) { /* in place of memmove: ~4x fewer instructions */
            const uint32_t *s = buf + (size_t)(from - first) * pitch;
            uint32_t *q = buf;
            for (const uint32_t *const e = s + (size_t)keep * pitch; s != e; s += 2)
                dw_store2(&q, s[0], s[1]);
        }
        first = from;
        const int32_t r = keep > 0 ? keep : 0;
        dw_widen_rows(wd, image, buf + (size_t)r * pitch, from + r - p->pad_h, to - from - r);
        have = to - from;
        int8_t *const dst = out + (size_t)oy0 * out_row;
        const int32_t whole = oy0 + rows == oh && quads < quads_all ? rows - 1 : rows;
        if (whole > 0) d3p_band_run(d, k, buf, dst, whole, quads_all, pitch, fn);
        if (whole < rows) { /* the layer's last row, a partial last quad */
            const uint32_t *const row = buf + (size_t)whole * (size_t)st * pitch;
            const uint32_t *const r3[3] = {row, row + pitch, row + 2 * pitch};
            if (quads > 0)
                d3p_band_run(d, k, row, dst + (size_t)whole * out_row, 1, quads, pitch, fn);
            d3p_quads_c(d, k, r3, dst + (size_t)whole * out_row, c, quads, mode, 1, z);
        }
    }
}
#endif

/* Channel group c..c+3's constants into k[0..3] (see struct d3c; doubled: for dwq_rq4; ring: the
 * group's ring, which d3p_group then fills, as dw_group_filter's buffer). */
static void d3p_load(const struct dw *d, struct d3c k[4], const struct dw_rq *rq, int32_t c,
                     int doubled, void *ring) {
    static const uint8_t pairs[4] = {0, 1, 1, 2}; /* W01, W12 */
    size_t wstride;
    const int8_t *const wg = dw_group_filter(d, c, ring, &wstride);
    for (int32_t fy = 0; fy < 3; ++fy)
        dw_weight_pairs(wg, wstride, fy, 3, pairs, 2, k[0].w[fy],
                        sizeof(struct d3c) / sizeof(uint32_t), doubled);
    /* dwq_load's per-channel fields (its layer-wide ones: d3p_layer_fields, once per layer) */
    const int32_t cc = 1 + 2 * d->p.output_offset;
#pragma GCC unroll 4
    for (int32_t j = 0; j < 4; ++j) {
        struct dwq *const q = &k[j].q;
        const int32_t s1 = rq->s1[j];
        q->s1 = s1;
        q->m2 = doubled ? (int32_t)((uint32_t)rq->m2[j] >> 1) : rq->m2[j];
        q->bias = doubled ? 2 * rq->bias[j] : rq->bias[j];
        q->cc = doubled ? (int32_t)((uint32_t)cc << s1) : cc;
    }
}

/* The fields of k[0..3] the same for every group of the layer (dwq_load's lo4, hi4, ch). */
static void d3p_layer_fields(const struct dw *d, struct d3c k[4]) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    for (int32_t j = 0; j < 4; ++j) {
        k[j].q.lo4 = (uint32_t)(uint8_t)(int8_t)p->act_min * 0x01010101u;
        k[j].q.hi4 = (uint32_t)(uint8_t)(int8_t)p->act_max * 0x01010101u;
        k[j].q.ch = p->input_c;
    }
}

/* Channel group c..c+3's constants into k (see struct d3k): its taps widened (even lanes:
 * channels c, c+2; odd: c+1, c+3), biases and fast requantization constants (copy: the band
 * copy, which d3_group then fills, as dw_group_filter's buffer). */
static void d3_load(const struct dw *d, struct d3k *k, const struct dw_rq *rq, int32_t c,
                    void *copy) {
    size_t wstride;
    const int8_t *w = dw_group_filter(d, c, copy, &wstride);
    for (int32_t t = 0; t < 9; ++t) {
        const uint32_t wv = dsp_read4(w + (size_t)t * wstride);
        k->w[t][0] = dsp_sxtb16(wv);
        k->w[t][1] = dsp_sxtb16_hi(wv);
    }
    for (int j = 0; j < 4; ++j) {
        k->bias[j] = rq->bias[j];
        k->rq[j][0] = rq->m2[j];
        k->rq[j][1] = rq->s1[j];
    }
}

void depthwise_conv2d_s8_3x3_dsp_run(const struct dw *d) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c, band = depthwise_conv2d_s8_3x3_dsp_band(p);
    const int full = p->act_min <= -128 && p->act_max >= 127;
    /* A clamp the packed store does per byte: inside the int8 range (where the saturated
     * outputs lie) and not empty. */
    const int clamp8 = p->act_min >= -128 && p->act_max <= 127 && p->act_min <= p->act_max;
    /* The engine: channel pairs where its ring fits the operator's scratch
     * (depthwise_conv2d_s8_3x3_dsp_buffer_size), its constants on the stack (256 bytes); else
     * the band copy, its constants (struct d3k) and copy in the scratch. */
    const int pairs = d3p_fits(p);
    int pads = 1; /* the band copy's padding is to be written (d3_group) */
    struct d3c kp[4];
    struct dw_widen wd;
    if (pairs) {
        dw_widen_init(d, &wd, d3p_blocks(p));
        d3p_layer_fields(d, kp);
    }
#if D3_ASM
    struct d3p_bands bands = {0, 0, {0}};
    if (pairs) d3p_bands_init(p, &wd, &bands);
#endif
    struct d3k *const k = d->buf;
    uint32_t *const buf = (uint32_t *)((uint8_t *)d->buf + D3_COPY_OFFSET);
    if (!pairs) {
        k->cc = 1 + 2 * p->output_offset;
        k->lo4 = (uint32_t)(uint8_t)(int8_t)p->act_min * 0x01010101u;
        k->hi4 = (uint32_t)(uint8_t)(int8_t)p->act_max * 0x01010101u;
        k->step = ch;
    }
    for (int32_t b = 0; b < p->batches; ++b) {
        for (int32_t c = 0; c < ch;) {
            if (c + 4 > ch) { /* a group straddling train_rows is whole here */
                depthwise_conv2d_s8_dsp_channel(d, b, c);
                ++c;
                continue;
            }
            struct dw_rq rq;
            dw_rq_load(d, &rq, c);
            pads = pads || dw_straddles(p, c); /* its taps overwrite the copy's start */
            const int mode = rq.fast && full     ? DW_PACK
                             : rq.fast && clamp8 ? DW_PACK_CLAMP
                                                 : DW_STORE_ANY;
            if (pairs) {
                /* Doubled (dwq_rq4) wherever it holds: the only requantization of the block of
                 * assembly; the others take the C quad. */
                const int doubled = mode != DW_STORE_ANY && dwq_rq4_ok(d, &rq, c);
                const int z = doubled && mode == DW_PACK && dwq_rq3_ok(p);
                d3p_load(d, kp, &rq, c, doubled, d->buf);
#if D3_ASM
                if (doubled)
                    d3p_group_bands(d, &wd, &bands, kp, b, c, d->buf, mode, z);
                else
#endif
                    d3p_group(d, &wd, kp, b, c, d->buf, mode, doubled, z);
            } else {
                d3_load(d, k, &rq, c, buf);
                d3_group(d, k, &rq, b, c, buf, band, mode, pads);
                /* One band holds the whole map: every group's copy has its padding at the same
                 * words, which nothing else writes (but a straddling group's taps, which
                 * d3_load copies to the copy's start), so the next group keeps it (on 4x4 maps
                 * two padding rows and the columns of four were about 6 % of the layer). */
                pads = band < p->output_h;
            }
            c += 4;
        }
    }
}
