/* Backward of an int8 elementwise operator y = op(a, b) whose derivative with respect to
 * the input X ("this" input, the other being O) is 0 or +-1 at each element:
 *   G_x[j] = sign * sum over the outputs i that read x[j] and are selected of G_y[i].
 * ADD (sign +1, every element), SUB (+1 for input 1, -1 for input 2), MAXIMUM and MINIMUM
 * (the input whose value is the output, with TensorFlow's tie rule: MAXIMUM's input 1 where
 * a >= b, input 2 where a < b; MINIMUM's input 1 where a <= b, input 2 where a > b; the
 * stored int8 values compare as the real ones, the forward requiring one quantization).
 * The sum runs over the dimensions X is broadcast along. The forward's fused activation and
 * int8 saturation (ADD, SUB) are a mask applied to G_y beforehand (grad_apply_mask).
 * G_y's values are summed in int32 (exact) and requantized (grad_requantize_s32) to G_x's
 * own dynamic scale, at accumulator scale s_y.
 * Layouts: G_y int8 [dim0..3]; X and O int8 as the forward read them (in1_stride*,
 * in2_stride*; read only when select != 0, else any valid pointer: the lowering passes
 * G_y); G_x int8 [this_size]; scales float32 [1]. G_x must not alias G_y.
 * Scratch: int32 [this_size]. */
#ifndef KERNELS_BINARY_S8_GRAD_INPUT_H
#define KERNELS_BINARY_S8_GRAD_INPUT_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "binary_s8_grad_input.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    BINARY_S8_GRAD_INPUT_GRAD_Y = 0,       /* int8: gradient w.r.t. the output (masked) */
    BINARY_S8_GRAD_INPUT_GRAD_Y_SCALE = 1, /* float32 [1] */
    BINARY_S8_GRAD_INPUT_THIS = 2,         /* int8: this forward input (saved; select) */
    BINARY_S8_GRAD_INPUT_OTHER = 3,        /* int8: the other forward input (saved; select) */
    BINARY_S8_GRAD_INPUT_GRAD_X = 4,       /* int8: gradient w.r.t. this input, written */
    BINARY_S8_GRAD_INPUT_GRAD_X_SCALE = 5, /* float32 [1], written */
    BINARY_S8_GRAD_INPUT_OPERANDS = 6
};

void binary_s8_grad_input_run(const void *params, void *const *operands, void *scratch);
size_t binary_s8_grad_input_scratch_size(const void *params);

#endif
