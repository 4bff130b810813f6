/* What the ADD and SUB DSP variants share (add_s8_dsp.c, sub_s8_dsp.c): both scale each input
 * as TFLite's AddFunc / SubElementwise do, MultiplyByQuantizedMultiplier((x + offset) <<
 * left_shift, M, s), which depends on the int8 x alone, so the reference's own arithmetic
 * (fixedpoint.h) fills one 256-entry table per input, and an element is two lookups and one
 * addition or subtraction, instead of two 64-bit multiplies and roundings. The output scaling
 * takes requant_fast.h's fused path (SMMLAR, ADD, ASR, QADD, SSAT; proved bit-identical with
 * fixedpoint.h) when the output multiplier is on it, else the reference's. The tables cost 512
 * reference scalings, so outputs of fewer than ADDSUB_TABLE_MIN elements run the reference
 * kernel. add_s8.def and sub_s8.def have the same fields, which ADDSUB_ROWS reads. */
#ifndef KERNELS_ADD_S8_DSP_H
#define KERNELS_ADD_S8_DSP_H

#include "broadcast4.h"
#include "dsp.h"
#include "fixedpoint.h"
#include "requant_fast.h"

#define ADDSUB_TABLE_MIN 512 /* elements below which the tables do not pay */

/* The constants of a kernel's rows (broadcast4.h walks them). */
struct addsub_rows {
    const int32_t *t1, *t2; /* the inputs' scaled values, indexed by (uint8_t)x */
    int32_t m2, s1, cc, lo, hi, multiplier, shift, output_offset;
    int fast;  /* requant_fast.h's output scaling */
    int clamp; /* the clamp narrower than int8 (the fast path's saturation is int8's) */
};

/* The two tables live in the operator's scratch after the reference's own (8-aligned; the
 * planner aligns scratch to 16 bytes), planned whatever the build, so one plan runs on both. */
static inline size_t addsub_tables_offset(size_t ref_scratch) {
    return (ref_scratch + 7u) & ~(size_t)7u;
}
static inline size_t addsub_scratch_size(size_t ref_scratch, int64_t n) {
    return addsub_tables_offset(ref_scratch) +
           (n < ADDSUB_TABLE_MIN ? 0 : 2 * 256 * sizeof(int32_t));
}

/* The reference's scaled input value for every int8 x, indexed by (uint8_t)x: requant_fast.h's
 * rq_multiply (its own arithmetic in a few instructions, proved there) where the multiplier
 * allows, as every TFLite ADD's input multipliers (below 1/2) do; else fixedpoint.h's 64-bit
 * steps, ~30 instructions an entry (512 an operator). The usual right shift walks x from -128
 * to 127 with (offset + x) << left_shift stepped by one addition (the same int32 as the
 * reference's product, mod 2^32), the negative half into t[128..255], then t[0..127], and
 * rq_multiply's steps written out with its constants hoisted: ~8 instructions an entry, where
 * the loop through rq_multiply took ~20 (per ADD 10,000 instructions, a residual ADD of 896
 * elements costing 23,000). */
static inline void addsub_scale_table(int32_t *t, int32_t offset, int32_t left_shift,
                                      int32_t multiplier, int32_t shift) {
    if (multiplier >= (1 << 30) && shift >= -31 && shift <= 30 && left_shift >= 0 &&
        left_shift + (shift > 0 ? shift : 0) <= 31) { /* rq_multiply_ok, M != 0 */
        const int32_t m2 = rq_m2(multiplier), s1 = rq_s1(shift), up = shift > 0 ? shift : 0;
        /* rq_multiply's a = shifted << max(shift, 0), stepped */
        const uint32_t step = 1u << (left_shift + up);
        uint32_t a = (uint32_t)(offset - 128) << (left_shift + up);
        int32_t *d = t + 128;
        for (int32_t half = 0; half < 2; ++half, d = t) {
            if (shift >= 0) /* rq_multiply's left shift: SMMLAR alone */
                for (int32_t i = 0; i < 128; ++i, a += step)
                    d[i] = rq_smmlar((int32_t)a, m2, (int32_t)a);
            else
                for (int32_t i = 0; i < 128; ++i, a += step)
                    d[i] = (rq_t((int32_t)a, m2, s1) + 1) >> 1;
        }
        return;
    }
    const int fast = rq_multiply_ok(multiplier, shift);
    for (int32_t x = -128; x < 128; ++x) {
        const int32_t shifted = (offset + x) * ((int32_t)1 << left_shift);
        t[(uint8_t)x] = fast ? rq_multiply(shifted, multiplier, (int)shift)
                             : fp_multiply_by_quantized_multiplier(shifted, multiplier, (int)shift);
    }
}

/* Where both inputs are laid out as the output (no broadcasting), the walk made one
 * contiguous run: the kernel takes the whole tensor in one call of its row function instead of
 * one per innermost row (MobileNetV2's residual ADDs of 8-56 channels: 16-256 rows, ~30
 * instructions of walk and row set-up each). The same elements in the same order. */
