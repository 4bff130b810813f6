/* Softmax cross-entropy with a float32 logits gradient. See softmax_xent_s8_f32.h. */
#include "softmax_xent_s8_f32.h"

#include "loss_math.h"
#include "softmax_xent_s8.h"

void softmax_xent_s8_f32_run(const void *params, void *const *operands, void *scratch) {
    const struct softmax_xent_s8_f32_params p = *(const struct softmax_xent_s8_f32_params *)params;
    const struct softmax_xent_s8_params q8 = {p.batches, p.classes, p.input_scale,
                                              p.label_smoothing};
    const int8_t *logits = operands[SOFTMAX_XENT_S8_F32_LOGITS];
    const int32_t *labels = operands[SOFTMAX_XENT_S8_F32_LABELS];
    float *grad = operands[SOFTMAX_XENT_S8_F32_GRAD];
    const int32_t rows = p.batches > 0 ? p.batches : 0;
    const int32_t k_n = p.classes > 0 ? p.classes : 0;
    const size_t n = (size_t)rows * (size_t)k_n;

    /* The loss and the prediction: softmax_xent_s8's own; its int8 gradient is discarded. */
    float discarded_scale = 0.0f;
    void *ops8[SOFTMAX_XENT_S8_OPERANDS];
    ops8[SOFTMAX_XENT_S8_LOGITS] = operands[SOFTMAX_XENT_S8_F32_LOGITS];
    ops8[SOFTMAX_XENT_S8_LABELS] = operands[SOFTMAX_XENT_S8_F32_LABELS];
    ops8[SOFTMAX_XENT_S8_LOSS] = operands[SOFTMAX_XENT_S8_F32_LOSS];
    ops8[SOFTMAX_XENT_S8_PREDICTED] = operands[SOFTMAX_XENT_S8_F32_PREDICTED];
    ops8[SOFTMAX_XENT_S8_GRAD] = scratch;
    ops8[SOFTMAX_XENT_S8_GRAD_SCALE] = &discarded_scale;
    softmax_xent_s8_run(&q8, ops8, (int8_t *)scratch + ((n + 3u) & ~(size_t)3u));

    const float s = p.input_scale, eps = p.label_smoothing;
    const float eps_k = k_n > 0 ? eps / (float)k_n : 0.0f;
    const int config_ok = s > 0.0f && s <= 3.4e38f && eps >= 0.0f && eps <= 1.0f;
    for (int32_t b = 0; b < rows; ++b) {
        const int8_t *q = logits + (size_t)b * (size_t)k_n;
        float *g = grad + (size_t)b * (size_t)k_n;
        const int32_t label = labels[b];
        if (!config_ok || label < 0 || label >= k_n) {
            for (int32_t c = 0; c < k_n; ++c) g[c] = 0.0f;
            continue;
        }
        int32_t q_max = q[0];
        for (int32_t c = 1; c < k_n; ++c) q_max = q[c] > q_max ? q[c] : q_max;
        float sum = 0.0f;
        for (int32_t c = 0; c < k_n; ++c) sum += loss_exp_nonpositive(s * (float)(q[c] - q_max));
        for (int32_t c = 0; c < k_n; ++c) {
            const float target = (c == label ? 1.0f - eps : 0.0f) + eps_k;
            g[c] = loss_exp_nonpositive(s * (float)(q[c] - q_max)) / sum - target;
        }
    }
    /* The loss is the mean over rows: its gradient carries 1 / rows, as softmax_xent_s8's. */
    *(float *)operands[SOFTMAX_XENT_S8_F32_GRAD_SCALE] = rows > 0 ? 1.0f / (float)rows : 0.0f;
}

size_t softmax_xent_s8_f32_scratch_size(const void *params) {
    const struct softmax_xent_s8_f32_params p = *(const struct softmax_xent_s8_f32_params *)params;
    const struct softmax_xent_s8_params q8 = {p.batches, p.classes, p.input_scale,
                                              p.label_smoothing};
    const size_t n =
        (size_t)(p.batches > 0 ? p.batches : 0) * (size_t)(p.classes > 0 ? p.classes : 0);
    return ((n + 3u) & ~(size_t)3u) + softmax_xent_s8_scratch_size(&q8);
}
