/* Backward of int8 MEAN (mean_s8) with respect to its input: every input element receives
 * its output's gradient divided by the number of elements averaged,
 *   G_x[i] = G_y[kept part of i] / count
 * (for the usual GlobalAveragePooling, MEAN over axes [1, 2] of NHWC:
 * G_x[n, h, w, c] = G_y[n, c] / (H * W), keep_dims or not: the layout is the same).
 * The forward's requantization passes straight through (grad.h).
 *
 * Representation, exact: the division goes into the scale, not the values. G_x's int8
 * values are G_y's, broadcast, and s_x = s_y / count (one IEEE division, exact when count
 * is a power of two, else within half an ulp, 6e-8 relative). No requantization, so no
 * rounding of the values; if s_y is max|G_y| / 127 then s_x is max|G_x| / 127.
 *
 * Layouts: G_y int8 holding the kept dimensions in order (mean_s8's output layout);
 * G_x int8 [dim0, dim1, dim2, dim3]; scales float32 [1]. G_x must not alias G_y. */
#ifndef KERNELS_MEAN_S8_GRAD_INPUT_H
#define KERNELS_MEAN_S8_GRAD_INPUT_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "mean_s8_grad_input.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    MEAN_S8_GRAD_INPUT_GRAD_Y = 0,       /* int8: gradient w.r.t. the mean */
    MEAN_S8_GRAD_INPUT_GRAD_Y_SCALE = 1, /* float32 [1] */
    MEAN_S8_GRAD_INPUT_GRAD_X = 2,       /* int8: gradient w.r.t. the input, written */
    MEAN_S8_GRAD_INPUT_GRAD_X_SCALE = 3, /* float32 [1], written */
    MEAN_S8_GRAD_INPUT_OPERANDS = 4
};

void mean_s8_grad_input_run(const void *params, void *const *operands, void *scratch);
size_t mean_s8_grad_input_scratch_size(const void *params);

#endif