static inline void addsub_flatten(struct broadcast4 *s) {
    const int32_t dim[4] = {s->dim0, s->dim1, s->dim2, s->dim3};
    const int32_t s1[4] = {s->in1_stride0, s->in1_stride1, s->in1_stride2, s->in1_stride3};
    const int32_t s2[4] = {s->in2_stride0, s->in2_stride1, s->in2_stride2, s->in2_stride3};
    int64_t dense = 1;
    for (int k = 3; k >= 0; --k) {
        if (dim[k] != 1 && (s1[k] != dense || s2[k] != dense)) return;
        dense *= dim[k];
    }
    if (dense > INT32_MAX) return;
    s->dim0 = s->dim1 = s->dim2 = 1;
    s->dim3 = (int32_t)dense;
    s->in1_stride3 = s->in2_stride3 = 1;
}

/* Fills the tables t1 and t2 (256 entries each) and returns the rows' constants. */
static inline struct addsub_rows addsub_rows_of(int32_t *t1, int32_t *t2, int32_t in1_offset,
                                                int32_t in2_offset, int32_t left_shift,
                                                int32_t in1_multiplier, int32_t in1_shift,
                                                int32_t in2_multiplier, int32_t in2_shift,
                                                int32_t out_multiplier, int32_t out_shift,
                                                int32_t out_offset, int32_t act_min,
                                                int32_t act_max) {
    addsub_scale_table(t1, in1_offset, left_shift, in1_multiplier, in1_shift);
    addsub_scale_table(t2, in2_offset, left_shift, in2_multiplier, in2_shift);
    struct addsub_rows r = {
        t1,      t2,      rq_m2(out_multiplier), rq_s1(out_shift), 1 + 2 * out_offset,
        act_min, act_max, out_multiplier,        out_shift,        out_offset,
        0,       0};
    /* requant_fast.h's step 4 needs the offset within +-2^30 and the clamp within int8 (the
     * reference clamps to [act_min, act_max], then stores the int8). */
    r.fast = rq_fast_ok(out_multiplier, out_shift) && out_offset >= -(1 << 30) &&
             out_offset < (1 << 30) && act_min >= -128 && act_max <= 127;
    r.clamp = act_min > -128 || act_max < 127;
    return r;
}

#define ADDSUB_ROWS(p, t1, t2)                                                                   \
    addsub_rows_of(t1, t2, (p).input1_offset, (p).input2_offset, (p).left_shift,                 \
                   (p).input1_multiplier, (p).input1_shift, (p).input2_multiplier,               \
                   (p).input2_shift, (p).output_multiplier, (p).output_shift, (p).output_offset, \
                   (p).act_min, (p).act_max)

/* One output element from the two scaled inputs' sum (or difference) raw; fast and clamp are
 * constants in each row instance (no branch per element). */
static inline __attribute__((always_inline)) int32_t addsub_out(const struct addsub_rows *r,
                                                                int32_t raw, int fast, int clamp) {
    if (fast) {
        const int32_t y = rq_fused(raw, r->m2, r->s1, r->cc);
        return clamp ? fp_clamp(y, r->lo, r->hi) : y;
    }
    const int32_t y =
        fp_multiply_by_quantized_multiplier(raw, r->multiplier, (int)r->shift) + r->output_offset;
    return fp_clamp(y, r->lo, r->hi);
}

/* Element k (a constant) of the words va and vb. */
#define ADDSUB_ELEMENT(k)                                                                \
    addsub_out(r,                                                                        \
               sign > 0 ? t1[(va >> (8 * (k))) & 0xFFu] + t2[(vb >> (8 * (k))) & 0xFFu]  \
                        : t1[(va >> (8 * (k))) & 0xFFu] - t2[(vb >> (8 * (k))) & 0xFFu], \
               fast, clamp)

/* One innermost run (broadcast4_row_s8) with sign +1 (ADD) or -1 (SUB), a constant: where both
 * inputs are contiguous, four elements per step (one word of each input, one word stored). */
static inline __attribute__((always_inline)) int8_t *addsub_row(const int8_t *a, const int8_t *b,
                                                                int8_t *out, int32_t n, int32_t sa,
                                                                int32_t sb, const void *ctx,
                                                                int sign, int fast, int clamp) {
    const struct addsub_rows *r = ctx;
    const int32_t *t1 = r->t1, *t2 = r->t2;
    /* Opaque bases: knowing the tables are on the stack, GCC would rebuild each lookup's
     * address from sp (three instructions) instead of one indexed load. */
    __asm__("" : "+r"(t1), "+r"(t2));
    int32_t i = 0;
    if (sa == 1 && sb == 1) {
        for (; i + 4 <= n; i += 4, a += 4, b += 4, out += 4) {
            const uint32_t va = dsp_read4(a), vb = dsp_read4(b);
            const int32_t y0 = ADDSUB_ELEMENT(0), y1 = ADDSUB_ELEMENT(1);
            const int32_t y2 = ADDSUB_ELEMENT(2), y3 = ADDSUB_ELEMENT(3);
            const uint32_t v = ((uint32_t)y0 & 0xFFu) | ((uint32_t)y1 & 0xFFu) << 8 |
                               ((uint32_t)y2 & 0xFFu) << 16 | (uint32_t)y3 << 24;
            __builtin_memcpy(out, &v, sizeof v);
        }
    }
    for (; i < n; ++i, a += sa, b += sb) {
        const int32_t x1 = t1[(uint8_t)*a], x2 = t2[(uint8_t)*b];
        *out++ = (int8_t)addsub_out(r, sign > 0 ? x1 + x2 : x1 - x2, fast, clamp);
    }
    return out;
}

