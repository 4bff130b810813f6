/* Softmax cross-entropy loss head on int8 logits. See softmax_xent_s8.h. */
#include "softmax_xent_s8.h"

#include <math.h>

#include "grad.h"

/* ln 2 split for Cody-Waite reduction: k * LN2_HI is exact for |k| < 2^9. */
#define LN2_HI 6.9314575195e-01f /* 0x3f317200 */
#define LN2_LO 1.4286067653e-06f /* 0x35bfbe8e */
#define LOG2_E 1.44269504089f

/* Type punning through a union (defined in C11; memcpy would be a call: the target builds
 * with -ffreestanding, which turns builtins off). */
union f32_bits {
    float f;
    uint32_t u;
};
static inline float from_bits(uint32_t u) {
    const union f32_bits v = {.u = u};
    return v.f;
}
static inline uint32_t to_bits(float f) {
    const union f32_bits v = {.f = f};
    return v.u;
}

/* exp(x) for x <= 0: x = k ln2 + r with |r| <= ln2 / 2, exp(r) by its degree-7 Taylor
 * polynomial (truncation < 1e-8 relative), times 2^k built from bits. 0 below -87, where
 * the result would leave the normal range. */
static float exp_nonpositive(float x) {
    if (!(x >= -87.0f)) return 0.0f;
    const int32_t k = (int32_t)(x * LOG2_E - 0.5f); /* round to nearest; k in [-126, 0] */
    const float kf = (float)k;
    const float r = (x - kf * LN2_HI) - kf * LN2_LO;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * from_bits((uint32_t)(k + 127) << 23);
}

/* log(u) for finite u >= 1: u = 2^e * m with m in [sqrt(1/2), sqrt(2)), f = m - 1 (exact),
 * log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)) with s = f / (2 + f) (the fdlibm form). */
static float log_ge1(float u) {
    const uint32_t bits = to_bits(u);
    int32_t e = (int32_t)(bits >> 23) - 127;
    float m = from_bits((bits & 0x007fffffu) | 0x3f800000u); /* [1, 2) */
    if (m > 1.41421356f) {
        m *= 0.5f;
        ++e;
    }
    const float f = m - 1.0f;
    const float s = f / (2.0f + f);
    const float z = s * s;
    const float r = z * (2.0f / 3.0f + z * (2.0f / 5.0f + z * (2.0f / 7.0f + z * (2.0f / 9.0f))));
    const float hfsq = 0.5f * f * f;
    const float ef = (float)e;
    return ef * LN2_HI + ((f - (hfsq - s * (hfsq + r))) + ef * LN2_LO);
}

/* log(1 + a) for a >= 0, accurate for small a (Kahan: the rounding of 1 + a cancels). */
static float log1p_nonnegative(float a) {
    const float u = 1.0f + a;
    if (u == 1.0f) return a;
    return log_ge1(u) * (a / (u - 1.0f));
}

/* Round half away from zero to int32, for |v| < 2^31. From 2^23 up floats are integers
 * (and adding 0.5 could round to even), below that v +- 0.5 is exact enough to truncate. */
static inline int32_t round_to_i32(float v) {
    if (v >= 8388608.0f || v <= -8388608.0f) return (int32_t)v;
    return (int32_t)(v >= 0.0f ? v + 0.5f : v - 0.5f);
}

