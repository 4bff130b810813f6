/* The channel-plane engine of the optimized depthwise input gradients: see
 * depthwise_conv2d_s8_grad_input_planes.h. */
#include "depthwise_conv2d_s8_grad_input_planes.h"

#include "conv2d_s8_grad_input.h"
#include "dsp.h"

/* The assembly blocks (corr8_2, corr8_3, corr8s2) where the build has the DSP instructions; the
 * host twin runs the C correlations, with the packed words in their order (dwp_setup). */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
#define DWP_ASM 1
#endif

static inline int32_t ceil_div(int32_t a, int32_t b) {
    return (a + b - 1) / b;
}

int dwp_setup(struct dwp *d, const struct depthwise_conv2d_s8_grad_input_params *p) {
    d->p = *p;
    const int32_t sh = p->stride_h, sw = p->stride_w;
    if (p->depth_multiplier != 1 || p->dilation_h != 1 || p->dilation_w != 1 || sh < 1 || sh > 2 ||
        sw < 1 || sw > 2 || p->pad_h < 0 || p->pad_w < 0 || p->input_w > 64 || p->filter_h < 1 ||
        p->filter_w < 1)
        return 0;
    int32_t words = 0, kh_max = 0, kw_max = 0;
    for (int32_t py = 0; py < sh; ++py)
        for (int32_t px = 0; px < sw; ++px) {
            const int32_t i = py * sw + px;
            d->kh[i] = (int16_t)(py < p->filter_h ? ceil_div(p->filter_h - py, sh) : 0);
            d->kw[i] = (int16_t)(px < p->filter_w ? ceil_div(p->filter_w - px, sw) : 0);
            if (d->kw[i] > 8) return 0; /* 4 tap pairs at most */
            d->koff[i] = (int16_t)words;
            words += d->kh[i] * ((d->kw[i] + 1) / 2);
            if (d->kh[i] > kh_max) kh_max = d->kh[i];
            if (d->kw[i] > kw_max) kw_max = d->kw[i];
        }
    /* The engine's shapes have at most 2 DWP_WORDS taps, for which the reference's shift is the
     * smallest one whatever the weights (dw_grad_worst_shift): no pass over them. */
    if (words > DWP_WORDS ||
        dw_grad_worst_shift(p->filter_h * p->filter_w) != CONV_GRAD_MIN_SHIFT_16)
        return 0;
    d->shift = CONV_GRAD_MIN_SHIFT_16;
    /* Y and X reach (input - 1 + pad) / s; P holds the g' and every row and column read. */
    const int32_t max_y = (p->input_h - 1 + p->pad_h) / sh,
                  max_x = (p->input_w - 1 + p->pad_w) / sw;
    d->pt = kh_max > 0 ? kh_max - 1 : 0;
    d->pl = kw_max > 0 ? kw_max - 1 : 0;
    d->ph = d->pt + (max_y + 1 > p->output_h ? max_y + 1 : p->output_h);
    /* + 6: the 4-output blocks past the row's end and the last pair's 32-bit read */
    d->pw = d->pl + (max_x + 1 > p->output_w ? max_x + 1 : p->output_w) + 6;
    if ((int64_t)d->ph * d->pw > DWP_PLANE) return 0;
    d->words = words;
    if (sh > 1 || sw > 1) {
        /* the tap table: dwp_kernel's words, in the order of its per-phase loops below */
        if (p->filter_h * p->filter_w >= DWP_NO_TAP) return 0;
        int32_t n = 0;
        for (int32_t py = 0; py < sh; ++py)
            for (int32_t px = 0; px < sw; ++px) {
                const int32_t i = py * sw + px, kh = d->kh[i], kw = d->kw[i];
                if (kh == 0 || kw == 0) continue;
                for (int32_t a = 0; a < kh; ++a) {
                    const int32_t fy = py + (kh - 1 - a) * sh;
                    for (int32_t b = kw - 1; b >= 0; b -= 2, ++n) {
                        d->tap[n][0] = (uint8_t)(fy * p->filter_w + px + b * sw);
                        d->tap[n][1] =
                            b > 0 ? (uint8_t)(fy * p->filter_w + px + (b - 1) * sw) : DWP_NO_TAP;
                    }
                }
            }
    }
    /* rows8's shapes (where it is built): stride 1, rows 8 wide, 2 or 3 tap pairs */
    d->rows8 = sh == 1 && sw == 1 && p->input_w == 8 && d->kw[0] >= 3 && d->kw[0] <= 6;
    d->whole4 = 1;
    for (int32_t px = 0; px < sw; ++px) {
        const int32_t x0 = ((px - p->pad_w) % sw + sw) % sw; /* the first column of the phase */
        d->x0[px] = (int16_t)x0;
        d->nx[px] = (int16_t)(x0 < p->input_w ? (p->input_w - 1 - x0) / sw + 1 : 0);
        if (d->nx[px] % 4) d->whole4 = 0;
        for (int32_t py = 0; py < sh; ++py) {
            const int32_t i = py * sw + px;
            d->col0[i] = (int16_t)((x0 + p->pad_w - px) / sw - d->kw[i] + 1 + d->pl);
        }
    }
    d->pair2 = 0;
#ifdef DWP_ASM
    /* pair2 (rows_s2): stride 2, rows 8 wide (4 columns a phase), 2 tap pairs in both column
     * phases, phase b's window at phase a's column (a = 0: TFLite's padding of 7x7/2 after an
     * explicit PAD of 3) or one to its right (TensorFlow's SAME). Its words: per row phase, per
     * sub-kernel row, phase a's two then phase b's two (koff[py * 2 + a] the row phase's first). */
    const int32_t shift01 = d->col0[1] - d->col0[0];
    if (sh == 2 && sw == 2 && d->nx[0] == 4 && d->nx[1] == 4 && (d->kw[0] + 1) / 2 == 2 &&
        (d->kw[1] + 1) / 2 == 2 && shift01 >= -1 && shift01 <= 1) {
        const int32_t a = shift01 == -1, b = 1 - a;
        int32_t n = 0;
        for (int32_t py = 0; py < 2; ++py) {
            const int32_t kh = d->kh[py * 2];
            d->koff[py * 2 + a] = (int16_t)n;
            for (int32_t r = 0; r < kh; ++r) {
                const int32_t fy = py + (kh - 1 - r) * 2;
                for (int32_t q = 0; q < 2; ++q) {
                    const int32_t px = q ? b : a, kw = d->kw[px];
                    for (int32_t c = kw - 1; c >= 0; c -= 2, ++n) {
                        d->tap[n][0] = (uint8_t)(fy * p->filter_w + px + c * 2);
                        d->tap[n][1] =
                            c > 0 ? (uint8_t)(fy * p->filter_w + px + (c - 1) * 2) : DWP_NO_TAP;
                    }
                }
            }
        }
        d->pair2 = (uint8_t)(shift01 == 0 ? DWP_PAIR2_SAME_COLUMN : 1 + a); /* else phase a + 1 */
    }
#endif
    return 1;
}

