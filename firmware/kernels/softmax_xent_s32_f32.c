/* Softmax cross-entropy on un-clamped int32 logits, float32 gradient. See
 * softmax_xent_s32_f32.h. */
#include "softmax_xent_s32_f32.h"

#include "softmax_xent_s32.h"

void softmax_xent_s32_f32_run(const void *params, void *const *operands, void *scratch) {
    const struct softmax_xent_s32_f32_params p =
        *(const struct softmax_xent_s32_f32_params *)params;
    const struct softmax_xent_rows_args args = {
        .logits8 = NULL,
        .logits32 = operands[SOFTMAX_XENT_S32_F32_LOGITS],
        .labels = operands[SOFTMAX_XENT_S32_F32_LABELS],
        .batches = p.batches,
        .classes = p.classes,
        .input_scale = p.input_scale,
        .label_smoothing = p.label_smoothing,
        .loss = operands[SOFTMAX_XENT_S32_F32_LOSS],
        .predicted = operands[SOFTMAX_XENT_S32_F32_PREDICTED],
        .grad = NULL,
        .grad_scale = operands[SOFTMAX_XENT_S32_F32_GRAD_SCALE],
        .grad_f32 = operands[SOFTMAX_XENT_S32_F32_GRAD],
    };
    softmax_xent_rows(&args, scratch);
}

size_t softmax_xent_s32_f32_scratch_size(const void *params) {
    const struct softmax_xent_s32_f32_params p =
        *(const struct softmax_xent_s32_f32_params *)params;
    if (p.batches <= 0 || p.classes <= 0) return 0;
    return (size_t)p.batches * (size_t)p.classes * sizeof(int32_t);
}
