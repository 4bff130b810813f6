/* int8 MEAN over a set of axes, bit-exact with TFLite's reference_ops::QuantizedMeanOrSum
 * (what both TFLite's reference kernels and TFLite Micro run for int8 MEAN, whatever the
 * axes, keep_dims or quantization):
 *   out = clamp(MultiplyByQuantizedMultiplier(sum(q) - count * input_zero_point,
 *                                             multiplier, shift) + output_zero_point)
 * where multiplier/shift already fold in 1/count, exactly as TFLite derives them.
 * Layouts: input int8 [dim0, dim1, dim2, dim3]; output int8 holding the kept dimensions
 * in the same order. */
#ifndef KERNELS_MEAN_S8_H
#define KERNELS_MEAN_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "mean_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { MEAN_S8_INPUT = 0, MEAN_S8_OUTPUT = 1, MEAN_S8_OPERANDS = 2 };

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in mean_s8_dsp.c. */
void mean_s8_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (mean_s8.c), bit-exact with TFLite's reference; it calls no variant. */
void mean_s8_ref_run(const void *params, void *const *operands, void *scratch);
size_t mean_s8_scratch_size(const void *params);

#endif
