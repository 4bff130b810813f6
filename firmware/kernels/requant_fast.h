/* A cheap requantization bit-identical with fp_multiply_by_quantized_multiplier (fixedpoint.h,
 * TFLite's MultiplyByQuantizedMultiplier with double rounding) for every int32 x, every
 * multiplier M in [2^30, 2^31) and every shift in [-31, 30] (and M = 0): on the Cortex-M7 a
 * right-shifting channel costs SMMLAR, ADD (with ASR #31), ASR, QADD and SSAT (with ASR #1),
 * the output offset and the int8 saturation included; no 64-bit arithmetic, no division.
 *
 * Proof (a = x << max(shift, 0) wrapped to int32 as the reference; e = max(-shift, 0)).
 *
 * 1. The reference's SaturatingRoundingDoublingHighMul(a, M), M > 0 (so the saturating case
 *    a = M = INT32_MIN never occurs), with P = a * M:
 *      P >= 0: trunc((P + 2^30) / 2^31)     = floor((P + 2^30) / 2^31), the dividend being >= 0;
 *      P <  0: trunc((P + 1 - 2^30) / 2^31) = ceil((P + 1 - 2^30) / 2^31)  (dividend < 0)
 *              = floor((P + 1 - 2^30 + 2^31 - 1) / 2^31) = floor((P + 2^30) / 2^31).
 *    So v = floor((P + 2^30) / 2^31) = floor((2P + 2^31) / 2^32) in both cases. As
 *    |P| < 2^31 * 2^31, v lies in [-2^31 + 1, 2^31 - 2].
 * 2. SMMLAR d, n, m, acc computes bits 63..32 of (acc * 2^32 + n * m + 2^31), i.e.
 *    floor((acc * 2^32 + n * m + 2^31) / 2^32) mod 2^32. With n = acc = a and m = M2 =
 *    2M - 2^32 (the int32 that 2M wraps to, M >= 2^30), the sum is 2aM + 2^31 exactly
 *    (|.| < 2^63, no 64-bit wrap), so d = v (v fits int32: no 32-bit wrap either).
 * 3. The reference's RoundingDivideByPOT(v, e), e in [1, 31]: with r = v mod 2^e (v & mask)
 *    and s = [v < 0], it adds 1 to floor(v / 2^e) iff r > 2^(e-1) - 1 + s, i.e. iff
 *    r + 2^(e-1) - s >= 2^e; as 0 <= r + 2^(e-1) - s < 2^(e+1), the result is
 *      floor((v + 2^(e-1) - s) / 2^e).
 *    Let u = v - s = v + (v >> 31): no overflow since v >= -2^31 + 1. By the nested-floor
 *    identity floor((floor(y / A) + c) / B) = floor((y + c A) / (A B)) (A, B > 0, c integer),
 *      floor((u + 2^(e-1)) / 2^e) = floor((floor(u / 2^(e-1)) + 1) / 2) = ((u >> (e-1)) + 1) >> 1,
 *    where t = u >> (e-1) <= 2^31 - 2, so t + 1 does not overflow. (e = 0: the result is v.)
 * 4. Offset and clamp (the kernels): R + offset = (t + 1 + 2 offset) >> 1 = floor((t + c) / 2)
 *    with c = 1 + 2 offset. QADD saturates t + c: when the exact sum leaves int32, its half is
 *    >= 2^30 (or < -2^30) and the saturated half (2^30 - 1, resp. -2^30) is just as far out
 *    of int8; SSAT #8 of the half then equals clamp(R + offset, -128, 127), and a further
 *    clamp to [act_min, act_max] (within int8) is the reference's clamp.
 *
 * On the host (no DSP extension) each instruction is plain C with its exact semantics, so
 * tests/kernels/conv/test_dsp_kernels.py sweeps the very same expressions against fixedpoint.h. */
#ifndef KERNELS_REQUANT_FAST_H
#define KERNELS_REQUANT_FAST_H

