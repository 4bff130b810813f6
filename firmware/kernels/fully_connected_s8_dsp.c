/* int8 fully connected layer with the Armv7E-M DSP SIMD instructions (dsp.h): bit-identical
 * with fully_connected_s8_ref_run (fully_connected_s8.c), TFLite's reference FullyConnected.
 *
 * Two weight rows at a time (fc_dot2_dsp, fully_connected_s8_dsp.h). The requantization is
 * the reference's: the effective scale from the plan, one software-double multiply and round
 * per output. */
#include "fully_connected_s8_dsp.h"

#include "fully_connected_s8.h"

static inline int8_t finish(int32_t acc, double scale, const struct fully_connected_s8_params *p) {
    const int64_t q = (int64_t)fc_round_to_int32((double)acc * scale) + p->output_offset;
    return (int8_t)(q < p->act_min ? p->act_min : (q > p->act_max ? p->act_max : q));
}

void fully_connected_s8_dsp_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct fully_connected_s8_params p = *(const struct fully_connected_s8_params *)params;
    const int8_t *input = operands[FULLY_CONNECTED_S8_INPUT];
    const int8_t *weights = operands[FULLY_CONNECTED_S8_WEIGHTS];
    const int32_t *bias = p.has_bias ? (const int32_t *)operands[FULLY_CONNECTED_S8_BIAS] : NULL;
    const int32_t *scales = operands[FULLY_CONNECTED_S8_SCALES];
    const int8_t *trained_weights = operands[FULLY_CONNECTED_S8_TRAINED_WEIGHTS];
    const int32_t *trained_bias = operands[FULLY_CONNECTED_S8_TRAINED_BIAS];
    int8_t *out = operands[FULLY_CONNECTED_S8_OUTPUT];

    const int32_t depth = p.input_depth;
    for (int32_t o = 0; o < p.output_depth; o += 2) {
        const int two = o + 1 < p.output_depth;
        const int32_t o1 = two ? o + 1 : o; /* a lone last row is computed twice */
        /* The rows being trained come from their RAM copy. */
        const int8_t *w0 = (o < p.train_rows ? trained_weights : weights) + (size_t)o * depth;
        const int8_t *w1 = (o1 < p.train_rows ? trained_weights : weights) + (size_t)o1 * depth;
        /* TFLite's doubles, computed when the model was lowered (fully_connected_s8.h). */
        const double scale0 = fc_scale(scales, p.per_channel ? o : 0);
        const double scale1 = fc_scale(scales, p.per_channel ? o1 : 0);
        const int32_t bias0 = o < p.train_bias_rows ? trained_bias[o] : (bias ? bias[o] : 0);
        const int32_t bias1 = o1 < p.train_bias_rows ? trained_bias[o1] : (bias ? bias[o1] : 0);
        for (int32_t b = 0; b < p.batches; ++b) {
            const int8_t *x = input + (size_t)b * (size_t)depth;
            int32_t acc0 = bias0, acc1 = bias1;
            fc_dot2_dsp(x, w0, w1, depth, p.input_offset, p.filter_offset, &acc0, &acc1);
            int8_t *dst = out + (size_t)b * (size_t)p.output_depth + (size_t)o;
            dst[0] = finish(acc0, scale0, &p);
            if (two) dst[1] = finish(acc1, scale1, &p);
        }
    }
}

/* The selector, the runtime's entry for fully_connected_s8 (ops.def): the DSP variant above when
 * the build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (fully_connected_s8.c). The
 * DSP variant falls back to the reference itself for the shapes it does not take. */
void fully_connected_s8_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        fully_connected_s8_dsp_run(params, operands, scratch);
    else
        fully_connected_s8_ref_run(params, operands, scratch);
}
