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
