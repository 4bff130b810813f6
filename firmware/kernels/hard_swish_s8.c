/* int8 HARD_SWISH: TFLite's reference HardSwish, step by step in its 16-bit arithmetic.
 * See hard_swish_s8.h. */
#include "hard_swish_s8.h"

/* gemmlowp's SaturatingRoundingDoublingHighMul on int16: round(a * b / 2^15). */
static inline int16_t srdhm16(int16_t a, int16_t b) {
    if (a == b && a == INT16_MIN) return INT16_MAX;
    const int32_t ab = (int32_t)a * (int32_t)b;
    const int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
    return (int16_t)((ab + nudge) / (1 << 15)); /* C division truncates, as gemmlowp */
}

/* TFLite's SaturatingDoublingHighMul: a * b / 2^15 rounded toward zero. */
static inline int16_t sdhm16(int16_t a, int16_t b) {
    if (a == b && a == INT16_MIN) return INT16_MAX;
    return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}

/* gemmlowp's RoundingDivideByPOT on int16 (half away from zero). */
static inline int16_t rdbpot16(int16_t x, int exponent) {
    const int32_t mask = (1 << exponent) - 1;
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (int16_t)((x >> exponent) + (remainder > threshold ? 1 : 0));
}

/* TFLite's SaturatingLeftShift on int16. */
static inline int16_t sat_left_shift16(int16_t value, int amount) {
    const int64_t r = (int64_t)value * ((int64_t)1 << amount);
    return (int16_t)(r > INT16_MAX ? INT16_MAX : (r < INT16_MIN ? INT16_MIN : r));
}

void hard_swish_s8_ref_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loop on plain locals. */
    const struct hard_swish_s8_params p = *(const struct hard_swish_s8_params *)params;
    const int8_t *in = operands[HARD_SWISH_S8_INPUT];
    int8_t *out = operands[HARD_SWISH_S8_OUTPUT];
    const int16_t reluish_m = (int16_t)p.reluish_multiplier_fixedpoint;
    const int16_t output_m = (int16_t)p.output_multiplier_fixedpoint;
    const int reluish_e = (int)p.reluish_multiplier_exponent;

    for (int32_t i = 0; i < p.count; ++i) {
        const int16_t input_value = (int16_t)(in[i] - p.input_zero_point);
        const int16_t hires = (int16_t)(input_value * (1 << 7));
        const int16_t preshift_output = srdhm16(hires, output_m);
        int16_t reluish = hires;
        /* Left shift in two steps, the last bit after the multiply, as TFLite: saturation
         * in the first step never reaches the result. */
        if (reluish_e > 0) reluish = sat_left_shift16(reluish, reluish_e - 1);
        reluish = srdhm16(reluish, reluish_m);
        if (reluish_e > 0) reluish = sat_left_shift16(reluish, 1);
        if (reluish_e < 0) reluish = rdbpot16(reluish, -reluish_e);
        /* [-1, 1] -> [0, 1]. */
        reluish = (int16_t)((reluish + (1 << 15)) >> 1);
        const int16_t preshift = sdhm16(reluish, preshift_output);
        int32_t y = rdbpot16(preshift, -(int)p.output_multiplier_exponent);
        y += p.output_zero_point;
        out[i] = (int8_t)(y > INT8_MAX ? INT8_MAX : (y < INT8_MIN ? INT8_MIN : y));
    }
}

size_t hard_swish_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
