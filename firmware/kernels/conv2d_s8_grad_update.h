/* Weight and bias update of the int8 2-D convolution (conv2d_s8): one SGD step with
 * quantization-aware scaling (docs/method.md sections 3-5), applied in place to the RAM copy
 * of the slice being trained, right after its gradient is computed.
 *
 * With G_z = G_y * mask (G_y = s_g * g_q, grad.h) and x_real = s_x * (x_q - z_x):
 *   dL/dW_real[c, fy, fx, k] = s_g * s_x * acc,  acc = sum over (b, oy, ox) of
 *                              g_q[.., c] * mask * (x_q - z_x)[b, y, x, k]   (int32, exact)
 *   dL/db_real[c]            = s_g * bsum,       bsum = sum over (b, oy, ox) of g_q * mask
 * QAS (G~_W = G_Wq * s_W^-2 with G_Wq = s_W * dL/dW_real; G~_b = G_bq * s_W^-2 * s_x^-2) makes
 * plain SGD on the integers equal to float SGD on the real values:
 *   W_q[c, ..] += stochastic_round(-(lr * s_g * s_x / s_W[c]) * acc), saturated to [-127, 127]
 *   b_q[c]     += round(-(lr * s_g / (s_W[c] * s_x)) * bsum), saturated to int32
 * The factors are float32, evaluated in exactly that order (host and board agree bit for bit);
 * stochastic_round is grad_stochastic_round (one draw from the state per trained weight, in
 * trained_filter's memory order, only when update_weights), the bias rounds half away from
 * zero. acc is exact in int32 while batches * output_h * output_w <= 65,793 (|g_q| <= 128,
 * |x_q - z_x| <= 255).
 *
 * Slices: weights of output channels [0, train_rows) (rows of the [output_c, ...] filter,
 * held in RAM as trained_filter), or of input channels [0, train_cols) of every output channel
 * (trained_filter [output_c, filter_h, filter_w, train_cols], input [batches, input_h, input_w,
 * train_cols]: only those channels are saved; conv2d_train.h), biases of output channels
 * [0, train_bias_rows) (in RAM as trained_bias). Bias-only updates (update_weights = 0) need
 * neither input nor scratch.
 *
 * Layouts (NHWC, as conv2d_s8):
 *   grad_output        int8    [batches, output_h, output_w, output_c]   g_q of G_y
 *                              ([batches, 1, 1, output_c] with grad_broadcast: every output
 *                              pixel of an image reads its one row; the mask stays per pixel)
 *   grad_output_scale  float32 [1]                                       s_g
 *   mask               uint8   clamp mask bits of G_y (grad.h; ignored when has_mask == 0)
 *   input              int8    [batches, input_h, input_w, input_c]      x_q saved by the
 *                              forward pass (read only when update_weights)
 *   weight_scales      float32 [output_c] (per_channel) or [1]           s_W
 *   trained_filter     int8    [train_rows, filter_h, filter_w, input_c] updated in place
 *   trained_bias       int32   [train_bias_rows]                         updated in place
 *   rng_state          uint32  [1]  grad.h's xorshift32 state, advanced in place
 * Scratch: int32 [filter_h * filter_w * input_c] (one channel's gradient) when updating
 * weights. */
#ifndef KERNELS_CONV2D_S8_GRAD_UPDATE_H
#define KERNELS_CONV2D_S8_GRAD_UPDATE_H

#include "conv2d_s8_grad_input.h" /* conv_grad_masked */
#include "grad.h"
#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "conv2d_s8_grad_update.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT = 0,
    CONV2D_S8_GRAD_UPDATE_GRAD_OUTPUT_SCALE = 1,
    CONV2D_S8_GRAD_UPDATE_MASK = 2,
    CONV2D_S8_GRAD_UPDATE_INPUT = 3,
    CONV2D_S8_GRAD_UPDATE_WEIGHT_SCALES = 4,
    CONV2D_S8_GRAD_UPDATE_TRAINED_FILTER = 5, /* in and out */
    CONV2D_S8_GRAD_UPDATE_TRAINED_BIAS = 6,   /* in and out */
    CONV2D_S8_GRAD_UPDATE_RNG_STATE = 7,      /* in and out */
    CONV2D_S8_GRAD_UPDATE_OPERANDS = 8
};

/* The scratch of the DSP variant with SMLAD over the spatial dimension
 * (conv2d_s8_grad_update_spatial_dsp.c), 0 where it does not take the layer: the input
 * transposed (filter_size x ceil(P / 2) words, P output positions), eight rows' packed
 * gradients and two rows' sums. It takes weight updates of at least GU_SPATIAL_MIN_ROWS rows over
 * at most GU_SPATIAL_MAX_POSITIONS positions whose transposed input fits GU_SPATIAL_MAX_BYTES; p as
 * the update kernels view it (CONV_TRAIN_COLS_AS_LAYER). The operator's scratch size
 * (conv2d_s8_grad_update_scratch_size, conv2d_s8_grad_update_dsp.c) covers it. */
