/* DEPTH_TO_SPACE: each output pixel's channels are one contiguous run of an input pixel's.
 * See depth_to_space.h. */
#include "depth_to_space.h"

#include <string.h>

void depth_to_space_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct depth_to_space_params p = *(const struct depth_to_space_params *)params;
    const uint8_t *in = operands[DEPTH_TO_SPACE_INPUT];
    uint8_t *out = operands[DEPTH_TO_SPACE_OUTPUT];
    const int32_t bs = p.block_size;
    const size_t run = (size_t)(p.input_c / (bs * bs)) * (size_t)p.elem_size; /* out pixel */
    const size_t in_pixel = (size_t)p.input_c * (size_t)p.elem_size;

    for (int32_t b = 0; b < p.batches; ++b) {
        const uint8_t *image = in + (size_t)b * (size_t)p.input_h * (size_t)p.input_w * in_pixel;
        for (int32_t oy = 0; oy < p.input_h * bs; ++oy) {
            const uint8_t *row = image + (size_t)(oy / bs) * (size_t)p.input_w * in_pixel +
                                 (size_t)(oy % bs) * (size_t)bs * run;
            for (int32_t ox = 0; ox < p.input_w * bs; ++ox) {
                memcpy(out, row + (size_t)(ox / bs) * in_pixel + (size_t)(ox % bs) * run, run);
                out += run;
            }
        }
    }
}

size_t depth_to_space_scratch_size(const void *params) {
    (void)params;
    return 0;
}
