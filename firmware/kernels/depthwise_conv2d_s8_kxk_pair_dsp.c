/* int8 depthwise 2-D convolution, k x k filters with two taps per SMLAD (5x5, 7x7, any stride,
 * any padding, dilation 1, depth multiplier 1), with the Armv7E-M DSP SIMD instructions
 * (dsp.h): bit-identical with depthwise_conv2d_s8_ref_run (depthwise_conv2d_s8.c).
 *
 * depthwise_conv2d_s8_kxk_dsp.c runs one tap of four channels as four 16x16
 * multiply-accumulates (SMLABB / SMLATT). Here a word holds one channel at two horizontally
 * adjacent pixels, so one SMLAD takes two taps of a filter row: each channel group of four
 * is the outer loop, and each tile of outputs copies its input window (in the operator's
 * scratch, as the group's weight sets) in pairs
 * of pixel columns (2j, 2j+1): four words per pair, channel k's two 16-bit inputs (the input
 * offset added), padding as zero (an offset input of 0 adds nothing, as the reference's
 * skipped tap). An output whose window starts at an even column of the copy takes taps
 * (2j, 2j+1) of each filter row from pair j; one starting at an odd column takes taps
 * (2j - 1, 2j) from the pair before it, so both read whole pairs: the group's weights are
 * kept as two sets of pairs (even and odd starts, zero outside the filter), fw / 2 + 1 pairs
 * per filter row. Per pair and output pixel: one LDM of the four channels' inputs, two LDRD
 * of their weights and four SMLAD (assembly, for 5x5 and 7x7), i.e. seven instructions for up
 * to eight products (against twelve on SMLABB/SMLATT); a 5x5 row is three pairs (one half
 * empty), a 7x7 row four.
 * The copy holds KP_PAIRS pairs (1.6 KB); kp_tile picks the tile of outputs that copies the
 * fewest pairs per output. Where tiles would re-widen the rows their windows share many times
 * (7x7 at stride 2) and fh full-width rows fit the same buffer, the copy slides down the map
 * instead (kp_slides): one output row at a time, the shared rows moved up, stride_h new rows
 * widened. Outputs are requantized four at a time: on the fast path of the 5x5 and 7x7
 * instances in one block of assembly (kp_store_asm), else dw_store_packed or dw_store.
 * Measured on the emulated Cortex-M7 (QEMU counts LDM/STM as one instruction), MCUNet's
 * 7x7/2 16x16x144 layer: 1.15 M -> 0.97 M instructions, its 5x5 16x16x96 1.33 M -> 1.24 M,
 * with the store block, the copy's STRD, the weight sets packed from each tap read once, and
 * the sliding copy. 5x5 at stride 1 and 7x7 at stride 1 and 2 take, where it fits the same bytes,
 * the channel-pair engine instead (further down: four outputs of one channel per block of assembly,
 * each filter row's weights loaded once for the four). The last c % 4 channels run the
 * reference's arithmetic (depthwise_conv2d_s8_dsp_channel), and on the tiles a group straddling
 * train_rows too (the channel-pair engine copies its taps: dw_group_filter). Every product and sum
 * is the reference's, in another order (int32 sums of these products cannot overflow: see
 * depthwise_conv2d_s8.c). */
#include "depthwise_conv2d_s8_dsp.h"

#define KP_PAIRS 100        /* pairs of pixel columns in the copy (16 B each: 1,600 B) */
#define KP_ROW_PAIRS_MAX 28 /* filter_h * (filter_w / 2 + 1) weight pairs per set (7x7's) */

/* The group's weights: [start parity][fy * np + j][channel k] = (w(fx0), w(fx0 + 1)) of
 * channel c + k, fx0 = 2j (even start) or 2j - 1 (odd start), 0 outside the filter. */
struct kp_weights {
    uint32_t w[2][KP_ROW_PAIRS_MAX][4];
};

static int32_t kp_np(const struct depthwise_conv2d_s8_params *p) {
    return p->filter_w / 2 + 1;
}

int depthwise_conv2d_s8_kxk_pair_dsp_takes(const struct depthwise_conv2d_s8_params *p) {
    if (p->depth_multiplier != 1 || p->dilation_h != 1 || p->dilation_w != 1) return 0;
    if (p->filter_h < 1 || p->filter_w < 1 || p->stride_h < 1 || p->stride_w < 1) return 0;
    if (p->filter_h <= 3 && p->filter_w <= 3) return 0;            /* the 3x3 variants' */
    if (p->input_offset < -255 || p->input_offset > 255) return 0; /* 16-bit offset inputs */
    return p->filter_h * kp_np(p) <= KP_ROW_PAIRS_MAX;
}

/* Pairs per copy row of a tile of cols outputs: the last output starts at column
 * (cols - 1) * stride and reads np pairs from the pair holding (or, odd, preceding) it. */
static int32_t kp_row_pairs(const struct depthwise_conv2d_s8_params *p, int32_t cols) {
    return (cols - 1) * p->stride_w / 2 + kp_np(p);
}

/* The tile of outputs that fits the copy with the fewest copied pairs per output. */
static struct dw_tile kp_tile(const struct depthwise_conv2d_s8_params *p) {
    return dw_tile_pick(p, KP_PAIRS, 2, kp_np(p));
}

/* The buffers' layout (in the operator's scratch): the group's weight sets (the odd-start set
 * only at an odd stride), then the copy of one tile, the first (the largest). */
static size_t kp_copy_offset(const struct depthwise_conv2d_s8_params *p) {
    return (p->stride_w % 2 ? 2u : 1u) * sizeof(((struct kp_weights *)0)->w[0]);
}

/* The bytes of the copy: the first tile of t (the largest), at least a floor. */
static size_t kp_copy_bytes(const struct depthwise_conv2d_s8_params *p, struct dw_tile t) {
    const size_t in_h = (size_t)(t.rows - 1) * (size_t)p->stride_h + (size_t)p->filter_h;
    size_t copy = in_h * (size_t)kp_row_pairs(p, t.cols) * 16u;
    /* At least the 464 bytes where kp_weights_load once widened the taps (it no longer does):
     * the scratch planned for a layer stays what plans and measured memory figures assume. */
    const size_t floor = 2u * (2u * KP_ROW_PAIRS_MAX + 2u) * sizeof(uint32_t);
    if (copy < floor) copy = floor;
    return copy;
}

size_t depthwise_conv2d_s8_kxk_pair_dsp_buffer_size(const void *params) {
    const struct depthwise_conv2d_s8_params p = *(const struct depthwise_conv2d_s8_params *)params;
    if (!depthwise_conv2d_s8_kxk_pair_dsp_takes(&p)) return 0;
    return kp_copy_offset(&p) + kp_copy_bytes(&p, kp_tile(&p));
}

/* Whether the copy slides down the map instead of copying tiles of t: full-width rows, one
 * output row at a time, the filter_h - stride_h rows the next output row shares moved up
 * (kp_shift_rows) and only stride_h new rows widened. It takes the same buffer (fh full-width
 * rows must fit kp_copy_bytes) and pays where tiles copy the rows their windows share many
 * times: at stride 2 a 4-row tile of a 7x7 filter widens 13 rows for 8 rows of input. Costs
 * counted in pairs, a moved pair (two LDRD, two STRD) as a third of a widened one (two loads,
 * four SXTAB16, four PKH, two STRD and the edges). */
