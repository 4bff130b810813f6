/* Input gradient of MEAN in float32: a broadcast. See mean_s8_grad_input_f32.h. */
#include "mean_s8_grad_input_f32.h"

void mean_s8_grad_input_f32_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct mean_s8_grad_input_f32_params p =
        *(const struct mean_s8_grad_input_f32_params *)params;
    const float *gy = operands[MEAN_S8_GRAD_INPUT_F32_GRAD_Y];
    const float s_y = *(const float *)operands[MEAN_S8_GRAD_INPUT_F32_GRAD_Y_SCALE];
    float *gx = operands[MEAN_S8_GRAD_INPUT_F32_GRAD_X];
    const int32_t dim[4] = {p.dim0, p.dim1, p.dim2, p.dim3};
    const int32_t reduce[4] = {p.reduce0, p.reduce1, p.reduce2, p.reduce3};
    int32_t stride[4]; /* mean_s8_grad_input's: 0 along averaged dimensions */
    int32_t kept = 1;
    for (int k = 3; k >= 0; --k) {
        stride[k] = reduce[k] ? 0 : kept;
        if (!reduce[k]) kept *= dim[k];
    }
    for (int32_t i0 = 0; i0 < dim[0]; ++i0) {
        for (int32_t i1 = 0; i1 < dim[1]; ++i1) {
            for (int32_t i2 = 0; i2 < dim[2]; ++i2) {
                const float *src = gy + i0 * stride[0] + i1 * stride[1] + i2 * stride[2];
                for (int32_t i3 = 0; i3 < dim[3]; ++i3) *gx++ = src[i3 * stride[3]];
            }
        }
    }
    *(float *)operands[MEAN_S8_GRAD_INPUT_F32_GRAD_X_SCALE] =
        s_y / (float)(p.count > 0 ? p.count : 1);
}

size_t mean_s8_grad_input_f32_scratch_size(const void *params) {
    (void)params;
    return 0;
}
