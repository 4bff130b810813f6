/* int8 fully connected layer (TFLite FULLY_CONNECTED), bit-exact with TFLite's reference
 * kernel as kernels/fully_connected.cc runs it (reference_integer_ops::FullyConnected and
 * FullyConnectedPerChannel, the overloads taking float scales).
 *
 * Unlike CONV_2D and DEPTHWISE_CONV_2D, TFLite's reference FULLY_CONNECTED does not
 * requantize with a Q31 multiplier: it computes round(double(acc) * effective_scale) with
 * effective_scale = double(input_scale) * double(weights_scale[o]) / double(output_scale).
 * This kernel evaluates the same IEEE double expression (software doubles on a Cortex-M7,
 * same bits), once per output row. TFLite Micro uses the Q31 path instead, so its results can
 * differ from TFLite's (and these) by one quantum.
 *
 * Layouts (the input of any rank is read as [batches, input_depth], row-major):
 *   input          int8    [batches, input_depth]
 *   weights        int8    [output_depth, input_depth]
 *   bias           int32   [output_depth], or ignored (may be NULL) when params.has_bias == 0
 *   weight_scales  float32 [output_depth] when params.per_channel, else [1]
 *   output         int8    [batches, output_depth]
 * Per tensor, a weights zero point is honoured through filter_offset, as TFLite does; per
 * channel, weights are symmetric (filter_offset is 0).
 *
 * Training (sparse update): the rows being trained live in RAM, as their own operands,
 * initialised from the flash weights/bias by the runtime and updated in place by
 * fully_connected_s8_grad_update:
 *   trained_weights int8  [train_rows, input_depth]  rows [0, train_rows) read their weights
 *                         here instead of from weights (same filter_offset)
 *   trained_bias    int32 [train_bias_rows]  rows [0, train_bias_rows) read their bias here
 *                         (even when has_bias == 0) instead of from bias
 * For plain inference train_rows = train_bias_rows = 0 and both may be empty (NULL). */
#ifndef KERNELS_FULLY_CONNECTED_S8_H
#define KERNELS_FULLY_CONNECTED_S8_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "fully_connected_s8.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    FULLY_CONNECTED_S8_INPUT = 0,
    FULLY_CONNECTED_S8_WEIGHTS = 1,
    FULLY_CONNECTED_S8_BIAS = 2,
    FULLY_CONNECTED_S8_WEIGHT_SCALES = 3, /* float32 weights scales */
    FULLY_CONNECTED_S8_TRAINED_WEIGHTS = 4,
    FULLY_CONNECTED_S8_TRAINED_BIAS = 5,
    FULLY_CONNECTED_S8_OUTPUT = 6,
    FULLY_CONNECTED_S8_OPERANDS = 7
};

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in fully_connected_s8_dsp.c. */
void fully_connected_s8_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (fully_connected_s8.c), bit-exact with TFLite's reference; it calls no
 * variant. */
void fully_connected_s8_ref_run(const void *params, void *const *operands, void *scratch);
size_t fully_connected_s8_scratch_size(const void *params);

#endif
