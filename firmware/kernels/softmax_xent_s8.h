/* The loss head: softmax cross-entropy on int8 logits, in single-precision float.
 *
 * Per row, with real logits x_c = s * (q_c - z), label t and smoothing epsilon (targets
 * y_c = (1 - epsilon) [c == t] + epsilon / classes, as Keras' label_smoothing):
 *   loss_row = log(sum_c exp(x_c)) - sum_c y_c x_c        (cross-entropy)
 *   G_c      = softmax(x)_c - y_c                          (dL/dx_c)
 * The outputs are the mean loss over the rows, each row's predicted class (argmax of the
 * logits, ties to the lowest index) and G_logits = G / batches, the gradient of the mean,
 * as int8 with a dynamic scale (grad.h).
 *
 * Stability: d_c = s * (q_c - q_max) <= 0 (the maximum subtracted exactly, in integers;
 * z cancels). With rest = sum over c != argmax of exp(d_c) (the argmax's own term is
 * exactly 1), log(sum) = log1p(rest), so
 *   loss_row = log1p(rest) - (1 - epsilon) d_t - (epsilon / classes) sum_c d_c,
 * a sum of non-negative terms: accurate to a few ulp even when the loss is tiny. Likewise
 * G_t = (epsilon - epsilon / classes) - (sum over c != t of exp(d_c)) / sum, with no
 * cancellation in p_t - 1.
 * exp and log1p are evaluated here with + - * / and bit operations only (each within a
 * few ulp of the true value), not by the C library: glibc on the host and newlib on the
 * board need not round alike, and the host twin must produce the board's bits. exp(d) for
 * d < -87 is taken as 0 (the true value is below 2^-125, against the 1 of the maximum).
 *
 * Gradient precision: G is computed in float, then scaled by the power of two that puts
 * max|G| in [2^29, 2^30) and rounded to int32 (exact for every |G| >= max|G| / 64: 24-bit
 * floats), then grad_requantize_s32: the int8 values are within half a quantum (plus
 * float rounding) of G / batches. If max|G| < 2^-96 (the label holds all the probability
 * to within 1e-29) the gradient is written as 0 with scale 0.
 *
 * Labels out of range: the kernel never indexes with a label (it compares), so a bad label
 * cannot read or write out of bounds. A row whose label is not in [0, classes) gets a zero
 * gradient (it trains nothing) and makes the loss NaN, the flag the host and the runtime
 * see; its predicted class is still written. The host checks labels before sending them.
 * A bad configuration (input_scale not positive and finite, label_smoothing outside
 * [0, 1] or NaN) is handled the same way for every row.
 *
 * Layouts: logits int8 [batches, classes]; labels int32 [batches]; loss float32 [1];
 * predicted int32 [batches]; G_logits int8 [batches, classes]; its scale float32 [1].
 * Scratch: 4 bytes per logit (the float gradient, then its int32 fixed point). */
#ifndef KERNELS_SOFTMAX_XENT_S8_H
#define KERNELS_SOFTMAX_XENT_S8_H

#include "kernel.h"

/* The order matters (def_struct.h defines the macros the .def expands), so keep
 * clang-format from sorting these includes. */
/* clang-format off */
#include "def_struct.h"
#include "softmax_xent_s8.def"
#include "def_struct_end.h"
/* clang-format on */

/* Operand order. */
enum {
    SOFTMAX_XENT_S8_LOGITS = 0,     /* int8 [batches, classes] */
    SOFTMAX_XENT_S8_LABELS = 1,     /* int32 [batches] */
    SOFTMAX_XENT_S8_LOSS = 2,       /* float32 [1], written: mean loss (NaN: bad label) */
    SOFTMAX_XENT_S8_PREDICTED = 3,  /* int32 [batches], written: argmax per row */
    SOFTMAX_XENT_S8_GRAD = 4,       /* int8 [batches, classes], written: G_logits */
    SOFTMAX_XENT_S8_GRAD_SCALE = 5, /* float32 [1], written */
    SOFTMAX_XENT_S8_OPERANDS = 6
};

void softmax_xent_s8_run(const void *params, void *const *operands, void *scratch);
size_t softmax_xent_s8_scratch_size(const void *params);

#endif
