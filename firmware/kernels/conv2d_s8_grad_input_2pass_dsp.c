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

void conv2d_s8_grad_input_2pass_dsp_run(const void *params, void *const *operands,
                                        void *scratch) {
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
    const size_t kc = (size_t)p.input_c;

    const float max_scale = conv_grad_channel_q23(scales, p.per_channel ? p.output_c : 1, m);
    const int shift = conv2d_s8_grad_input_dsp_1x1_shift(&p, operands, m);
    /* Pass 1: the kept pixels into their accumulators, the rest a block at a time. */
    uint32_t max_abs = 0;
    if (l.keep > 0) {
        conv2d_s8_grad_input_dsp_1x1_pixels(&p, operands, m, shift, terms, rows, 0, l.keep, kept);
        max_abs = dsp_max_abs_s32(kept, (size_t)l.keep * kc, max_abs);
    }
    for (int32_t q = l.keep; q < l.n; q += GI2_BLOCK) {
        const int32_t end = l.n - q < GI2_BLOCK ? l.n : q + GI2_BLOCK;
        conv2d_s8_grad_input_dsp_1x1_pixels(&p, operands, m, shift, terms, rows, q, end, block);
        max_abs = dsp_max_abs_s32(block, (size_t)(end - q) * kc, max_abs);
    }
    /* The kept pixels rounded (ascending: the output may start over them), then pass 2 (not
     * needed where every gradient is 0). */
    dsp_grad_round_n(kept, (size_t)l.keep * kc, max_abs, grad_in);
    for (int32_t q = l.keep; q < l.n; q += GI2_BLOCK) {
        const int32_t end = l.n - q < GI2_BLOCK ? l.n : q + GI2_BLOCK;
        int8_t *out = grad_in + (size_t)q * kc;
        const size_t count = (size_t)(end - q) * kc;
        if (max_abs == 0) {
            memset(out, 0, count);
            continue;
        }
        conv2d_s8_grad_input_dsp_1x1_pixels(&p, operands, m, shift, terms, rows, q, end, block);
        dsp_grad_round_n(block, count, max_abs, out);
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
