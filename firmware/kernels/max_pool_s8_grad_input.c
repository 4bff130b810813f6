/* Input gradient of int8 max pooling. See max_pool_s8_grad_input.h. */
#include "max_pool_s8_grad_input.h"

#include "grad.h"

static inline int32_t max_i32(int32_t a, int32_t b) {
    return a > b ? a : b;
}
static inline int32_t min_i32(int32_t a, int32_t b) {
    return a < b ? a : b;
}

void max_pool_s8_grad_input_run(const void *params, void *const *operands, void *scratch) {
    const struct max_pool_s8_grad_input_params p =
        *(const struct max_pool_s8_grad_input_params *)params;
    const int8_t *x = operands[MAX_POOL_S8_GRAD_INPUT_INPUT];
    const int8_t *gy = operands[MAX_POOL_S8_GRAD_INPUT_GRAD_Y];
    const float s_y = *(const float *)operands[MAX_POOL_S8_GRAD_INPUT_GRAD_Y_SCALE];
    int8_t *gx = operands[MAX_POOL_S8_GRAD_INPUT_GRAD_X];
    float *s_x = operands[MAX_POOL_S8_GRAD_INPUT_GRAD_X_SCALE];
    int32_t *acc = scratch;

    const size_t c_n = (size_t)p.channels;
    const size_t image = (size_t)p.input_h * (size_t)p.input_w * c_n;
    const size_t n = (size_t)p.batches * image;
    for (size_t i = 0; i < n; ++i) acc[i] = 0;

    for (int32_t b = 0; b < p.batches; ++b) {
        const int8_t *x_image = x + (size_t)b * image;
        int32_t *acc_image = acc + (size_t)b * image;
        for (int32_t oy = 0; oy < p.output_h; ++oy) {
            const int32_t y0 = oy * p.stride_h - p.pad_h;
            const int32_t fy_start = max_i32(0, -y0);
            const int32_t fy_end = min_i32(p.filter_h, p.input_h - y0);
            for (int32_t ox = 0; ox < p.output_w; ++ox, gy += c_n) {
                const int32_t x0 = ox * p.stride_w - p.pad_w;
                const int32_t fx_start = max_i32(0, -x0);
                const int32_t fx_end = min_i32(p.filter_w, p.input_w - x0);
                for (size_t c = 0; c < c_n; ++c) {
                    if (gy[c] == 0) continue;
                    /* The first maximum in row-major window order (strictly greater wins). */
                    size_t at = n;
                    int32_t best = INT32_MIN;
                    for (int32_t fy = fy_start; fy < fy_end; ++fy) {
                        for (int32_t fx = fx_start; fx < fx_end; ++fx) {
                            const size_t i =
                                ((size_t)(y0 + fy) * (size_t)p.input_w + (size_t)(x0 + fx)) * c_n +
                                c;
                            if (x_image[i] > best) {
                                best = x_image[i];
                                at = i;
                            }
                        }
                    }
                    if (at != n) acc_image[at] += gy[c];
                }
            }
        }
    }
    *s_x = grad_requantize_s32(acc, n, s_y, gx);
}

size_t max_pool_s8_grad_input_scratch_size(const void *params) {
    const struct max_pool_s8_grad_input_params p =
        *(const struct max_pool_s8_grad_input_params *)params;
    return (size_t)p.batches * (size_t)p.input_h * (size_t)p.input_w * (size_t)p.channels *
           sizeof(int32_t);
}
