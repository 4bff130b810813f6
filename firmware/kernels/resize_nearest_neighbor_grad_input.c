/* Input gradient of nearest-neighbour resizing. See resize_nearest_neighbor_grad_input.h. */
#include "resize_nearest_neighbor_grad_input.h"

#include "grad.h"

void resize_nearest_neighbor_grad_input_run(const void *params, void *const *operands,
                                            void *scratch) {
    const struct resize_nearest_neighbor_grad_input_params p =
        *(const struct resize_nearest_neighbor_grad_input_params *)params;
    const int8_t *gy = operands[RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_GRAD_Y];
    const float s_y = *(const float *)operands[RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_GRAD_Y_SCALE];
    const int32_t *rows = operands[RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_ROWS];
    const int32_t *cols = operands[RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_COLS];
    int8_t *gx = operands[RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_GRAD_X];
    float *s_x = operands[RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT_GRAD_X_SCALE];
    int32_t *acc = scratch;

    const size_t c_n = (size_t)p.channels;
    const size_t image = (size_t)p.input_h * (size_t)p.input_w * c_n;
    const size_t n = (size_t)p.batches * image;
    for (size_t i = 0; i < n; ++i) acc[i] = 0;
    for (int32_t b = 0; b < p.batches; ++b) {
        int32_t *acc_image = acc + (size_t)b * image;
        for (int32_t y = 0; y < p.output_h; ++y) {
            int32_t *acc_row = acc_image + (size_t)rows[y] * (size_t)p.input_w * c_n;
            for (int32_t x = 0; x < p.output_w; ++x, gy += c_n) {
                int32_t *acc_pixel = acc_row + (size_t)cols[x] * c_n;
                for (size_t c = 0; c < c_n; ++c) acc_pixel[c] += gy[c];
            }
        }
    }
    *s_x = grad_requantize_s32(acc, n, s_y, gx);
}

size_t resize_nearest_neighbor_grad_input_scratch_size(const void *params) {
    const struct resize_nearest_neighbor_grad_input_params p =
        *(const struct resize_nearest_neighbor_grad_input_params *)params;
    return (size_t)p.batches * (size_t)p.input_h * (size_t)p.input_w * (size_t)p.channels *
           sizeof(int32_t);
}