static int kp_slides(const struct depthwise_conv2d_s8_params *p, struct dw_tile t) {
    const int32_t fh = p->filter_h, sh = p->stride_h, oh = p->output_h, ow = p->output_w;
    const int32_t w2 = kp_row_pairs(p, ow);
    if (sh >= fh || (size_t)fh * (size_t)w2 * 16u > kp_copy_bytes(p, t)) return 0;
    int64_t tiles = 0; /* pairs the tiles widen */
    for (int32_t oy = 0; oy < oh; oy += t.rows) {
        const int32_t rows = oh - oy < t.rows ? oh - oy : t.rows;
        for (int32_t ox = 0; ox < ow; ox += t.cols)
            tiles += (int64_t)((rows - 1) * sh + fh) *
                     kp_row_pairs(p, ow - ox < t.cols ? ow - ox : t.cols);
    }
    const int64_t widened = (int64_t)(fh + (oh - 1) * sh) * w2;
    const int64_t moved = (int64_t)(oh - 1) * (fh - sh) * w2;
    return 3 * widened + moved < 3 * tiles;
}

int depthwise_conv2d_s8_kxk_pair_dsp_slides(const struct depthwise_conv2d_s8_params *p) {
    return depthwise_conv2d_s8_kxk_pair_dsp_takes(p) && kp_slides(p, kp_tile(p));
}

/* *q[0..3] = the four pair words, *q += 4: two STRD with post-increment on the Cortex-M (the
 * compiler made four STR and an ADD). */
static inline void kp_store4(uint32_t **q, uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3) {
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    __asm__ volatile(
        "strd %1, %2, [%0], #8\n\t"
        "strd %3, %4, [%0], #8"
        : "+r"(*q)
        : "r"(w0), "r"(w1), "r"(w2), "r"(w3)
        : "memory");
#else
    (*q)[0] = w0;
    (*q)[1] = w1;
    (*q)[2] = w2;
    (*q)[3] = w3;
    *q += 4;
#endif
}

/* The four pair words of pixels a and b (widened, offset added: e = channels (0, 2),
 * o = (1, 3) in 16-bit lanes): channel k's (a, b). */
static inline void kp_pack(uint32_t **q, uint32_t ea, uint32_t oa, uint32_t eb, uint32_t ob) {
    kp_store4(q, dsp_pack_lo(ea, eb), dsp_pack_lo(oa, ob), dsp_pack_hi(ea, eb),
              dsp_pack_hi(oa, ob));
}

/* buf[0, words) = buf[from, from + words) (words a multiple of 4, from > 0): two LDRD and two
 * STRD per pair, in ascending order (the ranges may overlap). */
static void kp_shift_rows(uint32_t *buf, size_t from, size_t words) {
    uint32_t *q = buf;
    for (const uint32_t *src = buf + from, *end = buf + from + words; src < end; src += 4) {
        uint32_t w0, w1, w2, w3;
        DW_LDRD(src, 0, w0, w1);
        DW_LDRD(src, 8, w2, w3);
        kp_store4(&q, w0, w1, w2, w3);
    }
}

/* Channel group c..c+3's weight sets (see struct kp_weights): each tap read and widened once
 * (even lanes: channels c, c+2; odd: c+1, c+3) and packed in pairs as kp_copy packs inputs:
 * pair j of the even set is taps (2j, 2j + 1), of the odd set (2j - 1, 2j), so each widened
 * tap serves both; the odd-start set only where some output starts at an odd column (an odd
 * stride). */
static void kp_weights_load(const struct dw *d, struct kp_weights *kw, int32_t c) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int trained = c < p->train_rows;
    const int8_t *w = (trained ? d->trained_filter : d->filter) + c;
    const size_t wstride = trained ? (size_t)p->train_rows : (size_t)p->input_c;
    const int32_t fh = p->filter_h, fw = p->filter_w, np = kp_np(p);
    const int odd_set = p->stride_w % 2;
    for (int32_t fy = 0; fy < fh; ++fy) {
        const int8_t *wr = w + (size_t)fy * (size_t)fw * wstride;
        uint32_t *qe = kw->w[0][fy * np], *qo = kw->w[1][fy * np];
        uint32_t ep = 0, op = 0; /* tap 2j - 1 widened (0 left of the filter) */
        for (int32_t j = 0; j < np; ++j) {
            const int32_t fx = 2 * j; /* taps past the filter are 0 */
            const uint32_t v0 = fx < fw ? dsp_read4(wr + (size_t)fx * wstride) : 0;
            const uint32_t v1 = fx + 1 < fw ? dsp_read4(wr + (size_t)(fx + 1) * wstride) : 0;
            const uint32_t e0 = dsp_sxtb16(v0), o0 = dsp_sxtb16_hi(v0);
            const uint32_t e1 = dsp_sxtb16(v1), o1 = dsp_sxtb16_hi(v1);
            kp_pack(&qe, e0, o0, e1, o1);
            if (odd_set) kp_pack(&qo, ep, op, e0, o0);
            ep = e1;
            op = o1;
        }
    }
}

/* The pair of pixel columns (xa, xa + 1) of an image row, at least one of them in the padding
 * (zero words: an offset input of 0 adds nothing, as the reference's skipped tap), at q;
 * returns q past it (a pointer returned, not passed by address, keeps the caller's q in a
 * register through the inside loop). */
static uint32_t *kp_edge_pair(const struct depthwise_conv2d_s8_params *p, uint32_t *q,
                              const int8_t *row, uint32_t off2, int32_t xa) {
    const int32_t ch = p->input_c;
    uint32_t ea = 0, oa = 0, eb = 0, ob = 0;
    if (xa + 1 < 0 || xa >= p->input_w) { /* both in the padding */
        kp_store4(&q, 0, 0, 0, 0);
        return q;
    }
    if (xa >= 0) {
        const uint32_t v = dsp_read4(row + (ptrdiff_t)xa * ch);
        ea = dsp_sxtab16(off2, v);
        oa = dsp_sxtab16_hi(off2, v);
    }
    if (xa + 1 < p->input_w) {
        const uint32_t v = dsp_read4(row + (ptrdiff_t)(xa + 1) * ch);
        eb = dsp_sxtab16(off2, v);
        ob = dsp_sxtab16_hi(off2, v);
    }
    kp_pack(&q, ea, oa, eb, ob);
    return q;
}

/* Copies the group's input rows [y0, y0 + h), pixel columns [x0, x0 + 2 * w2) (any of them
 * may lie in the padding) into buf as pairs. */
static void kp_copy(const struct dw *d, const int8_t *image, uint32_t *buf, int32_t y0, int32_t x0,
                    int32_t h, int32_t w2) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c;
    const uint32_t off2 = dsp_pair(p->input_offset);
    /* Pairs [jlo, jhi) have both pixels inside the image. */
    int32_t jlo = x0 >= 0 ? 0 : (-x0 + 1) / 2, jhi = (p->input_w - x0) / 2;
    if (jhi > w2) jhi = w2;
    if (jhi < 0) jhi = 0;
    if (jlo > jhi) jlo = jhi;
    for (int32_t r = 0; r < h; ++r, buf += 4 * w2) {
        const int32_t y = y0 + r;
        if (y < 0 || y >= p->input_h) {
            memset(buf, 0, (size_t)w2 * 16);
            continue;
        }
        const int8_t *row = image + (size_t)y * d->in_row;
        uint32_t *q = buf;
        for (int32_t j = 0; j < jlo; ++j) q = kp_edge_pair(p, q, row, off2, x0 + 2 * j);
        const int8_t *s = row + (ptrdiff_t)(x0 + 2 * jlo) * ch;
        for (int32_t j = jlo; j < jhi; ++j, s += 2 * ch) { /* the inside pairs, unchecked */
            const uint32_t va = dsp_read4(s), vb = dsp_read4(s + ch);
            kp_pack(&q, dsp_sxtab16(off2, va), dsp_sxtab16_hi(off2, va), dsp_sxtab16(off2, vb),
                    dsp_sxtab16_hi(off2, vb));
        }
        for (int32_t j = jhi; j < w2; ++j) q = kp_edge_pair(p, q, row, off2, x0 + 2 * j);
    }
}

