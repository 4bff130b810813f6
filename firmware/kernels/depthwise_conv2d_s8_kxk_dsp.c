/* int8 depthwise 2-D convolution, k x k filters larger than 3x3 (5x5, 7x7, any stride, any
 * padding, dilation 1, depth multiplier 1), with the Armv7E-M DSP SIMD instructions (dsp.h):
 * bit-identical with depthwise_conv2d_s8_ref_run (depthwise_conv2d_s8.c).
 *
 * The 3x3 wide path (dw_group_wide, depthwise_conv2d_s8_dsp.c) generalised: each channel
 * group of four is the outer loop, its taps widened once (dw_group_load); the output is cut
 * into tiles of rows and columns, and each tile's input window is copied to the stack already
 * widened (two words per pixel: SXTAB16 of the even and of the odd channels, the input offset
 * added), padding as zero words (an offset input of 0 adds nothing, as the reference's
 * skipped tap). Every output pixel then runs all its taps alike, border or not: per tap one
 * 64-bit load of the input pair, one of the widened weight pair and four 16x16
 * multiply-accumulates (SMLABB / SMLATT), the filter row unrolled for 5 and 7 columns.
 * A 7x7 window at stride 2 spans 13x13 input pixels for 2x2 outputs, so the copy is tiled in
 * both directions (kxk_tile picks the tile that copies the fewest pixels per output); at
 * 256 pixels (2 KB) the copy costs under a sixth of the taps. Channels outside a whole group
 * (the last c % 4, or a group straddling train_rows) run the reference's arithmetic
 * (depthwise_conv2d_s8_dsp_channel). Every product and sum is the reference's, in another
 * order (int32 sums of these products cannot overflow: see depthwise_conv2d_s8.c). */
#include "depthwise_conv2d_s8_dsp.h"

#define KXK_PIX 256 /* widened pixels of the copy at most (2 KB of the operator's scratch) */

int depthwise_conv2d_s8_kxk_dsp_takes(const struct depthwise_conv2d_s8_params *p) {
    if (p->depth_multiplier != 1 || p->dilation_h != 1 || p->dilation_w != 1) return 0;
    if (p->filter_h < 1 || p->filter_w < 1 || p->filter_h * p->filter_w > DW_TAPS_MAX) return 0;
    if (p->filter_h <= 3 && p->filter_w <= 3) return 0; /* the 3x3 variants' */
    if (p->stride_h < 1 || p->stride_w < 1) return 0;
    return p->filter_h * p->filter_w <= KXK_PIX;
}

struct tile {
    int32_t rows, cols; /* output rows and columns per tile */
    int32_t in_h, in_w; /* the input window they read */
};

/* The tile of outputs that fits the copy with the fewest copied pixels per output, and the
 * input window it reads. */
static struct tile kxk_tile(const struct depthwise_conv2d_s8_params *p) {
    const struct dw_tile t = dw_tile_pick(p, KXK_PIX, 1, p->filter_w);
    return (struct tile){t.rows, t.cols, (t.rows - 1) * p->stride_h + p->filter_h,
                         (t.cols - 1) * p->stride_w + p->filter_w};
}

/* Copies the group's input window at (y0, x0) (may reach into the padding), h x w pixels,
 * widened, into buf. */
static void kxk_copy(const struct dw *d, const int8_t *image, uint64_t *buf, int32_t y0, int32_t x0,
                     int32_t h, int32_t w) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c;
    const uint32_t off2 = dsp_pair(p->input_offset);
    int32_t xlo = -x0, xhi = p->input_w - x0; /* columns [xlo, xhi) of the window are inside */
    xlo = xlo < 0 ? 0 : (xlo > w ? w : xlo);
    xhi = xhi > w ? w : (xhi < xlo ? xlo : xhi);
    for (int32_t r = 0; r < h; ++r, buf += w) {
        const int32_t y = y0 + r;
        if (y < 0 || y >= p->input_h) {
            memset(buf, 0, (size_t)w * sizeof *buf);
            continue;
        }
        int32_t i = 0;
        for (; i < xlo; ++i) buf[i] = 0;
        const int8_t *s = image + (size_t)y * d->in_row + (ptrdiff_t)(x0 + xlo) * ch;
        for (; i < xhi; ++i, s += ch) {
            const uint32_t v = dsp_read4(s);
            buf[i] = (uint64_t)dsp_sxtab16(off2, v) | (uint64_t)dsp_sxtab16_hi(off2, v) << 32;
        }
        for (; i < w; ++i) buf[i] = 0;
    }
}

/* The outputs of one tile from its copy (row pitch in_w pixels); fw is a constant in the
 * 5x5 and 7x7 instances, so the filter row unrolls. */
