/* A helper the data-movement kernels share (TRANSPOSE, STRIDED_SLICE): copy a run of
 * elements of any size, contiguous or strided in the source. The movement kernels copy
 * elements as bytes, so one kernel serves int8 activations and the float32/int32 tensors of
 * a model's I/O alike, exactly as TFLite's type-templated reference kernels do. */
#ifndef KERNELS_COPY_RUN_H
#define KERNELS_COPY_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Copies n elements of elem_size bytes (1, 2, 4 or 8) from src, whose consecutive elements
 * lie src_step elements apart (any sign), to the contiguous dst; returns dst's end. A unit
 * step is one memcpy, whose word-wise copy is the fast path. */
static inline uint8_t *copy_run(uint8_t *dst, const uint8_t *src, int32_t n, int32_t src_step,
                                int32_t elem_size) {
    if (src_step == 1) {
        memcpy(dst, src, (size_t)n * (size_t)elem_size);
        return dst + (size_t)n * (size_t)elem_size;
    }
    const ptrdiff_t step = (ptrdiff_t)src_step * elem_size;
    switch (elem_size) {
        case 1:
            for (int32_t i = 0; i < n; ++i, src += step) *dst++ = *src;
            break;
        default:
            for (int32_t i = 0; i < n; ++i, src += step, dst += elem_size)
                memcpy(dst, src, (size_t)elem_size);
            break;
    }
    return dst;
}

#endif
