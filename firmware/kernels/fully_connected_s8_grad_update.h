/* Weight and bias update of the int8 fully connected layer (fully_connected_s8): one SGD step
 * with quantization-aware scaling, in place, exactly as conv2d_s8_grad_update.h describes
 * (same formulas, same float order, same rounding helpers), with
 *   acc[o, i] = sum over b of g_q[b, o] * mask * (x_q - z_x)[b, i]
 *   bsum[o]   = sum over b of g_q[b, o] * mask
 * Rows [0, train_rows) of the weights are trained (RAM copy trained_weights); stochastic
 * rounding draws once per trained weight in memory order. A weights zero point (per-tensor
 * layers only) does not enter the gradient; updated weights saturate to [-127, 127].
 *
 * Layouts (the input of any rank is read as [batches, input_depth], as fully_connected_s8):
 *   grad_output        int8    [batches, output_depth]      g_q of G_y
 *   grad_output_scale  float32 [1]                          s_g
 *   mask               uint8   clamp mask bits of G_y (grad.h; ignored when has_mask == 0)
 *   input              int8    [batches, input_depth]       x_q saved by the forward pass
 *                              (read only when update_weights)
 *   weight_scales      float32 [output_depth] (per_channel) or [1]
 *   trained_weights    int8    [train_rows, input_depth]    updated in place
 *   trained_bias       int32   [train_bias_rows]            updated in place
 *   rng_state          uint32  [1]  grad.h's xorshift32 state, advanced in place
 * Scratch: int32 [input_depth] (one row's gradient) when updating weights. */
#ifndef KERNELS_FULLY_CONNECTED_S8_GRAD_UPDATE_H
#define KERNELS_FULLY_CONNECTED_S8_GRAD_UPDATE_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "fully_connected_s8_grad_update.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    FULLY_CONNECTED_S8_GRAD_UPDATE_GRAD_OUTPUT = 0,
    FULLY_CONNECTED_S8_GRAD_UPDATE_GRAD_OUTPUT_SCALE = 1,
    FULLY_CONNECTED_S8_GRAD_UPDATE_MASK = 2,
    FULLY_CONNECTED_S8_GRAD_UPDATE_INPUT = 3,
    FULLY_CONNECTED_S8_GRAD_UPDATE_WEIGHT_SCALES = 4,
    FULLY_CONNECTED_S8_GRAD_UPDATE_TRAINED_WEIGHTS = 5, /* in and out */
    FULLY_CONNECTED_S8_GRAD_UPDATE_TRAINED_BIAS = 6,    /* in and out */
    FULLY_CONNECTED_S8_GRAD_UPDATE_RNG_STATE = 7,       /* in and out */
    FULLY_CONNECTED_S8_GRAD_UPDATE_OPERANDS = 8
};

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in fully_connected_s8_grad_update_dsp.c. */
void fully_connected_s8_grad_update_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (fully_connected_s8_grad_update.c), bit-exact with TFLite's reference; it
 * calls no variant. */
void fully_connected_s8_grad_update_ref_run(const void *params, void *const *operands,
                                            void *scratch);
/* The reference's scratch: one row's int32 sums (input_depth), none without a weight update. */
size_t fully_connected_s8_grad_update_ref_scratch_size(const void *params);
/* The scratch the runtime plans for the operator (fully_connected_s8_grad_update_dsp.c): the
 * larger of the reference's and the DSP variant's, whatever the build. */
size_t fully_connected_s8_grad_update_scratch_size(const void *params);

#endif
