/* int8 2-D convolution with the Armv7E-M DSP SIMD instructions (dsp.h), its selector: bit-identical
 * with conv2d_s8_ref_run (conv2d_s8.c), which is TFLite's reference ConvPerChannel.
 *
 * Exactness: every product w * (x - zp) and every partial sum is the reference's, in
 * another order; int32 addition is associative and the sums cannot overflow (see
 * conv2d_s8.c), so the accumulators are equal. Requantization: the narrow and GEMM variants
 * double one operand of every product and the bias, and requantize the doubled sums with rq4
 * (conv2d_s8_dsp.h: 4 instructions per output, proved bit-identical with fixedpoint.h) for
 * channels on its path (right shifts, the usual case), hoisted per pair, and with rq3 (3
 * instructions, the same results) where the output offset is -128; the wide variant uses
 * requant_fast.h (5 instructions); the reference's requantization otherwise.
 *
 * The variants (one file each, conv2d_s8_dsp.h lists them) and what they do:
 * The GEMM path (conv2d_s8_gemm_dsp.c; whenever one output pixel's patch, filter_h * filter_w *
 * input_c taps, fits the buffer; 1x1 convolutions are the hot case):
 *   - a tile of output pixels has its patches widened once to 16-bit lanes, the input
 *     offset already added (x - zp fits 16 bits; taps in the padding become 0, which
 *     contributes nothing, exactly as the reference skips them);
 *   - the filter rows of two output channels are widened the same way (once per tile);
 *   - the inner loop computes 2 output channels x 2 pixels, 16 taps per iteration, with
 *     nothing but loads and SMLAD (two 16x16 multiply-accumulates per instruction); the two
 *     pixels (and the two filter rows) are interleaved 4 taps at a time, so one pointer each
 *     walks them. On the Cortex-M7 the block (bias, inner loop, requantization, stores) is one
 *     piece of assembly for the common case (full activation range, >= 16 taps), so nothing
 *     spills: 16 MACs in 11 instructions (LDM, 2 LDRD, 8 SMLAD), 1.01 MAC/instruction for a
 *     whole 16x16x64 -> 64 layer. When input_c % 4 == 0 both filter rows of a pair are
 *     widened in one pass (widen_rows2), and the fast full-range pairs run in a loop of their
 *     own (pairs_fast_full): 4x4x112 -> 1280 at 1.10 MAC/instruction.
 *   - the stem (3x3/2 over 3 channels: dense patches, 27 taps in 7 groups and a zero 8th):
 *     patches wholly inside the image are read straight from its three 9-byte runs, a row's
 *     run of them in one go (widen_stem_run, conv2d_s8_stem_dsp.c), every filter row is widened
 *     once per layer where the buffer still holds tiles of 32 pixels beside them (hoisted_tile),
 *     and the 2x2 block is unrolled over the 7 groups (pair_fast_m7_7): 0.77 MAC/instruction
 *     for 39x39x3 -> 19x19x16 (0.42 before the run copy, 0.71 before the hoisting).
 * The wide 1x1 path (conv2d_s8_1x1_wide_dsp.c: more than 512 input channels, where the GEMM
 * tile would be 2 pixels and every filter byte widened once per 2 pixels) widens 4 pixels into
 * the same buffer and unpacks the int8 filter rows on the fly: 4x4x576 -> 96 at 0.95
 * MAC/instruction (0.76 on the GEMM path). The narrow path
 * (conv2d_s8_1x1_narrow_dsp.c: pointwise convolutions over 8, 16 or a few more input channels, a
 * multiple of 8; see "The narrow path" below) streams per-output-channel records past one pixel's
 * inputs held in registers, which takes 0.60-0.74 of the GEMM path's instructions at 8 or 16
 * input channels.
 * Both operands are widened in the same lane order (SXTB16 yields bytes 0,2 then, rotated,
 * bytes 1,3), so lanes pair up tap for tap. Larger patches take the direct path
 * (conv2d_s8_direct_dsp.c): per output pixel and pair of channels, the taps' input channels four at
 * a time, unpacked on the fly. The buffers are the operator's scratch, planned in the arena
 * (conv2d_s8_scratch_size below), not the stack. The assembly is checked against TFLite on the
 * emulated board (tests/kernels/conv/test_dsp_kernels.py and test_dsp_conv_more.py); the host runs
 * the portable C of the same steps. */
