/* The loss head of a sigmoid (LOGISTIC) output: binary cross-entropy on the logits BEFORE
 * the sigmoid, in single-precision float. It takes the output layer's un-clamped int32
 * values (logits_s32), so it needs no LOGISTIC kernel and never sees a saturated logit.
 *
 * Per element, with real logit x = s * (q - z) and target t in {0, 1}:
 *   loss = log(1 + exp(-|x|)) + max(x, 0) - x t      (tf.nn.sigmoid_cross_entropy_with_logits)
 *   G    = sigmoid(x) - t                             (dL/dx)
 * evaluated without cancellation: with e = exp(-|x|), sigmoid(|x|) = 1 / (1 + e) and
 * sigmoid(-|x|) = e / (1 + e), so G for t = 1 is -sigmoid(-x) and for t = 0 sigmoid(x);
 * the loss is log1p(e) plus max(-x, 0) (t = 1) or max(x, 0) (t = 0), non-negative terms.
 * exp and log1p are loss_math.h's (no libm: the host twin must produce the board's bits).
 * The outputs are the mean loss over all batches * outputs elements (Keras'
 * BinaryCrossentropy), each row's prediction and G / (batches * outputs) as int8 with a
 * dynamic scale (grad.h, loss_math.h's loss_grad_to_s8).
 *
 * Targets from the int32 label of each row: with 1 output the label is the target (0 or 1)
 * and the prediction is 1 iff x > 0; with several outputs target_c = (c == label), one
 * sigmoid per class (one-vs-rest), and the prediction is the argmax (ties to the lowest).
 * A label out of range ([0, 1] or [0, outputs)) gives that row a zero gradient and the
 * loss NaN (the flag the host and the runtime see); its prediction is still written. A
 * scale that is not positive and finite does the same for every row.
 *
 * Layouts: logits int32 [batches, outputs]; labels int32 [batches]; loss float32 [1];
 * predicted int32 [batches]; G_logits int8 [batches, outputs]; its scale float32 [1].
 * Scratch: 4 bytes per logit. */
#ifndef KERNELS_SIGMOID_XENT_S32_H
#define KERNELS_SIGMOID_XENT_S32_H

#include "kernel.h"

/* clang-format off */
#include "def_struct.h"
#include "sigmoid_xent_s32.def"
#include "def_struct_end.h"
/* clang-format on */

enum {
    SIGMOID_XENT_S32_LOGITS = 0,     /* int32 [batches, outputs] */
    SIGMOID_XENT_S32_LABELS = 1,     /* int32 [batches] */
    SIGMOID_XENT_S32_LOSS = 2,       /* float32 [1], written (NaN: bad label) */
    SIGMOID_XENT_S32_PREDICTED = 3,  /* int32 [batches], written */
    SIGMOID_XENT_S32_GRAD = 4,       /* int8 [batches, outputs], written */
    SIGMOID_XENT_S32_GRAD_SCALE = 5, /* float32 [1], written */
    SIGMOID_XENT_S32_OPERANDS = 6
};

void sigmoid_xent_s32_run(const void *params, void *const *operands, void *scratch);
size_t sigmoid_xent_s32_scratch_size(const void *params);

#endif
