/* Input gradient of PAD in float32: a crop. See pad_s8_grad_input_f32.h. */
#include "pad_s8_grad_input_f32.h"

void pad_s8_grad_input_f32_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct pad_s8_grad_input_f32_params p =
        *(const struct pad_s8_grad_input_f32_params *)params;
    const float *gy = operands[PAD_S8_GRAD_INPUT_F32_GRAD_Y];
    float *gx = operands[PAD_S8_GRAD_INPUT_F32_GRAD_X];
    *(float *)operands[PAD_S8_GRAD_INPUT_F32_GRAD_X_SCALE] =
        *(const float *)operands[PAD_S8_GRAD_INPUT_F32_GRAD_Y_SCALE];
    for (int32_t i0 = 0; i0 < p.in_dim0; ++i0) {
        for (int32_t i1 = 0; i1 < p.in_dim1; ++i1) {
            for (int32_t i2 = 0; i2 < p.in_dim2; ++i2) {
                const size_t at =
                    (((size_t)(i0 + p.before0) * (size_t)p.out_dim1 + (size_t)(i1 + p.before1)) *
                         (size_t)p.out_dim2 +
                     (size_t)(i2 + p.before2)) *
                        (size_t)p.out_dim3 +
                    (size_t)p.before3;
                for (int32_t i3 = 0; i3 < p.in_dim3; ++i3) *gx++ = gy[at + (size_t)i3];
            }
        }
    }
}

size_t pad_s8_grad_input_f32_scratch_size(const void *params) {
    (void)params;
    return 0;
}
