/* The clamp mask of a forward output (grad.h, "Clamp masks"): bit i of the mask is 1 iff
 * act_min < output[i] < act_max, packed LSB first. The compiler runs it right after the
 * forward op whose clamp it differentiates, so only the mask (1 bit per element) has to
 * live until the backward pass, not the activation. grad_apply_mask consumes it.
 *
 * The bits past `size` in the last byte are written as 0 (whole bytes are written, never a
 * byte beyond grad_mask_bytes(size)).
 *
 * Layouts: output int8 [size] (any shape, flat); mask uint8 [grad_mask_bytes(size)]. */
#ifndef KERNELS_CLAMP_MASK_S8_H
#define KERNELS_CLAMP_MASK_S8_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "clamp_mask_s8.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    CLAMP_MASK_S8_OUTPUT = 0, /* int8: the forward op's output */
    CLAMP_MASK_S8_MASK = 1,   /* uint8: the mask written */
    CLAMP_MASK_S8_OPERANDS = 2
};

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in clamp_mask_s8_dsp.c. */
void clamp_mask_s8_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (clamp_mask_s8.c), bit-exact with TFLite's reference; it calls no variant.
 */
void clamp_mask_s8_ref_run(const void *params, void *const *operands, void *scratch);
size_t clamp_mask_s8_scratch_size(const void *params);

#endif
