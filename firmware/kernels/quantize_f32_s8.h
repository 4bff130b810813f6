/* float32 -> int8 (TFLite QUANTIZE), bit-exact with TFLite's reference_ops::AffineQuantize:
 *   q = clamp(round_half_away_from_zero(x / scale) + zero_point, -128, 127)
 * with the division in float, as TFLite's reference does it (its scale is a double, cast
 * back to float for the division). The float quotient is rounded before std::round, so a
 * value just below (k + 1/2) * scale may still round away: a double division would not.
 * Layouts: input float32 [count], output int8 [count]. */
#ifndef KERNELS_QUANTIZE_F32_S8_H
#define KERNELS_QUANTIZE_F32_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "quantize_f32_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { QUANTIZE_F32_S8_INPUT = 0, QUANTIZE_F32_S8_OUTPUT = 1, QUANTIZE_F32_S8_OPERANDS = 2 };

void quantize_f32_s8_run(const void *params, void *const *operands, void *scratch);
size_t quantize_f32_s8_scratch_size(const void *params);

#endif
