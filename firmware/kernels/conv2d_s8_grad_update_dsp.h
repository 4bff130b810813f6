/* What the DSP variants of conv2d_s8_grad_update share (conv2d_s8_grad_update_dsp.c selects one
 * of them): the operands and steps (conv2d_s8_grad_update.h, dsp.h) and each variant's entry.
 * Internal to conv2d_s8_grad_update_*dsp.c; the runtime calls conv2d_s8_grad_update_run.
 *
 * Variants (the selector picks one for the weights, then updates the biases itself):
 *   conv2d_s8_grad_update_dsp.c          1x1 filters: positions paired per input channel
 *                                        (sparse: zero gradients skipped); larger filters
 *                                        along runs of taps (grad_update_kxk);
 *   conv2d_s8_grad_update_spatial_dsp.c  few output positions (<= GU_SPATIAL_MAX_POSITIONS)
 *                                        and many rows: SMLAD over the positions, the input
 *                                        transposed once per call (its scratch:
 *                                        conv_grad_update_spatial_bytes). */
#ifndef KERNELS_CONV2D_S8_GRAD_UPDATE_DSP_H
#define KERNELS_CONV2D_S8_GRAD_UPDATE_DSP_H

#include "conv2d_s8_grad_input.h" /* conv_grad_masked */
#include "conv2d_s8_grad_update.h"
#include "dsp.h"

/* conv_grad_step_bias (conv2d_s8_grad_update.h), bit-identical, without its 64-bit float
 * conversion (a library call on the Cortex-M): below 2^31 in magnitude v truncates to int32
 * (VCVT), its fraction is exact (below 2^24 the truncation is exact, above it v is whole), and
 * the rounding and the saturated sum are the reference's; larger (or NaN) v takes the
 * reference's own steps. */
static inline int32_t dsp_step_bias(int32_t b, float v) {
    if (!(v > -2147483648.0f && v < 2147483648.0f)) return conv_grad_step_bias(b, v);
    int32_t d = (int32_t)v;
    const float frac = v - (float)d;
    d += (frac >= 0.5f) - (frac <= -0.5f);
    const int64_t n = (int64_t)b + d;
    return (int32_t)(n > INT32_MAX ? INT32_MAX : (n < INT32_MIN ? INT32_MIN : n));
}

/* conv_grad_update_bias (conv2d_s8_grad_update.h), bit-identical: the same sums (dsp_bias_sums)
 * and the same float factor per channel (its numerator's two products hoisted: the same
 * operations in the same order), then dsp_step_bias. For the conv, depthwise and fully
 * connected updates (channels: the gradient's innermost dimension). */
static inline void conv_grad_update_bias_dsp(int32_t *bias, int32_t rows, size_t positions,
                                             size_t channels, const int8_t *grad_out,
                                             const uint8_t *mask, float lr, float grad_scale,
                                             float input_scale, const float *scales,
                                             int32_t per_channel) {
    int32_t sums[DSP_BIAS_CHUNK];
    const float num = lr * grad_lr_scale * grad_scale; /* conv_grad_bias_factor's numerator */
    for (int32_t c0 = 0; c0 < rows; c0 += DSP_BIAS_CHUNK) {
        const int32_t n = rows - c0 < DSP_BIAS_CHUNK ? rows - c0 : DSP_BIAS_CHUNK;
        dsp_bias_sums(grad_out, mask, positions, channels, c0, n, sums);
        for (int32_t j = 0; j < n; ++j) {
            const int32_t c = c0 + j;
            const float f = -(num / (scales[per_channel ? c : 0] * input_scale));
            bias[c] = dsp_step_bias(bias[c], f * (float)sums[j]);
        }
    }
}

/* conv2d_s8_grad_update_spatial_dsp.c: whether it takes the layer (p as the update kernels view
 * it, CONV_TRAIN_COLS_AS_LAYER), and the weight update (not the biases). */
int conv2d_s8_grad_update_spatial_ok(const struct conv2d_s8_grad_update_params *p);
void conv2d_s8_grad_update_spatial_dsp(const struct conv2d_s8_grad_update_params *p,
                                       void *const *operands, void *scratch);

#endif
