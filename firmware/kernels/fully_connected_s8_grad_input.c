/* Input gradient of fully_connected_s8, int8 with a dynamic scale. See
 * fully_connected_s8_grad_input.h; the fixed-point helpers are conv2d_s8_grad_input.h's. */
#include "fully_connected_s8_grad_input.h"

#include "conv2d_s8_grad_input.h"
#include "grad.h"

void fully_connected_s8_grad_input_ref_run(const void *params, void *const *operands,
                                           void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct fully_connected_s8_grad_input_params p =
        *(const struct fully_connected_s8_grad_input_params *)params;
    const int8_t *grad_out = operands[FULLY_CONNECTED_S8_GRAD_INPUT_GRAD_OUTPUT];
    const float grad_out_scale =
        *(const float *)operands[FULLY_CONNECTED_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE];
    const uint8_t *mask =
        p.has_mask ? (const uint8_t *)operands[FULLY_CONNECTED_S8_GRAD_INPUT_MASK] : NULL;
    const int8_t *weights = operands[FULLY_CONNECTED_S8_GRAD_INPUT_WEIGHTS];
    const int8_t *trained = operands[FULLY_CONNECTED_S8_GRAD_INPUT_TRAINED_WEIGHTS];
    const float *scales = operands[FULLY_CONNECTED_S8_GRAD_INPUT_WEIGHT_SCALES];
    int8_t *grad_in = operands[FULLY_CONNECTED_S8_GRAD_INPUT_GRAD_INPUT];
    float *grad_in_scale = operands[FULLY_CONNECTED_S8_GRAD_INPUT_GRAD_INPUT_SCALE];

    const size_t depth = (size_t)p.input_depth;
    const size_t n_in = (size_t)p.batches * depth;
    int32_t *acc = scratch;
    int32_t *m = acc + n_in; /* Q23 row multipliers */

    const float max_scale = conv_grad_channel_q23(scales, p.per_channel ? p.output_depth : 1, m);

    /* Overflow bound (conv_grad_pick_shift): input column i receives one term per row. */
    uint64_t b0 = 0, w1 = 0;
    for (size_t i = 0; i < depth; ++i) {
        uint64_t bk = 0, wk = 0;
        for (int32_t o = 0; o < p.output_depth; ++o) {
            const int8_t *w = (o < p.train_rows ? trained : weights) + (size_t)o * depth;
            const int32_t v = (int32_t)w[i] + p.filter_offset;
            const uint64_t s = (uint64_t)(v < 0 ? -v : v);
            bk += s * 128u * (uint64_t)m[p.per_channel ? o : 0];
            wk += s;
        }
        if (bk > b0) b0 = bk;
        if (wk > w1) w1 = wk;
    }
    const int shift = conv_grad_pick_shift(b0, w1, CONV_GRAD_MIN_SHIFT_16);

    for (size_t i = 0; i < n_in; ++i) acc[i] = 0;
    for (int32_t b = 0; b < p.batches; ++b) {
        int32_t *a = acc + (size_t)b * depth;
        for (int32_t o = 0; o < p.output_depth; ++o) {
            const int32_t g =
                conv_grad_masked(grad_out, mask, (size_t)b * (size_t)p.output_depth + (size_t)o);
            if (g == 0) continue;
            const int32_t gs = conv_grad_term(g, m[p.per_channel ? o : 0], shift);
            if (gs == 0) continue;
            const int8_t *w = (o < p.train_rows ? trained : weights) + (size_t)o * depth;
            for (size_t i = 0; i < depth; ++i) a[i] += gs * ((int32_t)w[i] + p.filter_offset);
        }
    }
    *grad_in_scale =
        grad_requantize_s32(acc, n_in, grad_out_scale * max_scale * conv_grad_unit(shift), grad_in);
}

size_t fully_connected_s8_grad_input_ref_scratch_size(const void *params) {
    const struct fully_connected_s8_grad_input_params p =
        *(const struct fully_connected_s8_grad_input_params *)params;
    return ((size_t)p.batches * (size_t)p.input_depth + (size_t)p.output_depth) * sizeof(int32_t);
}
