#include "grad.h"

float grad_lr_scale = 1.0f;

float grad_requantize_s32(const int32_t *acc, size_t n, float acc_scale, int8_t *out) {
    uint32_t max_abs = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t a = acc[i] < 0 ? 0u - (uint32_t)acc[i] : (uint32_t)acc[i];
        if (a > max_abs) max_abs = a;
    }
    grad_round_s32(acc, n, max_abs, out);
    return max_abs == 0 ? 0.0f : (float)max_abs * acc_scale / 127.0f;
}

void grad_round_s32(const int32_t *acc, size_t n, uint32_t max_abs, int8_t *out) {
    if (max_abs == 0) {
        for (size_t i = 0; i < n; i++) out[i] = 0;
        return;
    }
    /* q = round(acc * 127 / max_abs): exact in integers (|acc| * 127 < 2^39 fits int64). */
    for (size_t i = 0; i < n; i++) {
        int64_t num = (int64_t)acc[i] * 127;
        int64_t half = (int64_t)(max_abs / 2u);
        int64_t q =
            num >= 0 ? (num + half) / (int64_t)max_abs : -((-num + half) / (int64_t)max_abs);
        out[i] = (int8_t)q;
    }
}

int32_t grad_stochastic_round(float v, uint32_t *state) {
    /* 24 random bits -> u in [0, 1), exactly representable in float. */
    float u = (float)(grad_rng_next(state) >> 8) * (1.0f / 16777216.0f);
    float x = v + u;
    /* floor without libm (newlib and glibc need not agree; nothing here needs them) */
    int32_t i = (int32_t)x; /* truncates toward zero */
    return (x < 0.0f && (float)i != x) ? i - 1 : i;
}
