/* int8 average pooling: TFLite's reference AveragePool, loop for loop. See avg_pool_s8.h. */
#include "avg_pool_s8.h"

#include "fixedpoint.h"

static inline int32_t max_i32(int32_t a, int32_t b) {
    return a > b ? a : b;
}
static inline int32_t min_i32(int32_t a, int32_t b) {
    return a < b ? a : b;
}

void avg_pool_s8_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct avg_pool_s8_params p = *(const struct avg_pool_s8_params *)params;
    const int8_t *input = operands[AVG_POOL_S8_INPUT];
    int8_t *out = operands[AVG_POOL_S8_OUTPUT];

    for (int32_t b = 0; b < p.batches; ++b) {
        const int8_t *image =
            input + (size_t)b * (size_t)p.input_h * (size_t)p.input_w * (size_t)p.channels;
        for (int32_t oy = 0; oy < p.output_h; ++oy) {
            const int32_t y0 = oy * p.stride_h - p.pad_h;
            /* The window clipped to the input: padding is neither summed nor counted. */
            const int32_t fy_start = max_i32(0, -y0);
            const int32_t fy_end = min_i32(p.filter_h, p.input_h - y0);
            for (int32_t ox = 0; ox < p.output_w; ++ox) {
                const int32_t x0 = ox * p.stride_w - p.pad_w;
                const int32_t fx_start = max_i32(0, -x0);
                const int32_t fx_end = min_i32(p.filter_w, p.input_w - x0);
                /* Output is NHWC, so writing channel after channel fills it in order. */
                for (int32_t c = 0; c < p.channels; ++c) {
                    int32_t acc = 0; /* |acc| <= 128 * window, far from overflow */
                    int32_t count = 0;
                    for (int32_t fy = fy_start; fy < fy_end; ++fy) {
                        const int8_t *row =
                            image + ((size_t)(y0 + fy) * (size_t)p.input_w) * (size_t)p.channels;
                        for (int32_t fx = fx_start; fx < fx_end; ++fx) {
                            acc += row[(size_t)(x0 + fx) * (size_t)p.channels + (size_t)c];
                            ++count;
                        }
                    }
                    /* TFLite fails the op on an empty window; the lowering's padding
                     * (never as wide as the filter) makes that impossible. */
                    if (count == 0) count = 1;
                    /* Round to nearest, halves away from zero, as TFLite. */
                    acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    *out++ = (int8_t)fp_clamp(acc, p.act_min, p.act_max);
                }
            }
        }
    }
}

size_t avg_pool_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