void softmax_xent_s8_run(const void *params, void *const *operands, void *scratch) {
    const struct softmax_xent_s8_params p = *(const struct softmax_xent_s8_params *)params;
    const int8_t *logits = operands[SOFTMAX_XENT_S8_LOGITS];
    const int32_t *labels = operands[SOFTMAX_XENT_S8_LABELS];
    float *loss = operands[SOFTMAX_XENT_S8_LOSS];
    int32_t *predicted = operands[SOFTMAX_XENT_S8_PREDICTED];
    int8_t *grad = operands[SOFTMAX_XENT_S8_GRAD];
    float *grad_scale = operands[SOFTMAX_XENT_S8_GRAD_SCALE];
    /* Scratch holds first the float gradient (its bits), then its int32 fixed point: the
     * same words, as uint32_t then int32_t (which may alias each other). */
    uint32_t *g_bits = scratch;
    int32_t *acc = scratch;

    const int32_t rows = p.batches > 0 ? p.batches : 0;
    const int32_t k_n = p.classes > 0 ? p.classes : 0;
    const size_t n = (size_t)rows * (size_t)k_n;
    const float s = p.input_scale;
    const float eps = p.label_smoothing;
    const float eps_k = k_n > 0 ? eps / (float)k_n : 0.0f;
    const float one_minus_eps = 1.0f - eps;

    /* A scale that is not positive and finite, or a smoothing outside [0, 1], would break
     * the bounds below (and is a lowering bug): every row is then treated as unlabelled. */
    const int config_ok = s > 0.0f && s <= 3.4e38f && eps >= 0.0f && eps <= 1.0f;
    float loss_sum = 0.0f;
    int bad_label = rows == 0 || k_n == 0 || !config_ok;
    float g_max = 0.0f;
    for (int32_t b = 0; b < rows; ++b) {
        const int8_t *q = logits + (size_t)b * (size_t)k_n;
        const int32_t label = labels[b];
        const int valid = config_ok && label >= 0 && label < k_n;

        int32_t amax = 0; /* the first maximum: ties go to the lowest index */
        for (int32_t c = 1; c < k_n; ++c) {
            if (q[c] > q[amax]) amax = c;
        }
        predicted[b] = amax;
        if (!valid) {
            bad_label = 1;
            for (int32_t c = 0; c < k_n; ++c) g_bits[(size_t)b * (size_t)k_n + (size_t)c] = 0;
            continue; /* 0u is +0.0f */
        }
        const int32_t q_max = q[amax];

        float rest = 0.0f;    /* sum of exp(d_c) over c != amax */
        float s_other = 0.0f; /* sum of exp(d_c) over c != label */
        float sum_d = 0.0f;   /* sum of d_c */
        float d_label = 0.0f;
        for (int32_t c = 0; c < k_n; ++c) {
            const float d = s * (float)(q[c] - q_max);
            const float e = exp_nonpositive(d);
            if (c != amax) rest += e;
            if (c != label) s_other += e;
            if (c == label) d_label = d;
            sum_d += d;
        }
        const float sum = 1.0f + rest;
        float row_loss = log1p_nonnegative(rest) - one_minus_eps * d_label;
        if (eps_k > 0.0f) row_loss -= eps_k * sum_d; /* (no 0 * -inf for absurd scales) */
        loss_sum += row_loss;

        for (int32_t c = 0; c < k_n; ++c) {
            float g;
            if (c == label) {
                g = (eps - eps_k) - s_other / sum;
            } else {
                g = exp_nonpositive(s * (float)(q[c] - q_max)) / sum - eps_k;
            }
            const float a = g < 0.0f ? -g : g;
            if (a > g_max) g_max = a;
            g_bits[(size_t)b * (size_t)k_n + (size_t)c] = to_bits(g);
        }
    }
    *loss = bad_label ? NAN : loss_sum / (float)rows;

    /* Below 2^-96 (or NaN) the gradient is taken as 0: see the header. */
    if (!(g_max >= 0x1p-96f)) {
        for (size_t i = 0; i < n; ++i) grad[i] = 0;
        *grad_scale = 0.0f;
        return;
    }
    /* max|G| in [2^e, 2^(e+1)) with e in [-96, 0]: scale by 2^(29 - e) (exact). */
    const int32_t e = (int32_t)(to_bits(g_max) >> 23) - 127;
    const float up = from_bits((uint32_t)(29 - e + 127) << 23);
    const float unit = from_bits((uint32_t)(e - 29 + 127) << 23);
    for (size_t i = 0; i < n; ++i) acc[i] = round_to_i32(from_bits(g_bits[i]) * up);
    *grad_scale = grad_requantize_s32(acc, n, unit / (float)rows, grad);
}

size_t softmax_xent_s8_scratch_size(const void *params) {
    const struct softmax_xent_s8_params p = *(const struct softmax_xent_s8_params *)params;
    if (p.batches <= 0 || p.classes <= 0) return 0;
    return (size_t)p.batches * (size_t)p.classes * sizeof(int32_t);
}
