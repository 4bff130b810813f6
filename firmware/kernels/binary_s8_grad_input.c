/* Input gradient of ADD, SUB, MAXIMUM and MINIMUM. See binary_s8_grad_input.h. */
#include "binary_s8_grad_input.h"

#include "grad.h"

static inline int selected(int32_t select, int32_t a, int32_t b) {
    switch (select) {
        case 1: return a >= b;
        case 2: return a > b;
        case 3: return a <= b;
        case 4: return a < b;
        default: return 1;
    }
}

void binary_s8_grad_input_run(const void *params, void *const *operands, void *scratch) {
    const struct binary_s8_grad_input_params p =
        *(const struct binary_s8_grad_input_params *)params;
    const int8_t *gy = operands[BINARY_S8_GRAD_INPUT_GRAD_Y];
    const float s_y = *(const float *)operands[BINARY_S8_GRAD_INPUT_GRAD_Y_SCALE];
    const int8_t *x = operands[BINARY_S8_GRAD_INPUT_THIS];
    const int8_t *o = operands[BINARY_S8_GRAD_INPUT_OTHER];
    int8_t *gx = operands[BINARY_S8_GRAD_INPUT_GRAD_X];
    float *s_x = operands[BINARY_S8_GRAD_INPUT_GRAD_X_SCALE];
    int32_t *acc = scratch;

    const size_t n = (size_t)p.this_size;
    for (size_t j = 0; j < n; ++j) acc[j] = 0;
    /* Walk the output in row-major order; each input is addressed by its own strides. */
    for (int32_t i0 = 0; i0 < p.dim0; ++i0) {
        for (int32_t i1 = 0; i1 < p.dim1; ++i1) {
            for (int32_t i2 = 0; i2 < p.dim2; ++i2) {
                const int32_t t = i0 * p.this_stride0 + i1 * p.this_stride1 + i2 * p.this_stride2;
                const int32_t u =
                    i0 * p.other_stride0 + i1 * p.other_stride1 + i2 * p.other_stride2;
                for (int32_t i3 = 0; i3 < p.dim3; ++i3, ++gy) {
                    const int32_t at = t + i3 * p.this_stride3;
                    if (p.select == 0 || selected(p.select, x[at], o[u + i3 * p.other_stride3]))
                        acc[at] += *gy;
                }
            }
        }
    }
    if (p.sign < 0)
        for (size_t j = 0; j < n; ++j) acc[j] = -acc[j];
    *s_x = grad_requantize_s32(acc, n, s_y, gx);
}

size_t binary_s8_grad_input_scratch_size(const void *params) {
    const struct binary_s8_grad_input_params p =
        *(const struct binary_s8_grad_input_params *)params;
    return (size_t)p.this_size * sizeof(int32_t);
}
