/* int8 HARD_SWISH, bit-exact with TFLite's reference_ops::HardSwish<int8_t>: the input,
 * shifted to a 16-bit "hires" scale, is scaled once to the output scale and once to a
 * "reluish" value in [-1, 1] that represents clamp(x, -3, 3) / 3; the reluish value taken to
 * [0, 1] multiplies the first, rounding toward zero, then the output shift and zero point.
 * Layouts: input int8 [count], output int8 [count]. The output may alias the input. */
#ifndef KERNELS_HARD_SWISH_S8_H
#define KERNELS_HARD_SWISH_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "hard_swish_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { HARD_SWISH_S8_INPUT = 0, HARD_SWISH_S8_OUTPUT = 1, HARD_SWISH_S8_OPERANDS = 2 };

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in hard_swish_s8_dsp.c. */
void hard_swish_s8_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (hard_swish_s8.c), bit-exact with TFLite's reference; it calls no variant.
 */
void hard_swish_s8_ref_run(const void *params, void *const *operands, void *scratch);
size_t hard_swish_s8_scratch_size(const void *params);

#endif