/* The buffers' layout: the accumulator row (input_w + 8 entries: dwp_row writes 4 outputs at
 * a time, up to input_w - 1 + 3 s_w), the packed sub-kernels (d->words), then P (last:
 * dwp_clear writes every entry, so a scratch short of P's end is caught by the tests' guard). */
static size_t dwp_row_bytes(const struct dwp *d) {
    return (size_t)DWP_PITCH(d) * sizeof(int32_t);
}

size_t dwp_buffer_size(const struct depthwise_conv2d_s8_grad_input_params *p) {
    struct dwp d;
    if (!dwp_setup(&d, p)) return 0;
    return dwp_row_bytes(&d) + (size_t)d.words * sizeof(uint32_t) +
           (size_t)d.ph * (size_t)d.pw * sizeof(int16_t);
}

void dwp_buffers(const struct dwp *d, void *buf, int16_t **plane, uint32_t **words, int32_t **row) {
    uint8_t *b = buf;
    if (row) {
        *row = (int32_t *)b;
        b += dwp_row_bytes(d);
    }
    *words = (uint32_t *)b;
    *plane = (int16_t *)(b + (size_t)d->words * sizeof(uint32_t));
}

size_t dwp_rowless_size(const struct dwp *d) {
    return (size_t)d->words * sizeof(uint32_t) + (size_t)d->ph * (size_t)d->pw * sizeof(int16_t);
}

void dwp_clear(const struct dwp *d, int16_t *plane) {
    for (int32_t i = 0; i < d->ph * d->pw; ++i) plane[i] = 0;
}

float dwp_operands(struct dwp *d, void *const *operands) {
    d->grad_out = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT];
    d->mask = d->p.has_mask ? (const uint8_t *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_MASK] : NULL;
    d->filter = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_FILTER];
    d->trained = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_TRAINED_FILTER];
    d->scales = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_WEIGHT_SCALES];
    /* conv_grad_channel_q23's max_s */
    d->max_scale = conv_grad_max_scale(d->scales, d->p.per_channel ? d->p.input_c : 1);
    return d->max_scale;
}

