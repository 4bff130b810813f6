/* conv2d_s8's direct variant: layers whose patch is too large for the GEMM variant's
 * buffer, per output pixel and channel, tap by tap, four input channels per SMLAD pair.
 * Bit-identical with conv2d_s8_ref_run (see conv2d_s8_dsp.c). No buffer. */
#include "conv2d_s8_dsp.h"

/* acc += sum over n channels of w * (x + offset): 4 channels per step unpacked on the fly. */
static inline int32_t dot_direct(const int8_t *x, const int8_t *w, int32_t n, uint32_t off2,
                                 int32_t off, int32_t acc) {
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint32_t xv = dsp_read4(x + i), wv = dsp_read4(w + i);
        acc = dsp_smlad(dsp_sxtab16(off2, xv), dsp_sxtb16(wv), acc);
        acc = dsp_smlad(dsp_sxtab16_hi(off2, xv), dsp_sxtb16_hi(wv), acc);
    }
    for (; i < n; ++i) acc += (int32_t)w[i] * ((int32_t)x[i] + off);
    return acc;
}

/* Patches too large for the buffers: per output pixel and channel, tap by tap. */
void conv2d_s8_direct_dsp(const struct conv2d_s8_params *p, const struct conv_ops *o) {
    const uint32_t off2 = dsp_pair(p->input_offset);
    const size_t filter_row = (size_t)p->filter_w * (size_t)p->input_c;
    const size_t filter_size = (size_t)p->filter_h * filter_row;
    int8_t *out = o->out;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *image =
            o->input + (size_t)b * (size_t)p->input_h * (size_t)p->input_w * (size_t)p->input_c;
        for (int32_t oy = 0; oy < p->output_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < p->output_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                for (int32_t oc = 0; oc < p->output_c; ++oc) {
                    const int8_t *kernel = row_of(oc, filter_size, p, o);
                    int32_t acc = bias_of(oc, p, o);
                    for (int32_t fy = 0; fy < p->filter_h; ++fy) {
                        const int32_t y = y0 + fy * p->dilation_h;
                        if (y < 0 || y >= p->input_h) continue;
                        for (int32_t fx = 0; fx < p->filter_w; ++fx) {
                            const int32_t x = x0 + fx * p->dilation_w;
                            if (x < 0 || x >= p->input_w) continue;
                            const int8_t *in_px =
                                image +
                                ((size_t)y * (size_t)p->input_w + (size_t)x) * (size_t)p->input_c;
                            const int8_t *w =
                                kernel + (size_t)fy * filter_row + (size_t)fx * p->input_c;
                            acc = dot_direct(in_px, w, p->input_c, off2, p->input_offset, acc);
                        }
                    }
                    *out++ = finish(acc, oc, p, o);
                }
            }
        }
    }
}
