/* TRANSPOSE (TFLite TRANSPOSE), bit-exact with TFLite's reference_ops::Transpose:
 * output[i0, ..., i5] = input[j] with j_perm[k] = i_k. Values are copied, never requantized
 * (TFLite's int8 kernel copies the quanta whatever the quantization says).
 * Layouts: input [in_dim0..5], output [in_dim_perm0..5], row-major. */
#ifndef KERNELS_TRANSPOSE_H
#define KERNELS_TRANSPOSE_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "transpose.def"

#include "def_struct_end.h"

/* Operand order. */
enum { TRANSPOSE_INPUT = 0, TRANSPOSE_OUTPUT = 1, TRANSPOSE_OPERANDS = 2 };

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in transpose_dsp.c. */
void transpose_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (transpose.c), bit-exact with TFLite's reference; it calls no variant. */
void transpose_ref_run(const void *params, void *const *operands, void *scratch);
size_t transpose_scratch_size(const void *params);

#endif
