/* int8 MUL: TFLite's reference MulElementwise per element, with broadcasting done by
 * strides. See mul_s8.h for layouts and operands. */
#include "mul_s8.h"

#include "fixedpoint.h"

void mul_s8_ref_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct mul_s8_params p = *(const struct mul_s8_params *)params;
    const int8_t *in1 = operands[MUL_S8_INPUT1];
    const int8_t *in2 = operands[MUL_S8_INPUT2];
    int8_t *out = operands[MUL_S8_OUTPUT];

    for (int32_t i0 = 0; i0 < p.dim0; ++i0) {
        for (int32_t i1 = 0; i1 < p.dim1; ++i1) {
            for (int32_t i2 = 0; i2 < p.dim2; ++i2) {
                const int8_t *a =
                    in1 + i0 * p.in1_stride0 + i1 * p.in1_stride1 + i2 * p.in1_stride2;
                const int8_t *b =
                    in2 + i0 * p.in2_stride0 + i1 * p.in2_stride1 + i2 * p.in2_stride2;
                for (int32_t i3 = 0; i3 < p.dim3; ++i3) {
                    const int32_t prod = (p.input1_offset + a[i3 * p.in1_stride3]) *
                                         (p.input2_offset + b[i3 * p.in2_stride3]);
                    const int32_t y = fp_multiply_by_quantized_multiplier(prod, p.output_multiplier,
                                                                          (int)p.output_shift) +
                                      p.output_offset;
                    *out++ = (int8_t)fp_clamp(y, p.act_min, p.act_max);
                }
            }
        }
    }
}

size_t mul_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