#include <stdint.h>

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
/* Bits 63..32 of acc * 2^32 + a * b + 2^31. */
static inline int32_t rq_smmlar(int32_t a, int32_t b, int32_t acc) {
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}
/* a + b saturated to int32. */
static inline int32_t rq_qadd(int32_t a, int32_t b) {
    int32_t r;
    __asm__("qadd %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
/* (a >> 1) saturated to int8. */
static inline int32_t rq_ssat8_half(int32_t a) {
    int32_t r;
    __asm__("ssat %0, #8, %1, asr #1" : "=r"(r) : "r"(a));
    return r;
}
#else
static inline int32_t rq_smmlar(int32_t a, int32_t b, int32_t acc) {
    const uint64_t sum = ((uint64_t)(uint32_t)acc << 32) + (uint64_t)((int64_t)a * (int64_t)b) +
                         0x80000000u; /* mod 2^64, as the instruction */
    return (int32_t)(uint32_t)(sum >> 32);
}
static inline int32_t rq_qadd(int32_t a, int32_t b) {
    const int64_t s = (int64_t)a + (int64_t)b;
    return s > INT32_MAX ? INT32_MAX : (s < INT32_MIN ? INT32_MIN : (int32_t)s);
}
static inline int32_t rq_ssat8_half(int32_t a) {
    const int32_t h = a >> 1;
    return h > 127 ? 127 : (h < -128 ? -128 : h);
}
#endif

/* A channel on the fast path: M in [2^30, 2^31) and shift in [-31, -1] (a right shift, the
 * usual case: real multipliers below 1/2). */
static inline int rq_fast_ok(int32_t multiplier, int32_t shift) {
    return multiplier >= (1 << 30) && shift <= -1 && shift >= -31;
}

/* The fast path's per-channel constants: M2 = 2M wrapped to int32, and e - 1. */
static inline int32_t rq_m2(int32_t multiplier) {
    return (int32_t)((uint32_t)multiplier << 1);
}
static inline int32_t rq_s1(int32_t shift) {
    return -shift - 1;
}

/* floor(v / 2^e) rounded as the reference's RoundingDivideByPOT, before the final halving:
 * t = (v + (v >> 31)) >> (e - 1) (steps 1-3). */
static inline int32_t rq_t(int32_t acc, int32_t m2, int32_t s1) {
    const int32_t v = rq_smmlar(acc, m2, acc);
    return (v + (v >> 31)) >> s1;
}

/* clamp(MultiplyByQuantizedMultiplier(acc) + offset, -128, 127) for a fast-path channel,
 * c = 1 + 2 * offset (step 4; offset in [-2^30, 2^30 - 1]). */
static inline int32_t rq_fused(int32_t acc, int32_t m2, int32_t s1, int32_t c) {
    return rq_ssat8_half(rq_qadd(rq_t(acc, m2, s1), c));
}

/* Whether rq_multiply below holds for a multiplier and shift (the proof's range: M in
 * [2^30, 2^31) or 0, shift in [-31, 30]). */
static inline int rq_multiply_ok(int32_t multiplier, int32_t shift) {
    return (multiplier == 0 || multiplier >= (1 << 30)) && shift >= -31 && shift <= 30;
}

/* fp_multiply_by_quantized_multiplier itself, for M in [2^30, 2^31) or 0 and any shift in
 * [-31, 31] (steps 1-3; the left shift wraps as the reference's). */
static inline int32_t rq_multiply(int32_t x, int32_t multiplier, int shift) {
    if (multiplier == 0) return 0;
    const int32_t m2 = rq_m2(multiplier);
    if (shift >= 0) {
        const int32_t a = (int32_t)((uint32_t)x << shift);
        return rq_smmlar(a, m2, a);
    }
    return (rq_t(x, m2, rq_s1(shift)) + 1) >> 1;
}

/* The doubled-accumulator requantization of the conv and depthwise variants:
 * clamp(MultiplyByQuantizedMultiplier(a) + offset, -128, 127) from A = 2a, for M = multiplier,
 * s1 = -shift - 1 and C = (1 + 2 offset) 2^s1, in 4 instructions (SMMLAR with C as its
 * accumulator, ADD of A >> 31, ASR, SSAT with ASR #1). Exact only under the conditions and
 * proof of conv2d_s8_dsp.h's rq4 (rq4_ok, rq4_bias_limit); the depthwise engines check the
 * same ones (depthwise_conv2d_s8_dsp.h, dwq_rq4_ok). */
static inline int32_t rq4(int32_t acc2, int32_t m, int32_t s1, int32_t cc) {
    return rq_ssat8_half((rq_smmlar(acc2, m, cc) + (acc2 >> 31)) >> s1);
}

/* rq4 without its sign step (SMMLAR, ASR, SSAT with ASR #1): rq4's result wherever the output
 * offset is -128 and the activation range starts at -128 (conv2d_s8_dsp.h's rq3_ok, whose proof
 * is there; the depthwise channel-pair engine checks the same). */
static inline int32_t rq3(int32_t acc2, int32_t m, int32_t s1, int32_t cc) {
    return rq_ssat8_half(rq_smmlar(acc2, m, cc) >> s1);
}

#endif
