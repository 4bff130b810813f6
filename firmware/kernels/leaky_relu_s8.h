/* int8 LEAKY_RELU, bit-exact with TFLite's reference QuantizeLeakyRelu:
 *   v = x - input_zero_point;
 *   out = clamp(output_zero_point + MultiplyByQuantizedMultiplier(v, v >= 0 ? identity :
 *               alpha), -128, 127).
 * Layouts: input int8 [count], output int8 [count]. The output may alias the input. */
#ifndef KERNELS_LEAKY_RELU_S8_H
#define KERNELS_LEAKY_RELU_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "leaky_relu_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { LEAKY_RELU_S8_INPUT = 0, LEAKY_RELU_S8_OUTPUT = 1, LEAKY_RELU_S8_OPERANDS = 2 };

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in leaky_relu_s8_dsp.c. */
void leaky_relu_s8_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (leaky_relu_s8.c), bit-exact with TFLite's reference; it calls no variant.
 */
void leaky_relu_s8_ref_run(const void *params, void *const *operands, void *scratch);
size_t leaky_relu_s8_scratch_size(const void *params);

#endif
