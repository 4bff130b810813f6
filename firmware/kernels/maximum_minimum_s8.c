/* int8 MAXIMUM / MINIMUM with broadcasting by strides. See maximum_minimum_s8.h. */
#include "maximum_minimum_s8.h"

void maximum_minimum_s8_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct maximum_minimum_s8_params p = *(const struct maximum_minimum_s8_params *)params;
    const int8_t *in1 = operands[MAXIMUM_MINIMUM_S8_INPUT1];
    const int8_t *in2 = operands[MAXIMUM_MINIMUM_S8_INPUT2];
    int8_t *out = operands[MAXIMUM_MINIMUM_S8_OUTPUT];

    for (int32_t i0 = 0; i0 < p.dim0; ++i0) {
        for (int32_t i1 = 0; i1 < p.dim1; ++i1) {
            for (int32_t i2 = 0; i2 < p.dim2; ++i2) {
                const int8_t *a =
                    in1 + i0 * p.in1_stride0 + i1 * p.in1_stride1 + i2 * p.in1_stride2;
                const int8_t *b =
                    in2 + i0 * p.in2_stride0 + i1 * p.in2_stride1 + i2 * p.in2_stride2;
                for (int32_t i3 = 0; i3 < p.dim3; ++i3) {
                    const int8_t x = a[i3 * p.in1_stride3], y = b[i3 * p.in2_stride3];
                    *out++ = p.is_maximum ? (x > y ? x : y) : (x < y ? x : y);
                }
            }
        }
    }
}

size_t maximum_minimum_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
