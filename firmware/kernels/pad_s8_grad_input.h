/* Backward of int8 constant padding (pad_s8) with respect to its input:
 *   G_x[i0, i1, i2, i3] = G_y[i0 + before0, i1 + before1, i2 + before2, i3 + before3].
 * A crop: the int8 values are copied and the scale is G_y's (a crop can only lower
 * max|G|, so the scale still bounds every value; grad.h's kernels read it as a unit).
 * Layouts: G_y int8 [out_dim0..3], G_x int8 [in_dim0..3], row-major; scales float32 [1].
 * G_x must not alias G_y. No scratch. */
#ifndef KERNELS_PAD_S8_GRAD_INPUT_H
#define KERNELS_PAD_S8_GRAD_INPUT_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "pad_s8_grad_input.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    PAD_S8_GRAD_INPUT_GRAD_Y = 0,       /* int8: gradient w.r.t. the padded output */
    PAD_S8_GRAD_INPUT_GRAD_Y_SCALE = 1, /* float32 [1] */
    PAD_S8_GRAD_INPUT_GRAD_X = 2,       /* int8: gradient w.r.t. the input, written */
    PAD_S8_GRAD_INPUT_GRAD_X_SCALE = 3, /* float32 [1], written */
    PAD_S8_GRAD_INPUT_OPERANDS = 4
};

void pad_s8_grad_input_run(const void *params, void *const *operands, void *scratch);
size_t pad_s8_grad_input_scratch_size(const void *params);

#endif
