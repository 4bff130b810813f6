/* The DSP SIMD dot products of a fully connected layer, shared by its forward variant
 * (fully_connected_s8_dsp.c) and the loss's un-saturated logits (logits_s32_dsp.c), which
 * compute the same rows: two weight rows at a time share each input word, four inputs
 * loaded as one word and widened to 16-bit lanes with the input offset added (SXTAB16),
 * each row's four weights likewise with the weights offset, then two SMLAD per row. Every
 * product is the reference's (fc_row_sum, fully_connected_s8.h) and int32 sums cannot
 * overflow (fully_connected_s8.c), so the sums are equal. */
#ifndef KERNELS_FULLY_CONNECTED_S8_DSP_H
#define KERNELS_FULLY_CONNECTED_S8_DSP_H

#include "dsp.h"

/* acc0 += row w0 . x, acc1 += row w1 . x over depth elements (offsets added to each side). */
static inline void fc_dot2_dsp(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t depth,
                               int32_t input_offset, int32_t filter_offset, int32_t *acc0,
                               int32_t *acc1) {
    const uint32_t xoff2 = dsp_pair(input_offset), woff2 = dsp_pair(filter_offset);
    int32_t a0 = *acc0, a1 = *acc1;
    int32_t i = 0;
    for (; i + 4 <= depth; i += 4) {
        const uint32_t xv = dsp_read4(x + i);
        const uint32_t xa = dsp_sxtab16(xoff2, xv), xb = dsp_sxtab16_hi(xoff2, xv);
        const uint32_t va = dsp_read4(w0 + i), vb = dsp_read4(w1 + i);
        a0 = dsp_smlad(xa, dsp_sxtab16(woff2, va), a0);
        a0 = dsp_smlad(xb, dsp_sxtab16_hi(woff2, va), a0);
        a1 = dsp_smlad(xa, dsp_sxtab16(woff2, vb), a1);
        a1 = dsp_smlad(xb, dsp_sxtab16_hi(woff2, vb), a1);
    }
    for (; i < depth; ++i) {
        const int32_t xi = (int32_t)x[i] + input_offset;
        a0 += ((int32_t)w0[i] + filter_offset) * xi;
        a1 += ((int32_t)w1[i] + filter_offset) * xi;
    }
    *acc0 = a0, *acc1 = a1;
}

#endif
