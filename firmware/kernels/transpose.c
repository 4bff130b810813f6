/* TRANSPOSE: a gather of the input in the output's row-major order. See transpose.h. */
#include "transpose.h"

#include "copy_run.h"

#define TRANSPOSE_RANK 6

void transpose_ref_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct transpose_params p = *(const struct transpose_params *)params;
    const uint8_t *in = operands[TRANSPOSE_INPUT];
    uint8_t *out = operands[TRANSPOSE_OUTPUT];

    const int32_t in_dim[TRANSPOSE_RANK] = {p.in_dim0, p.in_dim1, p.in_dim2,
                                            p.in_dim3, p.in_dim4, p.in_dim5};
    const int32_t perm[TRANSPOSE_RANK] = {p.perm0, p.perm1, p.perm2, p.perm3, p.perm4, p.perm5};
    int32_t in_stride[TRANSPOSE_RANK]; /* input element strides */
    in_stride[TRANSPOSE_RANK - 1] = 1;
    for (int k = TRANSPOSE_RANK - 2; k >= 0; --k) in_stride[k] = in_stride[k + 1] * in_dim[k + 1];
    /* Output dimension k runs over input dimension perm[k]: its extent and input stride. */
    int32_t n[TRANSPOSE_RANK], s[TRANSPOSE_RANK];
    for (int k = 0; k < TRANSPOSE_RANK; ++k) {
        n[k] = in_dim[perm[k]];
        s[k] = in_stride[perm[k]];
    }
    /* The innermost output dimension is one run: a memcpy when the permutation keeps the
     * input's last dimension last, a strided gather otherwise. */
    const ptrdiff_t e = p.elem_size;
    for (int32_t i0 = 0; i0 < n[0]; ++i0) {
        const uint8_t *p0 = in + (ptrdiff_t)i0 * s[0] * e;
        for (int32_t i1 = 0; i1 < n[1]; ++i1) {
            const uint8_t *p1 = p0 + (ptrdiff_t)i1 * s[1] * e;
            for (int32_t i2 = 0; i2 < n[2]; ++i2) {
                const uint8_t *p2 = p1 + (ptrdiff_t)i2 * s[2] * e;
                for (int32_t i3 = 0; i3 < n[3]; ++i3) {
                    const uint8_t *p3 = p2 + (ptrdiff_t)i3 * s[3] * e;
                    for (int32_t i4 = 0; i4 < n[4]; ++i4) {
                        out = copy_run(out, p3 + (ptrdiff_t)i4 * s[4] * e, n[5], s[5], p.elem_size);
                    }
                }
            }
        }
    }
}

size_t transpose_scratch_size(const void *params) {
    (void)params;
    return 0;
}
