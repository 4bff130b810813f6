/* The loss head of a regression or an autoencoder: mean squared error of the output
 * layer's un-clamped int32 values (logits_s32) against a target, in single-precision float.
 *
 * With real outputs x_i = s * (q_i - z) and real targets t_i (float32 as given, or an int8
 * tensor dequantized with its own scale and zero point: for an autoencoder the target is
 * the model's input itself),
 *   loss = (1 / N) sum_i (x_i - t_i)^2       N = batches * size (Keras' MeanSquaredError)
 *   G_i  = 2 (x_i - t_i) / N                 (dL/dx_i)
 * The sum is compensated (Kahan), so a 640-element row keeps float precision. For batch 1
 * the loss is the sample's reconstruction error: an autoencoder's anomaly score.
 * G is int8 with a dynamic scale (loss_math.h's loss_grad_to_s8). predicted is written 0
 * (a regression has no class). A scale that is not positive and finite, or a NaN target,
 * gives a NaN loss and a zero gradient.
 *
 * Layouts: outputs int32 [batches, size]; target int8 or float32 [batches, size];
 * loss float32 [1]; predicted int32 [batches]; G int8 [batches, size]; its scale float32 [1].
 * Scratch: 4 bytes per output. */
#ifndef KERNELS_MSE_S32_H
#define KERNELS_MSE_S32_H

#include "kernel.h"

/* clang-format off */
#include "def_struct.h"
#include "mse_s32.def"
#include "def_struct_end.h"
/* clang-format on */

enum {
    MSE_S32_OUTPUTS = 0,    /* int32 [batches, size] */
    MSE_S32_TARGET = 1,     /* int8 or float32 [batches, size] (params.target_float) */
    MSE_S32_LOSS = 2,       /* float32 [1], written */
    MSE_S32_PREDICTED = 3,  /* int32 [batches], written 0 */
    MSE_S32_GRAD = 4,       /* int8 [batches, size], written */
    MSE_S32_GRAD_SCALE = 5, /* float32 [1], written */
    MSE_S32_OPERANDS = 6
};

void mse_s32_run(const void *params, void *const *operands, void *scratch);
size_t mse_s32_scratch_size(const void *params);

#endif
