/* Input gradient of conv2d_s8, optimized: bit-identical with conv2d_s8_grad_input_ref_run
 * (conv2d_s8_grad_input.c) for every layer; 1x1 filters (all of MobileNetV2's backward convs)
 * take the path below, larger filters a scatter of each pixel's nonzero terms (grad_input_kxk).
 *
 * Exactness. The reference scatters: for each output-gradient element (pixel, c) it adds
 * g'[pixel, c] * W[c, k] to acc[input pixel, k] for every k. With a 1x1 filter an input pixel
 * receives from at most one output pixel, so the same sums can be gathered instead:
 *   acc[pixel', k] = sum over c of g'[pixel, c] * W[c, k]
 * with the same terms (g' computed by the same conv_grad_term, the same shift) in another
 * order. The shift bounds the sum of the terms' absolute values by INT32_MAX
 * (conv_grad_pick_shift), so no partial sum overflows in any order and the int32 results are
 * equal; the int8 requantization is grad_requantize_s32's (dsp.h's bit-identical
 * dsp_grad_requantize_s32, without a 64-bit division per element). Zero terms (masked
 * or zero gradients, which the reference skips) add nothing.
 *
 * The sums are also exact mod 2^32, which lets a term be split into parts summed separately
 * (each part's sum wraps, their total does not): the 32-bit wrap-around is the only overflow
 * arithmetic used below.
 *
 * Speed. Every g' fits a signed 16-bit lane (conv2d_s8_grad_input.h's CONV_GRAD_MIN_SHIFT_16),
 * so one SMLAD takes two terms. Per tile of up to 16 pairs of pixels by a chunk of up to 32
 * output channels, each pair's terms are packed (load_terms) two output channels per word,
 * against the chunk's weights as lane pairs of the same two channels (built once per chunk and
 * 4 input channels: chunk_weights_m7, SXTB16 and PKHBT): per channel pair 3 LDRD and 8 SMLAD
 * for 16 products, the chunk's channels in groups of 4 (a short chunk costs what it holds, not
 * 32 channels). One call per chunk and 4 input channels runs every pair of the tile
 * (gather_pairs_m7, assembly using all 14 registers: per pair a jump into the unrolled steps,
 * 15 instructions around them). Chunks with no nonzero gradient anywhere in the tile (the
 * mask aside: window_live) are left out. The overflow bound (the reference's
 * sums, exactly) is one pass over the weights, two input channels at a time, skipped where the
 * smallest shift is certain and stopped once the channels read need the largest the weights could
 * need (max_shift). */
#include <stddef.h>

#include "conv2d_s8_grad_input.h"
#include "conv2d_train.h"
#include "dsp.h"
#include "grad.h"

/* The gather's tile: GI_PAIRS pairs of pixels by GI_C output channels (the packed terms: 2 KB
 * of the operator's scratch, after the reference's). */
#define GI_C 32
#define GI_PAIRS 16
_Static_assert(GI_COLS_ROWS == GI_C, "the scratch holds one chunk of composed rows");

struct gi {
    const int8_t *grad_out;
    const uint8_t *mask;
    const int8_t *filter, *trained;
    const int32_t *m;
    int32_t input_c, output_c, train_rows, per_channel, shift;
    uint32_t *terms;    /* GI_PAIRS * GI_C words of scratch (conv2d_s8_grad_input_scratch_size) */
    int32_t train_cols; /* input-channel slice (conv2d_train.h): 1x1, even; 0: none */
    int8_t *rows;       /* then: GI_C composed weight rows (scratch) */
    size_t pixels;      /* grad_broadcast: an image's output pixels share its G_y row; 0: none */
};

/* Where output pixel q's gradients for channels c0.. start in grad_out (conv_grad_row: one row
 * per image with grad_broadcast); the clamp mask's bits stay at q * output_c + c0. */
static inline const int8_t *gi_grad_row(const struct gi *g, size_t q, int32_t c0) {
    return g->grad_out + conv_grad_row(q, g->pixels) * (size_t)g->output_c + (size_t)c0;
}
_Static_assert(GI_SINK_PIXELS == 2 * GI_PAIRS && GI_COLS_ROWS == GI_C, "a tile, a chunk");

/* The same bound for a 1x1 filter, two input channels at a time with their four sums in
 * registers (the weights read down the columns; 7 instructions per weight against 19 for the
 * loops as the reference nests them). The sums are the reference's, exactly (integers). */
static inline uint32_t abs8(int32_t v) {
    return (uint32_t)((v ^ (v >> 31)) - (v >> 31));
}

/* The sums over `count` rows (stride bytes apart) of |w[0]| * m, |w[1]| * m, |w[0]|, |w[1]|,
 * m stepping by mstep (0: one multiplier for all). */
struct bound2 {
    uint32_t s0[2], s1[2]; /* 64-bit sums as (low, high) words */
    uint32_t a0, a1;
    int32_t stride, count;
};
static inline uint64_t u64_of(const uint32_t v[2]) {
    return (uint64_t)v[0] | ((uint64_t)v[1] << 32);
}
static inline void u64_set(uint32_t v[2], uint64_t x) {
    v[0] = (uint32_t)x;
    v[1] = (uint32_t)(x >> 32);
}

static inline __attribute__((always_inline)) void bound2_c(const int8_t *w, const int32_t *m,
                                                           int32_t mstep, int two,
                                                           struct bound2 *b) {
    uint64_t s0 = u64_of(b->s0), s1 = u64_of(b->s1);
    uint32_t a0 = b->a0, a1 = b->a1;
    for (int32_t count = b->count; count > 0; --count, w += b->stride, m += mstep) {
        const uint32_t mc = (uint32_t)*m, u0 = abs8(w[0]), u1 = two ? abs8(w[1]) : 0;
        s0 += (uint64_t)u0 * mc;
        s1 += (uint64_t)u1 * mc;
        a0 += u0;
        a1 += u1;
    }
    u64_set(b->s0, s0);
    u64_set(b->s1, s1);
    b->a0 = a0, b->a1 = a1;
}

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
_Static_assert(offsetof(struct bound2, stride) == 24 && offsetof(struct bound2, count) == 28,
               "bound2_m7's offsets");
/* bound2_c for two input channels and per-channel multipliers, b->count >= 1, in assembly:
 * 14 instructions per output channel, all in registers (GCC's loop spilled to 22). */
