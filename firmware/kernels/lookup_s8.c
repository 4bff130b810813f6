/* int8 table lookup (LOGISTIC, TANH). See lookup_s8.h. */
#include "lookup_s8.h"

void lookup_s8_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct lookup_s8_params p = *(const struct lookup_s8_params *)params;
    const int8_t *in = operands[LOOKUP_S8_INPUT];
    const int8_t *table = operands[LOOKUP_S8_TABLE];
    int8_t *out = operands[LOOKUP_S8_OUTPUT];
    for (int32_t i = 0; i < p.count; ++i) out[i] = table[(uint8_t)in[i]];
}

size_t lookup_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
