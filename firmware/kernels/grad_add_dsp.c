/* G = G_a + G_b through a common fixed-point unit, optimized: bit-identical with
 * grad_add_ref_run (grad_add.c). The same accumulators; their int8 requantization is dsp.h's
 * dsp_grad_requantize_s32 (a float estimate corrected with exact 64-bit products,
 * bit-identical with grad_requantize_s32 and its 64-bit division per element, which is most
 * of the reference's cost). */
#include "dsp.h"
#include "grad.h"
#include "grad_add.h"

void grad_add_dsp_run(const void *params, void *const *operands, void *scratch) {
    grad_add_run_with(params, operands, scratch, dsp_grad_requantize_s32);
}

/* The selector, the runtime's entry for grad_add (ops.def): the DSP variant above when the
 * build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (grad_add.c). The DSP
 * variant falls back to the reference itself for the shapes it does not take. */
void grad_add_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        grad_add_dsp_run(params, operands, scratch);
    else
        grad_add_ref_run(params, operands, scratch);
}