int dwp_fill(const struct dwp *d, int32_t b, int32_t c, int32_t mc, int16_t *plane) {
    const size_t ch = (size_t)d->p.input_c;
    const int32_t oh = d->p.output_h, ow = d->p.output_w, pw = d->pw;
    const int8_t *grad = d->grad_out;
    const uint8_t *mask = d->mask;
    const int shift = d->shift; /* CONV_GRAD_MIN_SHIFT_16 (dwp_setup) */
    /* conv_grad_term(g, mc, shift) (shift >= 1) without branches: round half away from zero
     * of v / 2^shift is (v + half) >> shift for v >= 0 and -((half - v) >> shift) =
     * (v + half - 1) >> shift for v < 0 (arithmetic shifts floor), i.e. (v + half + (v >> 31))
     * >> shift either way. */
    const int32_t half = (int32_t)1 << (shift - 1);
    size_t i = ((size_t)b * (size_t)oh * (size_t)ow) * ch + (size_t)c;
    int32_t any = 0;
    if (mask && (ch & 7u) == 0) {
        /* Every element of the channel has its mask bit at the same place in its byte, the
         * bytes ch / 8 apart: the bit to the sign, then an arithmetic shift makes the keep
         * mask (fewer instructions per element than the general loop below). */
        const uint8_t *m = mask + (i >> 3);
        const uint32_t up = 31u - (uint32_t)(i & 7u);
        const size_t mstep = ch >> 3;
        const int8_t *g = grad + i;
#define DWP_FILL_ONE(j)                                                       \
    do {                                                                      \
        const int32_t keep = (int32_t)((uint32_t)*m << up) >> 31;             \
        const int32_t v = (*g & keep) * mc;                                   \
        const int32_t t = (v + half16 + (v >> 31)) >> CONV_GRAD_MIN_SHIFT_16; \
        dst[j] = (int16_t)t;                                                  \
        any |= t;                                                             \
        g += ch, m += mstep;                                                  \
    } while (0)
        /* the shift a constant (dwp_setup), so is half */
        const int32_t half16 = (int32_t)1 << (CONV_GRAD_MIN_SHIFT_16 - 1);
        if ((ow & 3) == 0) { /* whole blocks of 4 a row (4x4 and 8x8 gradients): one loop */
            int16_t *dst = plane + (size_t)d->pt * (size_t)pw + d->pl;
            const int16_t *const end = dst + (size_t)oh * (size_t)pw;
            const int32_t skip = pw - ow;
            do {
                for (const int16_t *row_end = dst + ow; dst != row_end; dst += 4) {
                    DWP_FILL_ONE(0);
                    DWP_FILL_ONE(1);
                    DWP_FILL_ONE(2);
                    DWP_FILL_ONE(3);
                }
                dst += skip;
            } while (dst != end);
            return any != 0;
        }
        for (int32_t oy = 0; oy < oh; ++oy) {
            int16_t *dst = plane + (size_t)(oy + d->pt) * (size_t)pw + d->pl;
            int32_t ox = 0;
            for (; ox + 4 <= ow; ox += 4, dst += 4) { /* 4 at a time: 8x8 and 4x4 gradients */
                DWP_FILL_ONE(0);
                DWP_FILL_ONE(1);
                DWP_FILL_ONE(2);
                DWP_FILL_ONE(3);
            }
            for (; ox < ow; ++ox, ++dst) DWP_FILL_ONE(0);
        }
#undef DWP_FILL_ONE
        return any != 0;
    }
    for (int32_t oy = 0; oy < oh; ++oy) {
        int16_t *dst = plane + (size_t)(oy + d->pt) * (size_t)pw + d->pl;
        if (mask) {
            for (int32_t ox = 0; ox < ow; ++ox, i += ch) {
                const int32_t keep = -(int32_t)((mask[i >> 3] >> (i & 7u)) & 1u);
                const int32_t v = (grad[i] & keep) * mc;
                const int32_t t = (v + half + (v >> 31)) >> shift;
                dst[ox] = (int16_t)t;
                any |= t;
            }
        } else {
            for (int32_t ox = 0; ox < ow; ++ox, i += ch) {
                const int32_t v = grad[i] * mc;
                const int32_t t = (v + half + (v >> 31)) >> shift;
                dst[ox] = (int16_t)t;
                any |= t;
            }
        }
    }
    return any != 0;
}

/* dwp_kernel at stride 1 for FW (a constant) taps a row: q at filter row fh - 1's first tap, the
 * rows from the last one up, each row's taps from its last one down, two to a word (PKHBT), an
 * odd first tap alone; the taps' offsets in registers, no per-word loop. */
static inline __attribute__((always_inline)) void pack_rows(const int8_t *q, int32_t s, int32_t fh,
                                                            uint32_t *words, const int fw) {
    for (int32_t a = 0; a < fh; ++a, q -= fw * s) {
#pragma GCC unroll 4
        for (int b = fw - 1; b > 0; b -= 2)
            *words++ = dsp_pack_lo((uint32_t)(int32_t)q[b * s], (uint32_t)(int32_t)q[(b - 1) * s]);
        if (fw & 1) *words++ = (uint32_t)(uint16_t)(int16_t)q[0];
    }
}

