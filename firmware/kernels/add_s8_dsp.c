/* int8 ADD, optimized: bit-identical with add_s8_ref_run (add_s8.c), TFLite's AddFunc, by the
 * tables add_s8_dsp.h describes (shared with SUB). The tables live in the
 * operator's scratch (add_s8_scratch_size). Broadcasting follows the same strides. */
#include "add_s8_dsp.h"
#include "add_s8.h"

static inline int8_t *add_row_fast_clamp(const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                                         int32_t sa, int32_t sb, const void *ctx) {
    return addsub_row(a, b, out, n, sa, sb, ctx, 1, 1, 1);
}
static inline int8_t *add_row(const int8_t *a, const int8_t *b, int8_t *out, int32_t n, int32_t sa,
                              int32_t sb, const void *ctx) {
    return addsub_row(a, b, out, n, sa, sb, ctx, 1, 0, 1);
}

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
ADDSUB_RUN4_M7(add_run4_m7, "add")
#define ADD_RUN4 add_run4_m7
#else
#define ADD_RUN4 NULL
#endif
static inline int8_t *add_row_fast(const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                                   int32_t sa, int32_t sb, const void *ctx) {
    return addsub_row_run4(a, b, out, n, sa, sb, ctx, 1, ADD_RUN4);
}

size_t add_s8_scratch_size(const void *params) {
    const struct add_s8_params p = *(const struct add_s8_params *)params;
    return addsub_scratch_size(add_s8_ref_scratch_size(params),
                               (int64_t)p.dim0 * p.dim1 * p.dim2 * p.dim3);
}

void add_s8_dsp_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct add_s8_params p = *(const struct add_s8_params *)params;
    const int64_t n = (int64_t)p.dim0 * p.dim1 * p.dim2 * p.dim3;
    if (n < ADDSUB_TABLE_MIN) {
        add_s8_ref_run(params, operands, scratch);
        return;
    }
    const int8_t *in1 = operands[ADD_S8_INPUT1];
    const int8_t *in2 = operands[ADD_S8_INPUT2];
    int8_t *out = operands[ADD_S8_OUTPUT];
    int32_t *const t1 =
        (int32_t *)((uint8_t *)scratch + addsub_tables_offset(add_s8_ref_scratch_size(params)));
    int32_t *const t2 = t1 + 256;
    const struct addsub_rows r = ADDSUB_ROWS(p, t1, t2);
    struct broadcast4 s = broadcast4_of(&p);
    addsub_flatten(&s);
    if (r.fast && !r.clamp)
        broadcast4_s8(&s, in1, in2, out, add_row_fast, &r);
    else if (r.fast)
        broadcast4_s8(&s, in1, in2, out, add_row_fast_clamp, &r);
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
