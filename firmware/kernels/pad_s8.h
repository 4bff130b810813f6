/* int8 constant padding (TFLite PAD), bit-exact with TFLite's reference_ops::Pad: the
 * input lands at offset (before0..3) of the output; every other output element is
 * params.pad_value (the output zero point, i.e. real 0.0). Quantization is unchanged.
 * Layouts: input int8 [in_dim0..3], output int8 [out_dim0..3], row-major. */
#ifndef KERNELS_PAD_S8_H
#define KERNELS_PAD_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "pad_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { PAD_S8_INPUT = 0, PAD_S8_OUTPUT = 1, PAD_S8_OPERANDS = 2 };

void pad_s8_run(const void *params, void *const *operands, void *scratch);
size_t pad_s8_scratch_size(const void *params);

#endif
