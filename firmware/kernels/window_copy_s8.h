/* Window copy between two NHWC tensors (batch 1): rows [src_y, src_y + copy_h) and columns
 * [src_x, src_x + copy_w) of the source land at (dst_y, dst_x) of the destination; nothing
 * else of the destination is written. The compiler guarantees both windows lie inside their
 * tensors and that the tensors do not overlap. No arithmetic: quantization is unchanged.
 * Layouts: source int8 [src_h, src_w, depth], destination int8 [dst_h, dst_w, depth]. */
#ifndef KERNELS_WINDOW_COPY_S8_H
#define KERNELS_WINDOW_COPY_S8_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "window_copy_s8.def"

#include "def_struct_end.h"

/* Operand order. */
enum { WINDOW_COPY_S8_INPUT = 0, WINDOW_COPY_S8_OUTPUT = 1, WINDOW_COPY_S8_OPERANDS = 2 };

void window_copy_s8_run(const void *params, void *const *operands, void *scratch);
size_t window_copy_s8_scratch_size(const void *params);

#endif
