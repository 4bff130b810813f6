/* RESIZE_NEAREST_NEIGHBOR (TFLite), bit-exact with TFLite's reference
 * ResizeNearestNeighbor: each output pixel copies the input pixel TFLite's
 * GetNearestNeighbor picks, in the same float32 arithmetic (the build's -ffp-contract=off
 * keeps it identical on the host and the board). Values are copied, never requantized.
 * Layouts: input [batches, input_h, input_w, channels], output
 * [batches, output_h, output_w, channels]. */
#ifndef KERNELS_RESIZE_NEAREST_NEIGHBOR_H
#define KERNELS_RESIZE_NEAREST_NEIGHBOR_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "resize_nearest_neighbor.def"

#include "def_struct_end.h"

/* Operand order. */
enum {
    RESIZE_NEAREST_NEIGHBOR_INPUT = 0,
    RESIZE_NEAREST_NEIGHBOR_OUTPUT = 1,
    RESIZE_NEAREST_NEIGHBOR_OPERANDS = 2
};

void resize_nearest_neighbor_run(const void *params, void *const *operands, void *scratch);
size_t resize_nearest_neighbor_scratch_size(const void *params);

#endif