static __attribute__((noinline)) void bound2_m7(const int8_t *w, const int32_t *m,
                                                struct bound2 *b) {
    register const int8_t *r0 __asm__("r0") = w;
    register const int32_t *r1 __asm__("r1") = m;
    register struct bound2 *r2 __asm__("r2") = b;
    __asm__ volatile(
        "push {r2}\n"
        "ldm r2, {r3, r4, r5, r6, r7, r8, r9, r11}\n"
        "1:\n"
        "ldrsb r12, [r0]\n"
        "ldrsb lr, [r0, #1]\n"
        "ldr r2, [r1], #4\n"
        "add r0, r0, r9\n"
        "eor r10, r12, r12, asr #31\n"
        "add r12, r10, r12, lsr #31\n"
        "eor r10, lr, lr, asr #31\n"
        "add lr, r10, lr, lsr #31\n"
        "umlal r3, r4, r12, r2\n"
        "umlal r5, r6, lr, r2\n"
        "add r7, r7, r12\n"
        "add r8, r8, lr\n"
        "subs r11, r11, #1\n"
        "bne 1b\n"
        "pop {r2}\n"
        "stm r2, {r3, r4, r5, r6, r7, r8}\n"
        : "+r"(r0), "+r"(r1), "+r"(r2)
        :
        : "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
}
#endif

static inline __attribute__((always_inline)) void bound2(const int8_t *w, const int32_t *m,
                                                         int32_t mstep, int two, struct bound2 *b) {
    if (b->count <= 0) return;
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    if (mstep == 1 && two) {
        bound2_m7(w, m, b);
        return;
    }
#endif
    if (two)
        bound2_c(w, m, mstep, 1, b);
    else
        bound2_c(w, m, mstep, 0, b);
}

/* The largest shift the weights could need: with every |W_q| at its largest, 128, the
 * reference's sums are at most b = 128 * 128 * taps * sum of m and w = 128 * taps * output_c,
 * and conv_grad_pick_shift is monotone in both. So the real shift lies between
 * CONV_GRAD_MIN_SHIFT_16 and this one: where the two meet the pass over the weights is
 * skipped, and the pass stops as soon as the input channels read so far need this one (their
 * sums only grow the maxima the shift is picked from). */
static int max_shift(const struct gi *g, int32_t taps) {
    uint64_t sum_m = 0;
    if (g->per_channel)
        for (int32_t c = 0; c < g->output_c; ++c) sum_m += (uint64_t)g->m[c];
    else
        sum_m = (uint64_t)g->m[0] * (uint64_t)g->output_c;
    const uint64_t b = 128u * 128u * (uint64_t)taps * sum_m;
    const uint64_t w = 128u * (uint64_t)taps * (uint64_t)g->output_c;
    return conv_grad_pick_shift(b, w, CONV_GRAD_MIN_SHIFT_16);
}

static inline __attribute__((always_inline)) int shift_1x1(const struct gi *g) {
    const int hi = max_shift(g, 1);
    if (hi == CONV_GRAD_MIN_SHIFT_16) return hi;
    const int32_t n = g->input_c, mstep = g->per_channel ? 1 : 0;
    const int32_t tr = g->train_rows < g->output_c ? g->train_rows : g->output_c;
    const int32_t tc = g->train_cols; /* even: a pair of columns is trained or not */
    uint64_t b0 = 0, w1 = 0;
    for (int32_t k = 0; k < n; k += 2) {
        const int two = k + 1 < n;
        /* a0, a1 < 2^32: 128 per output channel, < 2^24 of them */
        struct bound2 b = {{0, 0}, {0, 0}, 0, 0, n, tr};
        if (k < tc) { /* trained columns: every row's, tc bytes apart */
            b.stride = tc, b.count = g->output_c;
            bound2(g->trained + k, g->m, mstep, two, &b);
        } else {
            if (tr > 0) bound2(g->trained + k, g->m, mstep, two, &b);
            b.count = g->output_c - tr;
            bound2(g->filter + (size_t)tr * (size_t)n + k, g->m + tr * mstep, mstep, two, &b);
        }
        const uint64_t s0 = 128u * u64_of(b.s0), s1 = 128u * u64_of(b.s1);
        if (s0 > b0) b0 = s0;
        if (s1 > b0) b0 = s1;
        if (b.a0 > w1) w1 = b.a0;
        if (b.a1 > w1) w1 = b.a1;
        if (conv_grad_pick_shift(b0, w1, CONV_GRAD_MIN_SHIFT_16) == hi) return hi; /* max_shift */
    }
    return conv_grad_pick_shift(b0, w1, CONV_GRAD_MIN_SHIFT_16);
}

/* out[0], out[2] = the terms of 4 consecutive channels (gradients g, mask bits the low 4 of
 * bits, multipliers m) as two lane pairs: one word of gradients masked by dsp_spread4
 * (dsp.h), and per term (v * m + half - (v < 0)) >> s, the same
 * rounding as below (v * m < 0 exactly when v < 0, as m > 0) with the sign's correction
 * folded into the addend of one multiply-add. */
static inline __attribute__((always_inline)) void lanes4(const int8_t *g, uint32_t bits,
                                                         const int32_t *m, int32_t half, int s,
                                                         uint32_t *out) {
    const uint32_t w = dsp_read4(g) & dsp_spread4[bits & 15u];
    const int32_t v0 = (int8_t)w, v1 = (int8_t)(w >> 8), v2 = (int8_t)(w >> 16);
    const int32_t v3 = (int32_t)w >> 24;
    const int32_t e0 = (v0 * m[0] + (half + (v0 >> 31))) >> s;
    const int32_t e1 = (v1 * m[1] + (half + (v1 >> 31))) >> s;
    const int32_t e2 = (v2 * m[2] + (half + (v2 >> 31))) >> s;
    const int32_t e3 = (v3 * m[3] + (half + (v3 >> 31))) >> s;
    out[0] = dsp_pack_lo((uint32_t)e0, (uint32_t)e1);
    out[2] = dsp_pack_lo((uint32_t)e2, (uint32_t)e3);
}

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
/* lanes4 for n4 >= 1 groups of 4 channels (out[4 i], out[4 i + 2] for group i), in assembly:
 * per group one word of gradients masked by dsp_spread4, two LDRD of multipliers, per term
 * SXTB (ASR for the top byte), MLA (v m + half), ADD (v >> 31: the rounding away from zero)
 * and ASR by s, and a PKHBT and a STR per two terms: 29 instructions per 4 terms (GCC's lanes4
 * with the loop around it took about 50). */
static inline void lanes4_m7(const int8_t *g, uint32_t bits, const int32_t *m, int32_t half, int s,
                             uint32_t *out, int32_t n4) {
    uint32_t w, v, m0, m1;
    __asm__ volatile(
        "1:\n"
        "ldr %[w], [%[g]], #4\n"
        "and %[v], %[bits], #15\n"
        "ldr %[v], [%[tab], %[v], lsl #2]\n"
        "lsr %[bits], %[bits], #4\n"
        "and %[w], %[w], %[v]\n"
        "ldrd %[m0], %[m1], [%[m]], #8\n"
        "sxtb %[v], %[w]\n"
        "mla %[m0], %[v], %[m0], %[h]\n"
        "add %[m0], %[m0], %[v], asr #31\n"
        "asr %[m0], %[m0], %[s]\n"
        "sxtb %[v], %[w], ror #8\n"
        "mla %[m1], %[v], %[m1], %[h]\n"
        "add %[m1], %[m1], %[v], asr #31\n"
        "asr %[m1], %[m1], %[s]\n"
        "pkhbt %[m0], %[m0], %[m1], lsl #16\n"
        "str %[m0], [%[o]], #8\n"
        "ldrd %[m0], %[m1], [%[m]], #8\n"
        "sxtb %[v], %[w], ror #16\n"
        "mla %[m0], %[v], %[m0], %[h]\n"
        "add %[m0], %[m0], %[v], asr #31\n"
        "asr %[m0], %[m0], %[s]\n"
        "asr %[v], %[w], #24\n"
        "mla %[m1], %[v], %[m1], %[h]\n"
        "add %[m1], %[m1], %[v], asr #31\n"
        "asr %[m1], %[m1], %[s]\n"
        "pkhbt %[m0], %[m0], %[m1], lsl #16\n"
        "str %[m0], [%[o]], #8\n"
        "subs %[n], %[n], #1\n"
        "bne 1b\n"
        : [g] "+r"(g), [bits] "+r"(bits), [m] "+r"(m), [o] "+r"(out), [n] "+r"(n4), [w] "=&r"(w),
          [v] "=&r"(v), [m0] "=&r"(m0), [m1] "=&r"(m1)
        : [tab] "r"(dsp_spread4), [h] "r"(half), [s] "r"(s)
        : "cc", "memory");
}
#endif

/* out[2 i] = the terms of output pixel q (q < 0: none) for the consecutive output channels
 * c0 + 2i and c0 + 2i + 1 as a 16-bit lane pair, for i < used / 2, those from c0 + n on zero:
 * conv_grad_term's rounding without branches (shift >= CONV_GRAD_MIN_SHIFT_16 > 0; for v < 0,
 * -((half - v) >> shift) = (v + half - 1) >> shift), the chunk's mask bits (n <= 32) read once
 * into a word. */
static void pixel_lanes(const struct gi *g, int32_t q, int32_t c0, int32_t n, int32_t used,
                        uint32_t *out) {
    int32_t j = 0;
    if (q >= 0) {
        const size_t base = (size_t)q * (size_t)g->output_c + (size_t)c0;
        const int8_t *gr = gi_grad_row(g, (size_t)q, c0);
        const int32_t ms = g->per_channel ? 1 : 0;
        const int32_t *mp = g->m + (g->per_channel ? c0 : 0);
        const int s = g->shift;
        const int32_t half = (int32_t)1 << (s - 1);
        uint32_t bits = 0xFFFFFFFFu;
        if (g->mask) {
            const uint8_t *mb = g->mask + (base >> 3);
            const uint32_t sh = (uint32_t)(base & 7u), nb = (sh + (uint32_t)n + 7u) >> 3;
            if (nb >= 4) { /* a whole chunk: a word, and a fifth byte if the bits straddle it */
                bits = dsp_read4((const int8_t *)mb) >> sh;
                if (nb > 4) bits |= (uint32_t)mb[4] << (32u - sh); /* nb > 4: sh >= 1 */
            } else {
                uint32_t w = 0;
                for (uint32_t i = 0; i < nb; ++i) w |= (uint32_t)mb[i] << (8u * i);
                bits = w >> sh;
            }
        }
        if (ms) { /* per-channel multipliers: 4 channels a turn (lanes4) */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
            const int32_t n4 = n >> 2;
            if (n4) lanes4_m7(gr, bits, mp, half, s, out, n4);
            j = n4 << 2;
            bits = n4 == 8 ? 0 : bits >> (4 * n4);
#endif
            for (; j + 4 <= n; j += 4, bits >>= 4) lanes4(gr + j, bits, mp + j, half, s, out + j);
        }
        for (; j + 2 <= n; j += 2, bits >>= 2) {
            const int32_t t0 = (gr[j] & -(int32_t)(bits & 1u)) * mp[j * ms];
            const int32_t t1 = (gr[j + 1] & -(int32_t)((bits >> 1) & 1u)) * mp[(j + 1) * ms];
            const int32_t v0 = (t0 + half + (t0 >> 31)) >> s;
            const int32_t v1 = (t1 + half + (t1 >> 31)) >> s;
            out[j] = ((uint32_t)v0 & 0xFFFFu) | ((uint32_t)v1 << 16);
        }
        if (j < n) {
            const int32_t t0 = (gr[j] & -(int32_t)(bits & 1u)) * mp[j * ms];
            out[j] = (uint32_t)((t0 + half + (t0 >> 31)) >> s) & 0xFFFFu;
            j += 2;
        }
    }
    for (; j < used; j += 2) out[j] = 0;
}

/* The terms of output pixels q0 and q1 for the n <= GI_C consecutive output channels from c0
 * (the rest of the chunk's used channels zero), as 16-bit lane pairs: per pair of channels j,
 * gp[2j] = (q0's term of channel c0 + 2j, of c0 + 2j + 1), gp[2j + 1] the same for q1. */
static void load_terms(const struct gi *g, uint32_t *gp, int32_t c0, int32_t n, int32_t used,
                       int32_t q0, int32_t q1) {
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    if (n == GI_C && g->per_channel && q1 >= 0) {
        /* a whole chunk of per-channel terms at two pixels (the usual chunk): lanes4_m7
         * straight, without pixel_lanes' set-up and tails; the chunk's 32 mask bits are a word
         * and, where they straddle it, a fifth byte */
        const int32_t s = g->shift, half = (int32_t)1 << (s - 1);
        const int32_t *mp = g->m + c0;
        for (int32_t e = 0; e < 2; ++e) {
            const int32_t q = e ? q1 : q0;
            const size_t base = (size_t)q * (size_t)g->output_c + (size_t)c0;
            uint32_t bits = 0xFFFFFFFFu;
            if (g->mask) {
                const uint8_t *mb = g->mask + (base >> 3);
                const uint32_t sh = (uint32_t)(base & 7u);
                bits = dsp_read4((const int8_t *)mb) >> sh;
                if (sh) bits |= (uint32_t)mb[4] << (32u - sh);
            }
            lanes4_m7(gi_grad_row(g, (size_t)q, c0), bits, mp, half, s, gp + e, GI_C / 4);
        }
        return;
    }
#endif
    pixel_lanes(g, q0, c0, n, used, gp);
    pixel_lanes(g, q1, c0, n, used, gp + 1);
}

/* The accumulators of a pair of pixels for 4 input channels: read from ld0 (pixel 0) and ld1
 * (pixel 1), written to st0 and st1 (4 int32 each). */
struct gather_io {
    const int32_t *ld0, *ld1;
    int32_t *st0, *st1;
};

/* st0[0..3] = ld0[0..3] + the sums over the 2 * groups channel pairs j of
 * SMLAD(gp[2j], t[4j + i]) (i = 0..3), st1 the same with gp[2j + 1], all mod 2^32: gp holds
 * the packed terms (load_terms), t per channel pair the weights of input channels k..k+3 as
 * 16-bit lane pairs (the pair's two channels). On the Cortex-M7: one block of assembly, per
 * channel pair 3 LDRD and 8 SMLAD for 16 products, nothing spilled (all 14 registers), the
 * accumulators loaded and stored with LDM / STM, 4 channels per turn of the loop (its end is
 * kept on the stack: 3 instructions per 22). groups >= 1. */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
#define GI_STEP                 \
    "ldrd r10, r11, [r8], #8\n" \
    "ldrd r12, lr, [r9], #8\n"  \
    "smlad r0, r10, r12, r0\n"  \
    "smlad r4, r11, r12, r4\n"  \
    "smlad r1, r10, lr, r1\n"   \
    "smlad r5, r11, lr, r5\n"   \
    "ldrd r12, lr, [r9], #8\n"  \
    "smlad r2, r10, r12, r2\n"  \
    "smlad r6, r11, r12, r6\n"  \
    "smlad r3, r10, lr, r3\n"   \
    "smlad r7, r11, lr, r7\n"
_Static_assert(offsetof(struct gather_io, ld1) == 4 && offsetof(struct gather_io, st0) == 8 &&
                   offsetof(struct gather_io, st1) == 12,
               "gather_m7's offsets");
static __attribute__((noinline)) void gather_m7(const uint32_t *gp, const uint32_t *t,
                                                const struct gather_io *io, int32_t groups) {
    register const uint32_t *r0 __asm__("r0") = gp;
    register const uint32_t *r1 __asm__("r1") = t;
    register const struct gather_io *r2 __asm__("r2") = io;
    register const uint32_t *r3 __asm__("r3") = gp + 4 * groups; /* gp's end */
    __asm__ volatile(
        "push {r2, r3}\n"
        "mov r8, r0\n"
        "mov r9, r1\n"
        "ldr r12, [r2, #4]\n"
        "ldm r12, {r4, r5, r6, r7}\n"
        "ldr r12, [r2]\n"
        "ldm r12, {r0, r1, r2, r3}\n"
        "1:\n" GI_STEP GI_STEP
        "ldr r12, [sp, #4]\n"
        "cmp r8, r12\n"
        "bne 1b\n"
        "pop {r12, lr}\n"
        "ldr r8, [r12, #8]\n"
        "stm r8, {r0, r1, r2, r3}\n"
        "ldr r8, [r12, #12]\n"
        "stm r8, {r4, r5, r6, r7}\n"
        : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3)
        :
        : "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
}
#define gather gather_m7
#else
static void gather(const uint32_t *gp, const uint32_t *t, const struct gather_io *io,
                   int32_t groups) {
    int32_t a[8];
    for (int32_t i = 0; i < 4; ++i) a[i] = io->ld0[i], a[4 + i] = io->ld1[i];
    for (int32_t j = 0; j < 2 * groups; ++j, gp += 2, t += 4) {
        for (int32_t i = 0; i < 4; ++i) {
            a[i] = dsp_smlad(gp[0], t[i], a[i]);
            a[4 + i] = dsp_smlad(gp[1], t[i], a[4 + i]);
        }
    }
    for (int32_t i = 0; i < 4; ++i) io->st0[i] = a[i], io->st1[i] = a[4 + i];
}
#endif

/* One chunk's products for 4 input channels at every pair of a tile: for pair i, the
 * accumulators of its two pixels' rows at dst[2i] and dst[2i + 1] (4 int32 each, at the
 * chunk's current input channel) get the sums gather computes with the pair's terms (pair i's
 * at gp + i * 2 steps: each pair's follow the last's), read and written back in place, and the
 * two pointers move on by 4 channels for the next call. A lone pixel's partner row is its own
 * (dst[2i + 1] == dst[2i]): its terms are zero, so the partner's sums are the row as read,
 * written before the pixel's own. */
struct gather_job {
    const uint32_t *gp; /* pair 0's terms */
    const uint32_t *t;  /* the chunk's weights (gather's t) */
    int32_t **dst;      /* 2 rows per pair, each advanced by 4 int32 */
    int32_t **dst_end;  /* past the last pair's */
    uint32_t steps;     /* channel pairs in the chunk: 2 groups, 2..GI_C / 2 */
};
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
_Static_assert(offsetof(struct gather_job, t) == 4 && offsetof(struct gather_job, dst) == 8 &&
                   offsetof(struct gather_job, dst_end) == 12 &&
                   offsetof(struct gather_job, steps) == 16 && GI_C == 32,
               "gather_pairs_m7's offsets");
/* On the Cortex-M7/M4: one call per chunk and 4 input channels (not one per pair), and per pair
 * a jump into GI_C / 2 unrolled steps (each 3 LDRD + 8 SMLAD, 44 bytes: the entry is the end
 * minus 44 bytes per channel pair) instead of a loop whose end test took 3 instructions per 22:
 * 15 instructions per pair around the steps against about 70 (the call, its setup, and the
 * loop's tests). All 14 registers hold accumulators, terms, weights and pointers during the
 * steps, so the pair's state lives in the job (steps is overwritten with the entry, which
 * LDR PC jumps to); the terms' pointer runs on from pair to pair, the STMs' write-back moves
 * the rows on, and the pointer to the next pair's rows (r9) carries into the loop's head: 15
 * instructions per pair around the steps. */
static __attribute__((naked, noinline)) void gather_pairs_m7(struct gather_job *job) {
    (void)job;
    __asm__ volatile(
        "push {r4-r11, lr}\n"
        "push {r0}\n" /* [sp]: the job */
        "adr r12, 9f\n"
        "ldr r11, [r0, #16]\n"
        "sub r12, r12, r11, lsl #5\n"
        "sub r12, r12, r11, lsl #3\n"
        "sub r12, r12, r11, lsl #2\n"
        "orr r12, r12, #1\n"
        "str r12, [r0, #16]\n"
        "mov lr, r0\n"
        "ldr r8, [lr]\n"
        "ldr r9, [lr, #8]\n"
        "1:\n" /* r9: the pair's rows in dst */
        "ldrd r10, r11, [r9]\n"
        "ldr r9, [lr, #4]\n"
        "ldm r11, {r4, r5, r6, r7}\n"
        "ldm r10, {r0, r1, r2, r3}\n"
        "ldr pc, [lr, #16]\n"
        "8:\n" GI_STEP GI_STEP GI_STEP GI_STEP GI_STEP GI_STEP GI_STEP GI_STEP GI_STEP GI_STEP
            GI_STEP GI_STEP GI_STEP GI_STEP GI_STEP GI_STEP
        "9:\n"
        ".if (9b - 8b) - 16 * 44\n"
        ".error \"gather_pairs_m7: a step is not 44 bytes\"\n"
        ".endif\n"
        "ldr lr, [sp]\n"
        "ldr r9, [lr, #8]\n"
        "ldrd r10, r11, [r9], #8\n"
        "stm r11!, {r4, r5, r6, r7}\n" /* the partner first (a lone pixel's is its own row) */
        "stm r10!, {r0, r1, r2, r3}\n"
        "strd r10, r11, [r9, #-8]\n"
        "str r9, [lr, #8]\n" /* the next pair's rows (the steps need r9) */
        "ldr r12, [lr, #12]\n"
        "cmp r9, r12\n"
        "bne 1b\n"
        "pop {r0}\n"
        "pop {r4-r11, pc}\n");
}
#endif

#undef GI_STEP
static void gather_pairs(struct gather_job *job) {
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    gather_pairs_m7(job);
#else
    const uint32_t *gp = job->gp;
    for (int32_t **d = job->dst; d != job->dst_end; d += 2, gp += 2 * job->steps) {
        int32_t a[8];
        const struct gather_io io = {d[0], d[1], a, a + 4};
        gather(gp, job->t, &io, (int32_t)job->steps / 2);
        for (int32_t i = 0; i < 4; ++i) d[1][i] = a[4 + i]; /* the partner first */
        for (int32_t i = 0; i < 4; ++i) d[0][i] = a[i];
        d[0] += 4, d[1] += 4;
    }
#endif
}

/* t[4 j + i] = (rows[2 j][k + i], rows[2 j + 1][k + i]) as sign-extended 16-bit lanes, i < 4,
 * j < pairs: the weights of a chunk's channel pairs for 4 input channels (gather's t). On the
 * Cortex-M7/M4 in assembly: per channel pair 2 LDR, PKHBT / PKHTB putting the two rows' bytes
 * k, k + 1 (then k + 2, k + 3) in one word as (a0, a1, b0, b1), so that SXTB16 and SXTB16 ROR 8
 * give the lane pairs (a0, b0) and (a1, b1) directly: 2 PKH and 4 SXTB16, then 2 STRD (GCC's
 * loop took about 24 instructions). */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
static __attribute__((naked, noinline)) void chunk_weights_m7(uint32_t *t,
                                                              const int8_t *const *rows,
                                                              int32_t pairs, int32_t k) {
    (void)t, (void)rows, (void)pairs, (void)k;
    __asm__ volatile(
        "push {r4-r11}\n"
        "1:\n"
        "ldrd r4, r5, [r1], #8\n"
        "ldr r4, [r4, r3]\n"
        "ldr r5, [r5, r3]\n"
        "pkhbt r6, r4, r5, lsl #16\n"
        "pkhtb r7, r5, r4, asr #16\n"
        "sxtb16 r8, r6\n"
        "sxtb16 r9, r6, ror #8\n"
        "sxtb16 r10, r7\n"
        "sxtb16 r11, r7, ror #8\n"
        "strd r8, r9, [r0], #8\n"
        "strd r10, r11, [r0], #8\n"
        "subs r2, r2, #1\n"
        "bne 1b\n"
        "pop {r4-r11}\n"
        "bx lr\n");
}
#endif

static void chunk_weights(uint32_t *t, const int8_t *const *rows, int32_t pairs, int32_t k) {
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    chunk_weights_m7(t, rows, pairs, k);
#else
    for (int32_t j = 0; j < pairs; ++j, t += 4) {
        const uint32_t wa = dsp_read4(rows[2 * j] + k), wb = dsp_read4(rows[2 * j + 1] + k);
        const uint32_t a02 = dsp_sxtb16(wa), a13 = dsp_sxtb16_hi(wa);
        const uint32_t b02 = dsp_sxtb16(wb), b13 = dsp_sxtb16_hi(wb);
        t[0] = dsp_pack_lo(a02, b02);
        t[1] = dsp_pack_lo(a13, b13);
        t[2] = dsp_pack_hi(a02, b02);
        t[3] = dsp_pack_hi(a13, b13);
    }
#endif
}

/* 4 int8 from row + k, the bytes past n zero. */
static inline uint32_t weights4(const int8_t *row, int32_t k, int32_t n) {
    if (k + 4 <= n) return dsp_read4(row + k);
    uint32_t v = 0;
    for (int32_t i = 0; k + i < n; ++i) v |= (uint32_t)(uint8_t)row[k + i] << (8 * i);
    return v;
}

/* The input pixel output pixel q reads through a 1x1 filter (flat NHW index), or -1 if it
 * lies in the padding. */
static int32_t source_pixel(const struct conv2d_s8_grad_input_params *p, int32_t q) {
    const int32_t ox = q % p->output_w, oy = (q / p->output_w) % p->output_h;
    const int32_t b = q / (p->output_w * p->output_h);
    const int32_t y = oy * p->stride_h - p->pad_h, x = ox * p->stride_w - p->pad_w;
    if (y < 0 || y >= p->input_h || x < 0 || x >= p->input_w) return -1;
    return (b * p->input_h + y) * p->input_w + x;
}

/* Whether any of the output channels c0 .. c0 + w - 1 has a nonzero gradient at some pixel of
 * the tile's pairs: the pixels' gradient rows ORed a word at a time, the clamp mask left out (a
 * gradient the mask clears gives a zero term: load_terms applies the mask, so it adds nothing,
 * as the reference's skipped terms). A chunk is the whole window of consecutive channels or
 * nothing: chunks of the live channels alone, tested channel by channel and pixel by pixel, cost
 * ~0.3 M of MobileNetV2's step in the tests and in load_terms' path for scattered channels
 * (a term per channel, indexed), more than the dead channels they left out saved. */
static int window_live(const struct gi *g, const int32_t (*q)[2], int32_t pairs, int32_t c0,
                       int32_t w) {
    const int32_t w4 = w >> 2;
    uint32_t any = 0;
    for (int32_t i = 0; i < pairs; ++i)
        for (int32_t e = 0; e < 2; ++e) {
            if (q[i][e] < 0) continue;
            const int8_t *row = gi_grad_row(g, (size_t)q[i][e], c0);
            int32_t j = 0;
            for (; j < w4; ++j) any |= dsp_read4(row + 4 * j);
            for (int32_t k = 4 * j; k < w; ++k) any |= (uint32_t)(uint8_t)row[k];
            if (any) return 1;
        }
    return 0;
}

/* p[0..n) = 0, four words a turn. (GCC turns a plain zeroing loop into a call of newlib's
 * byte-at-a-time memset: 10 instructions per word against ~1.5 here.) */
static void zero_words(int32_t *p, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        int32_t *q = p + i;
        q[0] = 0, q[1] = 0, q[2] = 0, q[3] = 0;
        __asm__("" : : "r"(q) : "memory"); /* keeps the loop from becoming a memset call */
    }
    for (; i < n; ++i) p[i] = 0;
}

