/* int8 LEAKY_RELU, optimized: by table (dsp.h, dsp_unary_by_table): the reference
 * (leaky_relu_s8.c) computes the outputs of all 256 int8 inputs once, then every element is a
 * lookup, four per word; bit-identical with leaky_relu_s8_ref_run by construction. */
#include "dsp.h"
#include "leaky_relu_s8.h"

void leaky_relu_s8_dsp_run(const void *params, void *const *operands, void *scratch) {
    dsp_unary_by_table(leaky_relu_s8_ref_run, params, sizeof(struct leaky_relu_s8_params), operands,
                       scratch);
}

/* The selector, the runtime's entry for leaky_relu_s8 (ops.def): the DSP variant above when the
 * build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (leaky_relu_s8.c). The DSP
 * variant falls back to the reference itself for the shapes it does not take. */
void leaky_relu_s8_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        leaky_relu_s8_dsp_run(params, operands, scratch);
    else
        leaky_relu_s8_ref_run(params, operands, scratch);
}
