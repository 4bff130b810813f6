#include "kernel_table.h"

#include <stddef.h>

#define OP(code, name, kernel) \
    void kernel##_run(const void *params, void *const *operands, void *scratch);
#include "ops.def"
#undef OP

static const kernel_run_fn every_kernel[] = {
#define OP(code, name, kernel) [code] = kernel##_run,
#include "ops.def"
#undef OP
};

/* Weak: a linked plan's own table (plan.S) replaces it; see kernel_table.h. */
__attribute__((weak))
const rt_kernel_table_t rt_kernels = {every_kernel, sizeof every_kernel / sizeof every_kernel[0]};
