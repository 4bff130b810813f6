/* A float32 gradient through a clamp: G_in = G_out * mask (the scale is
 * unchanged, so it has no operand here, as in grad_apply_mask).
 * Float-gradient build option (docs/training.md, "Float gradients"): gradients are float32
 * values g with a float32 scale s, G = s * g, like grad.h's int8 ones; this kernel reads any
 * scale and writes its outputs with scale 1. Otherwise as grad_apply_mask.h: the same operands, in
 * the same order, and the same arithmetic in float32 instead of fixed point. out may alias G_out.
 */
#ifndef KERNELS_GRAD_APPLY_MASK_F32_H
#define KERNELS_GRAD_APPLY_MASK_F32_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "grad_apply_mask_f32.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order: grad_apply_mask.h's. */
enum {
    GRAD_APPLY_MASK_F32_GRAD = 0,
    GRAD_APPLY_MASK_F32_MASK = 1,
    GRAD_APPLY_MASK_F32_GRAD_OUT = 2,
    GRAD_APPLY_MASK_F32_OPERANDS = 3
};

void grad_apply_mask_f32_run(const void *params, void *const *operands, void *scratch);
size_t grad_apply_mask_f32_scratch_size(const void *params);

#endif
