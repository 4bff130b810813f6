/* Backward of int8 elementwise multiplication (mul_s8) with respect to one input X, the
 * other input being F (the factor):
 *   y = x * f (real values, numpy broadcasting), so
 *   G_x[j] = sum over the outputs i that read x[j] of G_y[i] * f[i],
 * with f[i] = s_f (F_q[i] - z_f). The sum runs over the dimensions X is broadcast along
 * (a squeeze-excite scale [1, 1, 1, C] sums over the image). The forward's fused
 * activation and int8 saturation are a mask applied to G_y beforehand (grad_apply_mask);
 * requantization has derivative 1 (grad.h). Products G_y_q * (F_q - z_f) are exact in
 * int32 (|.| <= 127 * 255) and summed in int32 (the lowering refuses a broadcast that sums
 * more than 66,000 of them, which could overflow), then requantized (grad_requantize_s32)
 * to G_x's own dynamic scale, at accumulator scale s_y * s_f.
 * Layouts: G_y int8 [dim0..3], F int8 as the forward read it (in2_stride*), G_x int8
 * [this_size] (the input's own shape); scales float32 [1]. G_x must not alias G_y or F.
 * Scratch: int32 [this_size]. */
#ifndef KERNELS_MUL_S8_GRAD_INPUT_H
#define KERNELS_MUL_S8_GRAD_INPUT_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "mul_s8_grad_input.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    MUL_S8_GRAD_INPUT_GRAD_Y = 0,       /* int8: gradient w.r.t. the product (masked) */
    MUL_S8_GRAD_INPUT_GRAD_Y_SCALE = 1, /* float32 [1] */
    MUL_S8_GRAD_INPUT_OTHER = 2,        /* int8: the other forward input F (saved) */
    MUL_S8_GRAD_INPUT_GRAD_X = 3,       /* int8: gradient w.r.t. this input, written */
    MUL_S8_GRAD_INPUT_GRAD_X_SCALE = 4, /* float32 [1], written */
    MUL_S8_GRAD_INPUT_OPERANDS = 5
};

void mul_s8_grad_input_run(const void *params, void *const *operands, void *scratch);
size_t mul_s8_grad_input_scratch_size(const void *params);

#endif