/* A single output pixel (a fully connected layer's batch of one): the tile path pairs it with
 * an empty partner, so half of its SMLADs multiply zero terms, and per 4 input channels it
 * packs the weights of a whole chunk into lane pairs before one gather uses them once. Here
 * per chunk of GI_C output channels the pixel's terms (pixel_lanes: the same g' as the tile
 * path's), the channel pairs with a nonzero term listed with their two weight rows, and per 4
 * input channels the 4 sums in registers: per pair two words of weights, PKHBT / PKHTB and 4
 * SXTB16 into (a_k, b_k) lane pairs (chunk_weights' steps), 4 SMLAD with the pair's terms.
 * MobileNetV2's 1280 -> 10 classifier: ~2 instructions per product against ~4.5. The same
 * terms into the same accumulators in another order (exact: see the top of this file). */
struct gi_row_pair {
    uint32_t terms; /* (g' of row a, g' of row b) as 16-bit lanes */
    const int8_t *a, *b;
};

static void grad_input_1x1_one(const struct gi *g, int32_t q, int32_t *acc) {
    const int32_t kc = g->input_c, k4 = kc & ~3;
    for (int32_t c0 = 0; c0 < g->output_c; c0 += GI_C) {
        const int32_t n = g->output_c - c0 < GI_C ? g->output_c - c0 : GI_C;
        uint32_t lanes[GI_C]; /* pixel_lanes writes the pairs' words at even indexes */
        pixel_lanes(g, q, c0, n, (n + 1) & ~1, lanes);
        struct gi_row_pair list[GI_C / 2];
        int32_t pairs = 0;
        for (int32_t j = 0; j < n; j += 2) {
            if (lanes[j] == 0) continue; /* both terms zero: nothing to add */
            const int32_t ca = c0 + j, cb = j + 1 < n ? ca + 1 : ca; /* a lone row: g'_b = 0 */
            list[pairs].terms = lanes[j];
            list[pairs].a = (ca < g->train_rows ? g->trained : g->filter) + (size_t)ca * (size_t)kc;
            list[pairs].b = (cb < g->train_rows ? g->trained : g->filter) + (size_t)cb * (size_t)kc;
            ++pairs;
        }
        if (pairs == 0) continue;
        for (int32_t k = 0; k < k4; k += 4) {
            int32_t a0 = acc[k], a1 = acc[k + 1], a2 = acc[k + 2], a3 = acc[k + 3];
            for (int32_t i = 0; i < pairs; ++i) {
                const uint32_t wa = dsp_read4(list[i].a + k), wb = dsp_read4(list[i].b + k);
                const uint32_t lo = dsp_pack_lo(wa, wb), hi = dsp_pack_hi(wa, wb);
                const uint32_t t = list[i].terms; /* bytes (a0, a1, b0, b1), (a2, a3, b2, b3) */
                a0 = dsp_smlad(t, dsp_sxtb16(lo), a0);
                a1 = dsp_smlad(t, dsp_sxtb16_hi(lo), a1);
                a2 = dsp_smlad(t, dsp_sxtb16(hi), a2);
                a3 = dsp_smlad(t, dsp_sxtb16_hi(hi), a3);
            }
            acc[k] = a0, acc[k + 1] = a1, acc[k + 2] = a2, acc[k + 3] = a3;
        }
        for (int32_t k = k4; k < kc; ++k) /* the last kc % 4 input channels */
            for (int32_t i = 0; i < pairs; ++i) {
                const int32_t ga = (int16_t)(list[i].terms & 0xFFFFu);
                const int32_t gb = (int32_t)list[i].terms >> 16;
                acc[k] += ga * (int32_t)list[i].a[k] + gb * (int32_t)list[i].b[k];
            }
    }
}