void dwp_kernel(const struct dwp *d, int32_t c, uint32_t *words) {
    const struct depthwise_conv2d_s8_grad_input_params *p = &d->p;
    const int32_t tr = p->train_rows < p->input_c ? p->train_rows : p->input_c;
    const int8_t *w = c < tr ? d->trained + c : d->filter + c;
    const int32_t stride = c < tr ? tr : p->input_c;
    const int32_t sh = p->stride_h, sw = p->stride_w, fw = p->filter_w;
    const int32_t step = sw * stride;
    if (sh == 1 && sw == 1) {
        /* One phase, K[a][b] = W[kh - 1 - a][kw - 1 - b]: the taps from the last one down, two to
         * a word, a row's odd last tap alone (the order below, without its per-phase work). */
        const int8_t *q0 = w + (size_t)((p->filter_h - 1) * fw) * (size_t)stride;
        switch (fw) { /* MobileNets' and MCUNet's filters */
            case 3: pack_rows(q0, stride, p->filter_h, words, 3); return;
            case 5: pack_rows(q0, stride, p->filter_h, words, 5); return;
            case 7: pack_rows(q0, stride, p->filter_h, words, 7); return;
            default: break;
        }
        const int8_t *q = w + (size_t)(p->filter_h * fw - 1) * (size_t)stride;
        for (int32_t a = 0; a < p->filter_h; ++a) {
            for (int32_t b = fw; b > 1; b -= 2, q -= 2 * step)
                *words++ = (uint32_t)(uint16_t)(int16_t)q[0] | (uint32_t)(int32_t)q[-step] << 16;
            if (fw & 1) *words++ = (uint32_t)(uint16_t)(int16_t)q[0], q -= step;
        }
        return;
    }
    /* dwp_setup's tap table: per phase, per sub-kernel row a, K[a][b] = W[py + (kh - 1 - a) sh]
     * [px + (kw - 1 - b) sw] (the flipped sub-kernel): the taps of filter row fy from the
     * phase's last column down, sw columns apart, two to a word (the second tap high). */
    const uint8_t *t = d->tap[0];
    for (uint32_t *const end = words + d->words; words != end; t += 2) {
        uint16_t both; /* the word's two taps, one load */
        __builtin_memcpy(&both, t, 2);
        const uint32_t lo = (uint32_t)(int32_t)w[(both & 0xFFu) * (uint32_t)stride];
        const uint32_t hi = both >> 8;
        *words++ =
            dsp_pack_lo(lo, hi == DWP_NO_TAP ? 0u : (uint32_t)(int32_t)w[hi * (uint32_t)stride]);
    }
}

/* 32 bits of P from a halfword address: two adjacent entries. */
static inline uint32_t rd2(const int16_t *q) {
    uint32_t v;
    __builtin_memcpy(&v, q, sizeof v);
    return v;
}

/* The correlation of P from r (a window's first row and column) with kh rows of PAIRS packed
 * tap pairs k, for the 4 adjacent outputs s[0..3] (the P words loaded once for all four). */
static inline __attribute__((always_inline)) void corr4x(const int16_t *r, int32_t pw,
                                                         const uint32_t *k, int32_t kh,
                                                         int32_t *out, int32_t step,
                                                         const int pairs) {
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int32_t a = 0; a < kh; ++a, r += pw, k += pairs) {
        uint32_t u[10];
#pragma GCC unroll 10
        for (int i = 0; i < 2 * pairs + 2; ++i) u[i] = rd2(r + i);
#pragma GCC unroll 4
        for (int q = 0; q < pairs; ++q) {
            const uint32_t w = k[q];
            s0 = dsp_smlad(u[2 * q], w, s0);
            s1 = dsp_smlad(u[2 * q + 1], w, s1);
            s2 = dsp_smlad(u[2 * q + 2], w, s2);
            s3 = dsp_smlad(u[2 * q + 3], w, s3);
        }
    }
    out[0] = s0;
    out[step] = s1;
    out[2 * step] = s2;
    out[3 * step] = s3;
}

/* corr4x's sums for 8 adjacent outputs (8-wide rows: 8x8 maps at stride 1) with 2 or 3 tap
 * pairs, one block instead of two: per tap row each word of P is loaded once for every output it
 * meets, 8 + 2 (pairs - 1) loads and 8 pairs SMLAD (two 4-output blocks: 2 (4 + 2 (pairs - 1))
 * loads), and one block's set-up and stores. The eight sums, the tap pairs' weights and the
 * running word of P take every register, so GCC spills them (measured: slower than two corr4x);
 * on the Cortex-M7/M4 it is assembly, the sums in r4-r11. */
struct corr8_ctx {
    int32_t pw_bytes;    /* P's row pitch in bytes */
    const uint32_t *end; /* k past the window's last tap row */
    int32_t *out;
    int32_t step_bytes; /* between outputs */
};

#ifdef DWP_ASM
/* s_i += P word (i + 2 q) . k[q] per tap row (r0: P, r1: k), in the order the words are loaded:
 * word j meets output j - 2 q for each pair q. */
#define C8_W2(j, o0, o1) \
    "ldr r3, [r0, #" #j  \
    " * 2]\n"            \
    "smlad " o0 ", r3, r12, " o0 "\n" o1
