/* RESIZE_NEAREST_NEIGHBOR: one pixel copy per output pixel. See resize_nearest_neighbor.h. */
#include "resize_nearest_neighbor.h"

#include <string.h>

/* TFLite's GetNearestNeighbor, step for step in float32. Every value here is >= 0, so
 * floor is truncation, and std::round (half away from zero) is truncation plus one when
 * the exact fraction is at least one half (no libm needed on the board). */
static int32_t nearest(int32_t out_index, int32_t in_size, int32_t out_size, int32_t align,
                       int32_t half) {
    const float scale = (align && out_size > 1) ? (float)(in_size - 1) / (float)(out_size - 1)
                                                : (float)in_size / (float)out_size;
    const float offset = half ? 0.5f : 0.0f;
    const float v = ((float)out_index + offset) * scale;
    int32_t r = (int32_t)v;
    if (align && v - (float)r >= 0.5f) r += 1;
    if (r > in_size - 1) r = in_size - 1;
    return r; /* never negative: TFLite's max(0, .) for half-pixel centers is a no-op here */
}

void resize_nearest_neighbor_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct resize_nearest_neighbor_params p =
        *(const struct resize_nearest_neighbor_params *)params;
    const uint8_t *in = operands[RESIZE_NEAREST_NEIGHBOR_INPUT];
    uint8_t *out = operands[RESIZE_NEAREST_NEIGHBOR_OUTPUT];
    const size_t pixel = (size_t)p.channels * (size_t)p.elem_size;

    for (int32_t b = 0; b < p.batches; ++b) {
        const uint8_t *image = in + (size_t)b * (size_t)p.input_h * (size_t)p.input_w * pixel;
        for (int32_t y = 0; y < p.output_h; ++y) {
            const int32_t iy =
                nearest(y, p.input_h, p.output_h, p.align_corners, p.half_pixel_centers);
            const uint8_t *row = image + (size_t)iy * (size_t)p.input_w * pixel;
            for (int32_t x = 0; x < p.output_w; ++x) {
                const int32_t ix =
                    nearest(x, p.input_w, p.output_w, p.align_corners, p.half_pixel_centers);
                memcpy(out, row + (size_t)ix * pixel, pixel);
                out += pixel;
            }
        }
    }
}

size_t resize_nearest_neighbor_scratch_size(const void *params) {
    (void)params;
    return 0;
}
