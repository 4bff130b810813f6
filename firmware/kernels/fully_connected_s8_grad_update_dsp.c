/* Weight and bias update of fully_connected_s8, optimized: bit-identical with
 * fully_connected_s8_grad_update_ref_run (fully_connected_s8_grad_update.c).
 *
 * The reference's arithmetic is, step for step, that of a 1x1 convolution's update over
 * `batches` positions of input_depth channels with output_depth output channels: the same
 * weight gradient sums, the same QAS factor and stochastic rounding in the same order (so the
 * generator's state ends the same), the same bias update; the operands and the scratch are laid
 * out alike. So the layer runs as that convolution through conv2d_s8_grad_update_dsp_run, a
 * batch of one too (a lone position pairs with itself and a zero gradient; with the assembly
 * weight and bias steps of dsp.h / conv2d_s8_grad_update_dsp.h it is faster than the
 * reference's per-weight call). */
#include "conv2d_s8_grad_update.h"
#include "dsp.h"
#include "fully_connected_s8_grad_update.h"

_Static_assert((int)FULLY_CONNECTED_S8_GRAD_UPDATE_INPUT == (int)CONV2D_S8_GRAD_UPDATE_INPUT &&
                   (int)FULLY_CONNECTED_S8_GRAD_UPDATE_WEIGHT_SCALES ==
                       (int)CONV2D_S8_GRAD_UPDATE_WEIGHT_SCALES &&
                   (int)FULLY_CONNECTED_S8_GRAD_UPDATE_TRAINED_WEIGHTS ==
                       (int)CONV2D_S8_GRAD_UPDATE_TRAINED_FILTER &&
                   (int)FULLY_CONNECTED_S8_GRAD_UPDATE_RNG_STATE ==
                       (int)CONV2D_S8_GRAD_UPDATE_RNG_STATE,
               "the fully-connected and conv update operands line up");

void fully_connected_s8_grad_update_dsp_run(const void *params, void *const *operands,
                                            void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct fully_connected_s8_grad_update_params p =
        *(const struct fully_connected_s8_grad_update_params *)params;
    const struct conv2d_s8_grad_update_params c = {
        DSP_FC_AS_CONV_1X1(p),
        .input_offset = p.input_offset,
        .train_bias_rows = p.train_bias_rows,
        .update_weights = p.update_weights,
        .update_bias = p.update_bias,
        .lr = p.lr,
        .input_scale = p.input_scale,
    };
    conv2d_s8_grad_update_dsp_run(&c, operands, scratch);
}

/* The DSP variant runs the layer as a 1x1 convolution over `batches` pixels
 * (DSP_FC_AS_CONV_1X1): that convolution's scratch (conv2d_s8_grad_update_scratch_size, its
 * variants' buffers included) where larger than the reference's. */
size_t fully_connected_s8_grad_update_scratch_size(const void *params) {
    const struct fully_connected_s8_grad_update_params p =
        *(const struct fully_connected_s8_grad_update_params *)params;
    const size_t ref = fully_connected_s8_grad_update_ref_scratch_size(params);
    const struct conv2d_s8_grad_update_params c = {DSP_FC_AS_CONV_1X1(p),
                                                   .update_weights = p.update_weights};
    const size_t dsp = conv2d_s8_grad_update_scratch_size(&c);
    return dsp > ref ? dsp : ref;
}

/* The selector, the runtime's entry for fully_connected_s8_grad_update (ops.def): the DSP variant
 * above when the build enables it (KERNELS_USE_DSP(), dsp.h), else the reference
 * (fully_connected_s8_grad_update.c). The DSP variant falls back to the reference itself for the
 * shapes it does not take. */
void fully_connected_s8_grad_update_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        fully_connected_s8_grad_update_dsp_run(params, operands, scratch);
    else
        fully_connected_s8_grad_update_ref_run(params, operands, scratch);
}
