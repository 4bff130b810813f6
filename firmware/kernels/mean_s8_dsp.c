/* int8 MEAN, optimized: bit-identical with mean_s8_ref_run (mean_s8.c). The spatial mean
 * (reduce over the two middle dimensions of [batch, h, w, channels], global average pooling's
 * MEAN) sums four channels at a time into 16-bit lanes (dsp.h's dsp_bias_sums: one word and
 * two SXTAB16 per position and 4 channels, flushed to int32 every 255 positions), the same
 * int32 sums as the reference's element-by-element loop with its index arithmetic; each
 * output then takes the reference's own steps (fixedpoint.h, or requant_fast.h's rq_multiply,
 * the same arithmetic in a few instructions). Other reductions run the reference. */
#include "dsp.h"
#include "fixedpoint.h"
#include "mean_s8.h"
#include "requant_fast.h"

void mean_s8_dsp_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct mean_s8_params p = *(const struct mean_s8_params *)params;
    if (p.reduce0 || !p.reduce1 || !p.reduce2 || p.reduce3) {
        mean_s8_ref_run(params, operands, scratch);
        return;
    }
    const int8_t *input = operands[MEAN_S8_INPUT];
    int8_t *out = operands[MEAN_S8_OUTPUT];
    const size_t positions = (size_t)p.dim1 * (size_t)p.dim2, channels = (size_t)p.dim3;
    int32_t sums[DSP_BIAS_CHUNK];
    /* requant_fast.h's exact short form of the reference's multiply where it holds. */
    const int fast = rq_multiply_ok(p.multiplier, p.shift);
    for (int32_t b = 0; b < p.dim0; ++b) {
        const int8_t *image = input + (size_t)b * positions * channels;
        for (int32_t c0 = 0; c0 < p.dim3; c0 += DSP_BIAS_CHUNK) {
            const int32_t n = p.dim3 - c0 < DSP_BIAS_CHUNK ? p.dim3 - c0 : DSP_BIAS_CHUNK;
            dsp_bias_sums(image, NULL, positions, channels, c0, n, sums);
            for (int32_t j = 0; j < n; ++j) {
                /* sum - count * zero_point, in 64 bits then narrowed, as TFLite does. */
                const int32_t shifted_sum =
                    (int32_t)((int64_t)sums[j] - (int64_t)p.input_zero_point * p.count);
                const int32_t v = (fast ? rq_multiply(shifted_sum, p.multiplier, (int)p.shift)
                                        : fp_multiply_by_quantized_multiplier(
                                              shifted_sum, p.multiplier, (int)p.shift)) +
                                  p.output_zero_point;
                *out++ = (int8_t)fp_clamp(v, INT8_MIN, INT8_MAX);
            }
        }
    }
}

/* The selector, the runtime's entry for mean_s8 (ops.def): the DSP variant above when the
 * build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (mean_s8.c). The DSP
 * variant falls back to the reference itself for the shapes it does not take. */
void mean_s8_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        mean_s8_dsp_run(params, operands, scratch);
    else
        mean_s8_ref_run(params, operands, scratch);
}
