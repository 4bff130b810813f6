/* CONCATENATION: row by row, each input's run in turn. See concatenation.h. */
#include "concatenation.h"

#include <string.h>

void concatenation_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct concatenation_params p = *(const struct concatenation_params *)params;
    const int32_t *run_bytes = operands[CONCATENATION_RUN_BYTES];
    uint8_t *out = operands[CONCATENATION_FIRST_INPUT + p.num_inputs];

    for (int32_t o = 0; o < p.outer; ++o) {
        for (int32_t k = 0; k < p.num_inputs; ++k) {
            const size_t run = (size_t)run_bytes[k];
            const uint8_t *in = operands[CONCATENATION_FIRST_INPUT + k];
            memcpy(out, in + (size_t)o * run, run);
            out += run;
        }
    }
}

size_t concatenation_scratch_size(const void *params) {
    (void)params;
    return 0;
}
