/* Input gradient of int8 multiplication. See mul_s8_grad_input.h. */
#include "mul_s8_grad_input.h"

#include "broadcast4.h"
#include "grad.h"

struct mul_grad_ctx {
    const int8_t *gy, *factor;
    int32_t *acc;
    int32_t factor_offset;
};

/* One innermost run: this input's gradient += G_y * (the other input - its zero point). */
static inline void mul_grad_run(int32_t out_at, int32_t at1, int32_t at2, int32_t n, int32_t s1,
                                int32_t s2, void *ctx) {
    const struct mul_grad_ctx *c = ctx;
    for (int32_t i = 0; i < n; ++i) {
        const int32_t factor = (int32_t)c->factor[at2 + i * s2] + c->factor_offset;
        c->acc[at1 + i * s1] += (int32_t)c->gy[out_at + i] * factor;
    }
}

void mul_s8_grad_input_run(const void *params, void *const *operands, void *scratch) {
    BROADCAST4_CHECK(mul_s8_grad_input);
    const struct mul_s8_grad_input_params p = *(const struct mul_s8_grad_input_params *)params;
    const float s_y = *(const float *)operands[MUL_S8_GRAD_INPUT_GRAD_Y_SCALE];
    int8_t *gx = operands[MUL_S8_GRAD_INPUT_GRAD_X];
    float *s_x = operands[MUL_S8_GRAD_INPUT_GRAD_X_SCALE];
    int32_t *acc = scratch;

    const size_t n = (size_t)p.this_size;
    for (size_t j = 0; j < n; ++j) acc[j] = 0;
    struct mul_grad_ctx c = {operands[MUL_S8_GRAD_INPUT_GRAD_Y], operands[MUL_S8_GRAD_INPUT_OTHER],
                             acc, p.other_offset};
    const struct broadcast4 walk = broadcast4_of(params);
    broadcast4_walk(&walk, mul_grad_run, &c);
    *s_x = grad_requantize_s32(acc, n, s_y * p.other_scale, gx);
}

size_t mul_s8_grad_input_scratch_size(const void *params) {
    const struct mul_s8_grad_input_params p = *(const struct mul_s8_grad_input_params *)params;
    return (size_t)p.this_size * sizeof(int32_t);
}
