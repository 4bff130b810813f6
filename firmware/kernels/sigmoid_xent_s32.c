/* Binary cross-entropy on un-clamped int32 logits. See sigmoid_xent_s32.h. */
#include "sigmoid_xent_s32.h"

#include <math.h>

#include "grad.h"
#include "loss_math.h"

void sigmoid_xent_s32_run(const void *params, void *const *operands, void *scratch) {
    const struct sigmoid_xent_s32_params p = *(const struct sigmoid_xent_s32_params *)params;
    const int32_t *logits = operands[SIGMOID_XENT_S32_LOGITS];
    const int32_t *labels = operands[SIGMOID_XENT_S32_LABELS];
    float *loss = operands[SIGMOID_XENT_S32_LOSS];
    int32_t *predicted = operands[SIGMOID_XENT_S32_PREDICTED];
    int8_t *grad = operands[SIGMOID_XENT_S32_GRAD];
    float *grad_scale = operands[SIGMOID_XENT_S32_GRAD_SCALE];
    uint32_t *g_bits = scratch; /* the float gradient's bits, then its fixed point */

    const int32_t rows = p.batches > 0 ? p.batches : 0;
    const int32_t k_n = p.outputs > 0 ? p.outputs : 0;
    const size_t n = (size_t)rows * (size_t)k_n;
    const float s = p.input_scale;
    const int config_ok = s > 0.0f && s <= 3.4e38f;
    int bad = n == 0 || !config_ok;
    float loss_sum = 0.0f;
    float g_max = 0.0f;
    for (int32_t b = 0; b < rows; ++b) {
        const size_t row = (size_t)b * (size_t)k_n;
        const int32_t label = labels[b];
        if (k_n == 1) {
            predicted[b] = logits[row] > p.input_zero_point ? 1 : 0;
        } else {
            int32_t amax = 0;
            for (int32_t c = 1; c < k_n; ++c)
                if (logits[row + c] > logits[row + amax]) amax = c;
            predicted[b] = amax;
        }
        const int valid = config_ok && label >= 0 && label < (k_n == 1 ? 2 : k_n);
        if (!valid) bad = 1;
        for (int32_t c = 0; c < k_n; ++c) {
            if (!valid) {
                g_bits[row + c] = 0; /* +0.0f */
                continue;
            }
            const int t = k_n == 1 ? label == 1 : c == label;
            const float x = s * (float)((int64_t)logits[row + c] - p.input_zero_point);
            const float ax = x < 0.0f ? -x : x;
            const float e = loss_exp_nonpositive(-ax);
            const float sig_abs = 1.0f / (1.0f + e);            /* sigmoid(|x|) */
            const float sig_nabs = e / (1.0f + e);              /* sigmoid(-|x|) */
            const float sig = x >= 0.0f ? sig_abs : sig_nabs;   /* sigmoid(x) */
            const float one_m = x >= 0.0f ? sig_nabs : sig_abs; /* 1 - sigmoid(x) */
            const float g = t ? -one_m : sig;
            /* max(-x, 0) for t = 1, max(x, 0) for t = 0 */
            const float margin = t ? (x < 0.0f ? -x : 0.0f) : (x > 0.0f ? x : 0.0f);
            loss_sum += loss_log1p_nonnegative(e) + margin;
            const float a = g < 0.0f ? -g : g;
            if (a > g_max) g_max = a;
            g_bits[row + c] = loss_to_bits(g);
        }
    }
    *loss = bad ? NAN : loss_sum / (float)n;
    *grad_scale = loss_grad_to_s8(g_bits, n, g_max, (float)n, grad);
}

size_t sigmoid_xent_s32_scratch_size(const void *params) {
    const struct sigmoid_xent_s32_params p = *(const struct sigmoid_xent_s32_params *)params;
    if (p.batches <= 0 || p.outputs <= 0) return 0;
    return (size_t)p.batches * (size_t)p.outputs * sizeof(int32_t);
}
