/* int8 fully connected layer: TFLite's reference FullyConnected / FullyConnectedPerChannel
 * (the double-precision requantization fully_connected.cc's reference path uses), so that
 * the integer results are identical. See fully_connected_s8.h for operands. */
#include "fully_connected_s8.h"

void fully_connected_s8_ref_run(const void *params, void *const *operands, void *scratch) {
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

    /* Row by row, so the double-precision scale is read once per output row. */
    for (int32_t o = 0; o < p.output_depth; ++o) {
        /* The rows being trained come from their RAM copy. */
        const int8_t *w =
            (o < p.train_rows ? trained_weights : weights) + (size_t)o * (size_t)p.input_depth;
        /* TFLite's double, computed when the model was lowered. */
        const double scale = fc_scale(scales, p.per_channel ? o : 0);
        for (int32_t b = 0; b < p.batches; ++b) {
            const int8_t *x = input + (size_t)b * (size_t)p.input_depth;
            int32_t acc = fc_row_sum(w, x, p.input_depth, p.filter_offset, p.input_offset);
            if (o < p.train_bias_rows)
                acc += trained_bias[o];
            else if (bias)
                acc += bias[o];
            /* int64 so that adding the zero point to a saturated value cannot overflow. */
            const int64_t q = (int64_t)fc_round_to_int32((double)acc * scale) + p.output_offset;
            out[(size_t)b * (size_t)p.output_depth + (size_t)o] =
                (int8_t)(q < p.act_min ? p.act_min : (q > p.act_max ? p.act_max : q));
        }
    }
}

size_t fully_connected_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
