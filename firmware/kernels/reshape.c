/* RESHAPE: a byte copy. See reshape.h. */
#include "reshape.h"

#include <string.h>

void reshape_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct reshape_params p = *(const struct reshape_params *)params;
    const void *in = operands[RESHAPE_INPUT];
    void *out = operands[RESHAPE_OUTPUT];
    /* The runtime may give a reshape its input's buffer as output: then nothing moves. */
    if (in != out && p.nbytes > 0) memmove(out, in, p.nbytes);
}

size_t reshape_scratch_size(const void *params) {
    (void)params;
    return 0;
}
