/* Backward of nearest-neighbour resizing (resize_nearest_neighbor) with respect to its
 * input: every output pixel is a copy of one input pixel, so
 *   G_x[b, r, c, ch] = sum over the output pixels (y, x) with rows[y] = r and cols[x] = c
 *                      of G_y[b, y, x, ch]
 * (an upsampling by k sums k x k gradients into each input pixel; an input pixel no output
 * reads gets 0). G_y's values are summed in int32 (exact) and requantized
 * (grad_requantize_s32) to G_x's own dynamic scale.
 * Layouts (NHWC): G_y int8 [batches, output_h, output_w, channels], rows int32 [output_h],
 * cols int32 [output_w] (the input row / column each output row / column copies), G_x int8
 * [batches, input_h, input_w, channels]; scales float32 [1]. G_x must not alias G_y.
 * Scratch: int32 [batches * input_h * input_w * channels]. */
#ifndef KERNELS_RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_H
#define KERNELS_RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "resize_nearest_neighbor_grad_input.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_GRAD_Y = 0,       /* int8: gradient w.r.t. the output */
    RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_GRAD_Y_SCALE = 1, /* float32 [1] */
    RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_ROWS = 2,         /* int32 [output_h], constant */
    RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_COLS = 3,         /* int32 [output_w], constant */
    RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_GRAD_X = 4,       /* int8: gradient w.r.t. the input */
    RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_GRAD_X_SCALE = 5, /* float32 [1], written */
    RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_OPERANDS = 6
};

void resize_nearest_neighbor_grad_input_run(const void *params, void *const *operands,
                                            void *scratch);
size_t resize_nearest_neighbor_grad_input_scratch_size(const void *params);

#endif
