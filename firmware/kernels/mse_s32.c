/* Mean squared error on un-clamped int32 outputs. See mse_s32.h. */
#include "mse_s32.h"

#include <math.h>

#include "grad.h"
#include "loss_math.h"

void mse_s32_run(const void *params, void *const *operands, void *scratch) {
    const struct mse_s32_params p = *(const struct mse_s32_params *)params;
    const int32_t *outputs = operands[MSE_S32_OUTPUTS];
    const int8_t *target8 = operands[MSE_S32_TARGET];
    const float *target32 = operands[MSE_S32_TARGET];
    float *loss = operands[MSE_S32_LOSS];
    int32_t *predicted = operands[MSE_S32_PREDICTED];
    int8_t *grad = operands[MSE_S32_GRAD];
    float *grad_scale = operands[MSE_S32_GRAD_SCALE];
    uint32_t *g_bits = scratch; /* the float gradient's bits, then its fixed point */

    const int32_t rows = p.batches > 0 ? p.batches : 0;
    const size_t n = (size_t)rows * (size_t)(p.size > 0 ? p.size : 0);
    const float s = p.input_scale;
    const float ts = p.target_scale;
    const int config_ok =
        n > 0 && s > 0.0f && s <= 3.4e38f && (p.target_float || (ts > 0.0f && ts <= 3.4e38f));
    for (int32_t b = 0; b < rows; ++b) predicted[b] = 0;
    const float two_over_n = 2.0f / (float)n;
    float sum = 0.0f, comp = 0.0f; /* Kahan summation of the squared errors */
    float g_max = 0.0f;
    int bad = !config_ok;
    for (size_t i = 0; i < n && config_ok; ++i) {
        const float x = s * (float)((int64_t)outputs[i] - p.input_zero_point);
        const float t =
            p.target_float ? target32[i] : ts * (float)((int32_t)target8[i] - p.target_zero_point);
        const float d = x - t;
        const float y = d * d - comp;
        const float u = sum + y;
        comp = (u - sum) - y;
        sum = u;
        const float g = d * two_over_n;
        const float a = g < 0.0f ? -g : g;
        if (!(a == a)) bad = 1; /* a NaN target (or an infinite difference): trains nothing */
        if (a > g_max) g_max = a;
        g_bits[i] = loss_to_bits(g);
    }
    *loss = bad ? NAN : sum / (float)n;
    if (bad) g_max = 0.0f; /* loss_grad_to_s8 then writes a zero gradient */
    /* The divisor is 1: 2 / N is already in G. */
    *grad_scale = loss_grad_to_s8(g_bits, n, g_max, 1.0f, grad);
}

size_t mse_s32_scratch_size(const void *params) {
    const struct mse_s32_params p = *(const struct mse_s32_params *)params;
    if (p.batches <= 0 || p.size <= 0) return 0;
    return (size_t)p.batches * (size_t)p.size * sizeof(int32_t);
}
