/* int8 RELU / RELU6 / RELU_N1_TO_1, optimized: by table (dsp.h, dsp_unary_by_table): the reference
 * (relu_s8.c) computes the outputs of all 256 int8 inputs once, then every element is a
 * lookup, four per word; bit-identical with relu_s8_ref_run by construction. */
#include "dsp.h"
#include "relu_s8.h"

void relu_s8_dsp_run(const void *params, void *const *operands, void *scratch) {
    dsp_unary_by_table(relu_s8_ref_run, params, sizeof(struct relu_s8_params), operands, scratch);
}

/* The selector, the runtime's entry for relu_s8 (ops.def): the DSP variant above when the
 * build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (relu_s8.c). The DSP
 * variant falls back to the reference itself for the shapes it does not take. */
void relu_s8_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        relu_s8_dsp_run(params, operands, scratch);
    else
        relu_s8_ref_run(params, operands, scratch);
}
