/* The sum of two float32 gradients of one tensor: G = G_a + G_b.
 * Float-gradient build option (docs/training.md, "Float gradients"): gradients are float32
 * values g with a float32 scale s, G = s * g, like grad.h's int8 ones; this kernel reads any
 * scale and writes its outputs with scale 1. Otherwise as grad_add.h: the same
 * operands, in the same order, and the same arithmetic in float32 instead of fixed point.
 * OUT may alias A or B. Scratch: none. */
#ifndef KERNELS_GRAD_ADD_F32_H
#define KERNELS_GRAD_ADD_F32_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "grad_add_f32.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order: grad_add.h's. */
enum {
    GRAD_ADD_F32_A = 0,
    GRAD_ADD_F32_A_SCALE = 1,
    GRAD_ADD_F32_B = 2,
    GRAD_ADD_F32_B_SCALE = 3,
    GRAD_ADD_F32_OUT = 4,
    GRAD_ADD_F32_OUT_SCALE = 5,
    GRAD_ADD_F32_OPERANDS = 6
};

void grad_add_f32_run(const void *params, void *const *operands, void *scratch);
size_t grad_add_f32_scratch_size(const void *params);

#endif
