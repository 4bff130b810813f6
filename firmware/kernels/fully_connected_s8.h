/* int8 fully connected layer (TFLite FULLY_CONNECTED), bit-exact with TFLite's reference
 * kernel as kernels/fully_connected.cc runs it (reference_integer_ops::FullyConnected and
 * FullyConnectedPerChannel, the overloads taking float scales).
 *
 * Unlike CONV_2D and DEPTHWISE_CONV_2D, TFLite's reference FULLY_CONNECTED does not
 * requantize with a Q31 multiplier: it computes round(double(acc) * effective_scale) with
 * effective_scale = double(input_scale) * double(weights_scale[o]) / double(output_scale).
 * The effective scale, the same IEEE double expression in the same order, is computed once
 * when the model is lowered (pytools/model/lowering/conv.py, fc_effective_scales: the same
 * bits as C computes) and read from the plan; per output the kernel only rounds
 * double(acc) * scale (software doubles on a Cortex-M7, same bits). TFLite Micro uses the
 * Q31 path instead, so its results can differ from TFLite's (and these) by one quantum.
 *
 * Layouts (the input of any rank is read as [batches, input_depth], row-major):
 *   input          int8    [batches, input_depth]
 *   weights        int8    [output_depth, input_depth]
 *   bias           int32   [output_depth], or ignored (may be NULL) when params.has_bias == 0
 *   scales         int32   [2 * output_depth] when params.per_channel, else [2]: each row's
 *                          effective scale, a double as two words, the low word first
 *                          (fc_scale reads it)
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
    FULLY_CONNECTED_S8_SCALES = 3, /* the effective scales, doubles as int32 word pairs */
    FULLY_CONNECTED_S8_TRAINED_WEIGHTS = 4,
    FULLY_CONNECTED_S8_TRAINED_BIAS = 5,
    FULLY_CONNECTED_S8_OUTPUT = 6,
    FULLY_CONNECTED_S8_OPERANDS = 7
};

/* Row o's effective scale (entry o of the scales operand; o = 0 per tensor). */
static inline double fc_scale(const int32_t *scales, int32_t o) {
    union {
        uint32_t w[2];
        double d;
    } u = {{(uint32_t)scales[2 * o], (uint32_t)scales[2 * o + 1]}};
    return u.d;
}

/* std::round (halves away from zero) then int32, without libm. Saturates where TFLite's
 * static_cast<int32_t> would be undefined (|v| >= 2^31, i.e. an absurd effective scale). */
static inline int32_t fc_round_to_int32(double v) {
    if (v >= 2147483647.0) return INT32_MAX;
    if (v <= -2147483648.0) return INT32_MIN;
    int32_t t = (int32_t)v;    /* truncates toward zero */
    const double frac = v - t; /* exact: the fractional part of v */
    if (frac >= 0.5) t += 1;
    if (frac <= -0.5) t -= 1;
    return t;
}

/* One row's sum of (w + filter_offset) * (x + input_offset) over depth, as TFLite: a 32-bit
 * accumulator; each product is at most 255 * 255 in magnitude, so depths up to ~33000 cannot
 * overflow. The reference kernels' (fully_connected_s8.c, logits_s32.c) accumulation. */
static inline int32_t fc_row_sum(const int8_t *w, const int8_t *x, int32_t depth,
                                 int32_t filter_offset, int32_t input_offset) {
    int32_t acc = 0;
    for (int32_t i = 0; i < depth; ++i)
        acc += ((int32_t)w[i] + filter_offset) * ((int32_t)x[i] + input_offset);
    return acc;
}

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in fully_connected_s8_dsp.c. */
void fully_connected_s8_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (fully_connected_s8.c), bit-exact with TFLite's reference; it calls no
 * variant. */
void fully_connected_s8_ref_run(const void *params, void *const *operands, void *scratch);
size_t fully_connected_s8_scratch_size(const void *params);

#endif