/* One pair j of a filter row: the four channels' SMLAD (r, w: the row's first pair of
 * inputs and of weights; offsets in bytes, constants once unrolled). */
#define KP_PAIR(r, w, j)                \
    do {                                \
        uint32_t x0, x1, w0, w1;        \
        DW_LDRD(r, (j)*16, x0, x1);     \
        DW_LDRD(w, (j)*16, w0, w1);     \
        a0 = dsp_smlad(x0, w0, a0);     \
        a1 = dsp_smlad(x1, w1, a1);     \
        DW_LDRD(r, (j)*16 + 8, x0, x1); \
        DW_LDRD(w, (j)*16 + 8, w0, w1); \
        a2 = dsp_smlad(x0, w0, a2);     \
        a3 = dsp_smlad(x1, w1, a3);     \
    } while (0)

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
/* The 5x5 and 7x7 filters' taps of one output pixel in one block of assembly, where loads can
 * take four words at once: per pair, one LDM of the four channels' inputs (r4-r6, r8), two
 * LDRD of their weights (r9, r10; post-indexed: a set's weights are consecutive), four SMLAD;
 * after each filter row, the copy's row pointer steps by adj to the next row. (The C loop
 * below is the same arithmetic; the compiler does not merge its loads into an LDM.) */
#define KP_ASM 1
#define KP_ASM_PAIR                     \
    "ldmia %[r]!, {r4, r5, r6, r8}\n\t" \
    "ldrd r9, r10, [%[w]], #8\n\t"      \
    "smlad %[a0], r4, r9, %[a0]\n\t"    \
    "smlad %[a1], r5, r10, %[a1]\n\t"   \
    "ldrd r9, r10, [%[w]], #8\n\t"      \
    "smlad %[a2], r6, r9, %[a2]\n\t"    \
    "smlad %[a3], r8, r10, %[a3]\n\t"
#define KP_ASM_ROW3 KP_ASM_PAIR KP_ASM_PAIR KP_ASM_PAIR "add %[r], %[r], %[adj]\n\t"
#define KP_ASM_ROW4 KP_ASM_PAIR KP_ASM_PAIR KP_ASM_PAIR KP_ASM_PAIR "add %[r], %[r], %[adj]\n\t"
#define KP_ASM_OUT \
    [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [r] "+r"(r), [w] "+r"(w)
#define KP_ASM_CLOBBERS "r4", "r5", "r6", "r8", "r9", "r10", "memory"
#else
#define KP_ASM 0
#endif

/* A channel group's requantization constants for kp_store_asm, laid out for its immediate
 * offsets (bytes): (m2, s1) pairs 0, cc 32, lo4 36, hi4 40. */
struct kp_k {
    int32_t rq[4][2];
    int32_t cc;
    uint32_t lo4, hi4;
};
_Static_assert(__builtin_offsetof(struct kp_k, cc) == 32 &&
                   __builtin_offsetof(struct kp_k, lo4) == 36,
               "kp_store_asm's offsets");

#if KP_ASM
/* clang-format off */
/* rq_fused (requant_fast.h) of accumulator a with its (m2, s1) at off in struct kp_k, cc in t2
 * (the instructions of depthwise_conv2d_s8_3x3_dsp.c's d3_rows). */
#define KP_RQ(a, off)                                                                             \
    "ldrd %[t0], %[t1], [%[k], #" #off "]\n\t"                                                    \
    "smmlar %[" #a "], %[" #a "], %[t0], %[" #a "]\n\t"                                           \
    "add %[" #a "], %[" #a "], %[" #a "], asr #31\n\t"                                            \
    "asr %[" #a "], %[" #a "], %[t1]\n\t"                                                         \
    "qadd %[" #a "], %[" #a "], %[t2]\n\t"                                                        \
    "ssat %[" #a "], #8, %[" #a "], asr #1\n\t"
#define KP_RQ4                                                                                    \
    "ldr %[t2], [%[k], #32]\n\t"                                                                  \
    KP_RQ(a0, 0) KP_RQ(a1, 8) KP_RQ(a2, 16) KP_RQ(a3, 24)                                         \
    /* bytes y0 y1 y2 y3 in one word */                                                           \
    "pkhbt %[a0], %[a0], %[a2], lsl #16\n\t"                                                      \
    "pkhbt %[a1], %[a1], %[a3], lsl #16\n\t"                                                      \
    "uxtb16 %[a0], %[a0]\n\t"                                                                     \
    "uxtb16 %[a1], %[a1]\n\t"                                                                     \
    "orr %[a0], %[a0], %[a1], lsl #8\n\t"
/* dw_clamp8: per byte, max with lo4 then min with hi4. */
#define KP_CLAMP4                                                                                 \
    "ldrd %[t0], %[t1], [%[k], #36]\n\t"                                                          \
    "ssub8 %[t2], %[a0], %[t0]\n\t"                                                               \
    "sel %[a0], %[a0], %[t0]\n\t"                                                                 \
    "ssub8 %[t2], %[a0], %[t1]\n\t"                                                               \
    "sel %[a0], %[t1], %[a0]\n\t"
#define KP_STORE_OPERANDS                                                                         \
    : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [t0] "=&r"(t0),                 \
      [t1] "=&r"(t1), [t2] "=&r"(t2)                                                              \
    : [k] "r"(k), [o] "r"(o)                                                                      \
    : "cc", "memory"
/* clang-format on */

/* dw_store_packed in one block: the four accumulators requantized on the fast path, packed
 * into one word, clamped per byte (clamp) and stored at o; the constants are LDRD at immediate
 * offsets of k, where the C store reloaded them one by one around the compiler's spills. */
static inline __attribute__((always_inline)) void kp_store_asm(const struct kp_k *k, int8_t *o,
                                                               int32_t a0, int32_t a1, int32_t a2,
                                                               int32_t a3, int clamp) {
    uint32_t t0, t1, t2;
    if (clamp)
        __asm__ volatile(KP_RQ4 KP_CLAMP4 "str %[a0], [%[o]]\n\t" KP_STORE_OPERANDS);
    else
        __asm__ volatile(KP_RQ4 "str %[a0], [%[o]]\n\t" KP_STORE_OPERANDS);
    (void)t0, (void)t1, (void)t2;
}
#endif

/* The outputs of one tile from its copy (row pitch w2 pairs); fh and np are constants in the
 * 5x5 and 7x7 instances, so the filter unrolls. */
static inline __attribute__((always_inline)) void kp_outputs(
    const struct dw *d, const struct dw_rq *rq, const struct kp_k *k, const struct kp_weights *kw,
    const uint32_t *buf, int32_t w2, int32_t rows, int32_t cols, int8_t *dst, int32_t c, int32_t fh,
    int32_t np, int mode, int use_asm) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c, sh = p->stride_h, sw = p->stride_w;
    const int32_t cc = 1 + 2 * p->output_offset;
    const uint32_t lo4 = (uint32_t)(uint8_t)(int8_t)p->act_min * 0x01010101u;
    const uint32_t hi4 = (uint32_t)(uint8_t)(int8_t)p->act_max * 0x01010101u;
    const size_t out_row = (size_t)p->output_w * (size_t)ch;
    const int32_t pitch = 4 * w2;
    /* Bytes from the end of a filter row's pairs in the copy to the next row's first. */
    const int32_t adj = (pitch - 4 * np) * 4;
    (void)adj;
    (void)use_asm, (void)k; /* the host build has no block */
    for (int32_t oy = 0; oy < rows; ++oy) {
        const uint32_t *row = buf + (size_t)oy * (size_t)sh * (size_t)pitch;
        int8_t *o = dst + (size_t)oy * out_row;
        for (int32_t ox = 0, q = 0; ox < cols; ++ox, o += ch, q += sw) {
            int32_t a0 = rq->bias[0], a1 = rq->bias[1], a2 = rq->bias[2], a3 = rq->bias[3];
            const uint32_t *r = row + 4 * (q >> 1);
            /* (From the struct's address: w walks the whole set, not one pair's array.) */
            const uint32_t *w = (const uint32_t *)kw + (q & 1) * KP_ROW_PAIRS_MAX * 4;
#if KP_ASM
            if (use_asm && fh == 5 && np == 3) {
                __asm__ volatile(KP_ASM_ROW3 KP_ASM_ROW3 KP_ASM_ROW3 KP_ASM_ROW3 KP_ASM_ROW3
:KP_ASM_OUT
                                 : [adj] "r"(adj)
                                 : KP_ASM_CLOBBERS);
            } else if (use_asm && fh == 7 && np == 4) {
                __asm__ volatile(KP_ASM_ROW4 KP_ASM_ROW4 KP_ASM_ROW4 KP_ASM_ROW4 KP_ASM_ROW4
                                     KP_ASM_ROW4 KP_ASM_ROW4:KP_ASM_OUT
                                 : [adj] "r"(adj)
                                 : KP_ASM_CLOBBERS);
            } else
#endif
            {
                for (int32_t fy = 0; fy < fh; ++fy, r += pitch, w += 4 * np) {
                    const uint32_t *rj = r, *wj = w;
                    for (int32_t j = 0; j < np; ++j, rj += 4, wj += 4) KP_PAIR(rj, wj, 0);
                }
            }
#if KP_ASM
            if (use_asm && mode != DW_STORE_ANY)
                kp_store_asm(k, o, a0, a1, a2, a3, mode == DW_PACK_CLAMP);
            else
#endif
                if (mode == DW_STORE_ANY)
                dw_store(d, rq, o, c, a0, a1, a2, a3, cc, 0);
            else
                dw_store_packed(rq, o, a0, a1, a2, a3, cc, lo4, hi4, mode == DW_PACK_CLAMP);
        }
    }
}

