/* Input gradient of depthwise_conv2d_s8 in two passes over one channel's scratch. See
 * depthwise_conv2d_s8_grad_input_2pass.h; the arithmetic is depthwise_conv2d_s8_grad_input.c's. */
#include "depthwise_conv2d_s8_grad_input_2pass.h"

#include "conv2d_s8_grad_input.h"

struct dw_grad {
    struct depthwise_conv2d_s8_grad_input_2pass_params p;
    const int8_t *grad_out;
    const uint8_t *mask;
    const int8_t *filter;
    const int8_t *trained;
    const int32_t *m;
    int shift;
};

/* acc[b, y, x] = the one-pass kernel's accumulator of input channel ic. */
static void channel(const struct dw_grad *d, int32_t ic, int32_t *acc) {
    const struct depthwise_conv2d_s8_grad_input_2pass_params *p = &d->p;
    const size_t output_c = (size_t)p->input_c * (size_t)p->depth_multiplier;
    const size_t plane = (size_t)p->input_h * (size_t)p->input_w;
    for (size_t i = 0; i < (size_t)p->batches * plane; ++i) acc[i] = 0;
    for (int32_t mm = 0; mm < p->depth_multiplier; ++mm) {
        const int32_t oc = ic * p->depth_multiplier + mm;
        const int tr = oc < p->train_rows;
        const int8_t *w = tr ? d->trained + oc : d->filter + oc;
        const size_t stride = tr ? (size_t)p->train_rows : output_c;
        const int32_t mc = d->m[p->per_channel ? oc : 0];
        for (int32_t b = 0; b < p->batches; ++b) {
            int32_t *image = acc + (size_t)b * plane;
            for (int32_t oy = 0; oy < p->output_h; ++oy) {
                const int32_t y0 = oy * p->stride_h - p->pad_h;
                for (int32_t ox = 0; ox < p->output_w; ++ox) {
                    const size_t idx =
                        (((size_t)b * (size_t)p->output_h + (size_t)oy) * (size_t)p->output_w +
                         (size_t)ox) *
                            output_c +
                        (size_t)oc;
                    const int32_t g = conv_grad_masked(d->grad_out, d->mask, idx);
                    if (g == 0) continue;
                    const int32_t gs = conv_grad_term(g, mc, d->shift);
                    if (gs == 0) continue;
                    const int32_t x0 = ox * p->stride_w - p->pad_w;
                    for (int32_t fy = 0; fy < p->filter_h; ++fy) {
                        const int32_t y = y0 + fy * p->dilation_h;
                        if (y < 0 || y >= p->input_h) continue;
                        for (int32_t fx = 0; fx < p->filter_w; ++fx) {
                            const int32_t x = x0 + fx * p->dilation_w;
                            if (x < 0 || x >= p->input_w) continue;
                            const int32_t wv =
                                w[((size_t)fy * (size_t)p->filter_w + (size_t)fx) * stride];
                            image[(size_t)y * (size_t)p->input_w + (size_t)x] += gs * wv;
                        }
                    }
                }
            }
        }
    }
}