/* The accumulators of the output pixels [first, end) (flat NHW) with g->shift set: the whole
 * input's (first = 0, end = every pixel; acc the input gradient's) or, with the identity map
 * (1x1, stride 1, no padding: output pixel q is input pixel q), the rows of pixels [first, end)
 * alone at acc (the two-pass variant's blocks, conv2d_s8_grad_input_dsp_1x1_pixels), or, with
 * a sink (identity, output_c <= GI_C: one chunk per tile, so a tile's accumulators of 4 input
 * channels are complete after one gather), 4 input channels of a tile's pixels at a time in
 * the sink's buffer, handed to it (conv2d_s8_grad_input.h, struct gi_sink). */
/* Inlined into both callers: the one-pass kernel's copy keeps its constants (no sink, first 0)
 * and its registers as they were before the two-pass variant (measured: +6,640 instructions
 * on the 8x8 32 -> 192 layer as one shared function). */
static inline __attribute__((always_inline)) void grad_input_1x1(
    const struct conv2d_s8_grad_input_params *p, struct gi *g, int32_t *acc, int32_t first,
    int32_t end, struct gi_sink *const sink) {
    const int32_t kc = p->input_c;
    /* With the identity map every input pixel receives from exactly one output pixel;
     * otherwise the pixels no output reads keep a zero gradient. The accumulators start at
     * zero either way (the chunks add into them). */
    const int identity = p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 && p->pad_w == 0 &&
                         p->output_h == p->input_h && p->output_w == p->input_w;
    const size_t n_in =
        identity ? (size_t)(end - first) * (size_t)kc
                 : (size_t)p->batches * (size_t)p->input_h * (size_t)p->input_w * (size_t)kc;
    const int32_t n_out = end;
    if (!sink) zero_words(acc, n_in);
    if (!sink && first == 0 && end == 1 && g->train_cols == 0) { /* grad_input_1x1_one */
        const int32_t src = identity ? 0 : source_pixel(p, 0);
        if (src >= 0) grad_input_1x1_one(g, 0, acc + (size_t)src * (size_t)kc);
        return;
    }
    uint32_t *const gp = g->terms; /* a tile's packed terms for a chunk of output channels */
    int32_t q[GI_PAIRS][2];        /* a tile's pairs: output pixels (-1: none) */
    int32_t *dst[GI_PAIRS][2];     /* and the accumulator rows they reach (gather_job) */
    uint32_t t[GI_C * 2];          /* the chunk's weights for 4 input channels, as lane pairs */
    int32_t next = first;          /* the next output pixel to pair up */
    while (next < n_out) {
        /* A tile: up to GI_PAIRS pairs of output pixels whose input is not padding. */
        int32_t pairs = 0;
        const int32_t tile = next; /* its first pixel (consecutive ones where there is a sink) */
        while (pairs < GI_PAIRS && next < n_out) {
            int32_t got = 0;
            while (got < 2 && next < n_out) {
                const int32_t src = identity ? next : source_pixel(p, next);
                if (src >= 0) {
                    q[pairs][got] = next;
                    dst[pairs][got] = sink ? sink->buf + 4 * (next - tile)
                                           : acc + (size_t)(src - first) * (size_t)kc;
                    ++got;
                }
                ++next;
            }
            if (got == 0) break;
            if (got == 1) q[pairs][1] = -1, dst[pairs][1] = dst[pairs][0]; /* gather_job */
            ++pairs;
        }
        /* Chunks of GI_C consecutive output channels, those with no nonzero gradient anywhere in
         * the tile left out (they add nothing: the reference skips them term by term;
         * window_live). */
        int32_t cnext = 0;
        while (cnext < p->output_c) {
            const int32_t c0 = cnext, n = p->output_c - c0 < GI_C ? p->output_c - c0 : GI_C;
            cnext += n;
            if (!window_live(g, q, pairs, c0, n)) { /* nothing to add */
                if (sink) { /* one chunk (output_c <= GI_C) without gradient: accumulators 0 */
                    zero_words(sink->buf, (size_t)(next - tile) * 4u);
                    for (int32_t k = 0; k < kc; k += 4)
                        sink->fn(sink, tile, next - tile, k, kc - k < 4 ? kc - k : 4);
                    break;
                }
                continue;
            }
            /* groups of 4 channels; past n, zero terms */
            const int32_t groups = (n + 3) >> 2, used = 4 * groups;
            /* The chunk's weight rows, trained or flash; past n, any row (its terms are zero). */
            const int8_t *rows[GI_C];
            for (int32_t j = 0; j < used; ++j) {
                const int32_t c = c0 + (j < n ? j : 0);
                if (g->train_cols > 0) /* composed: trained columns, then flash */
                    rows[j] = j < n ? conv_train_row(g->rows + (size_t)j * (size_t)kc, g->filter,
                                                     g->trained, c, 1, kc, 0, g->train_cols)
                                    : rows[0];
                else
                    rows[j] = c < g->train_rows ? g->trained + (size_t)c * (size_t)kc
                                                : g->filter + (size_t)c * (size_t)kc;
            }
            for (int32_t i = 0; i < pairs; ++i)
                load_terms(g, gp + (size_t)i * (size_t)used, c0, n, used, q[i][0], q[i][1]);
            for (int32_t k = 0; k < kc; k += 4) {
                const int32_t nk = kc - k < 4 ? kc - k : 4;
                if (sink) zero_words(sink->buf, (size_t)(next - tile) * 4u);
                /* per channel pair (a, b): (a_i, b_i) for i = 0..3, sign-extended lanes */
                if (nk == 4)
                    chunk_weights(t, rows, used / 2, k);
                else /* the last nk < 4 input channels, the bytes past them zero */
                    for (int32_t j = 0; j < used / 2; ++j) {
                        const uint32_t wa = weights4(rows[2 * j], k, kc);
                        const uint32_t wb = weights4(rows[2 * j + 1], k, kc);
                        const uint32_t a02 = dsp_sxtb16(wa), a13 = dsp_sxtb16_hi(wa);
                        const uint32_t b02 = dsp_sxtb16(wb), b13 = dsp_sxtb16_hi(wb);
                        uint32_t *tj = t + 4 * j;
                        tj[0] = dsp_pack_lo(a02, b02);
                        tj[1] = dsp_pack_lo(a13, b13);
                        tj[2] = dsp_pack_hi(a02, b02);
                        tj[3] = dsp_pack_hi(a13, b13);
                    }
                if (nk == 4) { /* straight from and to the accumulators, every pair */
                    struct gather_job job = {gp, t, &dst[0][0], &dst[pairs][0], (uint32_t)used / 2};
                    gather_pairs(&job);
                    if (sink) { /* the tile's 4 channels complete: to the sink, rows back */
                        for (int32_t i = 0; i < pairs; ++i) dst[i][0] -= 4, dst[i][1] -= 4;
                        sink->fn(sink, tile, next - tile, k, nk);
                    }
                    continue;
                }
                for (int32_t i = 0; i < pairs; ++i) {         /* the last nk < 4 input channels */
                    int32_t *d0 = dst[i][0], *d1 = dst[i][1]; /* at k: gather_pairs moved them */
                    int32_t a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                    for (int32_t j = 0; j < nk; ++j) a[j] = d0[j], a[4 + j] = d1[j];
                    const struct gather_io io = {a, a + 4, a, a + 4};
                    gather(gp + (size_t)i * (size_t)used, t, &io, groups);
                    for (int32_t j = 0; j < nk; ++j) d1[j] = a[4 + j]; /* the partner first */
                    for (int32_t j = 0; j < nk; ++j) d0[j] = a[j];
                }
                if (sink) sink->fn(sink, tile, next - tile, k, nk);
            }
            if (sink) break; /* one chunk: every live channel (output_c <= GI_C) */
            /* gather_pairs moved every row on by the whole groups of 4 input channels: back to
             * channel 0 for the next chunk (no copy of the pointers on the stack) */
            for (int32_t i = 0; i < pairs; ++i) dst[i][0] -= kc & ~3, dst[i][1] -= kc & ~3;
        }
    }
}

