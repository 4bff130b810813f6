/* int8 RELU / RELU6 / RELU_N1_TO_1 operators, bit-exact with TFLite's ReluX:
 *   out = clamp(output_zero_point + MultiplyByQuantizedMultiplier(x - input_zero_point, M,
 *               shift), act_min, act_max).
 * Layouts: input int8 [count], output int8 [count]. The output may alias the input. */
#ifndef KERNELS_RELU_S8_H
#define KERNELS_RELU_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "relu_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { RELU_S8_INPUT = 0, RELU_S8_OUTPUT = 1, RELU_S8_OPERANDS = 2 };

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in relu_s8_dsp.c. */
void relu_s8_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (relu_s8.c), bit-exact with TFLite's reference; it calls no variant. */
void relu_s8_ref_run(const void *params, void *const *operands, void *scratch);
size_t relu_s8_scratch_size(const void *params);

#endif