/* The host twin's instances are not auto-vectorized: GCC 12.2 (x86-64, -O2) vectorizes the
 * portable SMLAD loop of the 7x7 instance into wrong sums (measured: outputs off by a few
 * quanta against the reference; right at -O1, with -fno-tree-vectorize, or under
 * -fsanitize=undefined, which finds nothing). */
#if KP_ASM
#define KP_NO_VECTORIZE
#else
#define KP_NO_VECTORIZE __attribute__((optimize("no-tree-vectorize")))
#endif

#define KP_INSTANCE(name, fh_, np_, mode, use_asm)                                                \
    KP_NO_VECTORIZE static void name(const struct dw *d, const struct dw_rq *rq,                  \
                                     const struct kp_k *k, const struct kp_weights *kw,           \
                                     const uint32_t *buf, int32_t w2, int32_t rows, int32_t cols, \
                                     int8_t *dst, int32_t c) {                                    \
        kp_outputs(d, rq, k, kw, buf, w2, rows, cols, dst, c, fh_, np_, mode, use_asm);           \
    }
KP_INSTANCE(kp_outputs_5_pack, 5, 3, DW_PACK, 1)
KP_INSTANCE(kp_outputs_5_clamp, 5, 3, DW_PACK_CLAMP, 1)
KP_INSTANCE(kp_outputs_7_pack, 7, 4, DW_PACK, 1)
KP_INSTANCE(kp_outputs_7_clamp, 7, 4, DW_PACK_CLAMP, 1)
/* The any-shape instance keeps to C: with the filter unknown, the compiler has too few
 * registers left for the block (GCC 12, -mcpu=cortex-m4: impossible constraints). */
KP_INSTANCE(kp_outputs_any, d->p.filter_h, kp_np(&d->p), DW_STORE_ANY, 0)

typedef void (*kp_outputs_fn)(const struct dw *, const struct dw_rq *, const struct kp_k *,
                              const struct kp_weights *, const uint32_t *, int32_t, int32_t,
                              int32_t, int8_t *, int32_t);

/* ---- 5x5 at stride 1, 7x7 at stride 1 and 2: the channel-pair engine (depthwise_conv2d_s8_dsp.h)
 *
 * Per output pixel of four channels the tile loop above loads a pair of inputs and two words of
 * weights for every four SMLAD (QEMU: ~0.5 MAC per instruction on MCUNet's 5x5 and 7x7
 * layers). Here four outputs of one channel share each filter row's weights, and with the row's
 * inputs as pairs P0 = (x0, x1), P1 = (x2, x3), ...:
 *   5x5, stride 1, weights E0 = (w0, w1), O1 = (w1, w2), E1 = (w2, w3), O2 = (w3, w4):
 *     o0 = P0.E0 + P1.E1 + P2.lo w4      o1 = P0.hi w0 + P1.O1 + P2.O2
 *     o2 = P1.E0 + P2.E1 + P3.lo w4      o3 = P1.hi w0 + P2.O1 + P3.O2
 *   (SMLAD, SMLABT, SMLATB): per filter row two LDRD of weights, one LDRD and two LDR of
 *   inputs, twelve multiplies for twenty products;
 *   7x7, stride 2, weights E0 = (w0, w1) .. E3 = (w6, 0): o_j = sum_i P_j+i . E_i: per filter
 *   row two LDRD of weights, five loads of inputs, sixteen SMLAD for 28 products;
 *   7x7, stride 1, weights E0 .. E3 as at stride 2 and O1 = (w1, w2), O2 = (w3, w4),
 *   O3 = (w5, w6):
 *     o0 = P0.E0 + P1.E1 + P2.E2 + P3.lo w6      o1 = P0.hi w0 + P1.O1 + P2.O2 + P3.O3
 *     o2 = P1.E0 + P2.E1 + P3.E2 + P4.lo w6      o3 = P1.hi w0 + P2.O1 + P3.O2 + P4.O3
 *   per filter row four loads of weights, three of inputs, sixteen multiplies for 28 products.
 * The copy is a ring of filter_h rows of the engines' blocks (dw_widen_blocks: each input row
 * widened once per channel group), in the bytes the tiles plan, after the four channels'
 * constants (struct kqc); layers whose ring does not fit keep the tiles. */

