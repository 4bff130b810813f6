/* int8 depthwise 2-D convolution whose output may be its input's bytes (in place): the same
 * results as depthwise_conv2d_s8 (TFLite DEPTHWISE_CONV_2D), for a layer at stride 1 whose
 * output has its input's shape. The compiler ties the output over an input that no later
 * operator reads (pytools/model/compiler.py, in_place_ties) and picks this kernel only where
 * that makes the arena smaller (pytools/model/inplace.py). The output may also lie apart from
 * the input (the kernel is exact either way); a partial overlap is not allowed.
 *
 * The reference (depthwise_conv2d_s8_inplace.c) computes the output rows in bands of band_rows
 * rows with depthwise_conv2d_s8_ref_run (on a window of the input's rows, the band's padding
 * above it) into rows of scratch, and copies a row over the input once no later band reads that
 * input row: output row y goes over input row y after the band holding output row y + pad_h,
 * so the scratch holds band_rows + pad_h rows, after the scratch depthwise_conv2d_s8 plans for
 * the largest band. The DSP variant (depthwise_conv2d_s8_inplace_dsp.c) runs the same bands on
 * depthwise_conv2d_s8_dsp_run, or the whole layer in one call where that variant's engine
 * reads every input row before it writes the output row over it (see there).
 *
 * Operands: depthwise_conv2d_s8's (depthwise_conv2d_s8.h), in its order. */
#ifndef KERNELS_DEPTHWISE_CONV2D_S8_INPLACE_H
#define KERNELS_DEPTHWISE_CONV2D_S8_INPLACE_H

#include "depthwise_conv2d_s8.h"
#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "depthwise_conv2d_s8_inplace.def"
#include "def_struct_end.h"
/* clang-format on */

/* 1: the parameters describe a layer the kernel takes in place (stride 1, the output's shape
 * the input's, depth multiplier 1, band_rows >= 1, the top padding inside the window); else 0,
 * and the kernel runs depthwise_conv2d_s8 on the whole layer (exact only with the output
 * apart from the input). */
int depthwise_conv2d_s8_inplace_takes(const void *params);
/* The bands (see above), each computed by run (depthwise_conv2d_s8's reference or DSP
 * variant) with the scratch need (that variant's scratch size function) gives a band, and
 * the bands' scratch: the largest band's, then band_rows + pad_h rows of the output. */
void depthwise_conv2d_s8_inplace_bands(const void *params, void *const *operands, void *scratch,
                                       kernel_run_fn run, kernel_scratch_fn need);
size_t depthwise_conv2d_s8_inplace_bands_scratch(const void *params, kernel_scratch_fn need);
/* The selector, the runtime's entry (ops.def); it lives in depthwise_conv2d_s8_inplace_dsp.c. */
void depthwise_conv2d_s8_inplace_run(const void *params, void *const *operands, void *scratch);
/* The reference: the bands on depthwise_conv2d_s8_ref_run. */
void depthwise_conv2d_s8_inplace_ref_run(const void *params, void *const *operands, void *scratch);
/* The DSP variant (depthwise_conv2d_s8_inplace_dsp.c), and whether it runs the layer in one
 * call of depthwise_conv2d_s8_dsp_run with the output over the input (1) or in bands (0). */
void depthwise_conv2d_s8_inplace_dsp_run(const void *params, void *const *operands, void *scratch);
int depthwise_conv2d_s8_inplace_dsp_direct(const void *params);
/* The reference's scratch: its bands' (depthwise_conv2d_s8's reference's for a layer the
 * kernel does not take). */
size_t depthwise_conv2d_s8_inplace_ref_scratch_size(const void *params);
/* The scratch the runtime plans (depthwise_conv2d_s8_inplace_dsp.c): the largest of the
 * reference's, the DSP bands' and the one-call DSP path's, whichever build runs the plan. */
size_t depthwise_conv2d_s8_inplace_scratch_size(const void *params);

#endif
