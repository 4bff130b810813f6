/* Input gradient of the int8 fully connected layer (fully_connected_s8):
 *   G_z = G_y * mask,   G_x[b, i] = sum_o G_z[b, o] * s_W[o] * (W_q[o, i] - z_W)
 * returned as int8 with the dynamic scale max|G_x| / 127 (grad.h). The per-row weight scales
 * are folded into the gradient in fixed point exactly as conv2d_s8_grad_input.h describes
 * (Q23 multipliers of s_W[o] / max s_W, one rounding per term, shift chosen per call from the
 * weights so no int32 accumulator can overflow). About 24 - log2(sum_o |W_q[o, i]|)
 * fractional bits remain per term: 14 for 10 full-range rows, 8 for 1000.
 *
 * Layouts (the input of any rank is read as [batches, input_depth], as fully_connected_s8):
 *   grad_output        int8    [batches, output_depth]          g_q of G_y
 *   grad_output_scale  float32 [1]                              s_g
 *   mask               uint8   clamp mask bits of G_y (grad.h; ignored when has_mask == 0)
 *   weights            int8    [output_depth, input_depth]      the model's (flash)
 *   trained_weights    int8    [train_rows, input_depth]        RAM copy of the rows being
 *                              trained (their current values; may be NULL if none)
 *   weight_scales      float32 [output_depth] (per_channel) or [1]
 *   grad_input         int8    [batches, input_depth]           output: G_x quanta
 *   grad_input_scale   float32 [1]                              output: its scale
 * Scratch: int32 accumulators for the whole input, then one Q23 multiplier per row. */
#ifndef KERNELS_FULLY_CONNECTED_S8_GRAD_INPUT_H
#define KERNELS_FULLY_CONNECTED_S8_GRAD_INPUT_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "fully_connected_s8_grad_input.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    FULLY_CONNECTED_S8_GRAD_INPUT_GRAD_OUTPUT = 0,
    FULLY_CONNECTED_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE = 1,
    FULLY_CONNECTED_S8_GRAD_INPUT_MASK = 2,
    FULLY_CONNECTED_S8_GRAD_INPUT_WEIGHTS = 3,
    FULLY_CONNECTED_S8_GRAD_INPUT_TRAINED_WEIGHTS = 4,
    FULLY_CONNECTED_S8_GRAD_INPUT_WEIGHT_SCALES = 5,
    FULLY_CONNECTED_S8_GRAD_INPUT_GRAD_INPUT = 6,
    FULLY_CONNECTED_S8_GRAD_INPUT_GRAD_INPUT_SCALE = 7,
    FULLY_CONNECTED_S8_GRAD_INPUT_OPERANDS = 8
};

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in fully_connected_s8_grad_input_dsp.c. */
void fully_connected_s8_grad_input_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (fully_connected_s8_grad_input.c), bit-exact with TFLite's reference; it
 * calls no variant. */
void fully_connected_s8_grad_input_ref_run(const void *params, void *const *operands,
                                           void *scratch);
/* The reference's scratch. */
size_t fully_connected_s8_grad_input_ref_scratch_size(const void *params);
/* The scratch the runtime plans (fully_connected_s8_grad_input_dsp.c): the DSP variant runs
 * the layer as a 1x1 convolution's input gradient, so that kernel's scratch where it does. */
size_t fully_connected_s8_grad_input_scratch_size(const void *params);

#endif
