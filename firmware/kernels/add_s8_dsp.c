/* int8 ADD, optimized: bit-identical with add_s8_ref_run (add_s8.c), TFLite's AddFunc.
 *
 * Each input's scaled value, MultiplyByQuantizedMultiplier((x + offset) << left_shift, M, s),
 * depends on the int8 x alone: the kernel computes it for all 256 values of each input with
 * the reference's own arithmetic (fixedpoint.h), into two tables in the operator's scratch, and
 * then an element is two table lookups and one addition, instead of two 64-bit multiplies and
 * roundings. The output scaling takes requant_fast.h's fused path (SMMLAR, ADD, ASR, QADD,
 * SSAT; proved bit-identical with fixedpoint.h) when the output multiplier is on it, else the
 * reference's. Tables cost 512 reference scalings, so outputs of fewer than ADD_TABLE_MIN
 * elements run the reference kernel. Broadcasting follows the same strides. */
#include "add_s8.h"
#include "broadcast4.h"
#include "dsp.h"
#include "fixedpoint.h"
#include "requant_fast.h"

#define ADD_TABLE_MIN 512 /* elements below which the tables do not pay */

/* The reference's scaled input value for every int8 x, indexed by (uint8_t)x. */
static void scale_table(int32_t *t, int32_t offset, int32_t left_shift, int32_t multiplier,
                        int32_t shift) {
    for (int32_t x = -128; x < 128; ++x) {
        const int32_t shifted = (offset + x) * ((int32_t)1 << left_shift);
        t[(uint8_t)x] = fp_multiply_by_quantized_multiplier(shifted, multiplier, (int)shift);
    }
}

/* The constants of add_s8_dsp_run's rows (broadcast4.h walks them). */
struct add_rows {
    const int32_t *t1, *t2;
    int32_t m2, s1, cc, lo, hi, multiplier, shift, output_offset;
};

/* One innermost run, requant_fast.h's fused output scaling. */
static inline int8_t *add_row_fast(const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                                   int32_t sa, int32_t sb, const void *ctx) {
    const struct add_rows *r = ctx;
    for (int32_t i3 = 0; i3 < n; ++i3, a += sa, b += sb) {
        const int32_t raw = r->t1[(uint8_t)*a] + r->t2[(uint8_t)*b];
        *out++ = (int8_t)fp_clamp(rq_fused(raw, r->m2, r->s1, r->cc), r->lo, r->hi);
    }
    return out;
}

/* One innermost run, the reference's output scaling. */
static inline int8_t *add_row(const int8_t *a, const int8_t *b, int8_t *out, int32_t n, int32_t sa,
                              int32_t sb, const void *ctx) {
    const struct add_rows *r = ctx;
    for (int32_t i3 = 0; i3 < n; ++i3, a += sa, b += sb) {
        const int32_t raw = r->t1[(uint8_t)*a] + r->t2[(uint8_t)*b];
        const int32_t y = fp_multiply_by_quantized_multiplier(raw, r->multiplier, (int)r->shift) +
                          r->output_offset;
        *out++ = (int8_t)fp_clamp(y, r->lo, r->hi);
    }
    return out;
}

/* The two tables live in the operator's scratch, after the reference's (8-aligned; the planner
 * aligns scratch to 16 bytes): planned whatever the build, so one plan runs on both. */
static size_t add_s8_tables_offset(const void *params) {
    return (add_s8_ref_scratch_size(params) + 7u) & ~(size_t)7u;
}

static int32_t *add_s8_tables(void *scratch, const void *params) {
    return (int32_t *)((uint8_t *)scratch + add_s8_tables_offset(params));
}

size_t add_s8_scratch_size(const void *params) {
    const struct add_s8_params p = *(const struct add_s8_params *)params;
    const int64_t n = (int64_t)p.dim0 * p.dim1 * p.dim2 * p.dim3;
    return add_s8_tables_offset(params) + (n < ADD_TABLE_MIN ? 0 : 2 * 256 * sizeof(int32_t));
}

void add_s8_dsp_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct add_s8_params p = *(const struct add_s8_params *)params;
    const int64_t n = (int64_t)p.dim0 * p.dim1 * p.dim2 * p.dim3;
    if (n < ADD_TABLE_MIN) {
        add_s8_ref_run(params, operands, scratch);
        return;
    }
    const int8_t *in1 = operands[ADD_S8_INPUT1];
    const int8_t *in2 = operands[ADD_S8_INPUT2];
    int8_t *out = operands[ADD_S8_OUTPUT];
    int32_t *const t1 = add_s8_tables(scratch, params), *const t2 = t1 + 256; /* scratch */
    scale_table(t1, p.input1_offset, p.left_shift, p.input1_multiplier, p.input1_shift);
    scale_table(t2, p.input2_offset, p.left_shift, p.input2_multiplier, p.input2_shift);

    /* requant_fast.h's step 4 needs the offset within +-2^30 and the clamp within int8
     * (the reference clamps to [act_min, act_max], then stores the int8). */
    const int fast = rq_fast_ok(p.output_multiplier, p.output_shift) &&
                     p.output_offset >= -(1 << 30) && p.output_offset < (1 << 30) &&
                     p.act_min >= -128 && p.act_max <= 127;
    const int32_t m2 = rq_m2(p.output_multiplier), s1 = rq_s1(p.output_shift);
    const int32_t cc = 1 + 2 * p.output_offset, lo = p.act_min, hi = p.act_max;
    const struct add_rows r = {
        t1, t2, m2, s1, cc, lo, hi, p.output_multiplier, p.output_shift, p.output_offset};
    const struct broadcast4 s = broadcast4_of(&p);
    if (fast)
        broadcast4_s8(&s, in1, in2, out, add_row_fast, &r);
    else
        broadcast4_s8(&s, in1, in2, out, add_row, &r);
}

/* The selector, the runtime's entry for add_s8 (ops.def): the DSP variant above when the
 * build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (add_s8.c). The DSP
 * variant falls back to the reference itself for the shapes it does not take. */
void add_s8_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        add_s8_dsp_run(params, operands, scratch);
    else
        add_s8_ref_run(params, operands, scratch);
}
