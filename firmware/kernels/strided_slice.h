/* STRIDED_SLICE and SLICE (TFLite), bit-exact with TFLite's reference StridedSlice and
 * Slice: output[i0..i4] = input[start0 + i0 * step0, ..., start4 + i4 * step4]. Values are
 * copied, never requantized (as TFLite's int8 kernels do).
 * Layouts: input [in_dim0..4], output [out_dim0..4], row-major. */
#ifndef KERNELS_STRIDED_SLICE_H
#define KERNELS_STRIDED_SLICE_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "strided_slice.def"

#include "def_struct_end.h"

/* Operand order. */
enum { STRIDED_SLICE_INPUT = 0, STRIDED_SLICE_OUTPUT = 1, STRIDED_SLICE_OPERANDS = 2 };

void strided_slice_run(const void *params, void *const *operands, void *scratch);
size_t strided_slice_scratch_size(const void *params);

#endif
