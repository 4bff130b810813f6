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

/* conv2d_s8_grad_update_spatial_dsp.c: whether it takes the layer (p as the update kernels view
 * it, CONV_TRAIN_COLS_AS_LAYER), and the weight update (not the biases). */
int conv2d_s8_grad_update_spatial_ok(const struct conv2d_s8_grad_update_params *p);
void conv2d_s8_grad_update_spatial_dsp(const struct conv2d_s8_grad_update_params *p,
                                       void *const *operands, void *scratch);

#endif
