/* The output layer's values before int8 saturation: what the loss is taken from.
 *
 * For a FULLY_CONNECTED output layer, or a CONV_2D whose filter covers its whole input
 * (MCUNet's 1x1 classifier on a 1x1 map, followed by RESHAPE), this computes exactly the
 * layer's requantized outputs q = requantize(acc) + output zero point, the very integers
 * the layer's own kernel computes (fully_connected_s8: round(acc * double scale); conv2d_s8:
 * TFLite's MultiplyByQuantizedMultiplier), but stops before the clamp to [-128, 127]. So
 * q equals the int8 output wherever that is not saturated, and beyond +127 / -128 it keeps
 * growing as the float model's logit does. The training step runs it after the forward
 * pass, with the layer's trained rows (the same RAM copies the forward pass read).
 *
 * Layouts (fully_connected_s8's, with an int32 output):
 *   input            int8    [batches, input_depth]
 *   weights          int8    [output_depth, input_depth] (a conv filter [out, kh, kw, c]
 *                            is that, row-major)
 *   bias             int32   [output_depth], or ignored when has_bias == 0
 *   scales           int32   [2 * output_depth] or [2]  (fixed_point == 0; else ignored):
 *                            fully_connected_s8's effective scales, doubles as word pairs
 *   multipliers      int32   [output_depth] or [1]      (fixed_point == 1; else ignored)
 *   shifts           int32   [output_depth] or [1]      (fixed_point == 1; else ignored)
 *   trained_weights  int8    [train_rows, input_depth]
 *   trained_bias     int32   [train_bias_rows]
 *   output           int32   [batches, output_depth]: q, saturated only at the int32 range
 * No scratch. */
#ifndef KERNELS_LOGITS_S32_H
#define KERNELS_LOGITS_S32_H

#include "fixedpoint.h"
#include "fully_connected_s8.h"
#include "kernel.h"

/* clang-format off */
#include "def_struct.h"
#include "logits_s32.def"
#include "def_struct_end.h"
/* clang-format on */

enum {
    LOGITS_S32_INPUT = 0,
    LOGITS_S32_WEIGHTS = 1,
    LOGITS_S32_BIAS = 2,
    LOGITS_S32_SCALES = 3,
    LOGITS_S32_MULTIPLIERS = 4,
    LOGITS_S32_SHIFTS = 5,
    LOGITS_S32_TRAINED_WEIGHTS = 6,
    LOGITS_S32_TRAINED_BIAS = 7,
    LOGITS_S32_OUTPUT = 8,
    LOGITS_S32_OPERANDS = 9
};

/* One output from its sum acc (bias included): the layer's requantization (the double scale,
 * or the Q31 multiplier and shift of channel ch), the zero point added, saturated only at the
 * int32 range. Shared by the reference and the DSP variant. */
static inline int32_t logits_s32_finish(const struct logits_s32_params *p, int32_t acc,
                                        double scale, const int32_t *multipliers,
                                        const int32_t *shifts, int32_t ch) {
    const int32_t r = p->fixed_point
                          ? fp_multiply_by_quantized_multiplier(acc, multipliers[ch], shifts[ch])
                          : fc_round_to_int32((double)acc * scale);
    /* int64: adding the zero point to a value near the int32 limits cannot wrap. */
    const int64_t q = (int64_t)r + p->output_offset;
    return (int32_t)(q > INT32_MAX ? INT32_MAX : (q < INT32_MIN ? INT32_MIN : q));
}

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it, else
 * the reference. It lives in logits_s32_dsp.c. */
void logits_s32_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (logits_s32.c); it calls no variant. */
void logits_s32_ref_run(const void *params, void *const *operands, void *scratch);
size_t logits_s32_scratch_size(const void *params);

#endif
