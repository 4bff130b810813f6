/* depthwise_conv2d_s8_grad_input, bit for bit, with a fraction of its scratch: instead of
 * int32 accumulators for the whole input gradient, it keeps one input channel's at a time.
 * A depthwise input channel's gradient depends only on its own output channels, so each
 * channel is accumulated on its own; the dynamic scale needs max|acc| over all channels
 * before any value can be rounded, so a first pass finds it and a second pass recomputes
 * each channel and rounds it (grad_requantize_s32's arithmetic). The accumulators, the
 * multipliers and the shift are the one-pass kernel's, so the output and its scale are
 * identical; the price is computing the gradient twice.
 * keep (a parameter, 0 to input_c): input channels [0, keep) keep their int32 accumulators
 * from pass 1, so pass 2 only rounds them; the others are computed again. The compiler sets
 * it as large as the arena allows (pytools/train/compile_train.py), so only what memory needs
 * is computed twice: keep = input_c costs the one-pass kernel's work plus a rounding walk.
 * Operands and layouts: depthwise_conv2d_s8_grad_input.h's.
 * Scratch: the kept accumulators, int32 [keep][batches * input_h * input_w] (channel-major;
 * dw2_kept_bytes: keep * batches * input_h * input_w * 4, rounded up to 8 bytes), then at that
 * offset the layout of keep 0: int32 [batches * input_h * input_w] (one channel), then one Q23
 * multiplier per output channel (the DSP variant: the larger of that and its own layout). With
 * keep 0 the scratch is the same bytes as before keep existed. */
#ifndef KERNELS_DEPTHWISE_CONV2D_S8_GRAD_INPUT_2PASS_H
#define KERNELS_DEPTHWISE_CONV2D_S8_GRAD_INPUT_2PASS_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "depthwise_conv2d_s8_grad_input_2pass.def"
#include "def_struct_end.h"
/* clang-format on */

#include "depthwise_conv2d_s8_grad_input.h"

/* The one-pass kernel's parameters are this kernel's first fields (keep follows them). */
_Static_assert(sizeof(struct depthwise_conv2d_s8_grad_input_params) ==
                   offsetof(struct depthwise_conv2d_s8_grad_input_2pass_params, keep),
               "depthwise_conv2d_s8_grad_input_2pass extends the one-pass kernel's parameters");

/* keep clamped to [0, input_c] (a plan's keep is the compiler's; the clamp keeps a doctored one
 * inside the scratch the plan was given, which this same function sizes). */
static inline int32_t dw2_keep(const struct depthwise_conv2d_s8_grad_input_2pass_params *p) {
    return p->keep < 0 ? 0 : p->keep > p->input_c ? p->input_c : p->keep;
}
/* Bytes of the kept accumulators at the scratch's start (8-aligned, so that the layout of keep 0
 * after them keeps its alignment). */
static inline size_t dw2_kept_bytes(const struct depthwise_conv2d_s8_grad_input_2pass_params *p) {
    const size_t n =
        (size_t)dw2_keep(p) * (size_t)p->batches * (size_t)p->input_h * (size_t)p->input_w;
    return (n * sizeof(int32_t) + 7u) & ~(size_t)7u;
}

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in depthwise_conv2d_s8_grad_input_2pass_dsp.c. */
void depthwise_conv2d_s8_grad_input_2pass_run(const void *params, void *const *operands,
                                              void *scratch);
/* The reference kernel (depthwise_conv2d_s8_grad_input_2pass.c), bit-exact with TFLite's reference;
 * it calls no variant. */
void depthwise_conv2d_s8_grad_input_2pass_ref_run(const void *params, void *const *operands,
                                                  void *scratch);
/* The reference's scratch (above). */
size_t depthwise_conv2d_s8_grad_input_2pass_ref_scratch_size(const void *params);
/* The scratch the runtime plans for the operator (depthwise_conv2d_s8_grad_input_2pass_dsp.c):
 * the larger of the reference's and the DSP variant's layout, whatever the build (the host twin
 * switches between the two at run time, so one plan runs on both). */
size_t depthwise_conv2d_s8_grad_input_2pass_scratch_size(const void *params);

#endif
