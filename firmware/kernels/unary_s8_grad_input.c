/* Input gradient of an int8 function of one variable. See unary_s8_grad_input.h. */
#include "unary_s8_grad_input.h"

#include "grad.h"

void unary_s8_grad_input_run(const void *params, void *const *operands, void *scratch) {
    const struct unary_s8_grad_input_params p = *(const struct unary_s8_grad_input_params *)params;
    const int8_t *x = operands[UNARY_S8_GRAD_INPUT_INPUT];
    const int8_t *gy = operands[UNARY_S8_GRAD_INPUT_GRAD_Y];
    const float s_y = *(const float *)operands[UNARY_S8_GRAD_INPUT_GRAD_Y_SCALE];
    const int32_t *table = operands[UNARY_S8_GRAD_INPUT_TABLE];
    int8_t *gx = operands[UNARY_S8_GRAD_INPUT_GRAD_X];
    float *s_x = operands[UNARY_S8_GRAD_INPUT_GRAD_X_SCALE];
    int32_t *acc = scratch;

    const size_t n = (size_t)p.count;
    for (size_t i = 0; i < n; ++i) acc[i] = (int32_t)gy[i] * table[(uint8_t)x[i]];
    *s_x = grad_requantize_s32(acc, n, s_y * p.table_scale, gx);
}

size_t unary_s8_grad_input_scratch_size(const void *params) {
    const struct unary_s8_grad_input_params p = *(const struct unary_s8_grad_input_params *)params;
    return (size_t)p.count * sizeof(int32_t);
}
