/* Softmax cross-entropy loss head on un-clamped int32 logits. See softmax_xent_s32.h. */
#include "softmax_xent_s32.h"

#include <math.h>

#include "grad.h"
#include "loss_math.h"

/* Logit i of the current call, widened to int64 so that differences cannot overflow. */
#define LOGIT(i) (args->logits8 ? (int64_t)args->logits8[(i)] : (int64_t)args->logits32[(i)])

void softmax_xent_rows(const struct softmax_xent_rows_args *args, void *scratch) {
    const int32_t *labels = args->labels;
    float *loss = args->loss;
    int32_t *predicted = args->predicted;
    int8_t *grad = args->grad;
    float *grad_scale = args->grad_scale;
    /* Scratch holds first the float gradient (its bits), then its int32 fixed point: the
     * same words (loss_grad_to_s8). */
    uint32_t *g_bits = scratch;

    const int32_t rows = args->batches > 0 ? args->batches : 0;
    const int32_t k_n = args->classes > 0 ? args->classes : 0;
    const size_t n = (size_t)rows * (size_t)k_n;
    const float s = args->input_scale;
    const float eps = args->label_smoothing;
    const float eps_k = k_n > 0 ? eps / (float)k_n : 0.0f;
    const float one_minus_eps = 1.0f - eps;

    /* A scale that is not positive and finite, or a smoothing outside [0, 1], would break
     * the bounds below (and is a lowering bug): every row is then treated as unlabelled. */
    const int config_ok = s > 0.0f && s <= 3.4e38f && eps >= 0.0f && eps <= 1.0f;
    float loss_sum = 0.0f;
    int bad_label = rows == 0 || k_n == 0 || !config_ok;
    float g_max = 0.0f;
    for (int32_t b = 0; b < rows; ++b) {
        const size_t row = (size_t)b * (size_t)k_n;
        const int32_t label = labels[b];
        const int valid = config_ok && label >= 0 && label < k_n;

        int32_t amax = 0; /* the first maximum: ties go to the lowest index */
        for (int32_t c = 1; c < k_n; ++c) {
            if (LOGIT(row + c) > LOGIT(row + amax)) amax = c;
        }
        predicted[b] = amax;
        if (!valid) {
            bad_label = 1;
            for (int32_t c = 0; c < k_n; ++c) g_bits[(size_t)b * (size_t)k_n + (size_t)c] = 0;
            continue; /* 0u is +0.0f */
        }
        const int64_t q_max = LOGIT(row + amax);

        float rest = 0.0f;    /* sum of exp(d_c) over c != amax */
        float s_other = 0.0f; /* sum of exp(d_c) over c != label */
        float sum_d = 0.0f;   /* sum of d_c */
        float d_label = 0.0f;
        for (int32_t c = 0; c < k_n; ++c) {
            const float d = s * (float)(LOGIT(row + c) - q_max);
            const float e = loss_exp_nonpositive(d);
            if (c != amax) rest += e;
            if (c != label) s_other += e;
            if (c == label) d_label = d;
            sum_d += d;
        }
        const float sum = 1.0f + rest;
        float row_loss = loss_log1p_nonnegative(rest) - one_minus_eps * d_label;
        if (eps_k > 0.0f) row_loss -= eps_k * sum_d; /* (no 0 * -inf for absurd scales) */
        loss_sum += row_loss;

        for (int32_t c = 0; c < k_n; ++c) {
            float g;
            if (c == label) {
                g = (eps - eps_k) - s_other / sum;
            } else {
                g = loss_exp_nonpositive(s * (float)(LOGIT(row + c) - q_max)) / sum - eps_k;
            }
            const float a = g < 0.0f ? -g : g;
            if (a > g_max) g_max = a;
            g_bits[(size_t)b * (size_t)k_n + (size_t)c] = loss_to_bits(g);
        }
    }
    *loss = bad_label ? NAN : loss_sum / (float)rows;

    if (args->grad_f32) {
        for (size_t i = 0; i < n; ++i) args->grad_f32[i] = loss_from_bits(g_bits[i]);
        *grad_scale = rows > 0 ? 1.0f / (float)rows : 0.0f;
        return;
    }
    /* Below 2^-96 (or NaN) the gradient is taken as 0: see the header. */
    *grad_scale = loss_grad_to_s8(g_bits, n, g_max, (float)rows, grad);
}

void softmax_xent_s32_run(const void *params, void *const *operands, void *scratch) {
    const struct softmax_xent_s32_params p = *(const struct softmax_xent_s32_params *)params;
    const struct softmax_xent_rows_args args = {
        .logits8 = NULL,
        .logits32 = operands[SOFTMAX_XENT_S32_LOGITS],
        .labels = operands[SOFTMAX_XENT_S32_LABELS],
        .batches = p.batches,
        .classes = p.classes,
        .input_scale = p.input_scale,
        .label_smoothing = p.label_smoothing,
        .loss = operands[SOFTMAX_XENT_S32_LOSS],
        .predicted = operands[SOFTMAX_XENT_S32_PREDICTED],
        .grad = operands[SOFTMAX_XENT_S32_GRAD],
        .grad_scale = operands[SOFTMAX_XENT_S32_GRAD_SCALE],
        .grad_f32 = NULL,
    };
    softmax_xent_rows(&args, scratch);
}

size_t softmax_xent_s32_scratch_size(const void *params) {
    const struct softmax_xent_s32_params p = *(const struct softmax_xent_s32_params *)params;
    if (p.batches <= 0 || p.classes <= 0) return 0;
    return (size_t)p.batches * (size_t)p.classes * sizeof(int32_t);
}
