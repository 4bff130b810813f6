/* Input gradient of depthwise_conv2d_s8 (the one-pass operator) over the channel-plane engine
 * (depthwise_conv2d_s8_grad_input_planes.h), bit-identical with
 * depthwise_conv2d_s8_grad_input_ref_run: each channel's accumulators from the engine's int16
 * g' plane (two taps per SMLAD, no product on a stride's zeros), stored into the whole input's
 * int32 accumulators at the scratch's start, then the reference's requantization (dsp.h's
 * bit-identical dsp_grad_requantize_s32), which writes int8 element i after reading
 * accumulator i, as the output-over-scratch overlap requires (compiler.OUTPUT_OVER_SCRATCH).
 * The engine's buffers take the scratch the reference gives the Q23 multipliers (computed
 * when needed here, dwp_q23), so the operator's scratch is unchanged.
 *
 * Exactness: the engine's (the same terms g' * W as the reference, summed in another order;
 * the shift bounds the sum of their magnitudes by INT32_MAX, so the int32 sums are equal).
 *
 * Speed: per channel the engine costs a fixed set-up (its g' plane, its packed weights) that
 * the channel-vectorized variant (depthwise_conv2d_s8_grad_input_dsp.c) does not pay, and
 * computes the zero border of the plane: with 8x8 gradients and larger it wins (measured under
 * QEMU: MCUNet's 5x5 8x8x160 1.36 M -> 1.05 M instructions, 3x3 8x8x160 0.88 M -> 0.79 M), with
 * 4x4 it loses (MobileNetV2's 3x3/2 from 8x8x192 to 4x4: 0.57 M -> 0.73 M), so the selector takes
 * it from DWP_MIN_PIXELS gradient (output) pixels on. */
#include "conv2d_s8_grad_input.h"
#include "depthwise_conv2d_s8_grad_input.h"
#include "depthwise_conv2d_s8_grad_input_planes.h"
#include "dsp.h"

/* Where the engine's buffers start: after the accumulators, 8-aligned. */
static size_t buffers_at(const struct depthwise_conv2d_s8_grad_input_params *p) {
    const size_t n_in =
        (size_t)p->batches * (size_t)p->input_h * (size_t)p->input_w * (size_t)p->input_c;
    return (n_in * sizeof(int32_t) + 7u) & ~(size_t)7u;
}

/* The engine's buffers: with the row buffer, or without it where the rows go straight into the
 * accumulators (d->whole4). */
static size_t buffer_bytes(const struct dwp *d) {
    return d->whole4 ? dwp_rowless_size(d) : dwp_buffer_size(&d->p);
}

int depthwise_conv2d_s8_grad_input_planes_dsp_takes(
    const struct depthwise_conv2d_s8_grad_input_params *p) {
    struct dwp d;
    if (p->depth_multiplier != 1 || p->output_h * p->output_w < DWP_MIN_PIXELS || !dwp_setup(&d, p))
        return 0;
    return buffers_at(p) + buffer_bytes(&d) <= depthwise_conv2d_s8_grad_input_scratch_size(p);
}

void depthwise_conv2d_s8_grad_input_planes_dsp_run(
    const struct depthwise_conv2d_s8_grad_input_params *p, void *const *operands, void *scratch) {
    struct dwp d;
    (void)dwp_setup(&d, p); /* takes() said it does */
    const float max_scale = dwp_operands(&d, operands);
    const float grad_out_scale =
        *(const float *)operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_OUTPUT_SCALE];
    int8_t *grad_in = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT];
    float *grad_in_scale = operands[DEPTHWISE_CONV2D_S8_GRAD_INPUT_GRAD_INPUT_SCALE];
    const int32_t ch = p->input_c, w = p->input_w;
    const size_t c_n = (size_t)ch, plane_n = (size_t)p->input_h * (size_t)w;
    const size_t n_in = (size_t)p->batches * plane_n * c_n;
    int32_t *acc = scratch;
    int16_t *plane;
    uint32_t *words;
    int32_t *row = NULL;
    dwp_buffers(&d, (uint8_t *)scratch + buffers_at(p), &plane, &words, d.whole4 ? NULL : &row);
    dwp_clear(&d, plane);
    for (int32_t c = 0; c < ch; ++c) {
        const int32_t mc = dwp_q23(&d, c);
        dwp_kernel(&d, c, words);
        for (int32_t b = 0; b < p->batches; ++b) {
            int32_t *a = acc + (size_t)b * plane_n * c_n + (size_t)c;
            if (!dwp_fill(&d, b, c, mc, plane)) {
                for (size_t i = 0; i < plane_n; ++i) a[i * c_n] = 0;
                continue;
            }
            if (d.whole4) { /* straight into the accumulators: nothing written past a row */
                dwp_rows(&d, plane, words, 0, p->input_h, a, w * ch, ch);
                continue;
            }
            for (int32_t y = 0; y < p->input_h; ++y) {
                dwp_rows(&d, plane, words, y, 1, row, DWP_PITCH(&d), 1);
                for (int32_t x = 0; x < w; ++x, a += c_n) *a = row[x];
            }
        }
    }
    *grad_in_scale =
        dwgi_requantize(acc, n_in, grad_out_scale * max_scale * conv_grad_unit(d.shift), grad_in);
}
