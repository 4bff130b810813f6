/* Backward of STRIDED_SLICE / SLICE (strided_slice) with respect to its input: the forward
 * copies each input element it takes to one output element, and takes no element twice
 * (every step is non-zero), so
 *   G_x[start0 + i0 * step0, ..., start4 + i4 * step4] = G_y[i0, ..., i4]
 * and G_x is 0 (the gradient's zero point: int8 gradients are symmetric, grad.h) wherever
 * the forward took nothing. Values are moved, never requantized: G_x has G_y's scale (the
 * caller passes the scale tensor on).
 * Layouts: G_y int8 [out_dim0..4], G_x int8 [in_dim0..4], row-major. G_x must not alias G_y. */
#ifndef KERNELS_STRIDED_SLICE_GRAD_INPUT_H
#define KERNELS_STRIDED_SLICE_GRAD_INPUT_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "strided_slice_grad_input.def"

#include "def_struct_end.h"

/* Operand order. */
enum {
    STRIDED_SLICE_GRAD_INPUT_GRAD_Y = 0, /* int8: gradient w.r.t. the output */
    STRIDED_SLICE_GRAD_INPUT_GRAD_X = 1, /* int8: gradient w.r.t. the input, written */
    STRIDED_SLICE_GRAD_INPUT_OPERANDS = 2
};

void strided_slice_grad_input_run(const void *params, void *const *operands, void *scratch);
size_t strided_slice_grad_input_scratch_size(const void *params);

#endif
