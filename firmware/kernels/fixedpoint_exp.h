/* gemmlowp's fixed-point exp and reciprocal (gemmlowp/fixedpoint/fixedpoint.h), as TFLite's
 * reference softmax uses them (reference_ops::Softmax, GetReciprocal). Written for plain
 * int32 raw values: a fixed-point number with I integer bits is raw / 2^(31 - I).
 *
 * gemmlowp's operations on FixedPoint<int32_t, I>, as used here:
 *   a * b   SaturatingRoundingDoublingHighMul of the raws (result has Ia + Ib integer bits)
 *   a + b   plain addition of the raws (wrapping; unsigned arithmetic here to avoid UB)
 *   Rescale<J>(a)                  fpx_mul_by_pot(raw, I - J)
 *   SaturatingRoundingMultiplyByPOT<e>  fpx_mul_by_pot(raw, e)
 * Bit-exactness with TFLite depends on every rounding below; change nothing without
 * re-running the softmax tests. */
#ifndef KERNELS_FIXEDPOINT_EXP_H
#define KERNELS_FIXEDPOINT_EXP_H

#include <stdint.h>

#include "fixedpoint.h"

static inline int32_t fpx_add(int32_t a, int32_t b) {
    return (int32_t)((uint32_t)a + (uint32_t)b);
}
static inline int32_t fpx_sub(int32_t a, int32_t b) {
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

/* Fixed-point product (any formats): the raws' rounding doubling high product. */
static inline int32_t fpx_mul(int32_t a, int32_t b) {
    return fp_sat_rounding_doubling_high_mul(a, b);
}

/* x * 2^exponent: rounding (half away from zero) for a negative exponent, saturating for a
 * positive one (gemmlowp's SaturatingRoundingMultiplyByPOT). */
static inline int32_t fpx_mul_by_pot(int32_t x, int exponent) {
    if (exponent < 0) return fp_rounding_divide_by_pot(x, -exponent);
    if (exponent == 0) return x;
    const int32_t threshold = (int32_t)((1u << (31 - exponent)) - 1u);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return (int32_t)((uint32_t)x << exponent);
}

/* (a + b) / 2 rounded half away from zero, without overflow (gemmlowp RoundingHalfSum). */
static inline int32_t fpx_rounding_half_sum(int32_t a, int32_t b) {
    const int64_t sum = (int64_t)a + (int64_t)b;
    const int64_t sign = sum >= 0 ? 1 : -1;
    return (int32_t)((sum + sign) / 2); /* C division truncates, as C++'s */
}

/* exp(a) for a in [-1/4, 0), a and result in Q0.31: a 4th-order Taylor expansion around
 * -1/8 (gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl). */
static inline int32_t fpx_exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a) {
    const int32_t constant_term = 1895147668;    /* exp(-1/8) in Q0.31 */
    const int32_t constant_1_over_3 = 715827883; /* 1/3 in Q0.31 */
    const int32_t x = fpx_add(a, 1 << 28);       /* a + 1/8 */
    const int32_t x2 = fpx_mul(x, x);
    const int32_t x3 = fpx_mul(x2, x);
    const int32_t x4 = fpx_mul(x2, x2);
    const int32_t x4_over_4 = fpx_mul_by_pot(x4, -2);
    const int32_t x4_over_24_plus_x3_over_6_plus_x2_over_2 =
        fpx_mul_by_pot(fpx_add(fpx_mul(fpx_add(x4_over_4, x3), constant_1_over_3), x2), -1);
    return fpx_add(constant_term,
                   fpx_mul(constant_term, fpx_add(x, x4_over_24_plus_x3_over_6_plus_x2_over_2)));
}

/* exp(a) for a <= 0 with `integer_bits` integer bits (gemmlowp exp_on_negative_values);
 * the result is Q0.31. The fractional part of a modulo 1/4 goes through the polynomial,
 * each set bit of the remainder multiplies in the constant exp(-2^k). */
static inline int32_t fpx_exp_on_negative_values(int32_t a, int integer_bits) {
    static const struct {
        int exponent;
        int32_t multiplier; /* exp(-2^exponent) in Q0.31 */
    } barrel[] = {{-2, 1672461947}, {-1, 1302514674}, {0, 790015084}, {1, 290630308},
                  {2, 39332535},    {3, 720401},      {4, 242}};
    const int fractional_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_quarter_minus_one_quarter = fpx_sub(a & mask, one_quarter);
    int32_t result = fpx_exp_on_interval_between_negative_one_quarter_and_0_excl(
        fpx_mul_by_pot(a_mod_quarter_minus_one_quarter, integer_bits));
    const int32_t remainder = fpx_sub(a_mod_quarter_minus_one_quarter, a);

    for (unsigned i = 0; i < sizeof barrel / sizeof barrel[0]; ++i) {
        if (integer_bits > barrel[i].exponent) {
            const int shift = fractional_bits + barrel[i].exponent;
            if ((uint32_t)remainder & (1u << shift)) {
                result = fpx_mul(result, barrel[i].multiplier);
            }
        }
    }
    if (integer_bits > 5) {
        /* Below -32, exp() is 0 in Q0.31. */
        const int32_t clamp = -((int32_t)1 << (36 - integer_bits));
        if (a < clamp) result = 0;
    }
    if (a == 0) result = INT32_MAX; /* exactly 1.0 (saturated) */
    return result;
}

/* 1 / (1 + a) for a in [0, 1), a and result in Q0.31: three Newton-Raphson steps on
 * half the denominator, in Q2.29 (gemmlowp one_over_one_plus_x_for_x_in_0_1). */
static inline int32_t fpx_one_over_one_plus_x_for_x_in_0_1(int32_t a) {
    const int32_t half_denominator = fpx_rounding_half_sum(a, INT32_MAX);
    const int32_t constant_48_over_17 = 1515870810;      /* Q2.29 */
    const int32_t constant_neg_32_over_17 = -1010580540; /* Q2.29 */
    const int32_t one_q2 = (int32_t)1 << 29;             /* 1.0 in Q2.29 */
    int32_t x = fpx_add(constant_48_over_17, fpx_mul(half_denominator, constant_neg_32_over_17));
    for (int i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = fpx_mul(half_denominator, x); /* Q2.29 */
        const int32_t one_minus_half_denominator_times_x =
            fpx_sub(one_q2, half_denominator_times_x);
        /* x * (1 - d*x) is Q4.27; back to Q2.29. */
        x = fpx_add(x, fpx_mul_by_pot(fpx_mul(x, one_minus_half_denominator_times_x), 2));
    }
    /* x approximates 1/half_denominator = 2/(1+a) in Q2.29; read as Q1.30 it is 1/(1+a),
     * then rescaled to Q0.31 (gemmlowp: Rescale<0>(ExactMulByPot<-1>(x))). */
    return fpx_mul_by_pot(x, 1);
}

/* TFLite GetReciprocal: for x > 0 with `x_integer_digits` integer bits, returns 1/x as a
 * Q0.31 value scaled by 2^-num_bits_over_unit (so that it stays below 1). */
static inline int32_t fpx_get_reciprocal(int32_t x, int x_integer_digits, int *num_bits_over_unit) {
    const int headroom_plus_one = __builtin_clz((uint32_t)x); /* x > 0 */
    *num_bits_over_unit = x_integer_digits - headroom_plus_one;
    const int32_t shifted_sum_minus_one =
        (int32_t)(((uint32_t)x << headroom_plus_one) - (1u << 31));
    return fpx_one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);
}

#endif
