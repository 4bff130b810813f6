/* int8 -> int8 QUANTIZE, bit-exact with TFLite's reference Requantize:
 *   out = clamp(MultiplyByQuantizedMultiplier(x - input_zero_point, M, shift)
 *               + output_zero_point, -128, 127).
 * Layouts: input int8 [count], output int8 [count]. The output may alias the input. */
#ifndef KERNELS_REQUANTIZE_S8_H
#define KERNELS_REQUANTIZE_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "requantize_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { REQUANTIZE_S8_INPUT = 0, REQUANTIZE_S8_OUTPUT = 1, REQUANTIZE_S8_OPERANDS = 2 };

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in requantize_s8_dsp.c. */
void requantize_s8_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (requantize_s8.c), bit-exact with TFLite's reference; it calls no variant.
 */
void requantize_s8_ref_run(const void *params, void *const *operands, void *scratch);
size_t requantize_s8_scratch_size(const void *params);

#endif