/* The fast rows' contiguous runs (addsub_rows: fast, no clamp), 4 elements per turn: the
 * constants the assembly reads, in this order. */
struct addsub_run4 {
    const int32_t *t1, *t2;
    int32_t m2, c, s1;     /* requant_fast.h's rq_fused constants */
    const int8_t *out_end; /* the end of the run's whole groups of 4 */
};
typedef void (*addsub_run4_fn)(const int8_t *a, const int8_t *b, int8_t *out,
                               const struct addsub_run4 *k);

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
/* Element k of the words r10 (a) and r11 (b): the bytes' table entries (EXTRACT: UXTB, UBFX or
 * LSR), their sum or difference (OP), rq_fused (SMMLAR, ADD of the sign, ASR, QADD, SSAT: M2 r6,
 * c r7, s1 r8), one byte out: 11 instructions, where GCC's loop took about 12.75 per element. */
#define ADDSUB_ELEMENT_M7(EXTRACT_A, EXTRACT_B, OP) \
    EXTRACT_A                                       \
    EXTRACT_B                                       \
    "ldr r12, [r4, r12, lsl #2]\n"                  \
    "ldr lr, [r5, lr, lsl #2]\n" OP                 \
    " r12, r12, lr\n"                               \
    "smmlar lr, r12, r6, r12\n"                     \
    "add lr, lr, lr, asr #31\n"                     \
    "asr lr, lr, r8\n"                              \
    "qadd lr, lr, r7\n"                             \
    "ssat lr, #8, lr, asr #1\n"                     \
    "strb lr, [r2], #1\n"
/* A run of whole groups of 4 (out < k->out_end): OP "add" (ADD) or "sub" (SUB). */
#define ADDSUB_RUN4_M7(name, OP)                                                                  \
    static __attribute__((naked, noinline)) void name(const int8_t *a, const int8_t *b,           \
                                                      int8_t *out, const struct addsub_run4 *k) { \
        (void)a, (void)b, (void)out, (void)k;                                                     \
        __asm__ volatile("push {r4-r11, lr}\n"                                                  \
                         "ldm r3, {r4, r5, r6, r7, r8, r9}\n"                                   \
                         "1:\n"                                                                 \
                         "ldr r10, [r0], #4\n"                                                  \
                         "ldr r11, [r1], #4\n" ADDSUB_ELEMENT_M7("uxtb r12, r10\n",             \
                                                                "uxtb lr, r11\n", OP)           \
                             ADDSUB_ELEMENT_M7("ubfx r12, r10, #8, #8\n",                       \
                                               "ubfx lr, r11, #8, #8\n", OP)                    \
                                 ADDSUB_ELEMENT_M7("ubfx r12, r10, #16, #8\n",                  \
                                                   "ubfx lr, r11, #16, #8\n", OP)               \
                                     ADDSUB_ELEMENT_M7("lsr r12, r10, #24\n",                   \
                                                       "lsr lr, r11, #24\n", OP)                \
                         "cmp r2, r9\n"                                                         \
                         "bne 1b\n"                                                             \
                         "pop {r4-r11, pc}\n"); \
    }
#endif

/* addsub_row for the full int8 range with requant_fast.h's rq_fused (fast, no clamp):
 * contiguous runs of 4 or more through run4 on the Cortex-M (NULL elsewhere: the C below, the
 * same steps). sign and run4 are constants in each row instance. */
static inline __attribute__((always_inline)) int8_t *addsub_row_run4(
    const int8_t *a, const int8_t *b, int8_t *out, int32_t n, int32_t sa, int32_t sb,
    const void *ctx, int sign, addsub_run4_fn run4) {
    const struct addsub_rows *r = ctx;
    int32_t i = 0;
    if (run4 && sa == 1 && sb == 1 && n >= 4) {
        const struct addsub_run4 k = {r->t1, r->t2, r->m2, r->cc, r->s1, out + (n & ~3)};
        run4(a, b, out, &k);
        i = n & ~3;
        a += i, b += i, out += i;
    }
    for (; i < n; ++i, a += sa, b += sb) {
        const int32_t x1 = r->t1[(uint8_t)*a], x2 = r->t2[(uint8_t)*b];
        *out++ = (int8_t)rq_fused(sign > 0 ? x1 + x2 : x1 - x2, r->m2, r->s1, r->cc);
    }
    return out;
}

#endif