#define C8_P2(o) "smlad " o ", r3, lr, " o "\n"
#define C8_P3(o) "smlad " o ", r3, r2, " o "\n"
static __attribute__((noinline)) void corr8_2(const int16_t *r, const uint32_t *k,
                                              const struct corr8_ctx *c) {
    register const int16_t *r0 __asm__("r0") = r;
    register const uint32_t *r1 __asm__("r1") = k;
    register const struct corr8_ctx *r3 __asm__("r3") = c;
    __asm__ volatile(
        "push {r3}\n"
        "ldrd r12, lr, [r3]\n"
        "sub sp, sp, #8\n"
        "strd r12, lr, [sp]\n"
        "movs r4, #0\n"
        "movs r5, #0\n"
        "movs r6, #0\n"
        "movs r7, #0\n"
        "movs r8, #0\n"
        "movs r9, #0\n"
        "movs r10, #0\n"
        "movs r11, #0\n"
        "cmp r1, lr\n"
        "beq 2f\n"
        "1:\n"
        "ldr r12, [r1], #4\n"
        "ldr lr, [r1], #4\n"
        C8_W2(0, "r4", "")
        C8_W2(1, "r5", "")
        C8_W2(2, "r6", C8_P2("r4"))
        C8_W2(3, "r7", C8_P2("r5"))
        C8_W2(4, "r8", C8_P2("r6"))
        C8_W2(5, "r9", C8_P2("r7"))
        C8_W2(6, "r10", C8_P2("r8"))
        C8_W2(7, "r11", C8_P2("r9"))
        "ldr r3, [r0, #16]\n" C8_P2("r10")
        "ldr r3, [r0, #18]\n" C8_P2("r11")
        "ldrd r3, r12, [sp]\n"
        "add r0, r0, r3\n"
        "cmp r1, r12\n"
        "bne 1b\n"
        "2:\n"
        "add sp, sp, #8\n"
        "pop {r3}\n"
        "ldrd r0, r1, [r3, #8]\n"
        "str r4, [r0]\n"
        "str r5, [r0, r1]\n"
        "add r0, r0, r1, lsl #1\n"
        "str r6, [r0]\n"
        "str r7, [r0, r1]\n"
        "add r0, r0, r1, lsl #1\n"
        "str r8, [r0]\n"
        "str r9, [r0, r1]\n"
        "add r0, r0, r1, lsl #1\n"
        "str r10, [r0]\n"
        "str r11, [r0, r1]\n"
        : "+r"(r0), "+r"(r1), "+r"(r3)
        :
        : "r2", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
}
static __attribute__((noinline)) void corr8_3(const int16_t *r, const uint32_t *k,
                                              const struct corr8_ctx *c) {
    register const int16_t *r0 __asm__("r0") = r;
    register const uint32_t *r1 __asm__("r1") = k;
    register const struct corr8_ctx *r3 __asm__("r3") = c;
    __asm__ volatile(
        "push {r3}\n"
        "ldrd r12, lr, [r3]\n"
        "sub sp, sp, #8\n"
        "strd r12, lr, [sp]\n"
        "movs r4, #0\n"
        "movs r5, #0\n"
        "movs r6, #0\n"
        "movs r7, #0\n"
        "movs r8, #0\n"
        "movs r9, #0\n"
        "movs r10, #0\n"
        "movs r11, #0\n"
        "cmp r1, lr\n"
        "beq 2f\n"
        "1:\n"
        "ldr r12, [r1], #4\n"
        "ldr lr, [r1], #4\n"
        "ldr r2, [r1], #4\n"
        C8_W2(0, "r4", "")
        C8_W2(1, "r5", "")
        C8_W2(2, "r6", C8_P2("r4"))
        C8_W2(3, "r7", C8_P2("r5"))
        C8_W2(4, "r8", C8_P2("r6") C8_P3("r4"))
        C8_W2(5, "r9", C8_P2("r7") C8_P3("r5"))
        C8_W2(6, "r10", C8_P2("r8") C8_P3("r6"))
        C8_W2(7, "r11", C8_P2("r9") C8_P3("r7"))
        "ldr r3, [r0, #16]\n" C8_P2("r10") C8_P3("r8")
        "ldr r3, [r0, #18]\n" C8_P2("r11") C8_P3("r9")
        "ldr r3, [r0, #20]\n" C8_P3("r10")
        "ldr r3, [r0, #22]\n" C8_P3("r11")
        "ldrd r3, r12, [sp]\n"
        "add r0, r0, r3\n"
        "cmp r1, r12\n"
        "bne 1b\n"
        "2:\n"
        "add sp, sp, #8\n"
        "pop {r3}\n"
        "ldrd r0, r1, [r3, #8]\n"
        "str r4, [r0]\n"
        "str r5, [r0, r1]\n"
        "add r0, r0, r1, lsl #1\n"
        "str r6, [r0]\n"
        "str r7, [r0, r1]\n"
        "add r0, r0, r1, lsl #1\n"
        "str r8, [r0]\n"
        "str r9, [r0, r1]\n"
        "add r0, r0, r1, lsl #1\n"
        "str r10, [r0]\n"
        "str r11, [r0, r1]\n"
        : "+r"(r0), "+r"(r1), "+r"(r3)
        :
        : "r2", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
}
#undef C8_W2
#undef C8_P2
#undef C8_P3
#endif

/* For each of `rows` rows (P from r0, r0 + pw, ...; out, out + ostep, ...): out[j * step]
 * for j < n (rounded up to 4) = the correlation of P from the row's r0 + j with kh rows of
 * PAIRS packed tap pairs k. top: the g' row (P's row - d->pt) of r0's first row; with 3 or 4
 * pairs only the window's rows inside the oh g' rows are read (the others, P's zero border, add
 * nothing: on 4x4 and 8x8 gradients they are a third to a sixth of a 5x5 or 7x7 window). */
static inline __attribute__((always_inline)) void corr(const int16_t *r0, int32_t pw,
                                                       const uint32_t *k, int32_t kh, int32_t n,
                                                       int32_t *out, int32_t step, int32_t rows,
                                                       int32_t top, int32_t oh, int32_t ostep,
                                                       const int pairs) {
    for (int32_t y = 0; y < rows; ++y, r0 += pw, out += ostep, ++top) {
        const int16_t *r = r0;
        const uint32_t *kk = k;
        int32_t m = kh;
        /* the window sticks out of the gradient's rows (with 1 or 2 pairs a row of taps costs
         * less than working out which to skip: measured on 7x7/2 windows) */
        if (pairs >= 3 && (top < 0 || top > oh - kh)) {
            const int32_t lo = top < 0 ? -top : 0, hi = oh - top < kh ? oh - top : kh;
            m = hi > lo ? hi - lo : 0;
            r += lo * pw;
            kk += lo * pairs;
        }
        for (int32_t j = 0; j < n; j += 4) corr4x(r + j, pw, kk, m, out + j * step, step, pairs);
    }
}

#define DWP_CORR(pairs)                                                                       \
    static void corr##pairs(const int16_t *r0, int32_t pw, const uint32_t *k, int32_t kh,     \
                            int32_t n, int32_t *out, int32_t step, int32_t rows, int32_t top, \
                            int32_t oh, int32_t ostep) {                                      \
        corr(r0, pw, k, kh, n, out, step, rows, top, oh, ostep, pairs);                       \
    }
DWP_CORR(1)
DWP_CORR(2)
DWP_CORR(3)
DWP_CORR(4)
#undef DWP_CORR

#ifdef DWP_ASM
/* dwp_rows for stride 1 and 8-wide rows with 2 or 3 tap pairs, over corr8_2 / corr8_3 (the
 * window's rows inside the gradient only, with 3 pairs, as corr); apart from dwp_rows so that its
 * register allocation stays as it was (measured: folding this into corr slowed the 4-output
 * paths). */
static __attribute__((noinline)) void rows8(const struct dwp *d, const int16_t *plane,
                                            const uint32_t *words, int32_t y0, int32_t ny,
                                            int32_t *out, int32_t pitch, int32_t xstep) {
    const int32_t pw = d->pw, kh = d->kh[0], pairs = (d->kw[0] + 1) / 2, oh = d->p.output_h;
    int32_t top = y0 + d->p.pad_h - kh + 1;
    const int16_t *r0 = plane + (top + d->pt) * pw + d->col0[0];
    out += (size_t)d->x0[0] * (size_t)xstep;
    for (int32_t y = 0; y < ny; ++y, r0 += pw, out += pitch, ++top) {
        const int16_t *r = r0;
        const uint32_t *kk = words;
        int32_t m = kh;
        if (pairs == 3 && (top < 0 || top > oh - kh)) {
            const int32_t lo = top < 0 ? -top : 0, hi = oh - top < kh ? oh - top : kh;
            m = hi > lo ? hi - lo : 0;
            r += lo * pw;
            kk += lo * pairs;
        }
        const struct corr8_ctx c = {pw * 2, kk + m * pairs, out, xstep * 4};
        if (pairs == 2)
            corr8_2(r, kk, &c);
        else
            corr8_3(r, kk, &c);
    }
}
#endif

#ifdef DWP_ASM
/* Both column phases of a stride-2 row (pair2) in one block: 4 outputs of phase a (P words
 * 0..5 from r) and 4 of phase b (words 1..6), 2 tap pairs each, the words loaded once for both:
 * per tap row 7 loads of P, 4 of weights (a's two, b's two) and 16 SMLAD. a's weights leave
 * their register to b's second pair once a is done with them. */
struct corr8s2_ctx {
    int32_t pw_bytes;
    const uint32_t *end;
    int32_t *out_a, *out_b;
    int32_t step_bytes;
};
static __attribute__((noinline)) void corr8s2(const int16_t *r, const uint32_t *k,
                                              const struct corr8s2_ctx *c) {
    register const int16_t *r0 __asm__("r0") = r;
    register const uint32_t *r1 __asm__("r1") = k;
    register const struct corr8s2_ctx *r3 __asm__("r3") = c;
    __asm__ volatile(
        "push {r3}\n"
        "ldrd r12, lr, [r3]\n"
        "sub sp, sp, #8\n"
        "strd r12, lr, [sp]\n"
        "movs r4, #0\n"
        "movs r5, #0\n"
        "movs r6, #0\n"
        "movs r7, #0\n"
        "movs r8, #0\n"
        "movs r9, #0\n"
        "movs r10, #0\n"
        "movs r11, #0\n"
        "cmp r1, lr\n"
        "beq 2f\n"
        "1:\n"
        "ldr r2, [r1], #4\n"  /* a's pair 0 */
        "ldr r12, [r1], #4\n" /* a's pair 1 */
        "ldr lr, [r1], #4\n"  /* b's pair 0 */
        "ldr r3, [r0]\n"
        "smlad r4, r3, r2, r4\n"
        "ldr r3, [r0, #2]\n"
        "smlad r5, r3, r2, r5\n"
        "smlad r8, r3, lr, r8\n"
        "ldr r3, [r0, #4]\n"
        "smlad r6, r3, r2, r6\n"
        "smlad r4, r3, r12, r4\n"
        "smlad r9, r3, lr, r9\n"
        "ldr r3, [r0, #6]\n"
        "smlad r7, r3, r2, r7\n"
        "smlad r5, r3, r12, r5\n"
        "smlad r10, r3, lr, r10\n"
        "ldr r2, [r1], #4\n" /* b's pair 1 */
        "smlad r8, r3, r2, r8\n"
        "ldr r3, [r0, #8]\n"
        "smlad r6, r3, r12, r6\n"
        "smlad r11, r3, lr, r11\n"
        "smlad r9, r3, r2, r9\n"
        "ldr r3, [r0, #10]\n"
        "smlad r7, r3, r12, r7\n"
        "smlad r10, r3, r2, r10\n"
        "ldr r3, [r0, #12]\n"
        "smlad r11, r3, r2, r11\n"
        "ldrd r3, r12, [sp]\n"
        "add r0, r0, r3\n"
        "cmp r1, r12\n"
        "bne 1b\n"
        "2:\n"
        "add sp, sp, #8\n"
        "pop {r3}\n"
        "ldrd r0, r1, [r3, #8]\n"
        "ldr r2, [r3, #16]\n"
        "str r4, [r0]\n"
        "str r5, [r0, r2]\n"
        "add r0, r0, r2, lsl #1\n"
        "str r6, [r0]\n"
        "str r7, [r0, r2]\n"
        "str r8, [r1]\n"
        "str r9, [r1, r2]\n"
        "add r1, r1, r2, lsl #1\n"
        "str r10, [r1]\n"
        "str r11, [r1, r2]\n"
        : "+r"(r0), "+r"(r1), "+r"(r3)
        :
        : "r2", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
}

/* corr8s2 where both phases' windows start at one column (P words 0..5 for both): per tap row
 * the first pair of each phase over words 0..3, then the second pair over words 2..5 (the two
 * pairs' weights do not fit the registers at once: words 2 and 3 are loaded twice), 8 loads of
 * P, 4 of weights, 16 SMLAD. */
static __attribute__((noinline)) void corr8s2_same(const int16_t *r, const uint32_t *k,
                                                   const struct corr8s2_ctx *c) {
    register const int16_t *r0 __asm__("r0") = r;
    register const uint32_t *r1 __asm__("r1") = k;
    register const struct corr8s2_ctx *r3 __asm__("r3") = c;
    __asm__ volatile(
        "push {r3}\n"
        "ldrd r12, lr, [r3]\n"
        "sub sp, sp, #8\n"
        "strd r12, lr, [sp]\n"
        "movs r4, #0\n"
        "movs r5, #0\n"
        "movs r6, #0\n"
        "movs r7, #0\n"
        "movs r8, #0\n"
        "movs r9, #0\n"
        "movs r10, #0\n"
        "movs r11, #0\n"
        "cmp r1, lr\n"
        "beq 2f\n"
        "1:\n"
        "ldr r2, [r1]\n"     /* a's pair 0 */
        "ldr lr, [r1, #8]\n" /* b's pair 0 */
        "ldr r3, [r0]\n"
        "smlad r4, r3, r2, r4\n"
        "smlad r8, r3, lr, r8\n"
        "ldr r3, [r0, #2]\n"
        "smlad r5, r3, r2, r5\n"
        "smlad r9, r3, lr, r9\n"
        "ldr r3, [r0, #4]\n"
        "smlad r6, r3, r2, r6\n"
        "smlad r10, r3, lr, r10\n"
        "ldr r3, [r0, #6]\n"
        "smlad r7, r3, r2, r7\n"
        "smlad r11, r3, lr, r11\n"
        "ldr r2, [r1, #4]\n"  /* a's pair 1 */
        "ldr lr, [r1, #12]\n" /* b's pair 1 */
        "add r1, r1, #16\n"
        "ldr r3, [r0, #4]\n"
        "smlad r4, r3, r2, r4\n"
        "smlad r8, r3, lr, r8\n"
        "ldr r3, [r0, #6]\n"
        "smlad r5, r3, r2, r5\n"
        "smlad r9, r3, lr, r9\n"
        "ldr r3, [r0, #8]\n"
        "smlad r6, r3, r2, r6\n"
        "smlad r10, r3, lr, r10\n"
        "ldr r3, [r0, #10]\n"
        "smlad r7, r3, r2, r7\n"
        "smlad r11, r3, lr, r11\n"
        "ldrd r3, r12, [sp]\n"
        "add r0, r0, r3\n"
        "cmp r1, r12\n"
        "bne 1b\n"
        "2:\n"
        "add sp, sp, #8\n"
        "pop {r3}\n"
        "ldrd r0, r1, [r3, #8]\n"
        "ldr r2, [r3, #16]\n"
        "str r4, [r0]\n"
        "str r5, [r0, r2]\n"
        "add r0, r0, r2, lsl #1\n"
        "str r6, [r0]\n"
        "str r7, [r0, r2]\n"
        "str r8, [r1]\n"
        "str r9, [r1, r2]\n"
        "add r1, r1, r2, lsl #1\n"
        "str r10, [r1]\n"
        "str r11, [r1, r2]\n"
        : "+r"(r0), "+r"(r1), "+r"(r3)
        :
        : "r2", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
}

/* dwp_rows for pair2's shapes: per row phase, each of its rows in one corr8s2 block. */
static __attribute__((noinline)) void rows_s2(const struct dwp *d, const int16_t *plane,
                                              const uint32_t *words, int32_t y0, int32_t ny,
                                              int32_t *out, int32_t pitch, int32_t xstep) {
    const int same = d->pair2 == DWP_PAIR2_SAME_COLUMN;
    void (*const block)(const int16_t *, const uint32_t *, const struct corr8s2_ctx *) =
        same ? corr8s2_same : corr8s2;
    const int32_t pw = d->pw, a = same ? 0 : d->pair2 - 1, b = 1 - a;
    for (int32_t dy = 0; dy < 2 && dy < ny; ++dy) {
        const int32_t y = y0 + dy, py = (y + d->p.pad_h) % 2, yy = (y + d->p.pad_h - py) / 2;
        const int32_t rows = (ny - dy + 1) / 2, kh = d->kh[py * 2];
        int32_t *oa = out + (size_t)dy * (size_t)pitch + (size_t)d->x0[a] * (size_t)xstep;
        int32_t *ob = out + (size_t)dy * (size_t)pitch + (size_t)d->x0[b] * (size_t)xstep;
        const int16_t *r0 = plane + (yy - kh + 1 + d->pt) * pw + d->col0[py * 2 + a];
        const uint32_t *k = words + d->koff[py * 2 + a];
        for (int32_t r = 0; r < rows; ++r, r0 += pw, oa += 2 * pitch, ob += 2 * pitch) {
            const struct corr8s2_ctx c = {pw * 2, k + 4 * kh, oa, ob, 2 * xstep * 4};
            block(r0, k, &c);
        }
    }
}
#endif

/* dwp_rows over the phases' correlations (corr1..corr4): every shape the engine takes. */
static __attribute__((noinline)) void rows_phases(const struct dwp *d, const int16_t *plane,
                                                  const uint32_t *words, int32_t y0, int32_t ny,
                                                  int32_t *out, int32_t pitch, int32_t xstep) {
    const int32_t sh = d->p.stride_h, sw = d->p.stride_w, pw = d->pw, pad_h = d->p.pad_h;
    /* Rows of one row phase py are every sh-th row, reading P rows one apart: one call of the
     * correlation per phase (py, px) covers them all. */
    for (int32_t dy = 0; dy < sh && dy < ny; ++dy) {
        const int32_t y = y0 + dy, py = (y + pad_h) % sh, yy = (y + pad_h - py) / sh;
        const int32_t rows = (ny - dy + sh - 1) / sh;
        for (int32_t px = 0; px < sw; ++px) {
            const int32_t i = py * sw + px, kh = d->kh[i], kw = d->kw[i];
            const int32_t x0 = d->x0[px], n = d->nx[px];
            if (n == 0) continue;
            int32_t *o = out + (size_t)dy * (size_t)pitch + (size_t)x0 * (size_t)xstep;
            const int32_t step = sw * xstep;
            if (kh == 0 || kw == 0) {
                for (int32_t r = 0; r < rows; ++r, o += sh * pitch)
                    for (int32_t j = 0; j < n; ++j) o[j * step] = 0;
                continue;
            }
            const int32_t top = yy - kh + 1, oh = d->p.output_h;
            const int16_t *r0 = plane + (top + d->pt) * pw + d->col0[i];
            const uint32_t *k = words + d->koff[i];
            const int32_t ostep = sh * pitch;
            switch ((kw + 1) / 2) {
                case 1: corr1(r0, pw, k, kh, n, o, step, rows, top, oh, ostep); break;
                case 2: corr2(r0, pw, k, kh, n, o, step, rows, top, oh, ostep); break;
                case 3: corr3(r0, pw, k, kh, n, o, step, rows, top, oh, ostep); break;
                default: corr4(r0, pw, k, kh, n, o, step, rows, top, oh, ostep); break;
            }
        }
    }
}

/* The blocks for the shape (apart, so that the assembly blocks' path does not carry
 * rows_phases' frame: the kernels' stack is part of the step's peak SRAM). */
void dwp_rows(const struct dwp *d, const int16_t *plane, const uint32_t *words, int32_t y0,
              int32_t ny, int32_t *out, int32_t pitch, int32_t xstep) {
#ifdef DWP_ASM
    if (d->rows8) {
        rows8(d, plane, words, y0, ny, out, pitch, xstep);
        return;
    }
    if (d->pair2) {
        rows_s2(d, plane, words, y0, ny, out, pitch, xstep);
        return;
    }
#endif
    rows_phases(d, plane, words, y0, ny, out, pitch, xstep);
}
