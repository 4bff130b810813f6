/* Input gradient of average pooling in float32. See avg_pool_s8_grad_input_f32.h. */
#include "avg_pool_s8_grad_input_f32.h"

static inline int32_t max_i32(int32_t a, int32_t b) {
    return a > b ? a : b;
}
static inline int32_t min_i32(int32_t a, int32_t b) {
    return a < b ? a : b;
}

void avg_pool_s8_grad_input_f32_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct avg_pool_s8_grad_input_f32_params p =
        *(const struct avg_pool_s8_grad_input_f32_params *)params;
    const float *gy = operands[AVG_POOL_S8_GRAD_INPUT_F32_GRAD_Y];
    const float s_y = *(const float *)operands[AVG_POOL_S8_GRAD_INPUT_F32_GRAD_Y_SCALE];
    float *gx = operands[AVG_POOL_S8_GRAD_INPUT_F32_GRAD_X];
    const size_t c_n = (size_t)p.channels;
    const size_t image = (size_t)p.input_h * (size_t)p.input_w * c_n;
    for (size_t i = 0; i < (size_t)p.batches * image; ++i) gx[i] = 0.0f;
    for (int32_t b = 0; b < p.batches; ++b) {
        float *out = gx + (size_t)b * image;
        for (int32_t oy = 0; oy < p.output_h; ++oy) {
            const int32_t y0 = oy * p.stride_h - p.pad_h;
            const int32_t fy_start = max_i32(0, -y0), fy_end = min_i32(p.filter_h, p.input_h - y0);
            for (int32_t ox = 0; ox < p.output_w; ++ox, gy += c_n) {
                const int32_t x0 = ox * p.stride_w - p.pad_w;
                const int32_t fx_start = max_i32(0, -x0);
                const int32_t fx_end = min_i32(p.filter_w, p.input_w - x0);
                if (fy_end <= fy_start || fx_end <= fx_start) continue;
                const float count = (float)((fy_end - fy_start) * (fx_end - fx_start));
                for (size_t c = 0; c < c_n; ++c) {
                    const float v = s_y * gy[c] / count;
                    if (v == 0.0f) continue;
                    for (int32_t fy = fy_start; fy < fy_end; ++fy) {
                        float *row = out + (size_t)(y0 + fy) * (size_t)p.input_w * c_n;
                        for (int32_t fx = fx_start; fx < fx_end; ++fx)
                            row[(size_t)(x0 + fx) * c_n + c] += v;
                    }
                }
            }
        }
    }
    *(float *)operands[AVG_POOL_S8_GRAD_INPUT_F32_GRAD_X_SCALE] = 1.0f;
}

size_t avg_pool_s8_grad_input_f32_scratch_size(const void *params) {
    (void)params;
    return 0;
}