static inline __attribute__((always_inline)) void kxk_outputs(
    const struct dw *d, const struct group *g, const uint64_t *buf, int32_t in_w, int32_t rows,
    int32_t cols, int8_t *dst, int32_t c, int32_t fh, int32_t fw, int full) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c, sh = p->stride_h, sw = p->stride_w;
    const int32_t cc = 1 + 2 * p->output_offset;
    const size_t out_row = (size_t)p->output_w * (size_t)ch;
    for (int32_t oy = 0; oy < rows; ++oy) {
        const uint64_t *row = buf + (size_t)oy * (size_t)sh * (size_t)in_w;
        int8_t *o = dst + (size_t)oy * out_row;
        for (int32_t ox = 0; ox < cols; ++ox, o += ch, row += sw) {
            int32_t a0 = g->rq.bias[0], a1 = g->rq.bias[1], a2 = g->rq.bias[2], a3 = g->rq.bias[3];
            const uint64_t *r = row, *wt = g->w;
            for (int32_t fy = 0; fy < fh; ++fy, r += in_w, wt += fw) {
                /* The filter row unrolled where fw is a constant (-O2 leaves a 7-tap loop). */
#pragma GCC unroll 7
                for (int32_t fx = 0; fx < fw; ++fx) {
                    const uint64_t x = r[fx], w = wt[fx];
                    const uint32_t xe = (uint32_t)x, xo = (uint32_t)(x >> 32);
                    const uint32_t we = (uint32_t)w, wo = (uint32_t)(w >> 32);
                    a0 = dsp_smlabb(xe, we, a0);
                    a2 = dsp_smlatt(xe, we, a2);
                    a1 = dsp_smlabb(xo, wo, a1);
                    a3 = dsp_smlatt(xo, wo, a3);
                }
            }
            dw_store(d, &g->rq, o, c, a0, a1, a2, a3, cc, full);
        }
    }
}

static void kxk_outputs_5(const struct dw *d, const struct group *g, const uint64_t *buf,
                          int32_t in_w, int32_t rows, int32_t cols, int8_t *dst, int32_t c,
                          int full) {
    kxk_outputs(d, g, buf, in_w, rows, cols, dst, c, 5, 5, full);
}
static void kxk_outputs_7(const struct dw *d, const struct group *g, const uint64_t *buf,
                          int32_t in_w, int32_t rows, int32_t cols, int8_t *dst, int32_t c,
                          int full) {
    kxk_outputs(d, g, buf, in_w, rows, cols, dst, c, 7, 7, full);
}
static void kxk_outputs_any(const struct dw *d, const struct group *g, const uint64_t *buf,
                            int32_t in_w, int32_t rows, int32_t cols, int8_t *dst, int32_t c,
                            int full) {
    kxk_outputs(d, g, buf, in_w, rows, cols, dst, c, d->p.filter_h, d->p.filter_w, full);
}

void depthwise_conv2d_s8_kxk_dsp_run(const struct dw *d) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c, fh = p->filter_h, fw = p->filter_w;
    const int full = p->act_min <= -128 && p->act_max >= 127;
    const struct tile t = kxk_tile(p);
    struct group g;
    uint64_t *const buf = d->buf; /* depthwise_conv2d_s8_kxk_dsp_buffer_size bytes */
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *image = d->input + (size_t)b * (size_t)p->input_h * d->in_row;
        int8_t *out = d->out + (size_t)b * (size_t)p->output_h * (size_t)p->output_w * (size_t)ch;
        for (int32_t c = 0; c < ch;) {
            if (!dw_group_whole(p, c)) {
                depthwise_conv2d_s8_dsp_channel(d, b, c);
                ++c;
                continue;
            }
            dw_group_load(d, &g, c);
            for (int32_t oy = 0; oy < p->output_h; oy += t.rows) {
                const int32_t rows = p->output_h - oy < t.rows ? p->output_h - oy : t.rows;
                const int32_t in_h = (rows - 1) * p->stride_h + fh;
                for (int32_t ox = 0; ox < p->output_w; ox += t.cols) {
                    const int32_t cols = p->output_w - ox < t.cols ? p->output_w - ox : t.cols;
                    const int32_t in_w = (cols - 1) * p->stride_w + fw;
                    kxk_copy(d, image + c, buf, oy * p->stride_h - p->pad_h,
                             ox * p->stride_w - p->pad_w, in_h, in_w);
                    int8_t *dst = out +
                                  ((size_t)oy * (size_t)p->output_w + (size_t)ox) * (size_t)ch +
                                  (size_t)c;
                    if (fh == 5 && fw == 5)
                        kxk_outputs_5(d, &g, buf, in_w, rows, cols, dst, c, full);
                    else if (fh == 7 && fw == 7)
                        kxk_outputs_7(d, &g, buf, in_w, rows, cols, dst, c, full);
                    else
                        kxk_outputs_any(d, &g, buf, in_w, rows, cols, dst, c, full);
                }
            }
            c += 4;
        }
    }
}

size_t depthwise_conv2d_s8_kxk_dsp_buffer_size(const struct depthwise_conv2d_s8_params *p) {
    const struct tile t = kxk_tile(p);
    return (size_t)t.in_h * (size_t)t.in_w * sizeof(uint64_t);
}
