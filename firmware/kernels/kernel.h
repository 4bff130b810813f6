/* The calling convention every kernel shares (see docs/architecture.md, "Kernels").
 *
 * Each kernel X lives in kernels/X.{def,h,c}:
 *   X.def  its parameters (PARAMS_BEGIN(X) FIELD(i32, ...) ... PARAMS_END(X)): plain
 *          integers/floats, identical on the host and the board, packed into plans as-is
 *          and parsed by pytools (one definition);
 *   X.h    struct X_params (from X.def), the operand order, and:
 *            void   X_run(const void *params, void *const *operands, void *scratch);
 *            size_t X_scratch_size(const void *params);   (0 if none is needed)
 *   X.c    the reference implementation, bit-exact with TFLite's reference integer
 *          arithmetic: X_run, or X_ref_run when X has DSP variants;
 *   X_dsp.c (optional) the DSP variants and X's selector X_run, which runs a variant or
 *          X_ref_run. A variant may call the reference; the reference never calls a variant
 *          (docs/architecture.md, "Kernel layout").
 * operands[] holds the inputs then the outputs, in the order X.h documents (derived
 * constants such as per-channel multipliers and shifts are operands too). Kernels never
 * allocate: scratch comes from the caller, sized by X_scratch_size. */
#ifndef KERNELS_KERNEL_H
#define KERNELS_KERNEL_H

#include <stddef.h>
#include <stdint.h>

typedef void (*kernel_run_fn)(const void *params, void *const *operands, void *scratch);
typedef size_t (*kernel_scratch_fn)(const void *params);

#endif
