/* int8 elementwise SUB, bit-exact with TFLite's reference SubElementwise: ADD's arithmetic
 * (add_s8.h) with the second scaled input subtracted instead of added.
 * Layouts: input1, input2, output int8, row-major; params.dim0..3 is the output shape and
 * each input is addressed through its own strides (0 along broadcast dimensions). */
#ifndef KERNELS_SUB_S8_H
#define KERNELS_SUB_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "sub_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { SUB_S8_INPUT1 = 0, SUB_S8_INPUT2 = 1, SUB_S8_OUTPUT = 2, SUB_S8_OPERANDS = 3 };

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in sub_s8_dsp.c. */
void sub_s8_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (sub_s8.c), bit-exact with TFLite's reference; it calls no variant. */
void sub_s8_ref_run(const void *params, void *const *operands, void *scratch);
/* The reference's scratch (none). */
size_t sub_s8_ref_scratch_size(const void *params);
/* The scratch the runtime plans for the operator (sub_s8_dsp.c): the DSP variant's two
 * tables where it takes the layer, whichever build runs the plan. */
size_t sub_s8_scratch_size(const void *params);

#endif
