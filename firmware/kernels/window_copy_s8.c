/* Window copy between NHWC tensors. See window_copy_s8.h. */
#include "window_copy_s8.h"

#include <string.h>

void window_copy_s8_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct window_copy_s8_params p = *(const struct window_copy_s8_params *)params;
    const int8_t *src = operands[WINDOW_COPY_S8_INPUT];
    int8_t *dst = operands[WINDOW_COPY_S8_OUTPUT];
    /* One window row is contiguous in both tensors (all channels of adjacent pixels). */
    const size_t row = (size_t)p.copy_w * (size_t)p.depth;
    if (row == 0) return;
    for (int32_t y = 0; y < p.copy_h; ++y) {
        const size_t s =
            ((size_t)(p.src_y + y) * (size_t)p.src_w + (size_t)p.src_x) * (size_t)p.depth;
        const size_t d =
            ((size_t)(p.dst_y + y) * (size_t)p.dst_w + (size_t)p.dst_x) * (size_t)p.depth;
        memcpy(dst + d, src + s, row);
    }
}

size_t window_copy_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
