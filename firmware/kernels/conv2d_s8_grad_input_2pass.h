/* conv2d_s8_grad_input, bit for bit, for a 1x1 conv with stride 1 and no padding (output
 * pixel q reads input pixel q alone: MobileNetV2's and MCUNet's pointwise convs), with part of
 * its scratch. The one-pass kernel holds int32 accumulators for the whole input gradient
 * until max|acc|, its dynamic scale, is known. Here an input pixel's gradient depends only on
 * its own output pixel's, so pixels can be computed in any order and again: pass 1 computes
 * every pixel, keeping the int32 values of pixels [0, keep) and only the running max|acc| of
 * the rest; the kept pixels are then rounded, and pass 2 computes pixels [keep, end) again and
 * rounds them (grad_requantize_s32's arithmetic, with the one max). The multipliers, the shift
 * and the integers are the one-pass kernel's, so the output and its scale are identical; the
 * price is computing the pixels past keep twice. The compiler sets keep as large as the arena
 * allows (pytools/train/compile_train.py, the scheme's conv_two_pass), so only what memory
 * needs is recomputed. The pixels past keep go through a block: the reference computes one
 * pixel at a time; the DSP variant, with at most one chunk of output channels (GI_COLS_ROWS),
 * 4 input channels of up to GI_SINK_PIXELS pixels at a time (conv2d_s8_grad_input.h's sink),
 * else GI2_BLOCK pixels at a time.
 * Operands and layouts: conv2d_s8_grad_input.h's.
 * Scratch (conv2d_s8_grad_input_2pass_ref_scratch_size): the kept accumulators, int32
 * [keep, input_c], in a region at least as large as the int8 output (which may start where
 * the scratch starts: compiler.OUTPUT_OVER_SCRATCH; the kept pixels are rounded in ascending
 * order before pass 2 writes any other output byte, and the output never reaches past the
 * region); the block (conv2d_s8_grad_input_2pass_layout); one Q23 multiplier per output channel;
 * the composed weight rows of an input-channel slice (conv2d_train.h); the DSP variant's packed
 * terms (conv2d_s8_grad_input_2pass_scratch_size). */
#ifndef KERNELS_CONV2D_S8_GRAD_INPUT_2PASS_H
#define KERNELS_CONV2D_S8_GRAD_INPUT_2PASS_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "conv2d_s8_grad_input_2pass.def"
#include "def_struct_end.h"
/* clang-format on */

#include "conv2d_s8_grad_input.h"

/* Pixels the DSP variant computes at once past keep where the output channels are more than
 * one chunk: 4 pixel pairs; each block pixel costs the bytes of one kept pixel, so a smaller
 * block recomputes less but pays the weights' set-up per block more often. */
#define GI2_BLOCK 8

/* The operands are conv2d_s8_grad_input's; the output the compiler may put over the scratch
 * (compiler.OUTPUT_OVER_SCRATCH reads this name). */
enum { CONV2D_S8_GRAD_INPUT_2PASS_GRAD_INPUT = 6 };
_Static_assert((int)CONV2D_S8_GRAD_INPUT_2PASS_GRAD_INPUT == (int)CONV2D_S8_GRAD_INPUT_GRAD_INPUT,
               "the one-pass kernel's operand order");

/* The one-pass kernel's parameters are this kernel's first fields (keep follows them). */
_Static_assert(sizeof(struct conv2d_s8_grad_input_params) ==
                   offsetof(struct conv2d_s8_grad_input_2pass_params, keep),
               "conv2d_s8_grad_input_2pass extends conv2d_s8_grad_input's parameters");

/* Byte offsets of the scratch's parts (above). */
struct gi2_layout {
    int32_t n, keep;                       /* pixels (batches * h * w); kept ones (<= n) */
    size_t block, m, rows, ref_end, terms; /* offsets; ref_end: the reference's size */
};
void conv2d_s8_grad_input_2pass_layout(const struct conv2d_s8_grad_input_2pass_params *p,
                                       struct gi2_layout *l);

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in conv2d_s8_grad_input_2pass_dsp.c. */
void conv2d_s8_grad_input_2pass_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (conv2d_s8_grad_input_2pass.c); it calls no variant. */
void conv2d_s8_grad_input_2pass_ref_run(const void *params, void *const *operands, void *scratch);
/* The reference's scratch (the layout's ref_end). */
size_t conv2d_s8_grad_input_2pass_ref_scratch_size(const void *params);
/* The scratch the runtime plans (conv2d_s8_grad_input_2pass_dsp.c): the reference's, then the
 * DSP variant's packed terms, whichever build runs the plan. */
size_t conv2d_s8_grad_input_2pass_scratch_size(const void *params);

#endif
