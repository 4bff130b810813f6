/* Input gradient of int8 multiplication. See mul_s8_grad_input.h. */
#include "mul_s8_grad_input.h"

#include "grad.h"

void mul_s8_grad_input_run(const void *params, void *const *operands, void *scratch) {
    const struct mul_s8_grad_input_params p = *(const struct mul_s8_grad_input_params *)params;
    const int8_t *gy = operands[MUL_S8_GRAD_INPUT_GRAD_Y];
    const float s_y = *(const float *)operands[MUL_S8_GRAD_INPUT_GRAD_Y_SCALE];
    const int8_t *f = operands[MUL_S8_GRAD_INPUT_OTHER];
    int8_t *gx = operands[MUL_S8_GRAD_INPUT_GRAD_X];
    float *s_x = operands[MUL_S8_GRAD_INPUT_GRAD_X_SCALE];
    int32_t *acc = scratch;

    const size_t n = (size_t)p.this_size;
    for (size_t j = 0; j < n; ++j) acc[j] = 0;
    /* Walk the output in row-major order; each input is addressed by its own strides. */
    for (int32_t i0 = 0; i0 < p.dim0; ++i0) {
        for (int32_t i1 = 0; i1 < p.dim1; ++i1) {
            for (int32_t i2 = 0; i2 < p.dim2; ++i2) {
                const int32_t t = i0 * p.this_stride0 + i1 * p.this_stride1 + i2 * p.this_stride2;
                const int32_t o =
                    i0 * p.other_stride0 + i1 * p.other_stride1 + i2 * p.other_stride2;
                for (int32_t i3 = 0; i3 < p.dim3; ++i3, ++gy) {
                    const int32_t factor = (int32_t)f[o + i3 * p.other_stride3] + p.other_offset;
                    acc[t + i3 * p.this_stride3] += (int32_t)*gy * factor;
                }
            }
        }
    }
    *s_x = grad_requantize_s32(acc, n, s_y * p.other_scale, gx);
}

size_t mul_s8_grad_input_scratch_size(const void *params) {
    const struct mul_s8_grad_input_params p = *(const struct mul_s8_grad_input_params *)params;
    return (size_t)p.this_size * sizeof(int32_t);
}
