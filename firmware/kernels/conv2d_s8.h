/* int8 2-D convolution (TFLite CONV_2D), bit-exact with TFLite's reference
 * reference_integer_ops::ConvPerChannel.
 *
 * Layouts (NHWC):
 *   input   int8  [batches, input_h, input_w, input_c]
 *   filter  int8  [output_c, filter_h, filter_w, input_c]   (zero point 0, as TFLite requires)
 *   bias    int32 [output_c], or ignored (may be NULL) when params.has_bias == 0
 *   output  int8  [batches, output_h, output_w, output_c]
 * Requantization: multipliers/shifts are TFLite's QuantizeMultiplier of
 * input_scale * filter_scale[c] / output_scale, one per output channel (per_channel == 1) or
 * a single pair for the whole tensor (per_channel == 0). Grouped convolution is not
 * supported (input_c must equal the filter's depth).
 *
 * Training (sparse update): the rows being trained live in RAM, as their own operands,
 * initialised from the flash filter/bias by the runtime and updated in place by
 * conv2d_s8_grad_update:
 *   trained_filter  int8  [train_rows, filter_h, filter_w, input_c]  output channels
 *                         [0, train_rows) read their weights here instead of from filter
 *   trained_bias    int32 [train_bias_rows]  output channels [0, train_bias_rows) read their
 *                         bias here (even when has_bias == 0) instead of from bias
 * For plain inference train_rows = train_bias_rows = 0 and both may be empty (NULL). */
#ifndef KERNELS_CONV2D_S8_H
#define KERNELS_CONV2D_S8_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "conv2d_s8.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    CONV2D_S8_INPUT = 0,
    CONV2D_S8_FILTER = 1,
    CONV2D_S8_BIAS = 2,
    CONV2D_S8_MULTIPLIERS = 3, /* int32 Q31 output multipliers */
    CONV2D_S8_SHIFTS = 4,      /* int32 shifts (>0 left, <0 right) */
    CONV2D_S8_TRAINED_FILTER = 5,
    CONV2D_S8_TRAINED_BIAS = 6,
    CONV2D_S8_OUTPUT = 7,
    CONV2D_S8_OPERANDS = 8
};

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in conv2d_s8_dsp.c. */
void conv2d_s8_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (conv2d_s8.c), bit-exact with TFLite's reference; it calls no variant. */
void conv2d_s8_ref_run(const void *params, void *const *operands, void *scratch);
/* The reference's scratch (none). */
size_t conv2d_s8_ref_scratch_size(const void *params);
/* The scratch the runtime plans for the operator (conv2d_s8_dsp.c): the DSP variants' buffer,
 * whichever build runs the plan, so one plan serves both. */
size_t conv2d_s8_scratch_size(const void *params);

#endif
