/* depthwise_conv2d_s8_grad_input, bit for bit, with a fraction of its scratch: instead of
 * int32 accumulators for the whole input gradient, it keeps one input channel's at a time.
 * A depthwise input channel's gradient depends only on its own output channels, so each
 * channel is accumulated on its own; the dynamic scale needs max|acc| over all channels
 * before any value can be rounded, so a first pass finds it and a second pass recomputes
 * each channel and rounds it (grad_requantize_s32's arithmetic). The accumulators, the
 * multipliers and the shift are the one-pass kernel's, so the output and its scale are
 * identical; the price is computing the gradient twice.
 * Operands and layouts: depthwise_conv2d_s8_grad_input.h's.
 * Scratch: int32 [batches * input_h * input_w] (one channel), then one Q23 multiplier per
 * output channel. */
#ifndef KERNELS_DEPTHWISE_CONV2D_S8_GRAD_INPUT_2PASS_H
#define KERNELS_DEPTHWISE_CONV2D_S8_GRAD_INPUT_2PASS_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "depthwise_conv2d_s8_grad_input_2pass.def"
#include "def_struct_end.h"
/* clang-format on */

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in depthwise_conv2d_s8_grad_input_2pass_dsp.c. */
void depthwise_conv2d_s8_grad_input_2pass_run(const void *params, void *const *operands,
                                              void *scratch);
/* The reference kernel (depthwise_conv2d_s8_grad_input_2pass.c), bit-exact with TFLite's reference;
 * it calls no variant. */
void depthwise_conv2d_s8_grad_input_2pass_ref_run(const void *params, void *const *operands,
                                                  void *scratch);
/* The reference's scratch (above). */
size_t depthwise_conv2d_s8_grad_input_2pass_ref_scratch_size(const void *params);
/* The scratch the runtime plans for the operator (depthwise_conv2d_s8_grad_input_2pass_dsp.c):
 * the larger of the reference's and the DSP variant's layout, whatever the build (the host twin
 * switches between the two at run time, so one plan runs on both). */
size_t depthwise_conv2d_s8_grad_input_2pass_scratch_size(const void *params);

#endif
