/* int8 QUANTIZE int8 -> int8, optimized: by table (dsp.h, dsp_unary_by_table): the reference
 * (requantize_s8.c) computes the outputs of all 256 int8 inputs once, then every element is a
 * lookup, four per word; bit-identical with requantize_s8_ref_run by construction. */
#include "dsp.h"
#include "requantize_s8.h"

void requantize_s8_dsp_run(const void *params, void *const *operands, void *scratch) {
    dsp_unary_by_table(requantize_s8_ref_run, params, sizeof(struct requantize_s8_params), operands,
                       scratch);
}
