/* Backward of int8 2-D average pooling (avg_pool_s8) with respect to its input:
 *   G_x[b, y, x, c] = sum over the windows (oy, ox) containing (y, x) of
 *                     G_y[b, oy, ox, c] / count(oy, ox),
 * where count is the number of window elements inside the input, exactly as the forward
 * divides (padding neither summed nor counted; TFLite's and TensorFlow's AVERAGE_POOL
 * with SAME padding alike). The forward's rounding passes straight through (grad.h); its
 * fused activation is a mask applied to G_y beforehand (grad_apply_mask).
 *
 * Arithmetic: each quotient g_y / count is rounded (half away from zero) to the int32
 * fixed point g_y * 2^F / count, i.e. in units of s_y * 2^-F, and summed in int32; then
 * grad_requantize_s32 gives G_x its dynamic scale. F = 23 - ceil(log2(overlap)), where
 * overlap = ceil(filter_h / stride_h) * ceil(filter_w / stride_w) bounds the windows
 * that share one input element, so |acc| <= overlap * 128 * 2^F <= 2^30 (F = 23 for
 * non-overlapping windows). Each quotient is within 2^-(F+1) * s_y of exact: with
 * F = 23, 6e-8 * s_y, far below G_x's int8 quantum (>= s_y / (127 * count) for a non-zero
 * G_y). Quotients with a power-of-two count are exact.
 *
 * Layouts (NHWC): G_y int8 [batches, output_h, output_w, channels],
 *                 G_x int8 [batches, input_h, input_w, channels]; scales float32 [1].
 * G_x must not alias G_y. Scratch: int32 [batches * input_h * input_w * channels]. */
#ifndef KERNELS_AVG_POOL_S8_GRAD_INPUT_H
#define KERNELS_AVG_POOL_S8_GRAD_INPUT_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "avg_pool_s8_grad_input.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    AVG_POOL_S8_GRAD_INPUT_GRAD_Y = 0,       /* int8: gradient w.r.t. the pooled output */
    AVG_POOL_S8_GRAD_INPUT_GRAD_Y_SCALE = 1, /* float32 [1] */
    AVG_POOL_S8_GRAD_INPUT_GRAD_X = 2,       /* int8: gradient w.r.t. the input, written */
    AVG_POOL_S8_GRAD_INPUT_GRAD_X_SCALE = 3, /* float32 [1], written */
    AVG_POOL_S8_GRAD_INPUT_OPERANDS = 4
};

void avg_pool_s8_grad_input_run(const void *params, void *const *operands, void *scratch);
size_t avg_pool_s8_grad_input_scratch_size(const void *params);

#endif
