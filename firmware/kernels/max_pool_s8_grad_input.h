/* Backward of int8 2-D max pooling (max_pool_s8) with respect to its input:
 *   G_x[b, y, x, c] = sum over the windows (oy, ox) whose maximum is (y, x) of
 *                     G_y[b, oy, ox, c].
 * A window's maximum is the first element (row-major within the window, padding never
 * taking part) that holds the window's largest int8 value, as TensorFlow's MaxPoolGrad
 * picks it; int8 activations tie often, so the rule matters. It reads the forward input X
 * (a saved activation). The forward's fused activation is a mask applied to G_y beforehand
 * (grad_apply_mask). G_y's values are summed in int32 (exact: overlapping windows may
 * route several to one element) and requantized (grad_requantize_s32) to G_x's own
 * dynamic scale.
 * Layouts (NHWC): X int8 [batches, input_h, input_w, channels], G_y int8 [batches,
 * output_h, output_w, channels], G_x int8 like X; scales float32 [1]. G_x must not alias
 * G_y. Scratch: int32 [batches * input_h * input_w * channels]. */
#ifndef KERNELS_MAX_POOL_S8_GRAD_INPUT_H
#define KERNELS_MAX_POOL_S8_GRAD_INPUT_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "max_pool_s8_grad_input.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    MAX_POOL_S8_GRAD_INPUT_INPUT = 0,        /* int8: the forward input X (saved) */
    MAX_POOL_S8_GRAD_INPUT_GRAD_Y = 1,       /* int8: gradient w.r.t. the pooled output */
    MAX_POOL_S8_GRAD_INPUT_GRAD_Y_SCALE = 2, /* float32 [1] */
    MAX_POOL_S8_GRAD_INPUT_GRAD_X = 3,       /* int8: gradient w.r.t. the input, written */
    MAX_POOL_S8_GRAD_INPUT_GRAD_X_SCALE = 4, /* float32 [1], written */
    MAX_POOL_S8_GRAD_INPUT_OPERANDS = 5
};

void max_pool_s8_grad_input_run(const void *params, void *const *operands, void *scratch);
size_t max_pool_s8_grad_input_scratch_size(const void *params);

#endif
