/* depthwise_conv2d_s8_inplace with the DSP variants of depthwise_conv2d_s8 (the selector of
 * depthwise_conv2d_s8_inplace.h): bit-identical with depthwise_conv2d_s8_inplace_ref_run, as
 * depthwise_conv2d_s8_dsp_run is with depthwise_conv2d_s8_ref_run.
 *
 * One call, no bands, where the layer takes the 3x3 variant's channel-pair engine
 * (depthwise_conv2d_s8_3x3_dsp.c, d3p_group) with every channel in a whole group of four and
 * at most one row of top padding: that engine is the outer loop over groups of four channels,
 * and within a group it widens each input row (into its ring of three rows, or on the board into
 * a band of rows whose last rows move up as the next band's first, never widened again) before
 * it writes any output row that could lie over it (output row oy after copy row oy + 2, i.e.
 * input row oy + 2 - pad_h >= oy + 1; a last partial quad's spill onto row oy + 1's first pixels
 * lands on that widened row too). A group reads and writes only its own four channels, so an output
 * over its input changes nothing any later read sees: the in-place layer costs what the layer
 * costs, plus about 500 instructions of checks (MobileNetV2's 16x16x96, 64x64x16 and 32x32x48
 * layers, measured on the emulated Cortex-M7, QEMU counting LDM/STM as one instruction). The
 * other layers run the bands on depthwise_conv2d_s8_dsp_run, which repeat each band's set-up
 * (16x16x96 in bands of 1 row: 1.74x the layer's instructions, of 4 rows 1.17x, of 8 1.07x).
 * tests/kernels/conv/test_dw_inplace.py holds both paths, output over input, to the reference
 * on the host and on the emulated Cortex-M7 and M4. */
#include "depthwise_conv2d_s8_dsp.h"
#include "depthwise_conv2d_s8_inplace.h"

int depthwise_conv2d_s8_inplace_dsp_direct(const void *params) {
    struct depthwise_conv2d_s8_params q;
    memcpy(&q, params, sizeof q); /* plans pack parameters unaligned */
    return depthwise_conv2d_s8_inplace_takes(params) && q.stride_h == 1 && q.pad_h <= 1 &&
           q.input_c % 4 == 0 && depthwise_conv2d_s8_3x3_dsp_pairs(params);
}

void depthwise_conv2d_s8_inplace_dsp_run(const void *params, void *const *operands, void *scratch) {
    if (depthwise_conv2d_s8_inplace_dsp_direct(params) ||
        !depthwise_conv2d_s8_inplace_takes(params))
        depthwise_conv2d_s8_dsp_run(params, operands, scratch);
    else
        depthwise_conv2d_s8_inplace_bands(params, operands, scratch, depthwise_conv2d_s8_dsp_run,
                                          depthwise_conv2d_s8_scratch_size);
}

size_t depthwise_conv2d_s8_inplace_scratch_size(const void *params) {
    size_t most = depthwise_conv2d_s8_inplace_ref_scratch_size(params);
    const size_t whole = depthwise_conv2d_s8_scratch_size(params);
    if (whole > most) most = whole;
    if (depthwise_conv2d_s8_inplace_takes(params)) {
        const size_t bands =
            depthwise_conv2d_s8_inplace_bands_scratch(params, depthwise_conv2d_s8_scratch_size);
        if (bands > most) most = bands;
    }
    return most;
}

/* The selector, the runtime's entry for depthwise_conv2d_s8_inplace (ops.def): the DSP variant
 * above when the build enables it (KERNELS_USE_DSP(), dsp.h), else the reference. */
void depthwise_conv2d_s8_inplace_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        depthwise_conv2d_s8_inplace_dsp_run(params, operands, scratch);
    else
        depthwise_conv2d_s8_inplace_ref_run(params, operands, scratch);
}
