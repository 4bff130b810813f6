/* Input gradient of fully_connected_s8, optimized: bit-identical with
 * fully_connected_s8_grad_input_ref_run (fully_connected_s8_grad_input.c).
 *
 * With per-channel weights (no weight zero point, the usual int8 export) the reference's
 * arithmetic is, term for term, that of a 1x1 convolution's input gradient over `batches`
 * pixels of input_depth channels with output_depth output channels: the same Q23 row
 * multipliers, the same overflow bound and shift, the same terms g' * W and the same
 * requantization, and the operands and scratch are laid out alike. So the layer runs as that
 * convolution through conv2d_s8_grad_input_dsp_run. A weight zero point (per-tensor weights
 * with filter_offset != 0) takes the reference. */
#include "conv2d_s8_grad_input.h"
#include "dsp.h"
#include "fully_connected_s8_grad_input.h"

_Static_assert((int)FULLY_CONNECTED_S8_GRAD_INPUT_WEIGHTS == (int)CONV2D_S8_GRAD_INPUT_FILTER &&
                   (int)FULLY_CONNECTED_S8_GRAD_INPUT_TRAINED_WEIGHTS ==
                       (int)CONV2D_S8_GRAD_INPUT_TRAINED_FILTER &&
                   (int)FULLY_CONNECTED_S8_GRAD_INPUT_WEIGHT_SCALES ==
                       (int)CONV2D_S8_GRAD_INPUT_WEIGHT_SCALES &&
                   (int)FULLY_CONNECTED_S8_GRAD_INPUT_GRAD_INPUT_SCALE ==
                       (int)CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE,
               "the fully-connected and conv input-gradient operands line up");

void fully_connected_s8_grad_input_dsp_run(const void *params, void *const *operands,
                                           void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct fully_connected_s8_grad_input_params p =
        *(const struct fully_connected_s8_grad_input_params *)params;
    if (p.filter_offset != 0) {
        fully_connected_s8_grad_input_ref_run(params, operands, scratch);
        return;
    }
    const struct conv2d_s8_grad_input_params c = {
        DSP_FC_AS_CONV_1X1(p),
    };
    conv2d_s8_grad_input_dsp_run(&c, operands, scratch);
}

size_t fully_connected_s8_grad_input_scratch_size(const void *params) {
    const struct fully_connected_s8_grad_input_params p =
        *(const struct fully_connected_s8_grad_input_params *)params;
    if (p.filter_offset != 0) return fully_connected_s8_grad_input_ref_scratch_size(params);
    const struct conv2d_s8_grad_input_params c = {
        DSP_FC_AS_CONV_1X1(p),
    };
    return conv2d_s8_grad_input_scratch_size(&c);
}

/* The selector, the runtime's entry for fully_connected_s8_grad_input (ops.def): the DSP variant
 * above when the build enables it (KERNELS_USE_DSP(), dsp.h), else the reference
 * (fully_connected_s8_grad_input.c). The DSP variant falls back to the reference itself for the
 * shapes it does not take. */
void fully_connected_s8_grad_input_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        fully_connected_s8_grad_input_dsp_run(params, operands, scratch);
    else
        fully_connected_s8_grad_input_ref_run(params, operands, scratch);
}
