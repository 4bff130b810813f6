/* int8 MEAN, optimized: bit-identical with mean_s8_ref_run (mean_s8.c). The spatial mean
 * (reduce over the two middle dimensions of [batch, h, w, channels], global average pooling's
 * MEAN) sums 8 channels at a time into 16-bit lanes held in registers (the bias gradients'
 * gu_bias_sums8, conv2d_s8_grad_update_dsp.h, without a mask: per position two words and four
 * SXTAB16, flushed to int32 every 255 positions), a last group of fewer than 8 channels through
 * dsp.h's dsp_bias_sums; the same int32 sums as the reference's element-by-element loop. Each
 * output then takes the reference's own steps (fixedpoint.h), or requant_fast.h's rq_fused (the
 * multiply, the offset and the int8 clamp in 5 instructions, proved there) where the multiplier
 * is on its path. Other reductions run the reference. (MobileNetV2's 4x4x1280 MEAN: ~104,000
 * instructions with dsp_bias_sums for every channel, whose lane sums live in memory, and a
 * 64-bit product per output.) */
#include "conv2d_s8_grad_update_dsp.h" /* gu_bias_sums8 */
#include "dsp.h"
#include "fixedpoint.h"
#include "mean_s8.h"
#include "requant_fast.h"

/* The reference's output steps for one channel's sum (wrapping: the reference narrows the
 * 64-bit difference to int32, which is the difference mod 2^32). */
struct mean_out {
    uint32_t zc; /* input_zero_point * count, mod 2^32 */
    int32_t m2, s1, c, multiplier, shift, zp;
    int fast;
};

static inline int8_t mean_out_of(const struct mean_out *k, int32_t sum) {
    const int32_t shifted = (int32_t)((uint32_t)sum - k->zc);
    if (k->fast) return (int8_t)rq_fused(shifted, k->m2, k->s1, k->c);
    const int32_t v = fp_multiply_by_quantized_multiplier(shifted, k->multiplier, (int)k->shift);
    return (int8_t)fp_clamp(v + k->zp, INT8_MIN, INT8_MAX);
}

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
    /* requant_fast.h's fused path (rq_fast_ok, an offset its QADD takes) where it holds. */
    const struct mean_out k = {
        .zc = (uint32_t)p.input_zero_point * (uint32_t)p.count,
        .m2 = rq_m2(p.multiplier),
        .s1 = rq_s1(p.shift),
        .c = 1 + 2 * p.output_zero_point,
        .multiplier = p.multiplier,
        .shift = p.shift,
        .zp = p.output_zero_point,
        .fast = rq_fast_ok(p.multiplier, p.shift) && p.output_zero_point >= -(1 << 29) &&
                p.output_zero_point < (1 << 29),
    };
    for (int32_t b = 0; b < p.dim0; ++b) {
        const int8_t *image = input + (size_t)b * positions * channels;
        for (int32_t c0 = 0; c0 < p.dim3; c0 += 8) {
            const int32_t width = p.dim3 - c0 < 8 ? p.dim3 - c0 : 8;
            int32_t s[DSP_BIAS_CHUNK];
            if (width == 8)
                gu_bias_sums8(image, NULL, positions, channels, c0, s);
            else
                dsp_bias_sums(image, NULL, positions, channels, c0, width, s);
            for (int32_t j = 0; j < width; ++j) *out++ = mean_out_of(&k, s[j]);
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
