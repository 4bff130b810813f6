/* Input gradient of STRIDED_SLICE / SLICE: a scatter into zeros. See
 * strided_slice_grad_input.h. */
#include "strided_slice_grad_input.h"

#include <string.h>

#define STRIDED_SLICE_GRAD_RANK 5

void strided_slice_grad_input_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct strided_slice_grad_input_params p =
        *(const struct strided_slice_grad_input_params *)params;
    const int8_t *gy = operands[STRIDED_SLICE_GRAD_INPUT_GRAD_Y];
    int8_t *gx = operands[STRIDED_SLICE_GRAD_INPUT_GRAD_X];

    const int32_t in_dim[STRIDED_SLICE_GRAD_RANK] = {p.in_dim0, p.in_dim1, p.in_dim2, p.in_dim3,
                                                     p.in_dim4};
    const int32_t n[STRIDED_SLICE_GRAD_RANK] = {p.out_dim0, p.out_dim1, p.out_dim2, p.out_dim3,
                                                p.out_dim4};
    const int32_t start[STRIDED_SLICE_GRAD_RANK] = {p.start0, p.start1, p.start2, p.start3,
                                                    p.start4};
    const int32_t step[STRIDED_SLICE_GRAD_RANK] = {p.step0, p.step1, p.step2, p.step3, p.step4};
    /* Offset of the first element taken, and each dimension's step, in elements of G_x. */
    ptrdiff_t stride = 1, first = 0, s[STRIDED_SLICE_GRAD_RANK];
    for (int k = STRIDED_SLICE_GRAD_RANK - 1; k >= 0; --k) {
        first += (ptrdiff_t)start[k] * stride;
        s[k] = (ptrdiff_t)step[k] * stride;
        stride *= in_dim[k];
    }
    memset(gx, 0, (size_t)stride); /* stride is now G_x's element count */
    int8_t *base = gx + first;
    for (int32_t i0 = 0; i0 < n[0]; ++i0) {
        int8_t *p0 = base + i0 * s[0];
        for (int32_t i1 = 0; i1 < n[1]; ++i1) {
            int8_t *p1 = p0 + i1 * s[1];
            for (int32_t i2 = 0; i2 < n[2]; ++i2) {
                int8_t *p2 = p1 + i2 * s[2];
                for (int32_t i3 = 0; i3 < n[3]; ++i3) {
                    int8_t *p3 = p2 + i3 * s[3];
                    if (step[4] == 1) {
                        memcpy(p3, gy, (size_t)n[4]);
                        gy += n[4];
                    } else {
                        for (int32_t i4 = 0; i4 < n[4]; ++i4) p3[i4 * s[4]] = *gy++;
                    }
                }
            }
        }
    }
}

size_t strided_slice_grad_input_scratch_size(const void *params) {
    (void)params;
    return 0;
}
