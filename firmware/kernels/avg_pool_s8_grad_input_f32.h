/* Input gradient of average pooling in float32: each output's G_y / count
 * spread over its window (padding neither summed nor counted).
 * Float-gradient build option (docs/training.md, "Float gradients"): gradients are float32
 * values g with a float32 scale s, G = s * g, like grad.h's int8 ones; this kernel reads any
 * scale and writes its outputs with scale 1. Otherwise as avg_pool_s8_grad_input.h: the same
 * operands, in the same order, and the same arithmetic in float32 instead of fixed point.
 * Scratch: none. */
#ifndef KERNELS_AVG_POOL_S8_GRAD_INPUT_F32_H
#define KERNELS_AVG_POOL_S8_GRAD_INPUT_F32_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "avg_pool_s8_grad_input_f32.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order: avg_pool_s8_grad_input.h's. */
enum {
    AVG_POOL_S8_GRAD_INPUT_F32_GRAD_Y = 0,
    AVG_POOL_S8_GRAD_INPUT_F32_GRAD_Y_SCALE = 1,
    AVG_POOL_S8_GRAD_INPUT_F32_GRAD_X = 2,
    AVG_POOL_S8_GRAD_INPUT_F32_GRAD_X_SCALE = 3,
    AVG_POOL_S8_GRAD_INPUT_F32_OPERANDS = 4
};

void avg_pool_s8_grad_input_f32_run(const void *params, void *const *operands, void *scratch);
size_t avg_pool_s8_grad_input_f32_scratch_size(const void *params);

#endif
