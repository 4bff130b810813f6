/* int8 MAXIMUM / MINIMUM, bit-exact with TFLite's reference MaximumMinimumBroadcastSlow:
 * out = max(x1, x2) (or min) on the int8 values, which share one quantization.
 * Layouts: input1, input2, output int8, row-major; params.dim0..3 is the output shape and
 * each input is addressed through its own strides (0 along broadcast dimensions). */
#ifndef KERNELS_MAXIMUM_MINIMUM_S8_H
#define KERNELS_MAXIMUM_MINIMUM_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "maximum_minimum_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum {
    MAXIMUM_MINIMUM_S8_INPUT1 = 0,
    MAXIMUM_MINIMUM_S8_INPUT2 = 1,
    MAXIMUM_MINIMUM_S8_OUTPUT = 2,
    MAXIMUM_MINIMUM_S8_OPERANDS = 3
};

void maximum_minimum_s8_run(const void *params, void *const *operands, void *scratch);
size_t maximum_minimum_s8_scratch_size(const void *params);

#endif
