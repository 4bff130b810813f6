/* int8 softmax along the innermost dimension (TFLite SOFTMAX), bit-exact with TFLite's
 * reference_ops::Softmax<int8_t, int8_t>: per row, differences to the row maximum are
 * scaled to Q5.26 (input_multiplier, input_left_shift), exponentiated with gemmlowp's
 * fixed-point exp, summed in Q12.19, and each exp is multiplied by the fixed-point
 * reciprocal of the sum. Differences below diff_min contribute nothing and output -128.
 * Output quantization is fixed: scale 1/256, zero point -128.
 * Layouts: input, output int8 [outer_size, depth]. */
#ifndef KERNELS_SOFTMAX_S8_H
#define KERNELS_SOFTMAX_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "softmax_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { SOFTMAX_S8_INPUT = 0, SOFTMAX_S8_OUTPUT = 1, SOFTMAX_S8_OPERANDS = 2 };

void softmax_s8_run(const void *params, void *const *operands, void *scratch);
size_t softmax_s8_scratch_size(const void *params);

#endif