/* shift_1x1's bound for any filter: per pair of input channels, the sums over output
 * channels and taps (the weights of tap t of every row, filter_size bytes apart), the
 * reference's sums exactly (integers, another order). */
static int shift_kxk(const struct gi *g, int32_t taps) {
    const int hi = max_shift(g, taps);
    if (hi == CONV_GRAD_MIN_SHIFT_16) return hi;
    const int32_t n = g->input_c, mstep = g->per_channel ? 1 : 0;
    const int32_t tr = g->train_rows < g->output_c ? g->train_rows : g->output_c;
    const int32_t fs = taps * n; /* filter_size */
    uint64_t b0 = 0, w1 = 0;
    for (int32_t k = 0; k < n; k += 2) {
        const int two = k + 1 < n;
        struct bound2 b = {{0, 0}, {0, 0}, 0, 0, fs, 0};
        for (int32_t t = 0; t < taps; ++t) {
            b.count = tr;
            bound2(g->trained + (size_t)t * (size_t)n + k, g->m, mstep, two, &b);
            b.count = g->output_c - tr;
            bound2(g->filter + (size_t)tr * (size_t)fs + (size_t)t * (size_t)n + k,
                   g->m + tr * mstep, mstep, two, &b);
        }
        const uint64_t s0 = 128u * u64_of(b.s0), s1 = 128u * u64_of(b.s1);
        if (s0 > b0) b0 = s0;
        if (s1 > b0) b0 = s1;
        if (b.a0 > w1) w1 = b.a0;
        if (b.a1 > w1) w1 = b.a1;
        if (conv_grad_pick_shift(b0, w1, CONV_GRAD_MIN_SHIFT_16) == hi) return hi; /* max_shift */
    }
    return conv_grad_pick_shift(b0, w1, CONV_GRAD_MIN_SHIFT_16);
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

#define GK_LIST 64 /* nonzero terms of one output pixel held at once (512 B of stack) */

/* One nonzero g' of an output pixel and its output channel's weight row (trained or flash). */
struct gk_term {
    int32_t g;
    const int8_t *w;
};

/* a[k] += sum over the n terms of g' * w[off + k], k < kc: per 4 input channels the 4 sums in
 * registers, per term one word of weights (SXTB with rotation for each byte) and 4 MLA. */
static void scatter(int32_t *a, const struct gk_term *list, int32_t n, size_t off, int32_t kc) {
    int32_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        int32_t a0 = a[k], a1 = a[k + 1], a2 = a[k + 2], a3 = a[k + 3];
        const size_t o = off + (size_t)k;
        for (int32_t i = 0; i < n; ++i) {
            const int32_t g = list[i].g;
            const uint32_t w = dsp_read4(list[i].w + o);
            a0 += g * (int32_t)(int8_t)w;
            a1 += g * (int32_t)(int8_t)(w >> 8);
            a2 += g * (int32_t)(int8_t)(w >> 16);
            a3 += g * ((int32_t)w >> 24);
        }
        a[k] = a0, a[k + 1] = a1, a[k + 2] = a2, a[k + 3] = a3;
    }
    for (; k < kc; ++k) {
        int32_t s = a[k];
        for (int32_t i = 0; i < n; ++i) s += list[i].g * (int32_t)list[i].w[off + (size_t)k];
        a[k] = s;
    }
}

