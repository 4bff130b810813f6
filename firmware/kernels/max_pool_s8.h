/* int8 2-D max pooling (TFLite MAX_POOL_2D), bit-exact with TFLite's
 * reference_integer_ops::MaxPool: the maximum of the window's elements that lie inside
 * the input, clamped to the fused activation range. Input and output share quantization.
 * Layouts (NHWC): input int8 [batches, input_h, input_w, channels],
 *                 output int8 [batches, output_h, output_w, channels]. */
#ifndef KERNELS_MAX_POOL_S8_H
#define KERNELS_MAX_POOL_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "max_pool_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { MAX_POOL_S8_INPUT = 0, MAX_POOL_S8_OUTPUT = 1, MAX_POOL_S8_OPERANDS = 2 };

void max_pool_s8_run(const void *params, void *const *operands, void *scratch);
size_t max_pool_s8_scratch_size(const void *params);

#endif
