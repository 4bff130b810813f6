/* The backward of a clamp (fused RELU/RELU6 or int8 saturation): the incoming gradient with
 * every element whose mask bit is 0 set to 0 (the mask from clamp_mask_s8, grad.h).
 *
 * Scale: unchanged. G = s * g_q stays exact elementwise, so the result uses the incoming
 * gradient's scale operand as its own (no scale operand here; the compiler points the
 * consumer at the same 4-byte scale). The scale is then an upper bound of max|G| / 127
 * rather than equal to it, which the conventions allow (every consumer reads the scale).
 *
 * Layouts: gradients int8 [size] (any shape, flat); mask uint8 [grad_mask_bytes(size)].
 * The output may alias the input (in place). */
#ifndef KERNELS_GRAD_APPLY_MASK_H
#define KERNELS_GRAD_APPLY_MASK_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "grad_apply_mask.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    GRAD_APPLY_MASK_GRAD = 0,     /* int8: gradient w.r.t. the clamp's output */
    GRAD_APPLY_MASK_MASK = 1,     /* uint8: 1-bit mask, LSB first */
    GRAD_APPLY_MASK_GRAD_OUT = 2, /* int8: gradient w.r.t. the clamp's input (may alias 0) */
    GRAD_APPLY_MASK_OPERANDS = 3
};

void grad_apply_mask_run(const void *params, void *const *operands, void *scratch);
size_t grad_apply_mask_scratch_size(const void *params);

#endif
