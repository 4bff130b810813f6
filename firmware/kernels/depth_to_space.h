/* DEPTH_TO_SPACE (TFLite), bit-exact with TFLite's reference DepthToSpace:
 * output[b, y * bs + dy, x * bs + dx, c] = input[b, y, x, (dy * bs + dx) * out_c + c],
 * out_c = input_c / bs^2. Values are copied, never requantized.
 * Layouts: input [batches, input_h, input_w, input_c], output
 * [batches, input_h * bs, input_w * bs, input_c / bs^2]. */
#ifndef KERNELS_DEPTH_TO_SPACE_H
#define KERNELS_DEPTH_TO_SPACE_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "depth_to_space.def"

#include "def_struct_end.h"

/* Operand order. */
enum { DEPTH_TO_SPACE_INPUT = 0, DEPTH_TO_SPACE_OUTPUT = 1, DEPTH_TO_SPACE_OPERANDS = 2 };

void depth_to_space_run(const void *params, void *const *operands, void *scratch);
size_t depth_to_space_scratch_size(const void *params);

#endif
