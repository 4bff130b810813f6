/* Backward of an int8 elementwise function y = f(x) of one variable with respect to x:
 *   G_x[i] = G_y[i] * f'(x[i]),
 * with f' read from a 256-entry table indexed by the forward input's byte: the lowering
 * evaluates the float function's derivative at each dequantized input s_x (q - z_x), as
 * TensorFlow's gradient of the float op does (its choice at a kink included: RELU's
 * derivative at 0 is 0), and stores it as int32 with one scale (max|f'| / (2^23 - 1)):
 * 23 bits keep the small derivatives of a saturating LOGISTIC or TANH (1e-5 of the peak
 * is still 80 steps) while |G_y_q * table| < 2^30. So the
 * gradient is that of the float function at the input the forward saw; the forward's
 * output rounding passes straight through (grad.h), and where the function itself clamps
 * (RELU6, RELU_N1_TO_1) its derivative is 0 there already. Products G_y_q * table are exact
 * in int32 and requantized (grad_requantize_s32) to G_x's own dynamic scale, at
 * accumulator scale s_y * table_scale.
 * Layouts: X int8 [count] (the forward input, saved), G_y int8 [count], table int32 [256]
 * indexed by X's byte (uint8), G_x int8 [count]; scales float32 [1]. G_x may alias G_y.
 * Scratch: int32 [count]. */
#ifndef KERNELS_UNARY_S8_GRAD_INPUT_H
#define KERNELS_UNARY_S8_GRAD_INPUT_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "unary_s8_grad_input.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    UNARY_S8_GRAD_INPUT_INPUT = 0,        /* int8: the forward input X (saved) */
    UNARY_S8_GRAD_INPUT_GRAD_Y = 1,       /* int8: gradient w.r.t. the output */
    UNARY_S8_GRAD_INPUT_GRAD_Y_SCALE = 2, /* float32 [1] */
    UNARY_S8_GRAD_INPUT_TABLE = 3,        /* int32 [256]: the derivative, constant */
    UNARY_S8_GRAD_INPUT_GRAD_X = 4,       /* int8: gradient w.r.t. the input, written */
    UNARY_S8_GRAD_INPUT_GRAD_X_SCALE = 5, /* float32 [1], written */
    UNARY_S8_GRAD_INPUT_OPERANDS = 6
};

void unary_s8_grad_input_run(const void *params, void *const *operands, void *scratch);
size_t unary_s8_grad_input_scratch_size(const void *params);

#endif