#define GU_SPATIAL_MAX_POSITIONS 64
#define GU_SPATIAL_MAX_BYTES 6144
#define GU_SPATIAL_MIN_ROWS 4
static inline size_t conv_grad_update_spatial_bytes(const struct conv2d_s8_grad_update_params *p) {
    const int32_t positions = p->batches * p->output_h * p->output_w;
    const size_t taps = (size_t)p->filter_h * (size_t)p->filter_w * (size_t)p->input_c;
    const size_t pw = (size_t)(positions + 1) / 2;
    if (!p->update_weights || p->train_rows < GU_SPATIAL_MIN_ROWS || positions < 2 ||
        positions > GU_SPATIAL_MAX_POSITIONS || taps * pw * 4u > GU_SPATIAL_MAX_BYTES)
        return 0;
    return (taps * pw + 8 * pw + 2 * taps) * sizeof(uint32_t);
}

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in conv2d_s8_grad_update_dsp.c. */
void conv2d_s8_grad_update_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (conv2d_s8_grad_update.c), bit-exact with TFLite's reference; it calls no
 * variant. */
void conv2d_s8_grad_update_ref_run(const void *params, void *const *operands, void *scratch);
/* The reference's scratch: one row's int32 sums (filter_size), none without a weight update. */
size_t conv2d_s8_grad_update_ref_scratch_size(const void *params);
/* The scratch the runtime plans for the operator (conv2d_s8_grad_update_dsp.c): the larger of
 * the reference's and the DSP variant's for the layer, whatever the build (the host twin
 * switches between the two at run time, so one plan runs on both). */
size_t conv2d_s8_grad_update_scratch_size(const void *params);

/* --- The SGD steps shared by the *_grad_update kernels (conv2d_s8, depthwise_conv2d_s8,
 * fully_connected_s8), so the three round identically. --------------------------------------- */

/* w + stochastic_round(v), saturated to [-127, 127]. |v| is capped at 256 first (the result
 * saturates anyway; the cap keeps the float-to-int conversion defined), NaN counts as 0. */
static inline int8_t conv_grad_step_weight(int8_t w, float v, uint32_t *rng) {
    if (v > 256.0f)
        v = 256.0f;
    else if (v < -256.0f)
        v = -256.0f;
    else if (v != v)
        v = 0.0f;
    const int32_t n = (int32_t)w + grad_stochastic_round(v, rng);
    return (int8_t)(n > 127 ? 127 : (n < -127 ? -127 : n));
}

/* b + round(v) (halves away from zero), saturated to int32; NaN counts as 0. */
static inline int32_t conv_grad_step_bias(int32_t b, float v) {
    const float cap = 4294967296.0f; /* 2^32: beyond it the sum saturates whatever b is */
    if (v > cap)
        v = cap;
    else if (v < -cap)
        v = -cap;
    else if (v != v)
        v = 0.0f;
    int64_t d = (int64_t)v;          /* truncation */
    const float frac = v - (float)d; /* exact: below 2^24 d is exact, above it v is whole */
    if (frac >= 0.5f) d++;
    if (frac <= -0.5f) d--;
    const int64_t n = (int64_t)b + d;
    return (int32_t)(n > INT32_MAX ? INT32_MAX : (n < INT32_MIN ? INT32_MIN : n));
}

/* The QAS factors of one channel: the int8 weight step per unit of the int32 weight-gradient
 * accumulator, and the int32 bias step per unit of the gradient sum. */
static inline float conv_grad_weight_factor(float lr, float grad_scale, float input_scale,
                                            float weight_scale) {
    return -(lr * grad_lr_scale * grad_scale * input_scale / weight_scale);
}

static inline float conv_grad_bias_factor(float lr, float grad_scale, float input_scale,
                                          float weight_scale) {
    return -(lr * grad_lr_scale * grad_scale / (weight_scale * input_scale));
}

/* The bias step of output channels [0, rows) of a layer whose output gradient is laid out
 * [positions][channels] (conv and depthwise: batch x height x width pixels; fully connected:
 * batch rows): each channel's masked gradient summed over the positions, times its QAS
 * factor, added to the int32 bias with rounding and saturation. pixels (conv_grad_pixels,
 * conv2d_s8_grad_input.h): 0, or with grad_broadcast the positions of an image, which then
 * share one gradient row (the mask stays per position). */
static inline void conv_grad_update_bias_at(int32_t *bias, int32_t rows, size_t positions,
                                            size_t channels, const int8_t *grad_out,
                                            const uint8_t *mask, float lr, float grad_scale,
                                            float input_scale, const float *scales,
                                            int32_t per_channel, size_t pixels) {
    for (int32_t c = 0; c < rows; ++c) {
        int32_t sum = 0;
        for (size_t pos = 0; pos < positions; ++pos)
            sum += conv_grad_masked_at(grad_out, mask, pos, channels, (size_t)c, pixels);
        const float f =
            conv_grad_bias_factor(lr, grad_scale, input_scale, scales[per_channel ? c : 0]);
        bias[c] = conv_grad_step_bias(bias[c], f * (float)sum);
    }
}

static inline void conv_grad_update_bias(int32_t *bias, int32_t rows, size_t positions,
                                         size_t channels, const int8_t *grad_out,
                                         const uint8_t *mask, float lr, float grad_scale,
                                         float input_scale, const float *scales,
                                         int32_t per_channel) {
    conv_grad_update_bias_at(bias, rows, positions, channels, grad_out, mask, lr, grad_scale,
                             input_scale, scales, per_channel, 0);
}

#endif
