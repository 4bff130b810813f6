/* The output layer's un-saturated requantized values, the reference kernel. See logits_s32.h;
 * the DSP variant and the selector are logits_s32_dsp.c. */
#include "logits_s32.h"

#include "fully_connected_s8.h"

void logits_s32_ref_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct logits_s32_params p = *(const struct logits_s32_params *)params;
    const int8_t *input = operands[LOGITS_S32_INPUT];
    const int8_t *weights = operands[LOGITS_S32_WEIGHTS];
    const int32_t *bias = p.has_bias ? (const int32_t *)operands[LOGITS_S32_BIAS] : NULL;
    const int32_t *scales = operands[LOGITS_S32_SCALES];
    const int32_t *multipliers = operands[LOGITS_S32_MULTIPLIERS];
    const int32_t *shifts = operands[LOGITS_S32_SHIFTS];
    const int8_t *trained_weights = operands[LOGITS_S32_TRAINED_WEIGHTS];
    const int32_t *trained_bias = operands[LOGITS_S32_TRAINED_BIAS];
    int32_t *out = operands[LOGITS_S32_OUTPUT];

    for (int32_t o = 0; o < p.output_depth; ++o) {
        const int8_t *w =
            (o < p.train_rows ? trained_weights : weights) + (size_t)o * (size_t)p.input_depth;
        const int32_t ch = p.per_channel ? o : 0;
        /* fully_connected_s8's double, from the plan (fully_connected_s8.h). */
        const double scale = p.fixed_point ? 0.0 : fc_scale(scales, ch);
        for (int32_t b = 0; b < p.batches; ++b) {
            const int8_t *x = input + (size_t)b * (size_t)p.input_depth;
            int32_t acc = fc_row_sum(w, x, p.input_depth, p.filter_offset, p.input_offset);
            if (o < p.train_bias_rows)
                acc += trained_bias[o];
            else if (bias)
                acc += bias[o];
            out[(size_t)b * (size_t)p.output_depth + (size_t)o] =
                logits_s32_finish(&p, acc, scale, multipliers, shifts, ch);
        }
    }
}

size_t logits_s32_scratch_size(const void *params) {
    (void)params;
    return 0;
}
