/* int8 depthwise 2-D convolution (TFLite DEPTHWISE_CONV_2D), bit-exact with TFLite's
 * reference reference_integer_ops::DepthwiseConvPerChannel.
 *
 * Layouts (NHWC); output_c = input_c * depth_multiplier, and output channel
 * c * depth_multiplier + m is input channel c convolved with filter channel
 * c * depth_multiplier + m:
 *   input   int8  [batches, input_h, input_w, input_c]
 *   filter  int8  [1, filter_h, filter_w, output_c]          (zero point 0, as TFLite requires)
 *   bias    int32 [output_c], or ignored (may be NULL) when params.has_bias == 0
 *   output  int8  [batches, output_h, output_w, output_c]
 * Requantization as conv2d_s8: one multiplier/shift per output channel (per_channel == 1)
 * or one for the tensor (per_channel == 0).
 *
 * Training (sparse update): the channels being trained live in RAM, as their own operands,
 * initialised from the flash filter/bias by the runtime and updated in place by
 * depthwise_conv2d_s8_grad_update:
 *   trained_filter  int8  [filter_h, filter_w, train_rows]  (compact: only the trained
 *                         channels) output channels [0, train_rows) read their weights here
 *   trained_bias    int32 [train_bias_rows]  output channels [0, train_bias_rows) read their
 *                         bias here (even when has_bias == 0) instead of from bias
 * For plain inference train_rows = train_bias_rows = 0 and both may be empty (NULL). */
#ifndef KERNELS_DEPTHWISE_CONV2D_S8_H
#define KERNELS_DEPTHWISE_CONV2D_S8_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "depthwise_conv2d_s8.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    DEPTHWISE_CONV2D_S8_INPUT = 0,
    DEPTHWISE_CONV2D_S8_FILTER = 1,
    DEPTHWISE_CONV2D_S8_BIAS = 2,
    DEPTHWISE_CONV2D_S8_MULTIPLIERS = 3, /* int32 Q31 output multipliers */
    DEPTHWISE_CONV2D_S8_SHIFTS = 4,      /* int32 shifts (>0 left, <0 right) */
    DEPTHWISE_CONV2D_S8_TRAINED_FILTER = 5,
    DEPTHWISE_CONV2D_S8_TRAINED_BIAS = 6,
    DEPTHWISE_CONV2D_S8_OUTPUT = 7,
    DEPTHWISE_CONV2D_S8_OPERANDS = 8
};

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in depthwise_conv2d_s8_dsp.c. */
void depthwise_conv2d_s8_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (depthwise_conv2d_s8.c), bit-exact with TFLite's reference; it calls no
 * variant. */
void depthwise_conv2d_s8_ref_run(const void *params, void *const *operands, void *scratch);
/* The reference's scratch (none). */
size_t depthwise_conv2d_s8_ref_scratch_size(const void *params);
/* The scratch the runtime plans for the operator (depthwise_conv2d_s8_dsp.c): the DSP
 * variants' copy, whichever build runs the plan, so one plan serves both. */
size_t depthwise_conv2d_s8_scratch_size(const void *params);

#endif
