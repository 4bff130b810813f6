/* Input gradient of int8 average pooling. See avg_pool_s8_grad_input.h. */
#include "avg_pool_s8_grad_input.h"

#include "grad.h"

static inline int32_t max_i32(int32_t a, int32_t b) {
    return a > b ? a : b;
}
static inline int32_t min_i32(int32_t a, int32_t b) {
    return a < b ? a : b;
}

/* How many windows can cover one input element along a dimension: ceil(filter / stride),
 * and never more than there are windows. */
static int32_t overlap_1d(int32_t filter, int32_t stride, int32_t outputs) {
    const int32_t k = stride > 0 ? (filter + stride - 1) / stride : filter;
    return max_i32(1, min_i32(k, outputs));
}

/* F = 23 - ceil(log2(overlap)), at least 0: see the header. */
static int frac_bits(const struct avg_pool_s8_grad_input_params *p) {
    const int64_t overlap = (int64_t)overlap_1d(p->filter_h, p->stride_h, p->output_h) *
                            overlap_1d(p->filter_w, p->stride_w, p->output_w);
    int log2_ceil = 0;
    while (((int64_t)1 << log2_ceil) < overlap && log2_ceil < 23) ++log2_ceil;
    return 23 - log2_ceil;
}

void avg_pool_s8_grad_input_run(const void *params, void *const *operands, void *scratch) {
    const struct avg_pool_s8_grad_input_params p =
        *(const struct avg_pool_s8_grad_input_params *)params;
    const int8_t *gy = operands[AVG_POOL_S8_GRAD_INPUT_GRAD_Y];
    const float s_y = *(const float *)operands[AVG_POOL_S8_GRAD_INPUT_GRAD_Y_SCALE];
    int8_t *gx = operands[AVG_POOL_S8_GRAD_INPUT_GRAD_X];
    float *s_x = operands[AVG_POOL_S8_GRAD_INPUT_GRAD_X_SCALE];
    int32_t *acc = scratch;

    const size_t c_n = (size_t)p.channels;
    const size_t image = (size_t)p.input_h * (size_t)p.input_w * c_n;
    const size_t n = (size_t)p.batches * image;
    for (size_t i = 0; i < n; ++i) acc[i] = 0;

    const int f = frac_bits(&p);
    const int32_t one = (int32_t)1 << f;
    for (int32_t b = 0; b < p.batches; ++b) {
        int32_t *acc_image = acc + (size_t)b * image;
        for (int32_t oy = 0; oy < p.output_h; ++oy) {
            const int32_t y0 = oy * p.stride_h - p.pad_h;
            /* The window clipped to the input, as the forward clips it. */
            const int32_t fy_start = max_i32(0, -y0);
            const int32_t fy_end = min_i32(p.filter_h, p.input_h - y0);
            for (int32_t ox = 0; ox < p.output_w; ++ox, gy += c_n) {
                const int32_t x0 = ox * p.stride_w - p.pad_w;
                const int32_t fx_start = max_i32(0, -x0);
                const int32_t fx_end = min_i32(p.filter_w, p.input_w - x0);
                const int32_t count = (fy_end - fy_start) * (fx_end - fx_start);
                if (fy_end <= fy_start || fx_end <= fx_start) continue; /* empty: no input */
                const int32_t half = count / 2;
                for (size_t c = 0; c < c_n; ++c) {
                    /* g * 2^F / count, rounded half away from zero; |g * 2^F| < 2^31. */
                    const int32_t num = (int32_t)gy[c] * one;
                    const int32_t q = num >= 0 ? (num + half) / count : (num - half) / count;
                    if (q == 0) continue;
                    for (int32_t fy = fy_start; fy < fy_end; ++fy) {
                        int32_t *row = acc_image + (size_t)(y0 + fy) * (size_t)p.input_w * c_n;
                        for (int32_t fx = fx_start; fx < fx_end; ++fx) {
                            row[(size_t)(x0 + fx) * c_n + c] += q;
                        }
                    }
                }
            }
        }
    }
    /* The unit s_y * 2^-F: a power-of-two scaling, exact. */
    *s_x = grad_requantize_s32(acc, n, s_y * (1.0f / (float)one), gx);
}

size_t avg_pool_s8_grad_input_scratch_size(const void *params) {
    const struct avg_pool_s8_grad_input_params p =
        *(const struct avg_pool_s8_grad_input_params *)params;
    return (size_t)p.batches * (size_t)p.input_h * (size_t)p.input_w * (size_t)p.channels *
           sizeof(int32_t);
}
