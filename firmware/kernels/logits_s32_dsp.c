/* LOGITS_S32 with the Armv7E-M DSP SIMD instructions: bit-identical with logits_s32_ref_run
 * (logits_s32.c). The sums are the forward fully connected variant's (fc_dot2_dsp, two rows
 * per input word), the requantization the reference's own (logits_s32_finish): the loss reads
 * the same rows the forward layer just computed, and the reference's byte-at-a-time sums cost
 * it ~7 instructions per product (MobileNetV2's 1280 -> 10 head: ~95 k a step). */
#include "fully_connected_s8_dsp.h"
#include "logits_s32.h"

void logits_s32_dsp_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
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

    const int32_t depth = p.input_depth;
    for (int32_t o = 0; o < p.output_depth; o += 2) {
        const int two = o + 1 < p.output_depth;
        const int32_t o1 = two ? o + 1 : o; /* a lone last row is computed twice */
        /* The rows being trained come from their RAM copy. */
        const int8_t *w0 = (o < p.train_rows ? trained_weights : weights) + (size_t)o * depth;
        const int8_t *w1 = (o1 < p.train_rows ? trained_weights : weights) + (size_t)o1 * depth;
        const int32_t ch0 = p.per_channel ? o : 0, ch1 = p.per_channel ? o1 : 0;
        const double scale0 = p.fixed_point ? 0.0 : fc_scale(scales, ch0);
        const double scale1 = p.fixed_point ? 0.0 : fc_scale(scales, ch1);
        const int32_t bias0 = o < p.train_bias_rows ? trained_bias[o] : (bias ? bias[o] : 0);
        const int32_t bias1 = o1 < p.train_bias_rows ? trained_bias[o1] : (bias ? bias[o1] : 0);
        for (int32_t b = 0; b < p.batches; ++b) {
            const int8_t *x = input + (size_t)b * (size_t)depth;
            int32_t acc0 = bias0, acc1 = bias1;
            fc_dot2_dsp(x, w0, w1, depth, p.input_offset, p.filter_offset, &acc0, &acc1);
            int32_t *dst = out + (size_t)b * (size_t)p.output_depth + (size_t)o;
            dst[0] = logits_s32_finish(&p, acc0, scale0, multipliers, shifts, ch0);
            if (two) dst[1] = logits_s32_finish(&p, acc1, scale1, multipliers, shifts, ch1);
        }
    }
}

/* The selector, the runtime's entry for logits_s32 (ops.def): the DSP variant above when the
 * build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (logits_s32.c). */
void logits_s32_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        logits_s32_dsp_run(params, operands, scratch);
    else
        logits_s32_ref_run(params, operands, scratch);
}
