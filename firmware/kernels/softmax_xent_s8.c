/* Softmax cross-entropy loss head on int8 logits. See softmax_xent_s8.h; the arithmetic is
 * softmax_xent_rows (softmax_xent_s32.c), shared with the int32 head. */
#include "softmax_xent_s8.h"

#include "softmax_xent_s32.h"

void softmax_xent_s8_run(const void *params, void *const *operands, void *scratch) {
    const struct softmax_xent_s8_params p = *(const struct softmax_xent_s8_params *)params;
    const struct softmax_xent_rows_args args = {
        .logits8 = operands[SOFTMAX_XENT_S8_LOGITS],
        .logits32 = NULL,
        .labels = operands[SOFTMAX_XENT_S8_LABELS],
        .batches = p.batches,
        .classes = p.classes,
        .input_scale = p.input_scale,
        .label_smoothing = p.label_smoothing,
        .loss = operands[SOFTMAX_XENT_S8_LOSS],
        .predicted = operands[SOFTMAX_XENT_S8_PREDICTED],
        .grad = operands[SOFTMAX_XENT_S8_GRAD],
        .grad_scale = operands[SOFTMAX_XENT_S8_GRAD_SCALE],
        .grad_f32 = NULL,
    };
    softmax_xent_rows(&args, scratch);
}

size_t softmax_xent_s8_scratch_size(const void *params) {
    const struct softmax_xent_s8_params p = *(const struct softmax_xent_s8_params *)params;
    if (p.batches <= 0 || p.classes <= 0) return 0;
    return (size_t)p.batches * (size_t)p.classes * sizeof(int32_t);
}
