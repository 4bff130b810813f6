/* int8 PAD: TFLite's reference Pad with a constant pad value. See pad_s8.h. */
#include "pad_s8.h"

void pad_s8_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct pad_s8_params p = *(const struct pad_s8_params *)params;
    const int8_t *in = operands[PAD_S8_INPUT];
    int8_t *out = operands[PAD_S8_OUTPUT];
    const int8_t pad_value = (int8_t)p.pad_value;

    /* Walk the output in row-major order; an element comes from the input when each of its
     * coordinates falls inside [before, before + in_dim), and the input is then read in
     * row-major order too. */
    for (int32_t i0 = 0; i0 < p.out_dim0; ++i0) {
        const int in0 = i0 >= p.before0 && i0 < p.before0 + p.in_dim0;
        for (int32_t i1 = 0; i1 < p.out_dim1; ++i1) {
            const int in1 = in0 && i1 >= p.before1 && i1 < p.before1 + p.in_dim1;
            for (int32_t i2 = 0; i2 < p.out_dim2; ++i2) {
                const int in2 = in1 && i2 >= p.before2 && i2 < p.before2 + p.in_dim2;
                for (int32_t i3 = 0; i3 < p.out_dim3; ++i3) {
                    const int inside = in2 && i3 >= p.before3 && i3 < p.before3 + p.in_dim3;
                    *out++ = inside ? *in++ : pad_value;
                }
            }
        }
    }
}

size_t pad_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
