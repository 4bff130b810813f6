/* The softmax cross-entropy loss head with a float32 logits gradient: loss and
 * prediction are softmax_xent_s8's own (it runs first, into this kernel's scratch), the
 * gradient softmax(s * (q - max q)) - target in float32, unquantized, with the scale
 * 1 / batches (the loss is the rows' mean).
 * Float-gradient build option (docs/training.md, "Float gradients"): gradients are float32
 * values g with a float32 scale s, G = s * g, like grad.h's int8 ones; this kernel reads any
 * scale and writes its outputs with scale 1. Otherwise as softmax_xent_s8.h: the same operands, in
 * the same order, and the same arithmetic in float32 instead of fixed point. Scratch:
 * softmax_xent_s8's, plus batches * classes bytes. */
#ifndef KERNELS_SOFTMAX_XENT_S8_F32_H
#define KERNELS_SOFTMAX_XENT_S8_F32_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "softmax_xent_s8_f32.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order: softmax_xent_s8.h's. */
enum {
    SOFTMAX_XENT_S8_F32_LOGITS = 0,
    SOFTMAX_XENT_S8_F32_LABELS = 1,
    SOFTMAX_XENT_S8_F32_LOSS = 2,
    SOFTMAX_XENT_S8_F32_PREDICTED = 3,
    SOFTMAX_XENT_S8_F32_GRAD = 4,
    SOFTMAX_XENT_S8_F32_GRAD_SCALE = 5,
    SOFTMAX_XENT_S8_F32_OPERANDS = 6
};

void softmax_xent_s8_f32_run(const void *params, void *const *operands, void *scratch);
size_t softmax_xent_s8_f32_scratch_size(const void *params);

#endif
