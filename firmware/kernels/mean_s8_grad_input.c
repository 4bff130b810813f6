/* Input gradient of int8 MEAN: a broadcast, with 1/count folded into the scale. See
 * mean_s8_grad_input.h. */
#include "mean_s8_grad_input.h"

#include "copy_run.h"

void mean_s8_grad_input_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct mean_s8_grad_input_params p = *(const struct mean_s8_grad_input_params *)params;
    const int8_t *gy = operands[MEAN_S8_GRAD_INPUT_GRAD_Y];
    const float s_y = *(const float *)operands[MEAN_S8_GRAD_INPUT_GRAD_Y_SCALE];
    int8_t *gx = operands[MEAN_S8_GRAD_INPUT_GRAD_X];
    float *s_x = operands[MEAN_S8_GRAD_INPUT_GRAD_X_SCALE];

    const int32_t dim[4] = {p.dim0, p.dim1, p.dim2, p.dim3};
    const int32_t reduce[4] = {p.reduce0, p.reduce1, p.reduce2, p.reduce3};
    /* Strides of G_y, row-major over the kept dimensions; 0 along averaged ones, so
     * every element of an averaged run reads the same G_y element. */
    int32_t stride[4];
    int32_t kept = 1;
    for (int k = 3; k >= 0; --k) {
        stride[k] = reduce[k] ? 0 : kept;
        if (!reduce[k]) kept *= dim[k];
    }

    /* G_x is written in row-major order. */
    for (int32_t i0 = 0; i0 < dim[0]; ++i0) {
        for (int32_t i1 = 0; i1 < dim[1]; ++i1) {
            for (int32_t i2 = 0; i2 < dim[2]; ++i2) {
                const int8_t *src = gy + i0 * stride[0] + i1 * stride[1] + i2 * stride[2];
                /* A run of kept channels (global average pooling) is one memcpy. */
                gx = (int8_t *)copy_run((uint8_t *)gx, (const uint8_t *)src, dim[3], stride[3], 1);
            }
        }
    }
    *s_x = s_y / (float)(p.count > 0 ? p.count : 1);
}

size_t mean_s8_grad_input_scratch_size(const void *params) {
    (void)params;
    return 0;
}
