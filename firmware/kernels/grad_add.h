/* The sum of two gradients of one tensor: G = G_a + G_b, where a tensor x feeds two
 * consumers (a residual block's branch and its skip path), so dL/dx = the sum of what
 * each consumer sends back. The inputs carry different dynamic scales (grad.h).
 *
 * Arithmetic: both are put in one fixed-point unit u = max(s_a, s_b) / 2^22 with int32
 * multipliers m = round(s / max(s_a, s_b) * 2^22): the larger-scale gradient is exact
 * (m = 2^22), the other's scale ratio is rounded to 22 bits. acc = g_a * m_a + g_b * m_b
 * (|acc| <= 2 * 128 * 2^22 = 2^31 / 2, no overflow), then grad_requantize_s32 gives the
 * output its own dynamic scale max|G| / 127.
 * Precision: before requantization every element is within 0.75 * 127 * u < 2.3e-5 *
 * max(s_a, s_b) of the exact real sum s_a*g_a + s_b*g_b (a fraction 1.8e-7 of the larger
 * input's range 127 * max(s_a, s_b)); after it, within half an output quantum more. With
 * equal scales the int32 sum is exact and only the final rounding remains.
 * Scales are finite and >= 0, as grad_requantize_s32 makes them; if both are 0 (or not
 * positive) the output is 0 with scale 0.
 *
 * ADD needs no backward kernel of its own. In real units y = clamp(x1 + x2): the
 * requantization to y's int8 grid rounds straight through (grad.h) and the clamp is a
 * mask, so G_x1 = G_x2 = G_y * mask -- exactly grad_apply_mask with the mask that
 * clamp_mask_s8 took from ADD's output -- and both inputs share that one int8 tensor and
 * scale operand (the s_x/s_y factors of the paper's formula appear only for gradients
 * with respect to the int8 values, which this project does not use). Broadcasting is the
 * exception: an input broadcast along some dimensions needs the gradient summed over
 * them (a reduction, not provided here). grad_add is what joins such gradients when x
 * itself fed both paths.
 *
 * Layouts: every gradient int8 [size] (any shape, flat); scales float32 [1]. The output
 * may alias either input (the sum goes through scratch first).
 * Scratch: int32 [size]. */
#ifndef KERNELS_GRAD_ADD_H
#define KERNELS_GRAD_ADD_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "grad_add.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    GRAD_ADD_A = 0,         /* int8 */
    GRAD_ADD_A_SCALE = 1,   /* float32 [1] */
    GRAD_ADD_B = 2,         /* int8 */
    GRAD_ADD_B_SCALE = 3,   /* float32 [1] */
    GRAD_ADD_OUT = 4,       /* int8 (may alias A or B) */
    GRAD_ADD_OUT_SCALE = 5, /* float32 [1], written */
    GRAD_ADD_OPERANDS = 6
};

/* Fraction bits of the common unit: max(s_a, s_b) / 2^GRAD_ADD_FRAC_BITS. */
#define GRAD_ADD_FRAC_BITS 22

/* The selector, the runtime's entry (ops.def): the DSP variant where the build has it,
 * else the reference. It lives in grad_add_dsp.c. */
void grad_add_run(const void *params, void *const *operands, void *scratch);
/* The reference kernel (grad_add.c), bit-exact with TFLite's reference; it calls no variant. */
void grad_add_ref_run(const void *params, void *const *operands, void *scratch);
/* grad_add.c's body, shared with grad_add_dsp.c: the two differ only in the requantizer
 * (grad_requantize_s32, or dsp.h's dsp_grad_requantize_s32), bit-identical with each other. */
void grad_add_run_with(const void *params, void *const *operands, void *scratch,
                       float (*requantize)(const int32_t *acc, size_t n, float acc_scale,
                                           int8_t *out));
size_t grad_add_scratch_size(const void *params);

#endif
