/* int8 elementwise MUL, bit-exact with TFLite's reference_integer_ops::MulElementwise:
 *   out = clamp(MultiplyByQuantizedMultiplier((x1 + offset1) * (x2 + offset2), M, shift)
 *               + output_offset, act_min, act_max).
 * Layouts: input1, input2, output int8, row-major; params.dim0..3 is the output shape and
 * each input is addressed through its own strides (0 along broadcast dimensions), so a
 * squeeze-excite scale [1, 1, 1, C] multiplies a [1, H, W, C] map in place of a copy. The
 * output may alias an input of the output's shape. */
#ifndef KERNELS_MUL_S8_H
#define KERNELS_MUL_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "mul_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { MUL_S8_INPUT1 = 0, MUL_S8_INPUT2 = 1, MUL_S8_OUTPUT = 2, MUL_S8_OPERANDS = 3 };

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in mul_s8_dsp.c. */
void mul_s8_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (mul_s8.c), bit-exact with TFLite's reference; it calls no variant. */
void mul_s8_ref_run(const void *params, void *const *operands, void *scratch);
size_t mul_s8_scratch_size(const void *params);

#endif
