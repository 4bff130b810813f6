/* The band of a streamed input: moves the rows the next band keeps to the band's start.
 * It fetches nothing itself: the runtime stops after it (rt_invoke_to_fetch) and its caller
 * writes the rows the operator names (rt_op_fetch) at band + keep_len, from wherever the
 * input comes from (the serial link on the board, the whole sample in the host twin).
 * Layout: the band, int8 or any bytes, [rows, columns, channels] of the input. */
#ifndef KERNELS_INPUT_ROWS_H
#define KERNELS_INPUT_ROWS_H

#include "kernel.h"

/* The .def is expanded between these two headers (kept in separate blocks so that include
 * sorting cannot reorder them). */
#include "def_struct.h"

#include "input_rows.def"

#include "def_struct_end.h"

/* Operand order: the band is read and written. */
enum { INPUT_ROWS_BAND = 0, INPUT_ROWS_OPERANDS = 1 };

void input_rows_run(const void *params, void *const *operands, void *scratch);
size_t input_rows_scratch_size(const void *params);

#endif
