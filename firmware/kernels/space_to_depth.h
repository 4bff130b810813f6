/* SPACE_TO_DEPTH (TFLite), bit-exact with TFLite's reference SpaceToDepth:
 * output[b, y, x, (dy * bs + dx) * input_c + c] = input[b, y * bs + dy, x * bs + dx, c].
 * Values are copied, never requantized.
 * Layouts: input [batches, input_h, input_w, input_c], output
 * [batches, input_h / bs, input_w / bs, input_c * bs^2]. */
#ifndef KERNELS_SPACE_TO_DEPTH_H
#define KERNELS_SPACE_TO_DEPTH_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "space_to_depth.def"

#include "def_struct_end.h"

/* Operand order. */
enum { SPACE_TO_DEPTH_INPUT = 0, SPACE_TO_DEPTH_OUTPUT = 1, SPACE_TO_DEPTH_OPERANDS = 2 };

void space_to_depth_run(const void *params, void *const *operands, void *scratch);
size_t space_to_depth_scratch_size(const void *params);

#endif
