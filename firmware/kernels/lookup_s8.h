/* int8 table lookup: out[i] = table[(uint8_t)in[i]], bit-exact with TFLite's int8
 * LOGISTIC and TANH (EvalUsingLookupTable) given the table they build.
 * Layouts: input int8 [count], table int8 [256] indexed by the input's byte, output int8
 * [count]. The output may alias the input. */
#ifndef KERNELS_LOOKUP_S8_H
#define KERNELS_LOOKUP_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "lookup_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { LOOKUP_S8_INPUT = 0, LOOKUP_S8_TABLE = 1, LOOKUP_S8_OUTPUT = 2, LOOKUP_S8_OPERANDS = 3 };

void lookup_s8_run(const void *params, void *const *operands, void *scratch);
size_t lookup_s8_scratch_size(const void *params);

#endif
