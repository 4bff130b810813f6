/* int8 SUB: TFLite's reference SubElementwise per element, with broadcasting done by
 * strides. See sub_s8.h for layouts and operands. */
#include "sub_s8.h"
#include "broadcast4.h"

#include "fixedpoint.h"

/* One element, the same integer steps as TFLite's SubElementwise (its scalings are
 * MultiplyByQuantizedMultiplierSmallerThanOneExp: the general multiply for the non-positive
 * shifts the lowering guarantees). */
static inline int8_t sub_one(int32_t x1, int32_t x2, const struct sub_s8_params *p) {
    const int32_t shifted1 = (p->input1_offset + x1) * ((int32_t)1 << p->left_shift);
    const int32_t shifted2 = (p->input2_offset + x2) * ((int32_t)1 << p->left_shift);
    const int32_t scaled1 =
        fp_multiply_by_quantized_multiplier(shifted1, p->input1_multiplier, (int)p->input1_shift);
    const int32_t scaled2 =
        fp_multiply_by_quantized_multiplier(shifted2, p->input2_multiplier, (int)p->input2_shift);
    const int32_t raw = fp_multiply_by_quantized_multiplier(scaled1 - scaled2, p->output_multiplier,
                                                            (int)p->output_shift) +
                        p->output_offset;
    return (int8_t)fp_clamp(raw, p->act_min, p->act_max);
}

/* One innermost run of the broadcast walk (broadcast4.h). */
static inline int8_t *sub_row(const int8_t *a, const int8_t *b, int8_t *out, int32_t n, int32_t sa,
                              int32_t sb, const void *ctx) {
    const struct sub_s8_params *p = ctx;
    for (int32_t i3 = 0; i3 < n; ++i3) {
        *out++ = sub_one(a[i3 * sa], b[i3 * sb], p);
    }
    return out;
}

void sub_s8_ref_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct sub_s8_params p = *(const struct sub_s8_params *)params;
    const int8_t *in1 = operands[SUB_S8_INPUT1];
    const int8_t *in2 = operands[SUB_S8_INPUT2];
    int8_t *out = operands[SUB_S8_OUTPUT];

    const struct broadcast4 s = broadcast4_of(&p);
    broadcast4_s8(&s, in1, in2, out, sub_row, &p);
}

size_t sub_s8_ref_scratch_size(const void *params) {
    (void)params;
    return 0;
}

BROADCAST4_CHECK(sub_s8);
