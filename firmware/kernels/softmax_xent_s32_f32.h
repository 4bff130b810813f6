/* softmax_xent_s32 with a float32 logits gradient (the float-gradient build option,
 * docs/training.md "Float gradients"): the same loss and prediction, and the gradient
 * softmax(x) - target unquantized, with the scale 1 / batches, as softmax_xent_s8_f32.
 * Operands: softmax_xent_s32.h's, with G_logits float32. Scratch: 4 bytes per logit. */
#ifndef KERNELS_SOFTMAX_XENT_S32_F32_H
#define KERNELS_SOFTMAX_XENT_S32_F32_H

#include "kernel.h"

/* clang-format off */
#include "def_struct.h"
#include "softmax_xent_s32_f32.def"
#include "def_struct_end.h"
/* clang-format on */

enum {
    SOFTMAX_XENT_S32_F32_LOGITS = 0,
    SOFTMAX_XENT_S32_F32_LABELS = 1,
    SOFTMAX_XENT_S32_F32_LOSS = 2,
    SOFTMAX_XENT_S32_F32_PREDICTED = 3,
    SOFTMAX_XENT_S32_F32_GRAD = 4, /* float32 [batches, classes] */
    SOFTMAX_XENT_S32_F32_GRAD_SCALE = 5,
    SOFTMAX_XENT_S32_F32_OPERANDS = 6
};

void softmax_xent_s32_f32_run(const void *params, void *const *operands, void *scratch);
size_t softmax_xent_s32_f32_scratch_size(const void *params);

#endif