/* One channel's constants: struct dwq (on the Cortex-M: (m2, s1) 0, (lo4, hi4) 8, bias 16,
 * cc 20, end 24 (the column pointer past the row's last quad), dst 28, ch 32), then the filter
 * rows' weight words from byte 40, KQ_WROW per row (5x5: E0, O1, E1, O2; 7x7 at stride 2:
 * E0..E3; 7x7 at stride 1: E0, O1, E1, O2, E2, O3, E3). */
struct kqc {
    struct dwq q;
    uint32_t w[7 * 7];
};
/* Weight words per filter row, and a channel's bytes (the same on the host, whose struct dwq is
 * larger, and the board, so both take the same engine). */
#define KQ_WROW(fh, st) ((fh) == 7 && (st) == 1 ? 7u : 4u)
#define KQ_CHANNEL(fh, st) (48u + 4u * KQ_WROW(fh, st) * (size_t)(fh))
_Static_assert(sizeof(struct dwq) <= 48, "KQ_CHANNEL");

/* Whether the engine is the layer's filter and stride (5x5 at 1, 7x7 at 1 or 2). */
static int kq_shape(const struct depthwise_conv2d_s8_params *p) {
    if (p->filter_h != p->filter_w || p->stride_h != p->stride_w) return 0;
    return (p->filter_h == 5 && p->stride_h == 1) ||
           (p->filter_h == 7 && (p->stride_h == 1 || p->stride_h == 2));
}

/* Blocks per ring row: a quad's inputs start at its block (stride 1: 4 pixels on, stride 2: 8)
 * and reach into the next one (5x5) or the next two (7x7). */
static int32_t kq_blocks(const struct depthwise_conv2d_s8_params *p) {
    const int32_t quads = (p->output_w + 3) / 4;
    if (p->filter_h == 5) return quads + 1;
    return p->stride_h == 1 ? quads + 2 : 2 * quads + 2;
}

/* Whether the engine takes a layer of this variant: at least one whole quad (4 outputs wide), its
 * input offset one dw_widen_blocks takes, and its constants and ring fit the variant's planned
 * bytes (depthwise_conv2d_s8_kxk_pair_dsp_buffer_size, unchanged). Measured on the emulated
 * Cortex-M7 (QEMU counts LDM/STM as one instruction; one layer per kernel call, tiles -> channel
 * pairs): 5x5 16x16x96 1,265,640 -> 1,092,200, 20x20x48 -> 18x18 799,040 -> 753,680, 7x7/2
 * 18x18x48 331,400 -> 287,440, 16x16x144 984,760 -> 859,880; and since the group's set-up and the
 * rows' widening got cheaper (dw_weight_pairs unrolled, dw_widen_blocks by halves, the row table
 * once per layer) also on small maps: 5x5 8x8x160 545,840 -> 470,360, 4x4x576 678,320 ->
 * 582,360, 7x7/2 8x8x288 555,800 -> 519,600; 7x7 at stride 1 (its own block, kq7s1_row, without a
 * clamp), 4x4x288 521,040 -> 465,280. */
static int kq_takes(const struct depthwise_conv2d_s8_params *p) {
    if (!kq_shape(p) || p->output_w < 4 || !dw_widen_ok(p)) return 0;
    if (p->filter_h == 7 && p->stride_h == 1 && !(p->act_min <= -128 && p->act_max >= 127))
        return 0; /* kq7s1_row has no clamp */
    const size_t need = 4u * KQ_CHANNEL(p->filter_h, p->stride_h) +
                        (size_t)p->filter_h * (size_t)kq_blocks(p) * 32u;
    return need <= depthwise_conv2d_s8_kxk_pair_dsp_buffer_size(p);
}

int depthwise_conv2d_s8_kxk_pair_dsp_quads(const void *params) {
    const struct depthwise_conv2d_s8_params p = *(const struct depthwise_conv2d_s8_params *)params;
    return depthwise_conv2d_s8_kxk_pair_dsp_takes(&p) && kq_takes(&p);
}

/* The four accumulators of one channel's quad (x: its words at the quad's first block; filter
 * row fy at x + rows[fy] bytes). */
static inline void kq_quad(const struct kqc *k, const uint32_t *x, const uint32_t *rows, int32_t fh,
                           int32_t st, int32_t a[4]) {
    int32_t a0 = k->q.bias, a1 = k->q.bias, a2 = k->q.bias, a3 = k->q.bias;
    for (int32_t fy = 0; fy < fh; ++fy) {
        const uint32_t *r = (const uint32_t *)((const uint8_t *)x + rows[fy]);
        const uint32_t *w = k->w + KQ_WROW(fh, st) * (uint32_t)fy;
        if (fh == 7 && st == 1) { /* P0 r[0], P1 r[1], P2 r[8], P3 r[9], P4 r[16] */
            a0 =
                dsp_smlabb(r[9], w[6],
                           dsp_smlad(r[8], w[4], dsp_smlad(r[1], w[2], dsp_smlad(r[0], w[0], a0))));
            a1 =
                dsp_smlad(r[9], w[5],
                          dsp_smlad(r[8], w[3], dsp_smlad(r[1], w[1], dsp_smlatb(r[0], w[0], a1))));
            a2 =
                dsp_smlabb(r[16], w[6],
                           dsp_smlad(r[9], w[4], dsp_smlad(r[8], w[2], dsp_smlad(r[1], w[0], a2))));
            a3 =
                dsp_smlad(r[16], w[5],
                          dsp_smlad(r[9], w[3], dsp_smlad(r[8], w[1], dsp_smlatb(r[1], w[0], a3))));
        } else if (fh == 5) { /* P0 r[0], P1 r[1], P2 r[8], P3 r[9] */
            a0 = dsp_smlabt(r[8], w[3], dsp_smlad(r[1], w[2], dsp_smlad(r[0], w[0], a0)));
            a1 = dsp_smlad(r[8], w[3], dsp_smlad(r[1], w[1], dsp_smlatb(r[0], w[0], a1)));
            a2 = dsp_smlabt(r[9], w[3], dsp_smlad(r[8], w[2], dsp_smlad(r[1], w[0], a2)));
            a3 = dsp_smlad(r[9], w[3], dsp_smlad(r[8], w[1], dsp_smlatb(r[1], w[0], a3)));
        } else { /* P_n at r[n / 2 * 8 + n % 2] */
            const uint32_t pn[7] = {r[0], r[1], r[8], r[9], r[16], r[17], r[24]};
            for (int i = 0; i < 4; ++i) {
                a0 = dsp_smlad(pn[i], w[i], a0);
                a1 = dsp_smlad(pn[i + 1], w[i], a1);
                a2 = dsp_smlad(pn[i + 2], w[i], a2);
                a3 = dsp_smlad(pn[i + 3], w[i], a3);
            }
        }
    }
    a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3;
}

#if KP_ASM
_Static_assert(
    __builtin_offsetof(struct kqc, q.lo4) == 8 && __builtin_offsetof(struct kqc, q.bias) == 16 &&
        __builtin_offsetof(struct kqc, q.cc) == 20 && __builtin_offsetof(struct kqc, q.end) == 24 &&
        __builtin_offsetof(struct kqc, q.dst) == 28 && __builtin_offsetof(struct kqc, q.ch) == 32 &&
        __builtin_offsetof(struct kqc, q.next) == 36 && __builtin_offsetof(struct kqc, w) == 40 &&
        KQ_CHANNEL(5, 1) == 128 && KQ_CHANNEL(7, 2) == 160 && KQ_CHANNEL(7, 1) == 244,
    "kq_row's offsets");
