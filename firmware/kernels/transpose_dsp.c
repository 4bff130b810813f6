/* TRANSPOSE, optimized: bit-identical with transpose_ref_run (transpose.c). The case it
 * speeds up is an int8 transpose of the two innermost dimensions after simplification
 * (NHWC <-> NCHW, any 2-D swap under outer dimensions): the reference gathers byte by byte
 * (about 5 instructions per byte on the emulated Cortex-M7); here 4x4 blocks are read as
 * four words, transposed in registers with masks and shifts, and written as four words;
 * the edges of the plane that fill no whole block are copied element by element. Every other
 * case runs the reference. */
#include "dsp.h"
#include "transpose.h"

static inline void store4(int8_t *p, uint32_t v) {
    __builtin_memcpy(p, &v, 4); /* one STR: the Cortex-M7 allows any address */
}

/* out[r][c] = in[r + c * col_stride] for a rows x cols plane, out row-major. Each 4x4 block
 * is four words a, b, e, f (columns c..c+3, each holding rows r..r+3), transposed with
 * masks and shifts into four words (rows r..r+3, each holding columns c..c+3),
 * little-endian as the reference writes them. Kept out of line so that its pointers and
 * words own the registers. */
static void __attribute__((noinline))
transpose_plane_s8(int8_t *out, const int8_t *in, int32_t rows, int32_t cols, int32_t col_stride) {
    const ptrdiff_t cs = col_stride;
    const uint32_t lo = 0x00FF00FFu;
    int32_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const int8_t *src = in + r;
        int8_t *d0 = out + (ptrdiff_t)r * cols;
        int8_t *d1 = d0 + cols, *d2 = d1 + cols, *d3 = d2 + cols;
        int32_t c = 0;
        for (; c + 4 <= cols; c += 4, src += 4 * cs, d0 += 4, d1 += 4, d2 += 4, d3 += 4) {
            const uint32_t a = dsp_read4(src), b = dsp_read4(src + cs);
            const uint32_t e = dsp_read4(src + 2 * cs), f = dsp_read4(src + 3 * cs);
            const uint32_t t0 = (a & lo) | ((b & lo) << 8);  /* a0 b0 a2 b2 */
            const uint32_t t1 = ((a >> 8) & lo) | (b & ~lo); /* a1 b1 a3 b3 */
            const uint32_t t2 = (e & lo) | ((f & lo) << 8);  /* e0 f0 e2 f2 */
            const uint32_t t3 = ((e >> 8) & lo) | (f & ~lo); /* e1 f1 e3 f3 */
            store4(d0, (t0 & 0xFFFFu) | (t2 << 16));
            store4(d1, (t1 & 0xFFFFu) | (t3 << 16));
            store4(d2, (t0 >> 16) | (t2 & 0xFFFF0000u));
            store4(d3, (t1 >> 16) | (t3 & 0xFFFF0000u));
        }
        for (; c < cols; ++c, src += cs) { /* columns past the last whole block */
            *d0++ = src[0];
            *d1++ = src[1];
            *d2++ = src[2];
            *d3++ = src[3];
        }
    }
    for (; r < rows; ++r) /* rows past the last whole block */
        for (int32_t c = 0; c < cols; ++c) out[(ptrdiff_t)r * cols + c] = in[r + (ptrdiff_t)c * cs];
}

void transpose_dsp_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct transpose_params p = *(const struct transpose_params *)params;
    /* Simplification (lowering/movement.py) leaves the innermost swap as perm4 = 5, perm5 =
     * 4 over input dims 4 and 5: output rows run along the input's last dimension. */
    if (p.elem_size != 1 || p.perm4 != 5 || p.perm5 != 4 || p.in_dim4 < 4 || p.in_dim5 < 4) {
        transpose_ref_run(params, operands, scratch);
        return;
    }
    const int8_t *in = operands[TRANSPOSE_INPUT];
    int8_t *out = operands[TRANSPOSE_OUTPUT];
    const int32_t in_dim[4] = {p.in_dim0, p.in_dim1, p.in_dim2, p.in_dim3};
    const int32_t perm[4] = {p.perm0, p.perm1, p.perm2, p.perm3};
    const int32_t plane = p.in_dim4 * p.in_dim5; /* elements per (i0..i3) position */
    int32_t stride[4];                           /* input strides of dims 0..3, in elements */
    stride[3] = plane;
    for (int k = 2; k >= 0; --k) stride[k] = stride[k + 1] * in_dim[k + 1];
    const int32_t n0 = in_dim[perm[0]], n1 = in_dim[perm[1]], n2 = in_dim[perm[2]],
                  n3 = in_dim[perm[3]];
    const int32_t s0 = stride[perm[0]], s1 = stride[perm[1]], s2 = stride[perm[2]],
                  s3 = stride[perm[3]];
    for (int32_t i0 = 0; i0 < n0; ++i0)
        for (int32_t i1 = 0; i1 < n1; ++i1)
            for (int32_t i2 = 0; i2 < n2; ++i2)
                for (int32_t i3 = 0; i3 < n3; ++i3) {
                    const int8_t *src = in + (ptrdiff_t)i0 * s0 + (ptrdiff_t)i1 * s1 +
                                        (ptrdiff_t)i2 * s2 + (ptrdiff_t)i3 * s3;
                    /* Output rows: input dim 5 (stride 1); columns: input dim 4. */
                    transpose_plane_s8(out, src, p.in_dim5, p.in_dim4, p.in_dim5);
                    out += plane;
                }
}

/* The selector, the runtime's entry for transpose (ops.def): the DSP variant above when the
 * build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (transpose.c). The DSP
 * variant falls back to the reference itself for the shapes it does not take. */
void transpose_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        transpose_dsp_run(params, operands, scratch);
    else
        transpose_ref_run(params, operands, scratch);
}