void depthwise_conv2d_s8_grad_input_2pass_ref_run(const void *params, void *const *operands,
                                                  void *scratch) {
    struct dw_grad d;
    d.p = *(const struct depthwise_conv2d_s8_grad_input_2pass_params *)params;
    const struct depthwise_conv2d_s8_grad_input_2pass_params *p = &d.p;
    d.grad_out = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT];
    const float grad_out_scale =
        *(const float *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE];
    d.mask = p->has_mask ? (const uint8_t *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_MASK] : NULL;
    d.filter = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_FILTER];
    d.trained = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_TRAINED_FILTER];
    const float *scales = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_WEIGHT_SCALES];
    int8_t *grad_in = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT];
    float *grad_in_scale = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE];

    const int32_t output_c = p->input_c * p->depth_multiplier;
    const size_t n_plane = (size_t)p->batches * (size_t)p->input_h * (size_t)p->input_w;
    const int32_t keep = dw2_keep(p);
    int32_t *kept = scratch; /* channel ic < keep: kept + ic * n_plane */
    int32_t *acc = (int32_t *)((uint8_t *)scratch + dw2_kept_bytes(p));
    int32_t *m = acc + n_plane;
    d.m = m;
    const float max_scale = conv_grad_channel_q23(scales, p->per_channel ? output_c : 1, m);

    /* The one-pass kernel's overflow bound and shift, unchanged. */
    const size_t taps = (size_t)p->filter_h * (size_t)p->filter_w;
    uint64_t b0 = 0, w1 = 0;
    for (int32_t ic = 0; ic < p->input_c; ++ic) {
        uint64_t bk = 0, wk = 0;
        for (int32_t mm = 0; mm < p->depth_multiplier; ++mm) {
            const int32_t oc = ic * p->depth_multiplier + mm;
            const int tr = oc < p->train_rows;
            const int8_t *w = tr ? d.trained + oc : d.filter + oc;
            const size_t stride = tr ? (size_t)p->train_rows : (size_t)output_c;
            uint64_t s = 0;
            for (size_t t = 0; t < taps; ++t) {
                const int32_t v = w[t * stride];
                s += (uint64_t)(v < 0 ? -v : v);
            }
            bk += s * 128u * (uint64_t)m[p->per_channel ? oc : 0];
            wk += s;
        }
        if (bk > b0) b0 = bk;
        if (wk > w1) w1 = wk;
    }
    d.shift = conv_grad_pick_shift(b0, w1, CONV_GRAD_MIN_SHIFT_16);

    /* Pass 1: max|acc| over every channel, the first keep channels' accumulators kept. */
    uint32_t max_abs = 0;
    for (int32_t ic = 0; ic < p->input_c; ++ic) {
        int32_t *a_ic = ic < keep ? kept + (size_t)ic * n_plane : acc;
        channel(&d, ic, a_ic);
        for (size_t i = 0; i < n_plane; ++i) {
            const uint32_t a = a_ic[i] < 0 ? 0u - (uint32_t)a_ic[i] : (uint32_t)a_ic[i];
            if (a > max_abs) max_abs = a;
        }
    }
    const size_t c_n = (size_t)p->input_c;
    if (max_abs == 0) {
        for (size_t i = 0; i < n_plane * c_n; ++i) grad_in[i] = 0;
        *grad_in_scale = 0.0f;
        return;
    }
    /* Pass 2: each channel kept or computed again, rounded as grad_requantize_s32 rounds. */
    const int64_t half = (int64_t)(max_abs / 2u);
    for (int32_t ic = 0; ic < p->input_c; ++ic) {
        const int32_t *a_ic = ic < keep ? kept + (size_t)ic * n_plane : acc;
        if (ic >= keep) channel(&d, ic, acc);
        for (size_t i = 0; i < n_plane; ++i) {
            const int64_t num = (int64_t)a_ic[i] * 127;
            const int64_t q =
                num >= 0 ? (num + half) / (int64_t)max_abs : -((-num + half) / (int64_t)max_abs);
            grad_in[i * c_n + (size_t)ic] = (int8_t)q;
        }
    }
    *grad_in_scale =
        (float)max_abs * (grad_out_scale * max_scale * conv_grad_unit(d.shift)) / 127.0f;
}

size_t depthwise_conv2d_s8_grad_input_2pass_ref_scratch_size(const void *params) {
    const struct depthwise_conv2d_s8_grad_input_2pass_params p =
        *(const struct depthwise_conv2d_s8_grad_input_2pass_params *)params;
    const size_t n_plane = (size_t)p.batches * (size_t)p.input_h * (size_t)p.input_w;
    return dw2_kept_bytes(&p) +
           (n_plane + (size_t)p.input_c * (size_t)p.depth_multiplier) * sizeof(int32_t);
}
