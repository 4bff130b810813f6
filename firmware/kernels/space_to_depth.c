/* SPACE_TO_DEPTH: each input pixel's channels are one contiguous run of an output pixel's.
 * See space_to_depth.h. */
#include "space_to_depth.h"

#include <string.h>

void space_to_depth_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct space_to_depth_params p = *(const struct space_to_depth_params *)params;
    const uint8_t *in = operands[SPACE_TO_DEPTH_INPUT];
    uint8_t *out = operands[SPACE_TO_DEPTH_OUTPUT];
    const int32_t bs = p.block_size;
    const size_t run = (size_t)p.input_c * (size_t)p.elem_size; /* one input pixel */
    const size_t in_row = (size_t)p.input_w * run;

    /* The output in row-major order: pixel (y, x), then block position (dy, dx). */
    for (int32_t b = 0; b < p.batches; ++b) {
        const uint8_t *image = in + (size_t)b * (size_t)p.input_h * in_row;
        for (int32_t y = 0; y < p.input_h / bs; ++y) {
            for (int32_t x = 0; x < p.input_w / bs; ++x) {
                for (int32_t dy = 0; dy < bs; ++dy) {
                    const uint8_t *src =
                        image + (size_t)(y * bs + dy) * in_row + (size_t)(x * bs) * run;
                    memcpy(out, src, (size_t)bs * run); /* dx = 0..bs-1: adjacent pixels */
                    out += (size_t)bs * run;
                }
            }
        }
    }
}

size_t space_to_depth_scratch_size(const void *params) {
    (void)params;
    return 0;
}
