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
    /* per element v: a = |v|, q = (a R) >> 32, rem = 127 a + M / 2 - q M, q += 1 where
     * rem >= M, the sign of v put back. The C loop's other correction (rem < 0) never applies
     * here: a R / 2^32 < 127 a / M + 1/4 (a < 2^30), and the rounded quotient is at least
     * floor(127 a / M + 1/2 - 1/(2 M)), M >= 128, so q never exceeds it. */
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
        "push {r4, r5, r6, r7, r8, r9, r10, r11}\n"
        "ldrd r9, r10, [r3]\n"
        "sub r11, r10, #1\n"
        "1:\n"
        "ldm r0!, {r3, r4, r5, r6}\n"
        DSP_ROUND("r3") DSP_ROUND("r4") DSP_ROUND("r5") DSP_ROUND("r6")
        "subs r2, r2, #1\n"
        "bne 1b\n"
        "pop {r4, r5, r6, r7, r8, r9, r10, r11}\n"
        "bx lr\n");
#undef DSP_ROUND
}
/* clang-format on */
#else
typedef int grad_dsp_is_empty_here; /* ISO C wants a declaration in every file */
#endif
