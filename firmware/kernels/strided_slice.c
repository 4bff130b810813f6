/* STRIDED_SLICE / SLICE: a gather of an affine grid of the input. See strided_slice.h. */
#include "strided_slice.h"

#include "copy_run.h"

#define STRIDED_SLICE_RANK 5

void strided_slice_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct strided_slice_params p = *(const struct strided_slice_params *)params;
    const uint8_t *in = operands[STRIDED_SLICE_INPUT];
    uint8_t *out = operands[STRIDED_SLICE_OUTPUT];

    const int32_t in_dim[STRIDED_SLICE_RANK] = {p.in_dim0, p.in_dim1, p.in_dim2, p.in_dim3,
                                                p.in_dim4};
    const int32_t n[STRIDED_SLICE_RANK] = {p.out_dim0, p.out_dim1, p.out_dim2, p.out_dim3,
                                           p.out_dim4};
    const int32_t start[STRIDED_SLICE_RANK] = {p.start0, p.start1, p.start2, p.start3, p.start4};
    const int32_t step[STRIDED_SLICE_RANK] = {p.step0, p.step1, p.step2, p.step3, p.step4};
    /* Byte offset of the first element, and each dimension's byte step. */
    ptrdiff_t stride = p.elem_size, first = 0, s[STRIDED_SLICE_RANK];
    for (int k = STRIDED_SLICE_RANK - 1; k >= 0; --k) {
        first += (ptrdiff_t)start[k] * stride;
        s[k] = (ptrdiff_t)step[k] * stride;
        stride *= in_dim[k];
    }
    const uint8_t *base = in + first;
    for (int32_t i0 = 0; i0 < n[0]; ++i0) {
        const uint8_t *p0 = base + i0 * s[0];
        for (int32_t i1 = 0; i1 < n[1]; ++i1) {
            const uint8_t *p1 = p0 + i1 * s[1];
            for (int32_t i2 = 0; i2 < n[2]; ++i2) {
                const uint8_t *p2 = p1 + i2 * s[2];
                for (int32_t i3 = 0; i3 < n[3]; ++i3) {
                    /* The innermost dimension is one run: a memcpy at step 1. */
                    out = copy_run(out, p2 + i3 * s[3], n[4], step[4], p.elem_size);
                }
            }
        }
    }
}

size_t strided_slice_scratch_size(const void *params) {
    (void)params;
    return 0;
}
