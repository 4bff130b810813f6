/* Weight and bias update of the int8 depthwise 2-D convolution (depthwise_conv2d_s8): one
 * SGD step with quantization-aware scaling, in place, exactly as conv2d_s8_grad_update.h
 * describes (same formulas, same float order, same rounding helpers), with
 *   acc[tap, c] = sum over (b, oy, ox) of g_q[.., c] * mask * (x_q - z_x)[b, y, x, c / M]
 * (M = depth_multiplier). The trained channels [0, train_rows) live in RAM as a compact
 * [filter_h, filter_w, train_rows] array; stochastic rounding draws once per trained weight,
 * channel by channel, taps in order. acc is exact in int32 while
 * batches * output_h * output_w <= 65,793.
 *
 * Layouts (NHWC, as depthwise_conv2d_s8; output_c = input_c * depth_multiplier):
 *   grad_output        int8    [batches, output_h, output_w, output_c]   g_q of G_y
 *   grad_output_scale  float32 [1]                                       s_g
 *   mask               uint8   clamp mask bits of G_y (grad.h; ignored when has_mask == 0)
 *   input              int8    [batches, input_h, input_w, input_c]      x_q saved by the
 *                              forward pass (read only when update_weights)
 *   weight_scales      float32 [output_c] (per_channel) or [1]           s_W
 *   trained_filter     int8    [filter_h, filter_w, train_rows]          updated in place
 *   trained_bias       int32   [train_bias_rows]                         updated in place
 *   rng_state          uint32  [1]  grad.h's xorshift32 state, advanced in place
 * Scratch: int32 [filter_h * filter_w] (one channel's gradient) when updating weights. */
#ifndef KERNELS_DEPTHWISE_CONV2D_S8_GRAD_UPDATE_H
#define KERNELS_DEPTHWISE_CONV2D_S8_GRAD_UPDATE_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "depthwise_conv2d_s8_grad_update.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    DEPTHWISE_CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT = 0,
    DEPTHWISE_CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT_SCALE = 1,
    DEPTHWISE_CONV2D_S8_GRAD_UPDATE_MASK = 2,
    DEPTHWISE_CONV2D_S8_GRAD_UPDATE_INPUT = 3,
    DEPTHWISE_CONV2D_S8_GRAD_UPDATE_WEIGHT_SCALES = 4,
    DEPTHWISE_CONV2D_S8_GRAD_UPDATE_TRAINED_FILTER = 5, /* in and out */
    DEPTHWISE_CONV2D_S8_GRAD_UPDATE_TRAINED_BIAS = 6,   /* in and out */
    DEPTHWISE_CONV2D_S8_GRAD_UPDATE_RNG_STATE = 7,      /* in and out */
    DEPTHWISE_CONV2D_S8_GRAD_UPDATE_OPERANDS = 8
};

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in depthwise_conv2d_s8_grad_update_dsp.c. */
void depthwise_conv2d_s8_grad_update_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (depthwise_conv2d_s8_grad_update.c), bit-exact with TFLite's reference; it
 * calls no variant. */
void depthwise_conv2d_s8_grad_update_ref_run(const void *params, void *const *operands,
                                             void *scratch);
size_t depthwise_conv2d_s8_grad_update_scratch_size(const void *params);

#endif
