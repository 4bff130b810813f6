/* int8 MEAN: TFLite's reference QuantizedMeanOrSum (compute_sum = false). See mean_s8.h. */
#include "mean_s8.h"

#include "fixedpoint.h"

void mean_s8_ref_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct mean_s8_params p = *(const struct mean_s8_params *)params;
    const int8_t *input = operands[MEAN_S8_INPUT];
    int8_t *out = operands[MEAN_S8_OUTPUT];

    const int32_t dim[4] = {p.dim0, p.dim1, p.dim2, p.dim3};
    const int32_t reduce[4] = {p.reduce0, p.reduce1, p.reduce2, p.reduce3};
    int32_t stride[4]; /* input element strides */
    stride[3] = 1;
    for (int k = 2; k >= 0; --k) stride[k] = stride[k + 1] * dim[k + 1];
    /* Kept dimensions run over their extent, averaged ones are summed by the inner loops;
     * the outer loops visit outputs in row-major order of the kept dimensions. */
    int32_t outer[4], inner[4];
    for (int k = 0; k < 4; ++k) {
        outer[k] = reduce[k] ? 1 : dim[k];
        inner[k] = reduce[k] ? dim[k] : 1;
    }

    for (int32_t o0 = 0; o0 < outer[0]; ++o0) {
        for (int32_t o1 = 0; o1 < outer[1]; ++o1) {
            for (int32_t o2 = 0; o2 < outer[2]; ++o2) {
                for (int32_t o3 = 0; o3 < outer[3]; ++o3) {
                    const int8_t *base =
                        input + o0 * stride[0] + o1 * stride[1] + o2 * stride[2] + o3 * stride[3];
                    /* TFLite sums the raw values in int32 (its temp_sum for int8). */
                    int32_t sum = 0;
                    for (int32_t r0 = 0; r0 < inner[0]; ++r0) {
                        for (int32_t r1 = 0; r1 < inner[1]; ++r1) {
                            for (int32_t r2 = 0; r2 < inner[2]; ++r2) {
                                for (int32_t r3 = 0; r3 < inner[3]; ++r3) {
                                    sum += base[r0 * stride[0] + r1 * stride[1] + r2 * stride[2] +
                                                r3 * stride[3]];
                                }
                            }
                        }
                    }
                    /* sum - count * zero_point, in 64 bits then narrowed, as TFLite does. */
                    const int32_t shifted_sum =
                        (int32_t)((int64_t)sum - (int64_t)p.input_zero_point * p.count);
                    const int32_t v = fp_multiply_by_quantized_multiplier(shifted_sum, p.multiplier,
                                                                          (int)p.shift) +
                                      p.output_zero_point;
                    *out++ = (int8_t)fp_clamp(v, INT8_MIN, INT8_MAX);
                }
            }
        }
    }
}

size_t mean_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}
