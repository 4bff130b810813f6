/* Weight/bias gradient of fully_connected_s8 and the QAS SGD step, in place,
 * from float32 G_y (conv2d_s8_grad_update.h's formulas with acc, bsum in float32).
 * Float-gradient build option (docs/training.md, "Float gradients"): gradients are float32
 * values g with a float32 scale s, G = s * g, like grad.h's int8 ones; this kernel reads any
 * scale and writes its outputs with scale 1. Otherwise as fully_connected_s8_grad_update.h: the
 * same operands, in the same order, and the same arithmetic in float32 instead of fixed point.
 * Scratch: float32 [input_depth] when updating weights. */
#ifndef KERNELS_FULLY_CONNECTED_S8_GRAD_UPDATE_F32_H
#define KERNELS_FULLY_CONNECTED_S8_GRAD_UPDATE_F32_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "fully_connected_s8_grad_update_f32.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order: fully_connected_s8_grad_update.h's. */
enum {
    FULLY_CONNECTED_S8_GRAD_UPDATE_F32_GRAD_OUTPUT = 0,
    FULLY_CONNECTED_S8_GRAD_UPDATE_F32_GRAD_OUTPUT_SCALE = 1,
    FULLY_CONNECTED_S8_GRAD_UPDATE_F32_MASK = 2,
    FULLY_CONNECTED_S8_GRAD_UPDATE_F32_INPUT = 3,
    FULLY_CONNECTED_S8_GRAD_UPDATE_F32_WEIGHT_SCALES = 4,
    FULLY_CONNECTED_S8_GRAD_UPDATE_F32_TRAINED_WEIGHTS = 5,
    FULLY_CONNECTED_S8_GRAD_UPDATE_F32_TRAINED_BIAS = 6,
    FULLY_CONNECTED_S8_GRAD_UPDATE_F32_RNG_STATE = 7,
    FULLY_CONNECTED_S8_GRAD_UPDATE_F32_OPERANDS = 8
};

void fully_connected_s8_grad_update_f32_run(const void *params, void *const *operands,
                                            void *scratch);
size_t fully_connected_s8_grad_update_f32_scratch_size(const void *params);

#endif
