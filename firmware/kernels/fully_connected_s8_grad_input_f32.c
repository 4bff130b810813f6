/* Input gradient of fully_connected_s8 in float32. See fully_connected_s8_grad_input_f32.h. */
#include "fully_connected_s8_grad_input_f32.h"

#include "grad.h"

void fully_connected_s8_grad_input_f32_run(const void *params, void *const *operands,
                                           void *scratch) {
    (void)scratch;
    const struct fully_connected_s8_grad_input_f32_params p =
        *(const struct fully_connected_s8_grad_input_f32_params *)params;
    const float *grad_out = operands[FULLY_CONNECTED_S8_GRAD_INPUT_F32_GRAD_OUTPUT];
    const float s_g = *(const float *)operands[FULLY_CONNECTED_S8_GRAD_INPUT_F32_GRAD_OUTPUT_SCALE];
    const uint8_t *mask =
        p.has_mask ? (const uint8_t *)operands[FULLY_CONNECTED_S8_GRAD_INPUT_F32_MASK] : NULL;
    const int8_t *weights = operands[FULLY_CONNECTED_S8_GRAD_INPUT_F32_WEIGHTS];
    const int8_t *trained = operands[FULLY_CONNECTED_S8_GRAD_INPUT_F32_TRAINED_WEIGHTS];
    const float *scales = operands[FULLY_CONNECTED_S8_GRAD_INPUT_F32_WEIGHT_SCALES];
    float *grad_in = operands[FULLY_CONNECTED_S8_GRAD_INPUT_F32_GRAD_INPUT];
    float *grad_in_scale = operands[FULLY_CONNECTED_S8_GRAD_INPUT_F32_GRAD_INPUT_SCALE];

    const size_t depth = (size_t)p.input_depth;
    const size_t units = (size_t)p.output_depth;
    for (size_t i = 0; i < (size_t)p.batches * depth; ++i) grad_in[i] = 0.0f;
    /* Summed row by row, in a fixed order: the host and the board round alike. */
    for (int32_t b = 0; b < p.batches; ++b) {
        float *gx = grad_in + (size_t)b * depth;
        for (size_t o = 0; o < units; ++o) {
            const size_t at = (size_t)b * units + o;
            if (mask && !grad_mask_get(mask, at)) continue;
            if (grad_out[at] == 0.0f) continue;
            const float g = s_g * grad_out[at] * scales[p.per_channel ? o : 0];
            const int8_t *w = ((int32_t)o < p.train_rows ? trained : weights) + o * depth;
            for (size_t i = 0; i < depth; ++i)
                gx[i] += g * (float)((int32_t)w[i] + p.filter_offset);
        }
    }
    *grad_in_scale = 1.0f;
}

size_t fully_connected_s8_grad_input_f32_scratch_size(const void *params) {
    (void)params;
    return 0;
}
