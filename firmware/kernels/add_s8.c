/* int8 ADD: TFLite's reference AddFunc per element, with broadcasting done by strides.
 * See add_s8.h for layouts and operands. */
#include "add_s8.h"
#include "broadcast4.h"

#include "fixedpoint.h"

/* One element, the same integer steps as TFLite's AddFunc. The three scalings use
 * MultiplyByQuantizedMultiplierSmallerThanOneExp, which is the general multiply for the
 * non-positive shifts the lowering guarantees. */
static inline int8_t add_one(int32_t x1, int32_t x2, const struct add_s8_params *p) {
    const int32_t input1_val = p->input1_offset + x1;
    const int32_t input2_val = p->input2_offset + x2;
    const int32_t shifted_input1_val = input1_val * ((int32_t)1 << p->left_shift);
    const int32_t shifted_input2_val = input2_val * ((int32_t)1 << p->left_shift);
    const int32_t scaled_input1_val = fp_multiply_by_quantized_multiplier(
        shifted_input1_val, p->input1_multiplier, (int)p->input1_shift);
    const int32_t scaled_input2_val = fp_multiply_by_quantized_multiplier(
        shifted_input2_val, p->input2_multiplier, (int)p->input2_shift);
    const int32_t raw_sum = scaled_input1_val + scaled_input2_val;
    const int32_t raw_output =
        fp_multiply_by_quantized_multiplier(raw_sum, p->output_multiplier, (int)p->output_shift) +
        p->output_offset;
    return (int8_t)fp_clamp(raw_output, p->act_min, p->act_max);
}

/* One innermost run of the broadcast walk (broadcast4.h). */
static inline int8_t *add_row(const int8_t *a, const int8_t *b, int8_t *out, int32_t n, int32_t sa,
                              int32_t sb, const void *ctx) {
    const struct add_s8_params *p = ctx;
    for (int32_t i3 = 0; i3 < n; ++i3) {
        *out++ = add_one(a[i3 * sa], b[i3 * sb], p);
    }
    return out;
}

void add_s8_ref_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct add_s8_params p = *(const struct add_s8_params *)params;
    const int8_t *in1 = operands[ADD_S8_INPUT1];
    const int8_t *in2 = operands[ADD_S8_INPUT2];
    int8_t *out = operands[ADD_S8_OUTPUT];

    const struct broadcast4 s = broadcast4_of(&p);
    broadcast4_s8(&s, in1, in2, out, add_row, &p);
}

size_t add_s8_ref_scratch_size(const void *params) {
    (void)params;
    return 0;
}

BROADCAST4_CHECK(add_s8);
