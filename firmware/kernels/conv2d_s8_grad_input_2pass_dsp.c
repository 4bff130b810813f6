/* conv2d_s8_grad_input_2pass, optimized: bit-identical with conv2d_s8_grad_input_2pass_ref_run
 * (conv2d_s8_grad_input_2pass.c). The pixels are the one-pass DSP variant's 1x1 path
 * (conv2d_s8_grad_input_dsp_1x1_pixels: the same integers as the reference, exact in any
 * order), run over the kept pixels at once (its tiles of up to 32 pixels, into the kept
 * accumulators) and then GI2_BLOCK pixels at a time into the block; the rounding is
 * dsp_grad_requantize_s32's (dsp.h) with the one max|acc|. Input-channel slices the 1x1 path
 * does not take run on the reference. */
#include "conv2d_s8_grad_input_2pass.h"

#include <string.h>

#include "dsp.h"

/* The sinks of the two passes (struct gi_sink, conv2d_s8_grad_input.h): the running max|acc|,
 * and the rounding of a tile's 4 input channels into the output. */
struct gi2_sink {
    struct gi_sink s; /* first: the sink's pointer is the struct's */
    uint32_t max_abs;
    size_t kc;
    int8_t *out;
    struct dsp_round r;
};

static void max_of(struct gi_sink *s, int32_t q0, int32_t npix, int32_t k, int32_t nk) {
    struct gi2_sink *g = (struct gi2_sink *)s;
    (void)q0, (void)k, (void)nk; /* the entries past nk are 0 */
    g->max_abs = dsp_max_abs_s32(s->buf, (size_t)npix * 4u, g->max_abs);
}

static void round_to(struct gi_sink *s, int32_t q0, int32_t npix, int32_t k, int32_t nk) {
    struct gi2_sink *g = (struct gi2_sink *)s;
    int8_t *out = g->out + (size_t)q0 * g->kc + (size_t)k;
    for (int32_t i = 0; i < npix; ++i, out += g->kc)
        dsp_round_apply(&g->r, s->buf + 4 * i, (size_t)nk, out);
}

void conv2d_s8_grad_input_2pass_dsp_run(const void *params, void *const *operands, void *scratch) {
    struct conv2d_s8_grad_input_2pass_params p2;
    memcpy(&p2, params, sizeof p2);
    struct conv2d_s8_grad_input_params p;
    memcpy(&p, &p2, sizeof p); /* the one-pass kernel's fields */
    if (!conv2d_s8_grad_input_dsp_1x1_takes(&p)) {
        conv2d_s8_grad_input_2pass_ref_run(params, operands, scratch);
        return;
    }
    struct gi2_layout l;
    conv2d_s8_grad_input_2pass_layout(&p2, &l);
    const float grad_out_scale = *(const float *)operands[CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE];
    const float *scales = operands[CONV2D_S8_GRAD_INPUT_WEIGHT_SCALES];
    int8_t *grad_in = operands[CONV2D_S8_GRAD_INPUT_GRAD_INPUT];
    float *grad_in_scale = operands[CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE];
    uint8_t *s = scratch;
    int32_t *kept = scratch, *block = (int32_t *)(s + l.block), *m = (int32_t *)(s + l.m);
    int8_t *rows = (int8_t *)(s + l.rows);
    uint32_t *terms = (uint32_t *)(s + l.terms);
    /* the block: the sink's buffer, or GI2_BLOCK pixels' accumulators (the layout's) */
    const size_t kc = (size_t)p.input_c;

    const float max_scale = conv_grad_channel_q23(scales, p.per_channel ? p.output_c : 1, m);
    const int shift = conv2d_s8_grad_input_dsp_1x1_shift(&p, operands, m);
    /* Pass 1: the kept pixels into their accumulators, the rest for max|acc| alone: 4 input
     * channels of up to GI_SINK_PIXELS pixels at a time (output_c <= one chunk), else GI2_BLOCK
     * pixels at a time. */
    struct gi2_sink s1 = {.s = {max_of, block}};
    struct gi_sink *sink = p.output_c <= GI_COLS_ROWS ? &s1.s : NULL;
    const int32_t step = sink ? l.n : GI2_BLOCK;
    if (l.keep > 0) {
        conv2d_s8_grad_input_dsp_1x1_pixels(&p, operands, m, shift, terms, rows, 0, l.keep, kept,
                                            NULL);
        s1.max_abs = dsp_max_abs_s32(kept, (size_t)l.keep * kc, 0);
    }
    for (int32_t q = l.keep; q < l.n; q += step) {
        const int32_t end = l.n - q < step ? l.n : q + step;
        conv2d_s8_grad_input_dsp_1x1_pixels(&p, operands, m, shift, terms, rows, q, end, block,
                                            sink);
        if (!sink) s1.max_abs = dsp_max_abs_s32(block, (size_t)(end - q) * kc, s1.max_abs);
    }
    const uint32_t max_abs = s1.max_abs;
    /* The kept pixels rounded (ascending: the output may start over them), then pass 2 (not
     * needed where every gradient is 0). */
    struct gi2_sink s2 = {.s = {round_to, block}, .max_abs = max_abs, .kc = kc, .out = grad_in};
    dsp_round_prepare(&s2.r, max_abs);
    dsp_round_apply(&s2.r, kept, (size_t)l.keep * kc, grad_in);
    if (sink) sink = &s2.s;
    for (int32_t q = l.keep; q < l.n; q += step) {
        const int32_t end = l.n - q < step ? l.n : q + step;
        int8_t *out = grad_in + (size_t)q * kc;
        const size_t count = (size_t)(end - q) * kc;
        if (max_abs == 0) {
            memset(out, 0, count);
            continue;
        }
        conv2d_s8_grad_input_dsp_1x1_pixels(&p, operands, m, shift, terms, rows, q, end, block,
                                            sink);
        if (!sink) dsp_round_apply(&s2.r, block, count, out);
    }
    const float acc_scale = grad_out_scale * max_scale * conv_grad_unit(shift);
    *grad_in_scale = max_abs == 0 ? 0.0f : (float)max_abs * acc_scale / 127.0f;
}

size_t conv2d_s8_grad_input_2pass_scratch_size(const void *params) {
    struct conv2d_s8_grad_input_2pass_params p;
    memcpy(&p, params, sizeof p);
    struct gi2_layout l;
    conv2d_s8_grad_input_2pass_layout(&p, &l);
    return l.terms + conv2d_s8_grad_input_dsp_1x1_terms_size();
}

/* The selector, the runtime's entry for conv2d_s8_grad_input_2pass (ops.def): the DSP variant
 * above when the build enables it (KERNELS_USE_DSP(), dsp.h), else the reference
 * (conv2d_s8_grad_input_2pass.c). */
void conv2d_s8_grad_input_2pass_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        conv2d_s8_grad_input_2pass_dsp_run(params, operands, scratch);
    else
        conv2d_s8_grad_input_2pass_ref_run(params, operands, scratch);
}
