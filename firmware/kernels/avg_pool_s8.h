/* int8 2-D average pooling (TFLite AVERAGE_POOL_2D), bit-exact with TFLite's
 * reference_integer_ops::AveragePool: the mean of the window's elements that lie inside
 * the input (padding is not counted), rounded half away from zero, then clamped to the
 * fused activation range. Input and output share quantization, so no rescaling.
 * Layouts (NHWC): input int8 [batches, input_h, input_w, channels],
 *                 output int8 [batches, output_h, output_w, channels]. */
#ifndef KERNELS_AVG_POOL_S8_H
#define KERNELS_AVG_POOL_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "avg_pool_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { AVG_POOL_S8_INPUT = 0, AVG_POOL_S8_OUTPUT = 1, AVG_POOL_S8_OPERANDS = 2 };

void avg_pool_s8_run(const void *params, void *const *operands, void *scratch);
size_t avg_pool_s8_scratch_size(const void *params);

#endif
