/* Float arithmetic the loss heads share (softmax_xent_s8, softmax_xent_s32,
 * sigmoid_xent_s32, mse_s32): exp and log1p with + - * / and bit operations only, and the
 * conversion of a float gradient to int8 with a dynamic scale (grad.h).
 *
 * Why not libm: glibc on the host and newlib on the board need not round alike, and the
 * host twin must produce the board's bits. Each function is within a few ulp of the true
 * value (tests/kernels/test_misc_grads.py and losses/test_loss_heads.py hold them to it). */
#ifndef KERNELS_LOSS_MATH_H
#define KERNELS_LOSS_MATH_H

#include <stddef.h>
#include <stdint.h>

#include "grad.h"

/* ln 2 split for Cody-Waite reduction: k * LOSS_LN2_HI is exact for |k| < 2^9. */
#define LOSS_LN2_HI 6.9314575195e-01f /* 0x3f317200 */
#define LOSS_LN2_LO 1.4286067653e-06f /* 0x35bfbe8e */
#define LOSS_LOG2_E 1.44269504089f

/* Type punning through a union (defined in C11; memcpy would be a call: the target builds
 * with -ffreestanding, which turns builtins off). */
union loss_f32_bits {
    float f;
    uint32_t u;
};
static inline float loss_from_bits(uint32_t u) {
    const union loss_f32_bits v = {.u = u};
    return v.f;
}
static inline uint32_t loss_to_bits(float f) {
    const union loss_f32_bits v = {.f = f};
    return v.u;
}

/* exp(x) for x <= 0: x = k ln2 + r with |r| <= ln2 / 2, exp(r) by its degree-7 Taylor
 * polynomial (truncation < 1e-8 relative), times 2^k built from bits. 0 below -87, where
 * the result would leave the normal range. */
static inline float loss_exp_nonpositive(float x) {
    if (!(x >= -87.0f)) return 0.0f;
    const int32_t k = (int32_t)(x * LOSS_LOG2_E - 0.5f); /* round to nearest; k in [-126, 0] */
    const float kf = (float)k;
    const float r = (x - kf * LOSS_LN2_HI) - kf * LOSS_LN2_LO;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * loss_from_bits((uint32_t)(k + 127) << 23);
}

/* log(u) for finite u >= 1: u = 2^e * m with m in [sqrt(1/2), sqrt(2)), f = m - 1 (exact),
 * log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)) with s = f / (2 + f) (the fdlibm form). */
static inline float loss_log_ge1(float u) {
    const uint32_t bits = loss_to_bits(u);
    int32_t e = (int32_t)(bits >> 23) - 127;
    float m = loss_from_bits((bits & 0x007fffffu) | 0x3f800000u); /* [1, 2) */
    if (m > 1.41421356f) {
        m *= 0.5f;
        ++e;
    }
    const float f = m - 1.0f;
    const float s = f / (2.0f + f);
    const float z = s * s;
    const float r = z * (2.0f / 3.0f + z * (2.0f / 5.0f + z * (2.0f / 7.0f + z * (2.0f / 9.0f))));
    const float hfsq = 0.5f * f * f;
    const float ef = (float)e;
    return ef * LOSS_LN2_HI + ((f - (hfsq - s * (hfsq + r))) + ef * LOSS_LN2_LO);
}

/* log(1 + a) for a >= 0, accurate for small a (Kahan: the rounding of 1 + a cancels). */
static inline float loss_log1p_nonnegative(float a) {
    const float u = 1.0f + a;
    if (u == 1.0f) return a;
    return loss_log_ge1(u) * (a / (u - 1.0f));
}

/* Round half away from zero to int32, for |v| < 2^31. From 2^23 up floats are integers
 * (and adding 0.5 could round to even), below that v +- 0.5 is exact enough to truncate. */
static inline int32_t loss_round_to_i32(float v) {
    if (v >= 8388608.0f || v <= -8388608.0f) return (int32_t)v;
    return (int32_t)(v >= 0.0f ? v + 0.5f : v - 0.5f);
}

/* The n float gradients (their bits in words, which the int32 fixed point then overwrites:
 * the same scratch) divided by `divisor`, as int8 with a dynamic scale: scaled by the power
 * of two that puts max|G| (g_max) in [2^29, 2^30) and rounded to int32 (exact for every
 * |G| >= max|G| / 64: 24-bit floats), then grad_requantize_s32. Below 2^-96 (or NaN) the
 * gradient is written as 0 with scale 0, and so is an infinite one. Returns the scale. */
static inline float loss_grad_to_s8(uint32_t *words, size_t n, float g_max, float divisor,
                                    int8_t *grad) {
    if (!(g_max >= 0x1p-96f) || !(g_max <= 3.4e38f)) {
        for (size_t i = 0; i < n; ++i) grad[i] = 0;
        return 0.0f;
    }
    /* max|G| in [2^e, 2^(e+1)) with e in [-96, 127]: scale by 2^(29 - e) (exact; both
     * 2^(29 - e) and 2^(e - 29) are normal floats over that range). */
    const int32_t e = (int32_t)(loss_to_bits(g_max) >> 23) - 127;
    const float up = loss_from_bits((uint32_t)(29 - e + 127) << 23);
    const float unit = loss_from_bits((uint32_t)(e - 29 + 127) << 23);
    int32_t *acc = (int32_t *)words;
    for (size_t i = 0; i < n; ++i) acc[i] = loss_round_to_i32(loss_from_bits(words[i]) * up);
    return grad_requantize_s32(acc, n, unit / divisor, grad);
}

#endif