/* Filters larger than 1x1: the reference's scatter, output pixel by output pixel, with the
 * zero terms dropped once per pixel instead of per tap: the pixel's nonzero g' (up to
 * GK_LIST at a time) listed with their weight rows, then for each tap inside the input
 * (bounded once per pixel, not checked per tap) the list added into the input pixel's
 * accumulators 4 input channels at a time. Same terms, same accumulators, another order. */
static void grad_input_kxk(const struct conv2d_s8_grad_input_params *p, struct gi *g,
                           int32_t *acc) {
    const size_t n_in =
        (size_t)p->batches * (size_t)p->input_h * (size_t)p->input_w * (size_t)p->input_c;
    const int32_t kc = p->input_c, fw = p->filter_w, taps = p->filter_h * p->filter_w;
    const size_t filter_size = (size_t)taps * (size_t)kc;
    const size_t in_row = (size_t)p->input_w * (size_t)kc;
    const size_t oc = (size_t)p->output_c;
    g->shift = shift_kxk(g, taps);
    zero_words(acc, n_in);
    struct gk_term list[GK_LIST];
    size_t q = 0; /* flat index of the output pixel */
    for (int32_t b = 0; b < p->batches; ++b) {
        int32_t *image = acc + (size_t)b * (size_t)p->input_h * in_row;
        for (int32_t oy = 0; oy < p->output_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t fy_lo, fy_hi;
            tap_range(y0, p->dilation_h, p->filter_h, p->input_h, &fy_lo, &fy_hi);
            for (int32_t ox = 0; ox < p->output_w; ++ox, ++q) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t fx_lo, fx_hi;
                tap_range(x0, p->dilation_w, fw, p->input_w, &fx_lo, &fx_hi);
                if (fy_lo == fy_hi || fx_lo == fx_hi) continue;
                for (int32_t c0 = 0; c0 < p->output_c; c0 += GK_LIST) {
                    const int32_t c1 = p->output_c - c0 < GK_LIST ? p->output_c : c0 + GK_LIST;
                    int32_t n = 0;
                    for (int32_t c = c0; c < c1; ++c) {
                        const int32_t v =
                            conv_grad_masked_at(g->grad_out, g->mask, q, oc, (size_t)c, g->pixels);
                        if (v == 0) continue;
                        const int32_t gs =
                            conv_grad_term(v, g->m[g->per_channel ? c : 0], g->shift);
                        if (gs == 0) continue;
                        list[n].g = gs;
                        list[n].w =
                            (c < g->train_rows ? g->trained : g->filter) + (size_t)c * filter_size;
                        ++n;
                    }
                    if (n == 0) continue;
                    for (int32_t fy = fy_lo; fy < fy_hi; ++fy) {
                        int32_t *row = image + (size_t)(y0 + fy * p->dilation_h) * in_row;
                        for (int32_t fx = fx_lo; fx < fx_hi; ++fx) {
                            int32_t *a = row + (size_t)(x0 + fx * p->dilation_w) * (size_t)kc;
                            scatter(a, list, n, (size_t)(fy * fw + fx) * (size_t)kc, kc);
                        }
                    }
                }
            }
        }
    }
}