/* clang-format off */
/* Registers: r0 k, r1 the quad's column pointer, r2 the filter row's, r3 r4 inputs, r5 r6
 * weights, r7..r10 a0..a3, r11 dst, r12 ch, lr the row table. Row 0 starts the accumulators
 * from the bias (in r10: a3's first multiply is the last to read it). */
#define KQ_ROW_PTR(fy)                                                                            \
    "ldr r2, [lr, #4*" #fy "]\n\t"                                                                \
    "add r2, r2, r1\n\t"
#define KQ5_ROW(fy, i0, i1, i2, i3)                                                               \
    KQ_ROW_PTR(fy)                                                                                \
    "ldrd r3, r4, [r2]\n\t"                                                                       \
    "ldrd r5, r6, [r0, #40+16*" #fy "]\n\t"                                                       \
    "smlad r7, r3, r5, " i0 "\n\t"                                                                \
    "smlatb r8, r3, r5, " i1 "\n\t"                                                               \
    "smlad r9, r4, r5, " i2 "\n\t"                                                                \
    "smlatb r10, r4, r5, " i3 "\n\t"                                                              \
    "smlad r8, r4, r6, r8\n\t"                                                                    \
    "ldr r3, [r2, #32]\n\t"                                                                       \
    "smlad r10, r3, r6, r10\n\t"                                                                  \
    "ldrd r5, r6, [r0, #48+16*" #fy "]\n\t"                                                       \
    "smlad r7, r4, r5, r7\n\t"                                                                    \
    "smlad r9, r3, r5, r9\n\t"                                                                    \
    "smlad r8, r3, r6, r8\n\t"                                                                    \
    "smlabt r7, r3, r6, r7\n\t"                                                                   \
    "ldr r4, [r2, #36]\n\t"                                                                       \
    "smlad r10, r4, r6, r10\n\t"                                                                  \
    "smlabt r9, r4, r6, r9\n\t"
#define KQ7_ROW(fy, i0, i1, i2, i3)                                                               \
    KQ_ROW_PTR(fy)                                                                                \
    "ldrd r5, r6, [r0, #40+16*" #fy "]\n\t"                                                       \
    "ldrd r3, r4, [r2]\n\t"                                                                       \
    "smlad r7, r3, r5, " i0 "\n\t"                                                                \
    "smlad r7, r4, r6, r7\n\t"                                                                    \
    "smlad r8, r4, r5, " i1 "\n\t"                                                                \
    "ldrd r3, r4, [r2, #32]\n\t"                                                                  \
    "smlad r8, r3, r6, r8\n\t"                                                                    \
    "smlad r9, r3, r5, " i2 "\n\t"                                                                \
    "smlad r9, r4, r6, r9\n\t"                                                                    \
    "smlad r10, r4, r5, " i3 "\n\t"                                                               \
    "ldr r3, [r2, #64]\n\t"                                                                       \
    "smlad r10, r3, r6, r10\n\t"                                                                  \
    "ldrd r5, r6, [r0, #48+16*" #fy "]\n\t"                                                       \
    "ldrd r3, r4, [r2, #32]\n\t"                                                                  \
    "smlad r7, r3, r5, r7\n\t"                                                                    \
    "smlad r7, r4, r6, r7\n\t"                                                                    \
    "smlad r8, r4, r5, r8\n\t"                                                                    \
    "ldrd r3, r4, [r2, #64]\n\t"                                                                  \
    "smlad r8, r3, r6, r8\n\t"                                                                    \
    "smlad r9, r3, r5, r9\n\t"                                                                    \
    "smlad r9, r4, r6, r9\n\t"                                                                    \
    "smlad r10, r4, r5, r10\n\t"                                                                  \
    "ldr r3, [r2, #96]\n\t"                                                                       \
    "smlad r10, r3, r6, r10\n\t"
/* 7x7 at stride 1 (the weights E0, O1, E1, O2, E2, O3, E3 at 40 + 28 fy; P4 at block + 2). */
#define KQ7S1_ROW(fy, i0, i1, i2, i3)                                                             \
    KQ_ROW_PTR(fy)                                                                                \
    "ldrd r3, r4, [r2]\n\t"                                                                       \
    "ldrd r5, r6, [r0, #40+28*" #fy "]\n\t"                                                       \
    "smlad r7, r3, r5, " i0 "\n\t"                                                                \
    "smlatb r8, r3, r5, " i1 "\n\t"                                                               \
    "smlad r9, r4, r5, " i2 "\n\t"                                                                \
    "smlatb r10, r4, r5, " i3 "\n\t"                                                              \
    "smlad r8, r4, r6, r8\n\t"                                                                    \
    "ldr r3, [r2, #32]\n\t"                                                                       \
    "smlad r10, r3, r6, r10\n\t"                                                                  \
    "ldrd r5, r6, [r0, #48+28*" #fy "]\n\t"                                                       \
    "smlad r7, r4, r5, r7\n\t"                                                                    \
    "smlad r9, r3, r5, r9\n\t"                                                                    \
    "smlad r8, r3, r6, r8\n\t"                                                                    \
    "ldr r4, [r2, #36]\n\t"                                                                       \
    "smlad r10, r4, r6, r10\n\t"                                                                  \
    "ldrd r5, r6, [r0, #56+28*" #fy "]\n\t"                                                       \
    "smlad r7, r3, r5, r7\n\t"                                                                    \
    "smlad r9, r4, r5, r9\n\t"                                                                    \
    "smlad r8, r4, r6, r8\n\t"                                                                    \
    "ldr r3, [r2, #64]\n\t"                                                                       \
    "smlad r10, r3, r6, r10\n\t"                                                                  \
    "ldr r5, [r0, #64+28*" #fy "]\n\t"                                                            \
    "smlabb r7, r4, r5, r7\n\t"                                                                   \
    "smlabb r9, r3, r5, r9\n\t"
#define KQ_ROWS_REST(ROW) ROW(1, "r7", "r8", "r9", "r10") ROW(2, "r7", "r8", "r9", "r10")         \
    ROW(3, "r7", "r8", "r9", "r10") ROW(4, "r7", "r8", "r9", "r10")
#define KQ5_TAPS "ldr r10, [r0, #16]\n\t" KQ5_ROW(0, "r10", "r10", "r10", "r10") KQ_ROWS_REST(KQ5_ROW)
#define KQ7_TAPS                                                                                  \
    "ldr r10, [r0, #16]\n\t" KQ7_ROW(0, "r10", "r10", "r10", "r10") KQ_ROWS_REST(KQ7_ROW)          \
    KQ7_ROW(5, "r7", "r8", "r9", "r10") KQ7_ROW(6, "r7", "r8", "r9", "r10")
#define KQ7S1_TAPS                                                                                \
    "ldr r10, [r0, #16]\n\t" KQ7S1_ROW(0, "r10", "r10", "r10", "r10") KQ_ROWS_REST(KQ7S1_ROW)      \
    KQ7S1_ROW(5, "r7", "r8", "r9", "r10") KQ7S1_ROW(6, "r7", "r8", "r9", "r10")
#define KQ_REQUANT                                                                                \
    "ldrd r5, r6, [r0, #0]\n\t"                                                                   \
    "ldr r3, [r0, #20]\n\t"                                                                       \
    DWQ_RQ("r7", "r5", "r6", "r3", "r4") DWQ_RQ("r8", "r5", "r6", "r3", "r4")                     \
    DWQ_RQ("r9", "r5", "r6", "r3", "r4") DWQ_RQ("r10", "r5", "r6", "r3", "r4")
