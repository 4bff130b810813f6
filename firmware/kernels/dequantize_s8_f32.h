/* int8 -> float32 (TFLite DEQUANTIZE), bit-exact with TFLite's
 * reference_integer_ops::Dequantize: x = (float)((double)scale * (q - zero_point)).
 * Layouts: input int8 [count], output float32 [count]. */
#ifndef KERNELS_DEQUANTIZE_S8_F32_H
#define KERNELS_DEQUANTIZE_S8_F32_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "dequantize_s8_f32.def"

#include "def_struct_end.h"

/* Operand order. */
enum { DEQUANTIZE_S8_F32_INPUT = 0, DEQUANTIZE_S8_F32_OUTPUT = 1, DEQUANTIZE_S8_F32_OPERANDS = 2 };

void dequantize_s8_f32_run(const void *params, void *const *operands, void *scratch);
size_t dequantize_s8_f32_scratch_size(const void *params);

#endif
