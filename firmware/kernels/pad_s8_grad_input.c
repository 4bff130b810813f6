/* Input gradient of int8 constant padding: a crop. See pad_s8_grad_input.h. */
#include "pad_s8_grad_input.h"

#include <string.h>

void pad_s8_grad_input_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    const struct pad_s8_grad_input_params p = *(const struct pad_s8_grad_input_params *)params;
    const int8_t *gy = operands[PAD_S8_GRAD_INPUT_GRAD_Y];
    int8_t *gx = operands[PAD_S8_GRAD_INPUT_GRAD_X];
    *(float *)operands[PAD_S8_GRAD_INPUT_GRAD_X_SCALE] =
        *(const float *)operands[PAD_S8_GRAD_INPUT_GRAD_Y_SCALE];

    /* Walk the input in row-major order; its innermost run is contiguous in G_y too. */
    const size_t run = (size_t)p.in_dim3;
    if (run == 0) return;
    for (int32_t i0 = 0; i0 < p.in_dim0; ++i0) {
        for (int32_t i1 = 0; i1 < p.in_dim1; ++i1) {
            for (int32_t i2 = 0; i2 < p.in_dim2; ++i2) {
                const size_t at =
                    (((size_t)(i0 + p.before0) * (size_t)p.out_dim1 + (size_t)(i1 + p.before1)) *
                         (size_t)p.out_dim2 +
                     (size_t)(i2 + p.before2)) *
                        (size_t)p.out_dim3 +
                    (size_t)p.before3;
                memcpy(gx, gy + at, run);
                gx += run;
            }
        }
    }
}

size_t pad_s8_grad_input_scratch_size(const void *params) {
    (void)params;
    return 0;
}
