/* Input gradient of conv2d_s8 in float32: G_x = conv_transpose(G_y * mask,
 * s_W * W_q).
 * Float-gradient build option (docs/training.md, "Float gradients"): gradients are float32
 * values g with a float32 scale s, G = s * g, like grad.h's int8 ones; this kernel reads any
 * scale and writes its outputs with scale 1. Otherwise as conv2d_s8_grad_input.h: the same
 * operands, in the same order, and the same arithmetic in float32 instead of fixed point.
 * Scratch: none. */
#ifndef KERNELS_CONV2D_S8_GRAD_INPUT_F32_H
#define KERNELS_CONV2D_S8_GRAD_INPUT_F32_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "conv2d_s8_grad_input_f32.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order: conv2d_s8_grad_input.h's. */
enum {
    CONV2D_S8_GRAD_INPUT_F32_GRAD_OUTPUT = 0,
    CONV2D_S8_GRAD_INPUT_F32_GRAD_OUTPUT_SCALE = 1,
    CONV2D_S8_GRAD_INPUT_F32_MASK = 2,
    CONV2D_S8_GRAD_INPUT_F32_FILTER = 3,
    CONV2D_S8_GRAD_INPUT_F32_TRAINED_FILTER = 4,
    CONV2D_S8_GRAD_INPUT_F32_WEIGHT_SCALES = 5,
    CONV2D_S8_GRAD_INPUT_F32_GRAD_INPUT = 6,
    CONV2D_S8_GRAD_INPUT_F32_GRAD_INPUT_SCALE = 7,
    CONV2D_S8_GRAD_INPUT_F32_OPERANDS = 8
};

void conv2d_s8_grad_input_f32_run(const void *params, void *const *operands, void *scratch);
size_t conv2d_s8_grad_input_f32_scratch_size(const void *params);

#endif
