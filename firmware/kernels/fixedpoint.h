/* TFLite's reference fixed-point arithmetic (tensorflow/lite/kernels/internal/common.h,
 * default build: double rounding, TFLITE_SINGLE_ROUNDING off), which every int8 kernel
 * uses to requantize. Bit-exactness with TFLite depends on these three functions. */
#ifndef KERNELS_FIXEDPOINT_H
#define KERNELS_FIXEDPOINT_H

#include <stdint.h>

/* round(a * b / 2^31), saturating the single overflow case (INT32_MIN * INT32_MIN). */
static inline int32_t fp_sat_rounding_doubling_high_mul(int32_t a, int32_t b) {
    if (a == b && a == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1ll << 30) : (1 - (1ll << 30));
    return (int32_t)((ab + nudge) / (1ll << 31)); /* C division truncates toward zero, as TFLite */
}

/* x / 2^exponent, rounding half away from zero. */
static inline int32_t fp_rounding_divide_by_pot(int32_t x, int exponent) {
    const int32_t mask = (int32_t)((1ll << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* x * multiplier * 2^shift with multiplier a Q31 fixed-point number (TFLite's
 * MultiplyByQuantizedMultiplier). The left shift wraps like TFLite's int32 multiply. */
static inline int32_t fp_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier,
                                                          int shift) {
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    const int32_t shifted = (int32_t)((uint32_t)x << left);
    return fp_rounding_divide_by_pot(fp_sat_rounding_doubling_high_mul(shifted, multiplier), right);
}

static inline int32_t fp_clamp(int32_t x, int32_t lo, int32_t hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}

#endif
