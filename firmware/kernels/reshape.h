/* RESHAPE (TFLite RESHAPE): a reshape never moves row-major data, so this copies
 * params.nbytes bytes from input to output (nothing when they are the same buffer). The
 * shape operand TFLite carries is a constant the lowering has already checked; it is not
 * an operand here. */
#ifndef KERNELS_RESHAPE_H
#define KERNELS_RESHAPE_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "reshape.def"

#include "def_struct_end.h"

/* Operand order. */
enum { RESHAPE_INPUT = 0, RESHAPE_OUTPUT = 1, RESHAPE_OPERANDS = 2 };

void reshape_run(const void *params, void *const *operands, void *scratch);
size_t reshape_scratch_size(const void *params);

#endif
