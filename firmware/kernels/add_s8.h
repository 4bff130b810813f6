/* int8 elementwise ADD, bit-exact with TFLite's reference_integer_ops::AddFunc:
 *   each input is offset by its zero point, shifted left by 20, scaled by its multiplier
 *   to a common scale (2 * the larger input scale), summed, scaled to the output, offset
 *   by the output zero point and clamped to the fused activation range.
 * Layouts: input1, input2, output int8, row-major; params.dim0..3 is the output shape and
 * each input is addressed through its own strides (0 along broadcast dimensions). The
 * output may alias an input of the same shape. */
#ifndef KERNELS_ADD_S8_H
#define KERNELS_ADD_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "add_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { ADD_S8_INPUT1 = 0, ADD_S8_INPUT2 = 1, ADD_S8_OUTPUT = 2, ADD_S8_OPERANDS = 3 };

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in add_s8_dsp.c. */
void add_s8_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (add_s8.c), bit-exact with TFLite's reference; it calls no variant. */
void add_s8_ref_run(const void *params, void *const *operands, void *scratch);
/* The reference's scratch (none). */
size_t add_s8_ref_scratch_size(const void *params);
/* The scratch the runtime plans for the operator (add_s8_dsp.c): the DSP variant's two
 * tables where it takes the layer, whichever build runs the plan. */
size_t add_s8_scratch_size(const void *params);

#endif
