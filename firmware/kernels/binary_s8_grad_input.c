/* Input gradient of ADD, SUB, MAXIMUM and MINIMUM. See binary_s8_grad_input.h. */
#include "binary_s8_grad_input.h"

#include "broadcast4.h"
#include "grad.h"

static inline int selected(int32_t select, int32_t a, int32_t b) {
    switch (select) {
        case 1: return a >= b;
        case 2: return a > b;
        case 3: return a <= b;
        case 4: return a < b;
        default: return 1;
    }
}

struct binary_grad_ctx {
    const int8_t *gy, *x, *other;
    int32_t *acc;
    int32_t select;
};

/* One innermost run: this input's gradient += G_y where the selection passes. */
static inline void binary_grad_run(int32_t out_at, int32_t at1, int32_t at2, int32_t n, int32_t s1,
                                   int32_t s2, void *ctx) {
    const struct binary_grad_ctx *c = ctx;
    for (int32_t i = 0; i < n; ++i) {
        const int32_t at = at1 + i * s1;
        if (c->select == 0 || selected(c->select, c->x[at], c->other[at2 + i * s2]))
            c->acc[at] += c->gy[out_at + i];
    }
}

void binary_s8_grad_input_run(const void *params, void *const *operands, void *scratch) {
    BROADCAST4_CHECK(binary_s8_grad_input);
    const struct binary_s8_grad_input_params p =
        *(const struct binary_s8_grad_input_params *)params;
    const float s_y = *(const float *)operands[BINARY_S8_GRAD_INPUT_GRAD_Y_SCALE];
    int8_t *gx = operands[BINARY_S8_GRAD_INPUT_GRAD_X];
    float *s_x = operands[BINARY_S8_GRAD_INPUT_GRAD_X_SCALE];
    int32_t *acc = scratch;

    const size_t n = (size_t)p.this_size;
    for (size_t j = 0; j < n; ++j) acc[j] = 0;
    struct binary_grad_ctx c = {operands[BINARY_S8_GRAD_INPUT_GRAD_Y],
                                operands[BINARY_S8_GRAD_INPUT_THIS],
                                operands[BINARY_S8_GRAD_INPUT_OTHER], acc, p.select};
    const struct broadcast4 walk = broadcast4_of(params);
    broadcast4_walk(&walk, binary_grad_run, &c);
    if (p.sign < 0)
        for (size_t j = 0; j < n; ++j) acc[j] = -acc[j];
    *s_x = grad_requantize_s32(acc, n, s_y, gx);
}

size_t binary_s8_grad_input_scratch_size(const void *params) {
    const struct binary_s8_grad_input_params p =
        *(const struct binary_s8_grad_input_params *)params;
    return (size_t)p.this_size * sizeof(int32_t);
}
