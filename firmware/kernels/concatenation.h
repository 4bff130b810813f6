/* CONCATENATION (TFLite), bit-exact with TFLite's reference Concatenation: the inputs
 * joined along one axis. Values are copied, never requantized: TFLite's and TFLite Micro's
 * int8 kernels refuse inputs whose quantization differs from the output's, and so does the
 * lowering.
 * Operands: run_bytes (int32[num_inputs], a derived constant: each input's bytes per outer
 * row), the inputs in order, then the output. */
#ifndef KERNELS_CONCATENATION_H
#define KERNELS_CONCATENATION_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "concatenation.def"

#include "def_struct_end.h"

/* Operand order: CONCATENATION_RUN_BYTES, then num_inputs inputs from
 * CONCATENATION_FIRST_INPUT, then the output. The runtime passes at most 16 operands. */
enum { CONCATENATION_RUN_BYTES = 0, CONCATENATION_FIRST_INPUT = 1, CONCATENATION_MAX_INPUTS = 14 };

void concatenation_run(const void *params, void *const *operands, void *scratch);
size_t concatenation_scratch_size(const void *params);

#endif
