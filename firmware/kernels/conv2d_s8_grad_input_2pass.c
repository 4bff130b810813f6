/* Input gradient of a 1x1 stride-1 conv2d_s8 in two passes over a bounded scratch. See
 * conv2d_s8_grad_input_2pass.h; the arithmetic is conv2d_s8_grad_input.c's. */
#include "conv2d_s8_grad_input_2pass.h"

#include <string.h>

#include "conv2d_train.h"
#include "grad.h"

void conv2d_s8_grad_input_2pass_layout(const struct conv2d_s8_grad_input_2pass_params *p,
                                       struct gi2_layout *l) {
    const size_t kc = (size_t)p->input_c;
    l->n = p->batches * p->input_h * p->input_w;
    l->keep = p->keep < 0 ? 0 : p->keep > l->n ? l->n : p->keep;
    const size_t kept = (size_t)l->keep * kc * sizeof(int32_t), out = (size_t)l->n * kc;
    l->block = ((kept > out ? kept : out) + 7u) & ~(size_t)7u;
    /* the block: one pixel's accumulators (the reference's), and with output_c <= one chunk the
     * DSP variant's sink (GI_SINK_PIXELS x 4 channels), else its GI2_BLOCK pixels */
    const size_t one = kc * sizeof(int32_t), sink = GI_SINK_PIXELS * 4u * sizeof(int32_t);
    const size_t block = p->output_c <= GI_COLS_ROWS ? (one > sink ? one : sink) : GI2_BLOCK * one;
    l->m = l->block + ((block + 7u) & ~(size_t)7u);
    l->rows = l->m + (size_t)p->output_c * sizeof(int32_t);
    /* composed rows: a chunk where the DSP variant takes the slice, as the one-pass kernel */
    l->ref_end = l->rows + conv_train_row_bytes(1, p->input_c, p->train_cols,
                                                p->input_c <= GI_COLS_MAX_C ? GI_COLS_ROWS : 1);
    l->terms = (l->ref_end + 7u) & ~(size_t)7u;
}

/* a[k] = the one-pass reference's accumulator of input pixel q (= output pixel q), channel k:
 * the same terms in the same order (output channels ascending). */
static void pixel(const struct conv2d_s8_grad_input_params *p, void *const *operands,
                  const int32_t *m, int shift, int8_t *row, int32_t q, int32_t *a) {
    const int8_t *grad_out = operands[CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT];
    const uint8_t *mask = p->has_mask ? (const uint8_t *)operands[CONV2D_S8_GRAD_INPUT_MASK] : NULL;
    const int8_t *filter = operands[CONV2D_S8_GRAD_INPUT_FILTER];
    const int8_t *trained = operands[CONV2D_S8_GRAD_INPUT_TRAINED_FILTER];
    for (int32_t k = 0; k < p->input_c; ++k) a[k] = 0;
    const size_t pixels = conv_grad_pixels(p->grad_broadcast, p->output_h, p->output_w);
    for (int32_t c = 0; c < p->output_c; ++c) {
        const int32_t g =
            conv_grad_masked_at(grad_out, mask, (size_t)q, (size_t)p->output_c, (size_t)c, pixels);
        if (g == 0) continue;
        const int32_t gs = conv_grad_term(g, m[p->per_channel ? c : 0], shift);
        if (gs == 0) continue;
        const int8_t *w =
            conv_train_row(row, filter, trained, c, 1, p->input_c, p->train_rows, p->train_cols);
        for (int32_t k = 0; k < p->input_c; ++k) a[k] += gs * (int32_t)w[k];
    }
}

static uint32_t max_abs_of(const int32_t *a, size_t n, uint32_t max_abs) {
    for (size_t i = 0; i < n; ++i) {
        const uint32_t v = a[i] < 0 ? 0u - (uint32_t)a[i] : (uint32_t)a[i];
        if (v > max_abs) max_abs = v;
    }
    return max_abs;
}

void conv2d_s8_grad_input_2pass_ref_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    struct conv2d_s8_grad_input_2pass_params p2;
    memcpy(&p2, params, sizeof p2);
    struct conv2d_s8_grad_input_params p;
    memcpy(&p, &p2, sizeof p); /* the one-pass kernel's fields (the header's assertion) */
    struct gi2_layout l;
    conv2d_s8_grad_input_2pass_layout(&p2, &l);
    const float grad_out_scale = *(const float *)operands[CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE];
    const float *scales = operands[CONV2D_S8_GRAD_INPUT_WEIGHT_SCALES];
    int8_t *grad_in = operands[CONV2D_S8_GRAD_INPUT_GRAD_INPUT];
    float *grad_in_scale = operands[CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE];
    uint8_t *s = scratch;
    int32_t *kept = scratch, *block = (int32_t *)(s + l.block), *m = (int32_t *)(s + l.m);
    int8_t *row = (int8_t *)(s + l.rows);
    const size_t kc = (size_t)p.input_c;

    const float max_scale = conv_grad_channel_q23(scales, p.per_channel ? p.output_c : 1, m);
    const int shift =
        conv2d_s8_grad_input_ref_shift(&p, operands[CONV2D_S8_GRAD_INPUT_FILTER],
                                       operands[CONV2D_S8_GRAD_INPUT_TRAINED_FILTER], m);
    /* Pass 1: every pixel; the first keep kept, the rest only for max|acc|. */
    uint32_t max_abs = 0;
    for (int32_t q = 0; q < l.n; ++q) {
        int32_t *a = q < l.keep ? kept + (size_t)q * kc : block;
        pixel(&p, operands, m, shift, row, q, a);
        max_abs = max_abs_of(a, kc, max_abs);
    }
    /* The kept pixels rounded (ascending: the output may start over them), then pass 2. */
    grad_round_s32(kept, (size_t)l.keep * kc, max_abs, grad_in);
    for (int32_t q = l.keep; q < l.n; ++q) {
        pixel(&p, operands, m, shift, row, q, block);
        grad_round_s32(block, kc, max_abs, grad_in + (size_t)q * kc);
    }
    const float acc_scale = grad_out_scale * max_scale * conv_grad_unit(shift);
    *grad_in_scale = max_abs == 0 ? 0.0f : (float)max_abs * acc_scale / 127.0f;
}

size_t conv2d_s8_grad_input_2pass_ref_scratch_size(const void *params) {
    struct conv2d_s8_grad_input_2pass_params p;
    memcpy(&p, params, sizeof p);
    struct gi2_layout l;
    conv2d_s8_grad_input_2pass_layout(&p, &l);
    return l.ref_end;
}
