/* The 4-D broadcast walk the binary elementwise kernels share (ADD, SUB, MUL, MAXIMUM/MINIMUM
 * and their DSP variants): the output in row-major order, each input along its own strides
 * (broadcast4.def, the first block of those kernels' parameters). A kernel gives the innermost
 * run, `row`, and broadcast4_s8 walks the three outer dimensions.
 *
 * No speed is lost to the indirection: broadcast4_s8 is always inlined, so `row` is a constant
 * at its call and the compiler inlines the kernel's (static inline) row function there, with
 * its context's fields in registers, as if the loops were written out (MobileNetV2's step costs
 * the same instructions; tests/kernels hold each kernel bit-exact). */
#ifndef KERNELS_BROADCAST4_H
#define KERNELS_BROADCAST4_H

#include <stddef.h>
#include <string.h>

#include "def_types.h"
#include "kernel.h"

/* clang-format off */
#define FIELD(type, fname) type fname;
struct broadcast4 {
#include "broadcast4.def"
};
#undef FIELD
/* clang-format on */

/* The broadcast block of a kernel's packed parameters (`params`, whose .def starts with
 * broadcast4.def: BROADCAST4_CHECK holds that at compile time). */
static inline struct broadcast4 broadcast4_of(const void *params) {
    struct broadcast4 s;
    memcpy(&s, params, sizeof s);
    return s;
}

#define BROADCAST4_CHECK(kernel)                                        \
    _Static_assert(offsetof(struct kernel##_params, dim0) == 0 &&       \
                       offsetof(struct kernel##_params, in2_stride3) == \
                           offsetof(struct broadcast4, in2_stride3),    \
                   #kernel ".def must start with broadcast4.def")

/* One innermost run: n output elements from out on, input elements a[i * sa] and b[i * sb];
 * returns the output's next element. ctx: the kernel's own constants. */
typedef int8_t *(*broadcast4_row_s8)(const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                                     int32_t sa, int32_t sb, const void *ctx);

static inline __attribute__((always_inline)) void broadcast4_s8(const struct broadcast4 *s,
                                                                const int8_t *in1,
                                                                const int8_t *in2, int8_t *out,
                                                                broadcast4_row_s8 row,
                                                                const void *ctx) {
    for (int32_t i0 = 0; i0 < s->dim0; ++i0) {
        for (int32_t i1 = 0; i1 < s->dim1; ++i1) {
            for (int32_t i2 = 0; i2 < s->dim2; ++i2) {
                const int8_t *a =
                    in1 + i0 * s->in1_stride0 + i1 * s->in1_stride1 + i2 * s->in1_stride2;
                const int8_t *b =
                    in2 + i0 * s->in2_stride0 + i1 * s->in2_stride1 + i2 * s->in2_stride2;
                out = row(a, b, out, s->dim3, s->in1_stride3, s->in2_stride3, ctx);
            }
        }
    }
}

/* The same walk for kernels that address their operands themselves (the input gradients of
 * MUL, ADD, SUB, MAXIMUM/MINIMUM, which sum into the broadcast input): `run` gets, for each
 * innermost run of n elements, the output's element index at its start and each input's
 * element offset there, with the inputs' innermost strides. */
typedef void (*broadcast4_run_fn)(int32_t out_at, int32_t at1, int32_t at2, int32_t n, int32_t s1,
                                  int32_t s2, void *ctx);

static inline __attribute__((always_inline)) void broadcast4_walk(const struct broadcast4 *s,
                                                                  broadcast4_run_fn run,
                                                                  void *ctx) {
    int32_t out_at = 0;
    for (int32_t i0 = 0; i0 < s->dim0; ++i0) {
        for (int32_t i1 = 0; i1 < s->dim1; ++i1) {
            for (int32_t i2 = 0; i2 < s->dim2; ++i2) {
                const int32_t at1 = i0 * s->in1_stride0 + i1 * s->in1_stride1 + i2 * s->in1_stride2;
                const int32_t at2 = i0 * s->in2_stride0 + i1 * s->in2_stride1 + i2 * s->in2_stride2;
                run(out_at, at1, at2, s->dim3, s->in1_stride3, s->in2_stride3, ctx);
                out_at += s->dim3;
            }
        }
    }
}

#endif
