/* int8 softmax: TFLite's reference Softmax<int8_t, int8_t>, step for step. See
 * softmax_s8.h. */
#include "softmax_s8.h"

#include "fixedpoint.h"
#include "fixedpoint_exp.h"

enum {
    SCALED_DIFF_INTEGER_BITS = 5,  /* the exp() input is Q5.26 */
    ACCUMULATION_INTEGER_BITS = 12 /* the sum of exps is Q12.19 */
};

/* exp(input - row max) in Q0.31, for a difference already known to be >= diff_min. */
static inline int32_t exp_of_diff(int32_t input_diff, const struct softmax_s8_params *p) {
    /* MultiplyByQuantizedMultiplierGreaterThanOne: the shift is a left shift. */
    const int32_t input_diff_rescaled = fp_multiply_by_quantized_multiplier(
        input_diff, p->input_multiplier, (int)p->input_left_shift);
    return fpx_exp_on_negative_values(input_diff_rescaled, SCALED_DIFF_INTEGER_BITS);
}

void softmax_s8_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct softmax_s8_params p = *(const struct softmax_s8_params *)params;
    const int8_t *in = operands[SOFTMAX_S8_INPUT];
    int8_t *out = operands[SOFTMAX_S8_OUTPUT];

    for (int32_t i = 0; i < p.outer_size; ++i, in += p.depth, out += p.depth) {
        int32_t max_in_row = INT8_MIN;
        for (int32_t c = 0; c < p.depth; ++c) {
            if (in[c] > max_in_row) max_in_row = in[c];
        }

        /* Sum of exps in Q12.19 (each exp rescaled from Q0.31, rounding). */
        int32_t sum_of_exps = 0;
        for (int32_t c = 0; c < p.depth; ++c) {
            const int32_t input_diff = (int32_t)in[c] - max_in_row;
            if (input_diff >= p.diff_min) {
                sum_of_exps = fpx_add(sum_of_exps, fpx_mul_by_pot(exp_of_diff(input_diff, &p),
                                                                  0 - ACCUMULATION_INTEGER_BITS));
            }
        }

        /* The row maximum contributes exp(0) = 1, so the sum is positive. */
        int num_bits_over_unit;
        const int32_t shifted_scale =
            fpx_get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS, &num_bits_over_unit);
        /* exp * (1/sum) is Q0.31 scaled by 2^-num_bits_over_unit; the output keeps 8 bits. */
        const int exponent = num_bits_over_unit + 31 - 8;

        for (int32_t c = 0; c < p.depth; ++c) {
            const int32_t input_diff = (int32_t)in[c] - max_in_row;
            if (input_diff >= p.diff_min) {
                const int32_t product = fpx_mul(shifted_scale, exp_of_diff(input_diff, &p));
                /* TFLite aborts (TFLITE_CHECK) past an exponent of 31, which a row whose
                 * exps sum to 512 or more reaches (e.g. 512 near-equal inputs). The product
                 * is below 2^31, so divided by 2^32 or more it rounds to 0: use that. */
                const int32_t unsat_output =
                    exponent <= 31 ? fp_rounding_divide_by_pot(product, exponent) : 0;
                out[c] = (int8_t)fp_clamp(unsat_output + INT8_MIN, INT8_MIN, INT8_MAX);
            } else {
                out[c] = INT8_MIN;
            }
        }
    }
}

size_t softmax_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
