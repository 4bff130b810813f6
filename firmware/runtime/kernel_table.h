/* The dispatch table: operator code (kernels/ops.def) -> kernel. kernel_table.c defines it,
 * weakly, with every kernel of ops.def (the host twin, an image without a model). An image
 * with a linked plan defines its own in the generated plan.S (pytools/build/builder.py) with
 * only the kernels that plan runs, so --gc-sections leaves every other kernel out of flash,
 * as TFLite Micro's MicroMutableOpResolver links only the operators an application registers.
 * The plan is linked in, never received at run time, so no other code can reach the table. */
#ifndef RUNTIME_KERNEL_TABLE_H
#define RUNTIME_KERNEL_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "kernel.h"

typedef struct {
    const kernel_run_fn *run; /* run[code], 0 where this image has no kernel */
    uint32_t count;           /* codes 0 .. count - 1 */
} rt_kernel_table_t;

extern const rt_kernel_table_t rt_kernels;

#if defined(__arm__)
/* plan.S writes this struct as two words (pytools/build/builder.py, KERNEL_TABLE_ASM). */
_Static_assert(sizeof(rt_kernel_table_t) == 8 && offsetof(rt_kernel_table_t, count) == 4,
               "rt_kernel_table_t must stay the two words builder.KERNEL_TABLE_ASM writes");
#endif

#endif
