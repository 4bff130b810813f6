/* int8 MUL: TFLite's reference MulElementwise per element, with broadcasting done by
 * strides. See mul_s8.h for layouts and operands. */
#include "mul_s8.h"
#include "broadcast4.h"

#include "fixedpoint.h"

/* One innermost run of the broadcast walk (broadcast4.h). */
static inline int8_t *mul_row(const int8_t *a, const int8_t *b, int8_t *out, int32_t n, int32_t sa,
                              int32_t sb, const void *ctx) {
    const struct mul_s8_params *p = ctx;
    for (int32_t i3 = 0; i3 < n; ++i3) {
        const int32_t prod = (p->input1_offset + a[i3 * sa]) * (p->input2_offset + b[i3 * sb]);
        const int32_t y =
            fp_multiply_by_quantized_multiplier(prod, p->output_multiplier, (int)p->output_shift) +
            p->output_offset;
        *out++ = (int8_t)fp_clamp(y, p->act_min, p->act_max);
    }
    return out;
}

void mul_s8_ref_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct mul_s8_params p = *(const struct mul_s8_params *)params;
    const int8_t *in1 = operands[MUL_S8_INPUT1];
    const int8_t *in2 = operands[MUL_S8_INPUT2];
    int8_t *out = operands[MUL_S8_OUTPUT];

    const struct broadcast4 s = broadcast4_of(&p);
    broadcast4_s8(&s, in1, in2, out, mul_row, &p);
}

size_t mul_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}

BROADCAST4_CHECK(mul_s8);
