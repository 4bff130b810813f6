/* The assembly loops of dsp_grad_requantize_s32 (dsp.h, which describes them): in one file, so
 * the kernels that requantize an int32 gradient (the conv and depthwise input gradients, grad_add)
 * share one copy instead of each carrying its own. The Cortex-M7/M4 builds only; elsewhere the
 * requantization is C. */
#include "dsp.h"

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
/* clang-format off */
__attribute__((naked, noinline)) uint32_t dsp_max_abs4(const int32_t *acc, uint32_t n4,
                                                      uint32_t m) {
    (void)acc, (void)n4, (void)m;
#define DSP_MAX_ABS(v)                      \
    "eor r12, " v ", " v ", asr #31\n"       \
    "sub r12, r12, " v ", asr #31\n"         \
    "cmp r2, r12\n"                          \
    "it lo\n"                                \
    "movlo r2, r12\n"
    __asm__ volatile(
        "push {r4, r5, r6}\n"
        "1:\n"
        "ldm r0!, {r3, r4, r5, r6}\n"
        DSP_MAX_ABS("r3") DSP_MAX_ABS("r4") DSP_MAX_ABS("r5") DSP_MAX_ABS("r6")
        "subs r1, r1, #1\n"
        "bne 1b\n"
        "mov r0, r2\n"
        "pop {r4, r5, r6}\n"
        "bx lr\n");
#undef DSP_MAX_ABS
}

__attribute__((naked, noinline)) void dsp_round4(const int32_t *acc, int8_t *out, uint32_t n4,
                                                const uint32_t *k) {
    (void)acc, (void)out, (void)n4, (void)k;
    /* M >= 1024 (the usual case: accumulators of many products), 7 instructions per element,
     * signed, no |v| and no sign put back: q1 = floor(v A / 2^34 + 5/4) (SMMLA adds the 5,
     * ASR takes the 4), A = 4 R - 2, is q or q + 1 for q = floor(N / 2M), N = 254 v + M + (v < 0
     * ? -1 : 0), which is round_half_away(127 v / M) (the -1 makes a negative tie round away
     * from zero); then r = N - 2M q1, exact in 32 bits as it lies in [-2M, 2M) (M < 2^30),
     * and q = q1 - (r < 0). Why q1 is one of the two: |A - 127 2^34 / M| <= 2, so v A / 2^34
     * is within M 2^-33 < 1/8 of 127 v / M, and floor(127 v / M + 5/4 + e) for |e| < 1/4 is
     * floor(x) or floor(x) + 1 with x = N / 2M (x + 1/4 + e lies in (x, x + 1/2) and no
     * integer lies between x and 127 v / M + 1/2 > x); A < 2^31 (signed) as M >= 1024. With
     * an odd M the -1 is left out (6 instructions): 254 v + M is odd, so no multiple of 2M
     * lies between N and N + 1.
     * Checked against the reference on every v for M < 6000 and at every rounding boundary
     * for M up to 2^30, in C (tests/kernels/conv/test_dsp_grads.py); the assembly itself on
     * the emulated M7 and M4 (test_dsp_grad_helpers_board.py: every value of [-M, M] for M
     * at the loops' edges, and random arrays with ties). */
#define DSP_ROUND_S(v, tie)                 \
    "smmla r7, " v ", r9, r12\n"            \
    "asr r7, r7, #2\n"                      \
    "mla lr, " v ", r8, r11\n"              \
    tie                                     \
    "mls lr, r7, r10, lr\n"                 \
    "add r7, r7, lr, asr #31\n"             \
    "strb r7, [r1], #1\n"
#define DSP_TIE(v) "add lr, lr, " v ", asr #31\n"
    /* 128 <= M < 1024: per element v: a = |v|, q = (a R) >> 32, rem = 127 a + M / 2 - q M,
     * q += 1 where rem >= M, the sign of v put back. The C loop's other correction (rem < 0)
     * never applies here: a R / 2^32 < 127 a / M + 1/4 (a < 2^30), and the rounded quotient
     * is at least floor(127 a / M + 1/2 - 1/(2 M)), M >= 128, so q never exceeds it. */
#define DSP_ROUND(v)                        \
    "eor r7, " v ", " v ", asr #31\n"        \
    "sub r7, r7, " v ", asr #31\n"           \
    "umull r8, r12, r7, r9\n"               \
    "rsb r7, r7, r7, lsl #7\n"              \
    "add r7, r7, r10, lsr #1\n"             \
    "mls r7, r12, r10, r7\n"                \
    "sub r8, r11, r7\n"                     \
    "add r12, r12, r8, lsr #31\n"           \
    "eor r12, r12, " v ", asr #31\n"         \
    "sub r12, r12, " v ", asr #31\n"         \
    "strb r12, [r1], #1\n"
    __asm__ volatile(
        "push {r4, r5, r6, r7, r8, r9, r10, r11, lr}\n"
        "ldrd r9, r10, [r3]\n"
        "cmp r10, #1024\n"
        "blo 2f\n"
        "lsl r9, r9, #2\n"
        "sub r9, r9, #2\n"
        "mov r11, r10\n"
        "lsl r10, r10, #1\n"
        "mov r8, #254\n"
        "mov r12, #5\n"
        "tst r11, #1\n"
        "bne 4f\n"
        "1:\n"
        "ldm r0!, {r3, r4, r5, r6}\n"
        DSP_ROUND_S("r3", DSP_TIE("r3")) DSP_ROUND_S("r4", DSP_TIE("r4"))
        DSP_ROUND_S("r5", DSP_TIE("r5")) DSP_ROUND_S("r6", DSP_TIE("r6"))
        "subs r2, r2, #1\n"
        "bne 1b\n"
        "pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}\n"
        "4:\n" /* an odd M: 254 v + M is odd, never a tie, the -1 changes no quotient */
        "ldm r0!, {r3, r4, r5, r6}\n"
        DSP_ROUND_S("r3", "") DSP_ROUND_S("r4", "") DSP_ROUND_S("r5", "") DSP_ROUND_S("r6", "")
        "subs r2, r2, #1\n"
        "bne 4b\n"
        "pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}\n"
        "2:\n"
        "sub r11, r10, #1\n"
        "3:\n"
        "ldm r0!, {r3, r4, r5, r6}\n"
        DSP_ROUND("r3") DSP_ROUND("r4") DSP_ROUND("r5") DSP_ROUND("r6")
        "subs r2, r2, #1\n"
        "bne 3b\n"
        "pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}\n");
#undef DSP_ROUND
#undef DSP_ROUND_S
#undef DSP_TIE
}
/* clang-format on */
#else
typedef int grad_dsp_is_empty_here; /* ISO C wants a declaration in every file */
#endif
