/* The band of a streamed input. See input_rows.h. */
#include "input_rows.h"

#include <string.h>

void input_rows_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct input_rows_params p = *(const struct input_rows_params *)params;
    uint8_t *band = operands[INPUT_ROWS_BAND];
    /* The kept rows may overlap their new place (a band that advances by fewer rows than it
     * holds): memmove. */
    if (p.keep_len > 0 && p.keep_from > 0) memmove(band, band + p.keep_from, (size_t)p.keep_len);
}

size_t input_rows_scratch_size(const void *params) {
    (void)params;
    return 0;
}
