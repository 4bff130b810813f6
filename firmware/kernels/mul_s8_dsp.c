/* int8 MUL, optimized: bit-identical with mul_s8_ref_run (mul_s8.c), TFLite's MulElementwise.
 *
 * Four elements per step where each input's innermost stride is 1 (contiguous) or 0 (one
 * value along the row, e.g. a squeeze-excite scale broadcast over a channel row is
 * contiguous, a per-tensor scalar is 0): one word load per input, SXTAB16 adds the zero-point
 * offsets while it widens the even and the odd bytes to 16-bit lanes ((x + offset) lies in
 * [-255, 255]), SMULBB / SMULTT (SMLABB / SMLATT with 0) give the four products, and
 * requant_fast.h's fused path (SMMLAR, ADD, ASR, QADD, SSAT; proved bit-identical with
 * fixedpoint.h) requantizes each with the output offset and the int8 saturation, instead of a
 * 64-bit multiply and rounding per element. Outputs whose multiplier is off the fast path
 * (a real multiplier of 1/2 or more) or whose innermost strides are other than 0 or 1 run the
 * reference kernel. */
#include "broadcast4.h"
#include "dsp.h"
#include "fixedpoint.h"
#include "mul_s8.h"
#include "requant_fast.h"

/* Elements i..i+3 of a row, offset and widened: (0, 2) and (1, 3) as 16-bit lane pairs.
 * stride 0: the row's one value, pre-widened into `bcast`. */
static inline void widen4(const int8_t *row, int32_t stride, uint32_t offset_pair, uint32_t bcast,
                          uint32_t *even, uint32_t *odd) {
    if (stride == 0) {
        *even = *odd = bcast;
        return;
    }
    const uint32_t w = dsp_read4(row);
    *even = dsp_sxtab16(offset_pair, w);
    *odd = dsp_sxtab16_hi(offset_pair, w);
}

/* The constants of mul_s8_dsp_run's rows (broadcast4.h walks them). */
struct mul_rows {
    uint32_t off1, off2;
    int32_t m2, s1, cc, lo, hi, input1_offset, input2_offset;
};

/* One innermost run (strides 0 or 1), four elements per step. */
static inline int8_t *mul_row(const int8_t *a, const int8_t *b, int8_t *out, int32_t n, int32_t sa,
                              int32_t sb, const void *ctx) {
    const struct mul_rows *r = ctx;
    const int32_t m2 = r->m2, s1 = r->s1, cc = r->cc, lo = r->lo, hi = r->hi;
    const uint32_t a_bcast = dsp_pair(r->input1_offset + a[0]);
    const uint32_t b_bcast = dsp_pair(r->input2_offset + b[0]);
    int32_t i3 = 0;
    for (; i3 + 4 <= n; i3 += 4) {
        uint32_t a02, a13, b02, b13;
        widen4(a + i3 * sa, sa, r->off1, a_bcast, &a02, &a13);
        widen4(b + i3 * sb, sb, r->off2, b_bcast, &b02, &b13);
        const int32_t y0 = rq_fused(dsp_smlabb(a02, b02, 0), m2, s1, cc);
        const int32_t y1 = rq_fused(dsp_smlabb(a13, b13, 0), m2, s1, cc);
        const int32_t y2 = rq_fused(dsp_smlatt(a02, b02, 0), m2, s1, cc);
        const int32_t y3 = rq_fused(dsp_smlatt(a13, b13, 0), m2, s1, cc);
        out[0] = (int8_t)fp_clamp(y0, lo, hi);
        out[1] = (int8_t)fp_clamp(y1, lo, hi);
        out[2] = (int8_t)fp_clamp(y2, lo, hi);
        out[3] = (int8_t)fp_clamp(y3, lo, hi);
        out += 4;
    }
    for (; i3 < n; ++i3) {
        const int32_t prod = (r->input1_offset + a[i3 * sa]) * (r->input2_offset + b[i3 * sb]);
        *out++ = (int8_t)fp_clamp(rq_fused(prod, m2, s1, cc), lo, hi);
    }
    return out;
}

void mul_s8_dsp_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct mul_s8_params p = *(const struct mul_s8_params *)params;
    const int strides_ok =
        (p.in1_stride3 == 0 || p.in1_stride3 == 1) && (p.in2_stride3 == 0 || p.in2_stride3 == 1);
    /* requant_fast.h's step 4 needs the offset within +-2^30 and the clamp within int8. */
    const int fast = rq_fast_ok(p.output_multiplier, p.output_shift) &&
                     p.output_offset >= -(1 << 30) && p.output_offset < (1 << 30) &&
                     p.act_min >= -128 && p.act_max <= 127;
    if (!strides_ok || !fast) {
        mul_s8_ref_run(params, operands, scratch);
        return;
    }
    const int8_t *in1 = operands[MUL_S8_INPUT1];
    const int8_t *in2 = operands[MUL_S8_INPUT2];
    int8_t *out = operands[MUL_S8_OUTPUT];
    const uint32_t off1 = dsp_pair(p.input1_offset), off2 = dsp_pair(p.input2_offset);
    const int32_t m2 = rq_m2(p.output_multiplier), s1 = rq_s1(p.output_shift);
    const int32_t cc = 1 + 2 * p.output_offset, lo = p.act_min, hi = p.act_max;

    const struct mul_rows r = {off1, off2, m2, s1, cc, lo, hi, p.input1_offset, p.input2_offset};
    const struct broadcast4 s = broadcast4_of(&p);
    broadcast4_s8(&s, in1, in2, out, mul_row, &r);
}

/* The selector, the runtime's entry for mul_s8 (ops.def): the DSP variant above when the
 * build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (mul_s8.c). The DSP
 * variant falls back to the reference itself for the shapes it does not take. */
void mul_s8_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        mul_s8_dsp_run(params, operands, scratch);
    else
        mul_s8_ref_run(params, operands, scratch);
}
