/* Input gradient of PAD in float32: the middle of G_y.
 * Float-gradient build option (docs/training.md, "Float gradients"): gradients are float32
 * values g with a float32 scale s, G = s * g, like grad.h's int8 ones; this kernel reads any
 * scale and writes its outputs with scale 1 (here: G_y's). Otherwise as pad_s8_grad_input.h: the
 * same operands, in the same order, and the same arithmetic in float32 instead of fixed point.
 * Scratch: none. */
#ifndef KERNELS_PAD_S8_GRAD_INPUT_F32_H
#define KERNELS_PAD_S8_GRAD_INPUT_F32_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "pad_s8_grad_input_f32.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order: pad_s8_grad_input.h's. */
enum {
    PAD_S8_GRAD_INPUT_F32_GRAD_Y = 0,
    PAD_S8_GRAD_INPUT_F32_GRAD_Y_SCALE = 1,
    PAD_S8_GRAD_INPUT_F32_GRAD_X = 2,
    PAD_S8_GRAD_INPUT_F32_GRAD_X_SCALE = 3,
    PAD_S8_GRAD_INPUT_F32_OPERANDS = 4
};

void pad_s8_grad_input_f32_run(const void *params, void *const *operands, void *scratch);
size_t pad_s8_grad_input_f32_scratch_size(const void *params);

#endif
