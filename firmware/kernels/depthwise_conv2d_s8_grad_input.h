/* Input gradient of the int8 depthwise 2-D convolution (depthwise_conv2d_s8):
 *   G_z = G_y * mask,   G_x[.., ic] = sum over m, taps of G_z[.., ic * depth_multiplier + m]
 *                                      * W_real[tap, ic * depth_multiplier + m]
 * returned as int8 with the dynamic scale max|G_x| / 127 (grad.h). The per-channel weight
 * scales are folded into the gradient in fixed point exactly as conv2d_s8_grad_input.h
 * describes (Q23 multipliers of s_W[c] / max s_W, one rounding per term, shift chosen per
 * call from the weights so no int32 accumulator can overflow, and at least
 * CONV_GRAD_MIN_SHIFT_16, so every term fits 16 bits): the folding adds <= 2^-9 of a G_y
 * quantum per term.
 *
 * Layouts (NHWC, as depthwise_conv2d_s8; output_c = input_c * depth_multiplier):
 *   grad_output        int8    [batches, output_h, output_w, output_c]   g_q of G_y
 *   grad_output_scale  float32 [1]                                       s_g
 *   mask               uint8   clamp mask bits of G_y (grad.h; ignored when has_mask == 0)
 *   filter             int8    [1, filter_h, filter_w, output_c]         the model's (flash)
 *   trained_filter     int8    [filter_h, filter_w, train_rows]          compact RAM copy of
 *                              the channels [0, train_rows) being trained (may be NULL if none)
 *   weight_scales      float32 [output_c] (per_channel) or [1]           s_W
 *   grad_input         int8    [batches, input_h, input_w, input_c]      output: G_x quanta
 *   grad_input_scale   float32 [1]                                       output: its scale
 * Scratch: int32 accumulators for the whole input, then one Q23 multiplier per channel. */
#ifndef KERNELS_DEPTHWISE_CONV2D_S8_GRAD_INPUT_H
#define KERNELS_DEPTHWISE_CONV2D_S8_GRAD_INPUT_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "depthwise_conv2d_s8_grad_input.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT = 0,
    DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE = 1,
    DEPTHWISE_CONV2D_S8_GRAD_INPUT_MASK = 2,
    DEPTHWISE_CONV2D_S8_GRAD_INPUT_FILTER = 3,
    DEPTHWISE_CONV2D_S8_GRAD_INPUT_TRAINED_FILTER = 4,
    DEPTHWISE_CONV2D_S8_GRAD_INPUT_WEIGHT_SCALES = 5,
    DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT = 6,
    DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE = 7,
    DEPTHWISE_CONV2D_S8_GRAD_INPUT_OPERANDS = 8
};

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in depthwise_conv2d_s8_grad_input_dsp.c. */
void depthwise_conv2d_s8_grad_input_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (depthwise_conv2d_s8_grad_input.c), bit-exact with TFLite's reference; it
 * calls no variant. */
void depthwise_conv2d_s8_grad_input_ref_run(const void *params, void *const *operands,
                                            void *scratch);
size_t depthwise_conv2d_s8_grad_input_scratch_size(const void *params);

#endif
