/* The loss head of a classifier: softmax cross-entropy on its UN-CLAMPED int32 logits
 * (logits_s32: the requantized values before int8 saturation), in single-precision float.
 *
 * Why int32: the model's int8 logits saturate at +127. When the target's and another
 * class's logits both sit there, a loss taken from the int8 values sees equal logits (loss
 * ln 2 for two classes) and a gradient that does not depend on how far past the ceiling
 * each one is, so training could stay there for good (issue 12; docs/training.md, "No
 * stuck runs"). The un-clamped values are what the float model computes, so loss and
 * gradient are exact, and the classifier's own gradient passes straight through (no clamp
 * mask: nothing was clamped on the loss's path).
 *
 * The arithmetic is softmax_xent_s8's (see softmax_xent_s8.h: stable log-sum-exp with the
 * maximum subtracted exactly in integers, here in int64; own exp and log1p; gradient G / batches
 * as int8 with a dynamic scale; a bad label gives a NaN loss and a zero row), shared by both
 * through softmax_xent_rows.
 *
 * Layouts: logits int32 [batches, classes]; labels int32 [batches]; loss float32 [1];
 * predicted int32 [batches] (argmax of the un-clamped logits, ties to the lowest index);
 * G_logits int8 [batches, classes]; its scale float32 [1].
 * Scratch: 4 bytes per logit. */
#ifndef KERNELS_SOFTMAX_XENT_S32_H
#define KERNELS_SOFTMAX_XENT_S32_H

#include "kernel.h"

/* clang-format off */
#include "def_struct.h"
#include "softmax_xent_s32.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order (softmax_xent_s8's, with int32 logits). */
enum {
    SOFTMAX_XENT_S32_LOGITS = 0,     /* int32 [batches, classes] */
    SOFTMAX_XENT_S32_LABELS = 1,     /* int32 [batches] */
    SOFTMAX_XENT_S32_LOSS = 2,       /* float32 [1], written: mean loss (NaN: bad label) */
    SOFTMAX_XENT_S32_PREDICTED = 3,  /* int32 [batches], written: argmax per row */
    SOFTMAX_XENT_S32_GRAD = 4,       /* int8 [batches, classes], written: G_logits */
    SOFTMAX_XENT_S32_GRAD_SCALE = 5, /* float32 [1], written */
    SOFTMAX_XENT_S32_OPERANDS = 6
};

void softmax_xent_s32_run(const void *params, void *const *operands, void *scratch);
size_t softmax_xent_s32_scratch_size(const void *params);

/* The rows' computation both softmax heads share: logits are read from logits8 (int8) when
 * it is not NULL, else from logits32. scratch: 4 bytes per logit. */
struct softmax_xent_rows_args {
    const int8_t *logits8;
    const int32_t *logits32;
    const int32_t *labels;
    int32_t batches, classes;
    float input_scale, label_smoothing;
    float *loss;
    int32_t *predicted;
    int8_t *grad;
    float *grad_scale;
    float *grad_f32; /* not NULL: the float gradient G goes here instead of grad, with the
                        scale 1 / batches (the float-gradient option's convention) */
};
void softmax_xent_rows(const struct softmax_xent_rows_args *args, void *scratch);

#endif