#include "conv2d_s8_dsp.h"

#if defined(HOST_BUILD)
int kernels_dsp_host = 0;
#endif

/* The DSP variant for the layer, as CMSIS-NN's arm_convolve_wrapper_s8 picks one: the narrow
 * 1x1 variant where it takes the layer, else the wide 1x1 variant (over 512 input channels, in
 * the buffer planned for the GEMM variant), else the GEMM variant where the patch fits its buffer
 * (a wider one for 1x1 filters: CONV_WBUF_GROUPS_1X1), else the direct one. */
void conv2d_s8_dsp_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct conv2d_s8_params p = *(const struct conv2d_s8_params *)params;
    const struct conv_ops o = {
        .input = operands[CONV2D_S8_INPUT],
        .filter = operands[CONV2D_S8_FILTER],
        .trained_filter = operands[CONV2D_S8_TRAINED_FILTER],
        .rows = scratch,
        .bias = p.has_bias ? (const int32_t *)operands[CONV2D_S8_BIAS] : NULL,
        .trained_bias = operands[CONV2D_S8_TRAINED_BIAS],
        .multipliers = operands[CONV2D_S8_MULTIPLIERS],
        .shifts = operands[CONV2D_S8_SHIFTS],
        .out = operands[CONV2D_S8_OUTPUT],
        .buf = (uint64_t *)((uint8_t *)scratch + conv2d_s8_dsp_buffer_offset(params)),
    };
    const int32_t groups = patch_groups(&p);
    const int one = p.filter_h == 1 && p.filter_w == 1;
    if (conv2d_s8_1x1_narrow_dsp_ok(&p, &o))
        conv2d_s8_1x1_narrow_dsp(&p, &o);
    else if (conv2d_s8_1x1_wide_dsp_ok(&p))
        conv2d_s8_1x1_wide_dsp(&p, &o);
    else if (2 * groups <= (one ? CONV_WBUF_GROUPS_1X1 : CONV_WBUF_GROUPS))
        conv2d_s8_gemm_dsp(&p, &o, groups);
    else
        conv2d_s8_direct_dsp(&p, &o);
}

/* The scratch of the variant the selector may pick: the narrow variant's records where the
 * shape allows it (its channels' requantization, known only from the operands, may still send
 * the layer to the GEMM variant, so the larger of the two), else the GEMM variant's buffer
 * where the patch fits it, else none (direct). */
size_t conv2d_s8_dsp_buffer_size(const void *params) {
    const struct conv2d_s8_params p = *(const struct conv2d_s8_params *)params;
    const int32_t groups = patch_groups(&p);
    const int one = p.filter_h == 1 && p.filter_w == 1;
    size_t n = conv2d_s8_1x1_narrow_dsp_shape_ok(&p) ? conv2d_s8_1x1_narrow_dsp_buffer_size(&p) : 0;
    if (2 * groups <= (one ? CONV_WBUF_GROUPS_1X1 : CONV_WBUF_GROUPS)) {
        const size_t g = conv2d_s8_gemm_dsp_buffer_size(&p);
        if (g > n) n = g;
    }
    return n;
}

/* The operator's scratch: the reference's, then the DSP variants' buffer (8-aligned; the
 * planner aligns scratch to 16 bytes). Planned whatever the build (the host twin switches
 * between the two at run time), so one plan runs on both. */
size_t conv2d_s8_dsp_buffer_offset(const void *params) {
    return (conv2d_s8_ref_scratch_size(params) + 7u) & ~(size_t)7u;
}

size_t conv2d_s8_scratch_size(const void *params) {
    return conv2d_s8_dsp_buffer_offset(params) + conv2d_s8_dsp_buffer_size(params);
}

/* The selector, the runtime's entry for conv2d_s8 (ops.def): the DSP variant above when the
 * build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (conv2d_s8.c). The DSP
 * variants together take every layer. */
void conv2d_s8_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        conv2d_s8_dsp_run(params, operands, scratch);
    else
        conv2d_s8_ref_run(params, operands, scratch);
}