/* The packed terms live in the operator's scratch after the reference's part (8-aligned; the
 * planner aligns scratch to 16 bytes); planned for 1x1 filters (the variant that keeps them)
 * whatever the build, so one plan runs on both. */
static size_t gi_terms_offset(const void *params) {
    return (conv2d_s8_grad_input_ref_scratch_size(params) + 7u) & ~(size_t)7u;
}

size_t conv2d_s8_grad_input_scratch_size(const void *params) {
    const struct conv2d_s8_grad_input_params p =
        *(const struct conv2d_s8_grad_input_params *)params;
    const int one = p.filter_h == 1 && p.filter_w == 1;
    return gi_terms_offset(params) + (one ? GI_PAIRS * GI_C * sizeof(uint32_t) : 0);
}

static inline __attribute__((always_inline)) void gi_init(
    struct gi *g, const struct conv2d_s8_grad_input_params *p, void *const *operands,
    const int32_t *m, uint32_t *terms, int8_t *rows) {
    *g = (struct gi){
        .grad_out = operands[CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT],
        .mask = p->has_mask ? (const uint8_t *)operands[CONV2D_S8_GRAD_INPUT_MASK] : NULL,
        .filter = operands[CONV2D_S8_GRAD_INPUT_FILTER],
        .trained = operands[CONV2D_S8_GRAD_INPUT_TRAINED_FILTER],
        .m = m,
        .input_c = p->input_c,
        .output_c = p->output_c,
        .train_rows = p->train_rows,
        .per_channel = p->per_channel,
        .shift = 0,
        .terms = terms,
        .train_cols = p->train_cols,
        .rows = rows,
        .pixels = conv_grad_pixels(p->grad_broadcast, p->output_h, p->output_w),
    };
}

