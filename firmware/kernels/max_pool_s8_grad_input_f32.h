/* Input gradient of max pooling in float32: each output's G_y to its
 * window's first maximum (max_pool_s8_grad_input.h's rule).
 * Float-gradient build option (docs/training.md, "Float gradients"): gradients are float32
 * values g with a float32 scale s, G = s * g, like grad.h's int8 ones; this kernel reads any
 * scale and writes its outputs with scale 1. Otherwise as max_pool_s8_grad_input.h: the same
 * operands, in the same order, and the same arithmetic in float32 instead of fixed point.
 * Scratch: none. */
#ifndef KERNELS_MAX_POOL_S8_GRAD_INPUT_F32_H
#define KERNELS_MAX_POOL_S8_GRAD_INPUT_F32_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "max_pool_s8_grad_input_f32.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order: max_pool_s8_grad_input.h's. */
enum {
    MAX_POOL_S8_GRAD_INPUT_F32_INPUT = 0,
    MAX_POOL_S8_GRAD_INPUT_F32_GRAD_Y = 1,
    MAX_POOL_S8_GRAD_INPUT_F32_GRAD_Y_SCALE = 2,
    MAX_POOL_S8_GRAD_INPUT_F32_GRAD_X = 3,
    MAX_POOL_S8_GRAD_INPUT_F32_GRAD_X_SCALE = 4,
    MAX_POOL_S8_GRAD_INPUT_F32_OPERANDS = 5
};

void max_pool_s8_grad_input_f32_run(const void *params, void *const *operands, void *scratch);
size_t max_pool_s8_grad_input_f32_scratch_size(const void *params);

#endif