#define KQ_STORE DWQ_STORE("r7", "r8", "r9", "r10", "r11", "r12")
#define KQ_STORE_CLAMP                                                                            \
    "ldrd r5, r6, [r0, #8]\n\t"                                                                   \
    DWQ_STORE_CLAMP("r7", "r8", "r9", "r10", "r4", "r5", "r6", "r11", "r12")
#define KQ_ROW_FN(name, TAPS, STEP, CHANNEL, STORE)                                               \
    static __attribute__((naked, noinline)) void name(const struct kqc *k, const uint32_t *x,     \
                                                      const uint32_t *rows) {                     \
        (void)k, (void)x, (void)rows;                                                             \
        __asm__ volatile(                                                                         \
            "push {r4-r11, lr}\n\t"                                                               \
            "mov lr, r2\n\t"                                                                      \
            "ldr r11, [r0, #28]\n\t"                                                              \
            "ldr r12, [r0, #32]\n\t"                                                              \
            "1:\n\t"                                                                              \
            TAPS KQ_REQUANT STORE                                                                 \
            "add r1, r1, #" #STEP "\n\t"                                                          \
            "ldr r2, [r0, #24]\n\t"                                                               \
            "cmp r1, r2\n\t"                                                                      \
            "bne 1b\n\t"                                                                          \
            /* the next channel of the group: its struct, quads and outputs */                    \
            "ldr r2, [r0, #36]\n\t"                                                               \
            "cmp r2, #0\n\t"                                                                      \
            "beq 2f\n\t"                                                                          \
            "add r1, r1, r2\n\t"                                                                  \
            "add r0, r0, #" #CHANNEL "\n\t"                                                       \
            "ldr r11, [r0, #28]\n\t"                                                              \
            "b 1b\n\t"                                                                            \
            "2:\n\t"                                                                              \
            "pop {r4-r11, pc}\n\t");                                                              \
    }
/* clang-format on */
/* A row's whole quads (at least one) of the group's four channels (KQ_CHANNEL bytes apart;
 * k->q.end: x past channel 0's last quad, then k->q.next bytes on to the next channel's first),
 * by filter and clamp. */
KQ_ROW_FN(kq5_row, KQ5_TAPS, 32, 128, KQ_STORE) /* 128, 160: KQ_CHANNEL(5, 1), KQ_CHANNEL(7, 2) */
KQ_ROW_FN(kq5_row_clamp, KQ5_TAPS, 32, 128, KQ_STORE_CLAMP)
KQ_ROW_FN(kq7_row, KQ7_TAPS, 64, 160, KQ_STORE)
KQ_ROW_FN(kq7_row_clamp, KQ7_TAPS, 64, 160, KQ_STORE_CLAMP)
/* 244: KQ_CHANNEL(7, 1); no clamp (kq_takes: a clamped 7x7 at stride 1 keeps the tiles, which
 * saves the flash of a second 860-byte instance for a rare layer) */
KQ_ROW_FN(kq7s1_row, KQ7S1_TAPS, 32, 244, KQ_STORE)
#endif

/* Channel group c..c+3's constants and weight words into the four structs at k (KQ_CHANNEL
 * bytes apart; see struct kqc; doubled: for dwq_rq4). */
static void kq_load(const struct dw *d, uint8_t *k, const struct dw_rq *rq, int32_t c,
                    int doubled) {
    /* 5x5: E0, O1, E1, O2 = taps (0, 1), (1, 2), (2, 3), (3, 4); 7x7 at stride 2: (0, 1) ..
     * (6, 7 = 0); at stride 1: E0, O1, E1, O2, E2, O3, E3. */
    static const uint8_t pairs5[8] = {0, 1, 1, 2, 2, 3, 3, 4}, pairs7[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    static const uint8_t pairs7s1[14] = {0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7};
    const int32_t fh = d->p.filter_h, st = d->p.stride_h;
    struct kqc *k0 = (struct kqc *)k;
    size_t wstride; /* a straddling group's taps in the ring, which kq_run then fills */
    const int8_t *const wg =
        dw_group_filter(d, c, (int8_t *)(k + 4u * KQ_CHANNEL(fh, st)), &wstride);
    if (fh == 5)
        for (int32_t fy = 0; fy < 5; ++fy)
            dw_weight_pairs(wg, wstride, fy, 5, pairs5, 4, k0->w + 4 * fy,
                            KQ_CHANNEL(5, 1) / sizeof(uint32_t), doubled);
    else if (st == 2)
        for (int32_t fy = 0; fy < 7; ++fy)
            dw_weight_pairs(wg, wstride, fy, 7, pairs7, 4, k0->w + 4 * fy,
                            KQ_CHANNEL(7, 2) / sizeof(uint32_t), doubled);
    else
        for (int32_t fy = 0; fy < 7; ++fy)
            dw_weight_pairs(wg, wstride, fy, 7, pairs7s1, 7, k0->w + 7 * fy,
                            KQ_CHANNEL(7, 1) / sizeof(uint32_t), doubled);
    for (int32_t j = 0; j < 4; ++j)
        dwq_load(d, rq, &((struct kqc *)(k + (size_t)j * KQ_CHANNEL(fh, st)))->q, j, doubled);
}

/* The layer through the engine: per channel group, per output row, the new input rows widened
 * into the ring, then the four channels' quads (one block of assembly on the fast
 * requantization; else, and on the host, the C quad). */
static void kq_run(const struct dw *d) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c, ow = p->output_w, fh = p->filter_h, st = p->stride_h;
    const int32_t blocks = kq_blocks(p), quads = ow / 4, quads_all = (ow + 3) / 4;
    struct dw_widen wd;
    dw_widen_init(d, &wd, blocks);
    (void)quads; /* the whole quads: the block of assembly's, not the host twin's */
    const int full = p->act_min <= -128 && p->act_max >= 127;
    const int clamp8 = p->act_min >= -128 && p->act_max <= 127 && p->act_min <= p->act_max;
    /* depthwise_conv2d_s8_kxk_pair_dsp_buffer_size bytes: the channels, then the ring */
    uint8_t *const kbase = d->buf;
    const size_t kch = KQ_CHANNEL(fh, st); /* a channel's bytes */
    uint32_t *const ring = (uint32_t *)(kbase + 4u * kch);
    const size_t slot = (size_t)blocks * 8u; /* words */
    /* The window's row table: tab[i] = the byte offset of ring slot i % fh, so the window whose
     * top row is in slot s has its filter rows at tab + s (built once, not once per row). */
    uint32_t tab[2 * 7 - 1];
    for (int32_t i = 0; i < 2 * fh - 1; ++i) tab[i] = (uint32_t)((size_t)(i % fh) * slot * 4u);
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *image = d->input + (size_t)b * (size_t)p->input_h * d->in_row;
        int8_t *out = d->out + (size_t)b * (size_t)p->output_h * (size_t)ow * (size_t)ch;
        for (int32_t c = 0; c < ch;) {
            if (c + 4 > ch) { /* a group straddling train_rows is whole here */
                depthwise_conv2d_s8_dsp_channel(d, b, c);
                ++c;
                continue;
            }
            struct dw_rq rq;
            dw_rq_load(d, &rq, c);
            const int mode = rq.fast && full     ? DW_PACK
                             : rq.fast && clamp8 ? DW_PACK_CLAMP
                                                 : DW_STORE_ANY;
            /* Doubled (dwq_rq4) wherever it holds: the only requantization of the block of
             * assembly; the others take the C quad. */
            const int doubled = mode != DW_STORE_ANY && dwq_rq4_ok(d, &rq, c);
            kq_load(d, kbase, &rq, c, doubled);
            /* The next copy row to widen (copy row i: input row i - pad_h) and its ring slot;
             * the slot of the window's top row; the quads the channels' row ends are set for. */
            int32_t next = 0, wslot = 0, s0 = 0, set_nq = -1;
            (void)set_nq; /* the block of assembly's, not the host twin's */
            for (int32_t oy = 0; oy < p->output_h;
                 ++oy, s0 = s0 + st >= fh ? s0 + st - fh : s0 + st) {
                for (; next < oy * st + fh; ++next, wslot = wslot == fh - 1 ? 0 : wslot + 1)
                    dw_widen_blocks(&wd, image + c, ring + (size_t)wslot * slot, next - p->pad_h);
                const uint32_t *const rows = tab + s0;
                int8_t *row_out = out + ((size_t)oy * (size_t)ow) * (size_t)ch + (size_t)c;
                /* The block of assembly stores whole quads: a last partial one's outputs past
                 * the row land on the next row's first pixels (same channel), which that row
                 * then overwrites; on the last row the C quad stores only the row's. */
                int32_t q0 = 0;
#if KP_ASM
                const int32_t nq = oy == p->output_h - 1 ? quads : quads_all;
                if (doubled && nq > 0) {
#pragma GCC unroll 4
                    for (int32_t j = 0; j < 4; ++j) {
                        struct kqc *kc = (struct kqc *)(kbase + (size_t)j * kch);
                        if (nq != set_nq) { /* the first row, and a last one of fewer quads */
                            kc->q.end = (uintptr_t)(ring + 2 * j + (size_t)nq * 8u * (size_t)st);
                            kc->q.next = j < 3 ? 8 - nq * 32 * st : 0;
                        }
                        kc->q.dst = row_out + j;
                    }
                    set_nq = nq;
                    const struct kqc *k0 = (const struct kqc *)kbase;
                    if (fh == 5)
                        (mode == DW_PACK_CLAMP ? kq5_row_clamp : kq5_row)(k0, ring, rows);
                    else if (st == 2)
                        (mode == DW_PACK_CLAMP ? kq7_row_clamp : kq7_row)(k0, ring, rows);
                    else /* no clamp: kq_takes */
                        kq7s1_row(k0, ring, rows);
                    q0 = nq;
                }
#endif
                for (int32_t j = 0; j < 4 && q0 < quads_all; ++j) {
                    const struct kqc *kc = (const struct kqc *)(kbase + (size_t)j * kch);
                    for (int32_t q = q0; q < quads_all; ++q) {
                        int32_t a[4];
                        kq_quad(kc, ring + 2 * j + (size_t)q * 8u * (size_t)st, rows, fh, st, a);
                        dwq_store(d, &kc->q, a, ow - 4 * q < 4 ? ow - 4 * q : 4,
                                  row_out + j + (size_t)(4 * q) * (size_t)ch, c + j, mode, doubled);
                    }
                }
            }
            c += 4;
        }
    }
}