int conv2d_s8_grad_input_dsp_1x1_takes(const struct conv2d_s8_grad_input_params *p) {
    return p->filter_h == 1 && p->filter_w == 1 &&
           (p->train_cols == 0 || (p->train_cols % 2 == 0 && p->input_c <= GI_COLS_MAX_C));
}

size_t conv2d_s8_grad_input_dsp_1x1_terms_size(void) {
    return GI_PAIRS * GI_C * sizeof(uint32_t);
}

int conv2d_s8_grad_input_dsp_1x1_shift(const struct conv2d_s8_grad_input_params *p,
                                       void *const *operands, const int32_t *m) {
    struct gi g;
    gi_init(&g, p, operands, m, NULL, NULL);
    return shift_1x1(&g);
}

void conv2d_s8_grad_input_dsp_1x1_pixels(const struct conv2d_s8_grad_input_params *p,
                                         void *const *operands, const int32_t *m, int shift,
                                         uint32_t *terms, int8_t *rows, int32_t first, int32_t end,
                                         int32_t *acc, struct gi_sink *sink) {
    struct gi g;
    gi_init(&g, p, operands, m, terms, rows);
    g.shift = shift;
    grad_input_1x1(p, &g, acc, first, end, sink);
}

void conv2d_s8_grad_input_dsp_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct conv2d_s8_grad_input_params p =
        *(const struct conv2d_s8_grad_input_params *)params;
    const int one = p.filter_h == 1 && p.filter_w == 1;
    if (p.train_cols > 0 && !conv2d_s8_grad_input_dsp_1x1_takes(&p)) {
        /* input-channel slices other than MIT's (1x1, even): the reference's composed rows */
        conv2d_s8_grad_input_ref_run(params, operands, scratch);
        return;
    }
    const float grad_out_scale = *(const float *)operands[CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE];
    const float *scales = operands[CONV2D_S8_GRAD_INPUT_WEIGHT_SCALES];
    int8_t *grad_in = operands[CONV2D_S8_GRAD_INPUT_GRAD_INPUT];
    float *grad_in_scale = operands[CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE];
    const size_t n_in =
        (size_t)p.batches * (size_t)p.input_h * (size_t)p.input_w * (size_t)p.input_c;
    int32_t *acc = scratch;
    int32_t *m = acc + n_in; /* Q23 channel multipliers, as the reference's scratch */
    const float max_scale = conv_grad_channel_q23(scales, p.per_channel ? p.output_c : 1, m);
    struct gi g;
    gi_init(&g, &p, operands, m, (uint32_t *)((uint8_t *)scratch + gi_terms_offset(params)),
            (int8_t *)(m + p.output_c)); /* conv2d_s8_grad_input_scratch_size */
    if (one) {
        g.shift = shift_1x1(&g);
        grad_input_1x1(&p, &g, acc, 0, p.batches * p.output_h * p.output_w, NULL);
    } else {
        grad_input_kxk(&p, &g, acc);
    }
    *grad_in_scale = dsp_grad_requantize_s32(
        acc, n_in, grad_out_scale * max_scale * conv_grad_unit(g.shift), grad_in);
}

/* The selector, the runtime's entry for conv2d_s8_grad_input (ops.def): the DSP variant above when
 * the build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (conv2d_s8_grad_input.c). The
 * DSP variant falls back to the reference itself for the shapes it does not take. */
void conv2d_s8_grad_input_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        conv2d_s8_grad_input_dsp_run(params, operands, scratch);
    else
        conv2d_s8_grad_input_ref_run(params, operands, scratch);
}