void depthwise_conv2d_s8_kxk_pair_dsp_run(const struct dw *d) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c, fh = p->filter_h, np = kp_np(p);
    const int full = p->act_min <= -128 && p->act_max >= 127;
    /* A clamp the packed store does per byte: inside the int8 range and not empty. */
    const int clamp8 = p->act_min >= -128 && p->act_max <= 127 && p->act_min <= p->act_max;
    if (kq_takes(p)) { /* 5x5 at stride 1, 7x7 at 1 and 2: the channel-pair engine above */
        kq_run(d);
        return;
    }
    const struct dw_tile t = kp_tile(p);
    const int slide = kp_slides(p, t);
    /* The operator's scratch (depthwise_conv2d_s8_kxk_pair_dsp_buffer_size): the weight sets,
     * then the copy. */
    struct kp_weights *const kw = d->buf;
    uint32_t *const buf = (uint32_t *)((uint8_t *)d->buf + kp_copy_offset(p));
    struct dw_rq rq;
    struct kp_k k;
    k.cc = 1 + 2 * p->output_offset;
    k.lo4 = (uint32_t)(uint8_t)(int8_t)p->act_min * 0x01010101u;
    k.hi4 = (uint32_t)(uint8_t)(int8_t)p->act_max * 0x01010101u;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *image = d->input + (size_t)b * (size_t)p->input_h * d->in_row;
        int8_t *out = d->out + (size_t)b * (size_t)p->output_h * (size_t)p->output_w * (size_t)ch;
        for (int32_t c = 0; c < ch;) {
            if (!dw_group_whole(p, c)) {
                depthwise_conv2d_s8_dsp_channel(d, b, c);
                ++c;
                continue;
            }
            kp_weights_load(d, kw, c);
            dw_rq_load(d, &rq, c);
            for (int j = 0; j < 4; ++j) {
                k.rq[j][0] = rq.m2[j];
                k.rq[j][1] = rq.s1[j];
            }
            kp_outputs_fn run = kp_outputs_any;
            if (rq.fast && (full || clamp8)) {
                if (fh == 5 && np == 3) run = full ? kp_outputs_5_pack : kp_outputs_5_clamp;
                if (fh == 7 && np == 4) run = full ? kp_outputs_7_pack : kp_outputs_7_clamp;
            }
            if (slide) {
                const int32_t sh = p->stride_h, w2 = kp_row_pairs(p, p->output_w);
                const size_t pitch = 4u * (size_t)w2; /* words per row */
                kp_copy(d, image + c, buf, -p->pad_h, -p->pad_w, fh, w2);
                for (int32_t oy = 0;;) {
                    run(d, &rq, &k, kw, buf, w2, 1, p->output_w,
                        out + (size_t)oy * (size_t)p->output_w * (size_t)ch + (size_t)c, c);
                    if (++oy == p->output_h) break;
                    kp_shift_rows(buf, (size_t)sh * pitch, (size_t)(fh - sh) * pitch);
                    kp_copy(d, image + c, buf + (size_t)(fh - sh) * pitch,
                            oy * sh - p->pad_h + fh - sh, -p->pad_w, sh, w2);
                }
                c += 4;
                continue;
            }
            for (int32_t oy = 0; oy < p->output_h; oy += t.rows) {
                const int32_t rows = p->output_h - oy < t.rows ? p->output_h - oy : t.rows;
                const int32_t in_h = (rows - 1) * p->stride_h + fh;
                for (int32_t ox = 0; ox < p->output_w; ox += t.cols) {
                    const int32_t cols = p->output_w - ox < t.cols ? p->output_w - ox : t.cols;
                    const int32_t w2 = kp_row_pairs(p, cols);
                    kp_copy(d, image + c, buf, oy * p->stride_h - p->pad_h,
                            ox * p->stride_w - p->pad_w, in_h, w2);
                    int8_t *dst = out +
                                  ((size_t)oy * (size_t)p->output_w + (size_t)ox) * (size_t)ch +
                                  (size_t)c;
                    run(d, &rq, &k, kw, buf, w2, rows, cols, dst, c);
                }
            }
            c += 4;
        }
    }
}
