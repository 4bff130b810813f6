/* int8 depthwise 2-D convolution with the Armv7E-M DSP SIMD instructions (dsp.h):
 * bit-identical with depthwise_conv2d_s8_ref_run (depthwise_conv2d_s8.c), TFLite's reference
 * DepthwiseConvPerChannel.
 *
 * Channel-vectorized (depth_multiplier 1, the MobileNet case), four channels at a time, and
 * the channel group is the outer loop: its filter taps are widened to 16-bit lanes once
 * (SXTB16, on the stack), its biases and requantization constants loaded once, and then every
 * output pixel takes, per tap, one input word (four channels), two SXTAB16 (the input offset
 * added), one LDRD of the widened taps and four 16x16 multiply-accumulates (SMLABB / SMLATT,
 * one lane each). Interior pixels run all taps from a table of offsets (3x3 unrolled); pixels
 * at the border only the taps inside the image, as the reference skips the padding.
 * 3x3 layers at stride 1 and 2 whose output rows fit its copy (up to 64 outputs wide at
 * stride 1, 32 at stride 2) run instead from a pre-widened, zero-bordered copy of the group's
 * input on the stack: the 3x3 variant, depthwise_conv2d_s8_3x3_dsp.c.
 * Requantization: requant_fast.h (5 instructions per output, proved bit-identical with
 * fixedpoint.h) when the group's four channels are on its fast path, else the reference's.
 * Channels whose group of four is not whole, or straddles train_rows (a trained channel reads
 * the compact RAM copy, its neighbour the filter), take the reference's per-channel
 * arithmetic; other depth multipliers, and filters of more than DW_TAPS_MAX taps, the
 * reference kernel. Every product and sum is the reference's, in another order (int32 sums of
 * these products cannot overflow: see depthwise_conv2d_s8.c).
 * This file is also the selector (depthwise_conv2d_s8_dsp_run): filters beyond 3x3 at
 * dilation 1 (5x5, 7x7) take the k x k variant, depthwise_conv2d_s8_kxk_dsp.c; what the
 * variants share is in depthwise_conv2d_s8_dsp.h. */
#include "depthwise_conv2d_s8_dsp.h"

/* Accumulates taps [t0, t1) of a row of the window at x (4 channels): a0..a3 for c..c+3. */
#define DW_TAP(t)                                                                 \
    do {                                                                          \
        const uint32_t xv = dsp_read4(x + toff[t]);                               \
        const uint32_t xe = dsp_sxtab16(off2, xv), xo = dsp_sxtab16_hi(off2, xv); \
        const uint32_t we = (uint32_t)g->w[t], wo = (uint32_t)(g->w[t] >> 32);    \
        a0 = dsp_smlabb(xe, we, a0);                                              \
        a2 = dsp_smlatt(xe, we, a2);                                              \
        a1 = dsp_smlabb(xo, wo, a1);                                              \
        a3 = dsp_smlatt(xo, wo, a3);                                              \
    } while (0)

/* Every tap of one output pixel: unrolled for a 3x3 filter (taps9), a loop otherwise. */
#define DW_TAPS(taps9, taps)                                \
    do {                                                    \
        if (taps9) {                                        \
            DW_TAP(0);                                      \
            DW_TAP(1);                                      \
            DW_TAP(2);                                      \
            DW_TAP(3);                                      \
            DW_TAP(4);                                      \
            DW_TAP(5);                                      \
            DW_TAP(6);                                      \
            DW_TAP(7);                                      \
            DW_TAP(8);                                      \
        } else {                                            \
            for (int32_t t = 0; t < (taps); ++t) DW_TAP(t); \
        }                                                   \
    } while (0)

/* One output pixel at the border: only the taps inside the image. */
static __attribute__((noinline)) void dw_border(const struct dw *d, const struct group *g,
                                                const int8_t *image, int8_t *dst, int32_t c,
                                                int32_t oy, int32_t ox, int32_t fy0, int32_t fy1,
                                                int32_t cc, int full) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c, fw = p->filter_w;
    const uint32_t off2 = dsp_pair(p->input_offset);
    const int32_t *toff = d->toff;
    const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
    int32_t fx0 = 0, fx1 = fw;
    while (fx0 < fx1 && x0 + fx0 * p->dilation_w < 0) ++fx0;
    while (fx1 > fx0 && x0 + (fx1 - 1) * p->dilation_w >= p->input_w) --fx1;
    /* The window's corner (it may lie in the padding; only taps inside are read). */
    const int8_t *x = image + (ptrdiff_t)y0 * (ptrdiff_t)d->in_row + (ptrdiff_t)x0 * ch;
    int32_t a0 = g->rq.bias[0], a1 = g->rq.bias[1], a2 = g->rq.bias[2], a3 = g->rq.bias[3];
    for (int32_t fy = fy0; fy < fy1; ++fy)
        for (int32_t t = fy * fw + fx0; t < fy * fw + fx1; ++t) DW_TAP(t);
    dw_store(d, &g->rq, dst, c, a0, a1, a2, a3, cc, full);
}

/* One channel group (channels c..c+3) over every output pixel of batch b. */
static inline __attribute__((always_inline)) void dw_group(const struct dw *d, struct group *g,
                                                           int32_t b, int32_t c, int32_t taps9,
                                                           int full) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c;
    const uint32_t off2 = dsp_pair(p->input_offset);
    const int32_t cc = 1 + 2 * p->output_offset;
    const int32_t *toff = d->toff;
    const int8_t *image = d->input + (size_t)b * (size_t)p->input_h * d->in_row + (size_t)c;
    int8_t *dst =
        d->out + (size_t)b * (size_t)p->output_h * (size_t)p->output_w * (size_t)ch + (size_t)c;
    const int32_t fh = p->filter_h, taps = p->filter_h * p->filter_w;
    const ptrdiff_t xstep = (ptrdiff_t)p->stride_w * ch;
    int32_t lo, hi;
    dw_interior_columns(p, &lo, &hi);
    for (int32_t oy = 0; oy < p->output_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_h;
        int32_t fy0 = 0, fy1 = fh;
        while (fy0 < fy1 && y0 + fy0 * p->dilation_h < 0) ++fy0;
        while (fy1 > fy0 && y0 + (fy1 - 1) * p->dilation_h >= p->input_h) --fy1;
        int32_t ox = 0;
        if (fy0 == 0 && fy1 == fh) {
            for (; ox < lo; ++ox, dst += ch)
                dw_border(d, g, image, dst, c, oy, ox, fy0, fy1, cc, full);
            const int8_t *x = image + (ptrdiff_t)y0 * (ptrdiff_t)d->in_row +
                              (ptrdiff_t)(lo * p->stride_w - p->pad_w) * ch;
            for (; ox < hi; ++ox, dst += ch, x += xstep) {
                int32_t a0 = g->rq.bias[0], a1 = g->rq.bias[1], a2 = g->rq.bias[2],
                        a3 = g->rq.bias[3];
                DW_TAPS(taps9, taps);
                dw_store(d, &g->rq, dst, c, a0, a1, a2, a3, cc, full);
            }
        }
        for (; ox < p->output_w; ++ox, dst += ch)
            dw_border(d, g, image, dst, c, oy, ox, fy0, fy1, cc, full);
    }
}

/* One channel group over every output pixel of batch b from a copy of its four channels'
 * input on the stack (one word per pixel), bordered by the padding: padding words hold the
 * input zero point in each byte, whose offset input is 0, so a padding tap adds 0 exactly as
 * the reference's skipped tap adds nothing, and every output pixel runs the same unrolled
 * taps (dw_border's per-pixel tap ranges cost about three times an interior pixel). The copy
 * costs about a word per input pixel, so dw_padded_pays() takes it only where border pixels
 * are many: stride 1 and at least a fifth of the outputs at the border (4x4 to 16x16 maps
 * with SAME padding). */
static inline __attribute__((always_inline)) void dw_group_padded(const struct dw *d,
                                                                  struct group *g, int32_t b,
                                                                  int32_t c, uint32_t *buf,
                                                                  int32_t ph, int32_t pw, int taps9,
                                                                  int full) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c;
    const uint32_t off2 = dsp_pair(p->input_offset);
    const int32_t cc = 1 + 2 * p->output_offset;
    const uint32_t padw = (uint32_t)(uint8_t)(int8_t)(-p->input_offset) * 0x01010101u;
    const int8_t *image = d->input + (size_t)b * (size_t)p->input_h * d->in_row + (size_t)c;
    uint32_t *q = buf;
    for (int32_t y = -p->pad_h; y < ph - p->pad_h; ++y) {
        if (y < 0 || y >= p->input_h) {
            for (int32_t i = 0; i < pw; ++i) *q++ = padw;
            continue;
        }
        const int8_t *src = image + (size_t)y * d->in_row;
        for (int32_t x = -p->pad_w; x < pw - p->pad_w; ++x)
            *q++ = x < 0 || x >= p->input_w ? padw : dsp_read4(src + (size_t)x * (size_t)ch);
    }
    const int32_t taps = p->filter_h * p->filter_w;
    int32_t toff[DW_TAPS_MAX];
    for (int32_t t = 0; t < taps; ++t) {
        const int32_t fy = t / p->filter_w, fx = t % p->filter_w;
        toff[t] = (fy * p->dilation_h * pw + fx * p->dilation_w) * 4;
    }
    int8_t *dst =
        d->out + (size_t)b * (size_t)p->output_h * (size_t)p->output_w * (size_t)ch + (size_t)c;
    const int32_t xstep = p->stride_w * 4;
    for (int32_t oy = 0; oy < p->output_h; ++oy) {
        const int8_t *x = (const int8_t *)(buf + (size_t)oy * (size_t)p->stride_h * (size_t)pw);
        for (int32_t ox = 0; ox < p->output_w; ++ox, dst += ch, x += xstep) {
            int32_t a0 = g->rq.bias[0], a1 = g->rq.bias[1], a2 = g->rq.bias[2], a3 = g->rq.bias[3];
            DW_TAPS(taps9, taps);
            dw_store(d, &g->rq, dst, c, a0, a1, a2, a3, cc, full);
        }
    }
}

static void dw_group_padded_9_full(const struct dw *d, struct group *g, int32_t b, int32_t c,
                                   uint32_t *buf, int32_t ph, int32_t pw) {
    dw_group_padded(d, g, b, c, buf, ph, pw, 1, 1);
}
static void dw_group_padded_any(const struct dw *d, struct group *g, int32_t b, int32_t c,
                                uint32_t *buf, int32_t ph, int32_t pw) {
    dw_group_padded(d, g, b, c, buf, ph, pw, d->p.filter_h * d->p.filter_w == 9,
                    d->p.act_min <= -128 && d->p.act_max >= 127);
}

/* Whether dw_group_padded pays (see there), and its copy's size (every window of every output
 * pixel, padding included) fits DW_PAD_WORDS. */
static int dw_padded_pays(const struct depthwise_conv2d_s8_params *p, int32_t *ph, int32_t *pw) {
    *ph = (p->output_h - 1) * p->stride_h + (p->filter_h - 1) * p->dilation_h + 1;
    *pw = (p->output_w - 1) * p->stride_w + (p->filter_w - 1) * p->dilation_w + 1;
    if (p->stride_h != 1 || p->stride_w != 1 || (int64_t)*ph * *pw > DW_PAD_WORDS) return 0;
    if (p->input_offset < -127 || p->input_offset > 128 || p->pad_h < 0 || p->pad_w < 0) return 0;
    int32_t lo, hi;
    dw_interior_columns(p, &lo, &hi);
    int32_t rows = 0; /* output rows whose windows lie inside vertically */
    for (int32_t oy = 0; oy < p->output_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_h;
        rows += y0 >= 0 && y0 + (p->filter_h - 1) * p->dilation_h < p->input_h;
    }
    const int64_t all = (int64_t)p->output_h * p->output_w, inner = (int64_t)rows * (hi - lo);
    return 5 * (all - inner) >= all;
}

static void dw_group_9_full(const struct dw *d, struct group *g, int32_t b, int32_t c) {
    dw_group(d, g, b, c, 1, 1);
}
static void dw_group_any(const struct dw *d, struct group *g, int32_t b, int32_t c) {
    dw_group(d, g, b, c, d->p.filter_h * d->p.filter_w == 9,
             d->p.act_min <= -128 && d->p.act_max >= 127);
}

/* One channel c over every output pixel of batch b, as the reference. */
void depthwise_conv2d_s8_dsp_channel(const struct dw *d, int32_t b, int32_t c) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c;
    const int trained = c < p->train_rows;
    const int8_t *w = trained ? d->trained_filter : d->filter;
    const size_t wstride = trained ? (size_t)p->train_rows : (size_t)ch;
    const int8_t *image = d->input + (size_t)b * (size_t)p->input_h * d->in_row;
    int8_t *dst =
        d->out + (size_t)b * (size_t)p->output_h * (size_t)p->output_w * (size_t)ch + (size_t)c;
    const int32_t bias = bias_of(d, c);
    for (int32_t oy = 0; oy < p->output_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_h;
        for (int32_t ox = 0; ox < p->output_w; ++ox, dst += ch) {
            const int32_t x0 = ox * p->stride_w - p->pad_w;
            int32_t acc = 0;
            for (int32_t fy = 0; fy < p->filter_h; ++fy) {
                const int32_t y = y0 + fy * p->dilation_h;
                if (y < 0 || y >= p->input_h) continue;
                for (int32_t fx = 0; fx < p->filter_w; ++fx) {
                    const int32_t xx = x0 + fx * p->dilation_w;
                    if (xx < 0 || xx >= p->input_w) continue;
                    const int32_t in_val = image[(size_t)y * d->in_row + (size_t)xx * ch + c];
                    const int32_t w_val =
                        w[((size_t)fy * (size_t)p->filter_w + (size_t)fx) * wstride + (size_t)c];
                    acc += w_val * (in_val + p->input_offset);
                }
            }
            *dst = requantize(d, acc + bias, c);
        }
    }
}

/* Block of four pixel words (four channels each) at q, widened with the input offset (off2), as
 * the channel-pair engines' copy lays it out (channel k's (x0, x1), (x2, x3) at byte 8k). The
 * pixels are paired by halves first (PKHBT: channels 0 and 1 of pixels 0 and 1 in one word;
 * PKHTB: channels 2 and 3), so that each SXTAB16 yields one channel's pair: four PKH and eight
 * SXTAB16 for the block's 16 values, where widening each pixel first took eight of each.
 * Returns q past the block (returned, not passed by address: q stays in a register). */
static inline uint32_t *dw_widen_block(uint32_t *q, uint32_t off2, uint32_t v0, uint32_t v1,
                                       uint32_t v2, uint32_t v3) {
    const uint32_t l01 = dsp_pack_lo(v0, v1), l23 = dsp_pack_lo(v2, v3);
    const uint32_t h01 = dsp_pack_hi(v0, v1), h23 = dsp_pack_hi(v2, v3);
    dw_store2(&q, dsp_sxtab16(off2, l01), dsp_sxtab16(off2, l23));
    dw_store2(&q, dsp_sxtab16_hi(off2, l01), dsp_sxtab16_hi(off2, l23));
    dw_store2(&q, dsp_sxtab16(off2, h01), dsp_sxtab16(off2, h23));
    dw_store2(&q, dsp_sxtab16_hi(off2, h01), dsp_sxtab16_hi(off2, h23));
    return q;
}

/* Pixel x of a row, or outside it the padding word (see dw_widen_blocks). */
static inline uint32_t dw_pixel_or_pad(const int8_t *row, int32_t x, int32_t w, int32_t ch,
                                       uint32_t padw) {
    return (uint32_t)x < (uint32_t)w ? dsp_read4(row + (ptrdiff_t)x * ch) : padw;
}

void dw_widen_init(const struct dw *d, struct dw_widen *w, int32_t blocks) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    w->d = d;
    w->blocks = blocks;
    w->off2 = dsp_pair(p->input_offset);
    w->padw = (uint32_t)(uint8_t)(int8_t)(-p->input_offset) * 0x01010101u;
    /* Blocks [lo, hi) lie inside: 4 lo - pad_w >= 0 and 4 hi - pad_w <= input_w. */
    int32_t lo = (p->pad_w + 3) / 4, hi = (p->input_w + p->pad_w) / 4;
    if (p->pad_w < 0) lo = 0;
    if (hi > blocks) hi = blocks;
    if (lo > hi) lo = hi;
    w->lo = lo;
    w->hi = hi;
    /* The border blocks' table (struct dw_edge), where they are few enough. */
    w->edges = lo <= DW_WIDEN_EDGE && blocks - hi <= DW_WIDEN_EDGE && p->input_w > 0;
    for (int32_t b = 0, e = 0; w->edges && b < blocks; ++b) {
        if (b == lo) b = hi;
        if (b >= blocks) break;
        struct dw_edge *g = &w->edge[e++];
        g->m01 = g->m23 = 0;
        for (int32_t i = 0; i < 4; ++i) {
            const int32_t x = 4 * b + i - p->pad_w;
            const int32_t xc = x < 0 ? 0 : x >= p->input_w ? p->input_w - 1 : x;
            g->off[i] = xc * p->input_c;
            const uint32_t lane =
                (uint32_t)x < (uint32_t)p->input_w ? 0xFFFFu << (16 * (i & 1)) : 0;
            if (i < 2)
                g->m01 |= lane;
            else
                g->m23 |= lane;
        }
    }
}

/* A border block from its table entry (dw_widen_init): dw_widen_block's words of the four
 * clamped pixels, a padding pixel's lanes masked to 0 (what its padding word widens to). */
static inline uint32_t *dw_widen_edge(uint32_t *q, uint32_t off2, const int8_t *row,
                                      const struct dw_edge *g) {
    const uint32_t v0 = dsp_read4(row + g->off[0]), v1 = dsp_read4(row + g->off[1]);
    const uint32_t v2 = dsp_read4(row + g->off[2]), v3 = dsp_read4(row + g->off[3]);
    const uint32_t m01 = g->m01, m23 = g->m23;
    const uint32_t l01 = dsp_pack_lo(v0, v1), l23 = dsp_pack_lo(v2, v3);
    const uint32_t h01 = dsp_pack_hi(v0, v1), h23 = dsp_pack_hi(v2, v3);
    dw_store2(&q, dsp_sxtab16(off2, l01) & m01, dsp_sxtab16(off2, l23) & m23);
    dw_store2(&q, dsp_sxtab16_hi(off2, l01) & m01, dsp_sxtab16_hi(off2, l23) & m23);
    dw_store2(&q, dsp_sxtab16(off2, h01) & m01, dsp_sxtab16(off2, h23) & m23);
    dw_store2(&q, dsp_sxtab16_hi(off2, h01) & m01, dsp_sxtab16_hi(off2, h23) & m23);
    return q;
}

/* The channel-pair engines' copy row (see depthwise_conv2d_s8_dsp.h): four pixels per block,
 * widened once (dw_widen_block), the blocks inside the image without a bounds check per pixel.
 * A pixel in the padding is the word holding -input_offset in each byte, which widens to 0 (an
 * offset input of 0 adds nothing, as the reference's skipped tap): so a block at the border
 * takes the same instructions and a select per pixel (dw_widen_ok: such an offset fits a byte).
 * A row in the padding is zeros, stored in line (a library memset of 64 to 300 bytes cost
 * about as much as widening the row). */
void dw_widen_blocks(const struct dw_widen *wd, const int8_t *image, uint32_t *q, int32_t y) {
    const struct depthwise_conv2d_s8_params *p = &wd->d->p;
    const int32_t blocks = wd->blocks;
    if (y < 0 || y >= p->input_h) {
        for (int32_t b = 0; b < blocks; ++b) {
            dw_store2(&q, 0, 0);
            dw_store2(&q, 0, 0);
            dw_store2(&q, 0, 0);
            dw_store2(&q, 0, 0);
        }
        return;
    }
    if (wd->edges) {
        dw_widen_rows(wd, image, q, y, 1);
        return;
    }
    const int32_t ch = p->input_c, w = p->input_w, lo = wd->lo, hi = wd->hi;
    const uint32_t off2 = wd->off2, padw = wd->padw;
    const int8_t *row = image + (size_t)y * wd->d->in_row;
    int32_t b = 0, x = -p->pad_w;
    for (; b < lo; ++b, x += 4)
        q = dw_widen_block(
            q, off2, dw_pixel_or_pad(row, x, w, ch, padw), dw_pixel_or_pad(row, x + 1, w, ch, padw),
            dw_pixel_or_pad(row, x + 2, w, ch, padw), dw_pixel_or_pad(row, x + 3, w, ch, padw));
    if (b < hi) {
        const int32_t ch2 = 2 * ch, ch3 = 3 * ch;
        const int8_t *s = row + (ptrdiff_t)x * ch;
        const int8_t *const end = s + (ptrdiff_t)(hi - b) * 4 * ch;
        for (; s != end; s += 4 * ch)
            q = dw_widen_block(q, off2, dsp_read4(s), dsp_read4(s + ch), dsp_read4(s + ch2),
                               dsp_read4(s + ch3));
        x += 4 * (hi - b);
        b = hi;
    }
    for (; b < blocks; ++b, x += 4)
        q = dw_widen_block(
            q, off2, dw_pixel_or_pad(row, x, w, ch, padw), dw_pixel_or_pad(row, x + 1, w, ch, padw),
            dw_pixel_or_pad(row, x + 2, w, ch, padw), dw_pixel_or_pad(row, x + 3, w, ch, padw));
}

/* dw_widen_blocks of copy rows y .. y + n - 1 into consecutive rows at q (w->blocks blocks each),
 * the layer's constants loaded once: the border blocks from their table (dw_widen_init), the
 * others as dw_widen_blocks (per row about 10 instructions fewer than a call each). */
void dw_widen_rows(const struct dw_widen *wd, const int8_t *image, uint32_t *q, int32_t y,
                   int32_t n) {
    const struct depthwise_conv2d_s8_params *p = &wd->d->p;
    const int32_t blocks = wd->blocks;
    if (!wd->edges) {
        for (; n > 0; --n, ++y, q += (size_t)blocks * 8u) dw_widen_blocks(wd, image, q, y);
        return;
    }
    const int32_t ch = p->input_c, lo = wd->lo, hi = wd->hi;
    const uint32_t off2 = wd->off2, h = (uint32_t)p->input_h;
    const size_t in_row = wd->d->in_row;
    const ptrdiff_t first = (ptrdiff_t)(4 * lo - p->pad_w) * ch,
                    inner = (ptrdiff_t)(hi - lo) * 4 * ch;
    for (; n > 0; --n, ++y) {
        if ((uint32_t)y >= h) { /* a padding row: zeros */
            for (int32_t b = 0; b < blocks; ++b) {
                dw_store2(&q, 0, 0);
                dw_store2(&q, 0, 0);
                dw_store2(&q, 0, 0);
                dw_store2(&q, 0, 0);
            }
            continue;
        }
        const int8_t *const row = image + (size_t)y * in_row;
        const struct dw_edge *g = wd->edge;
        for (int32_t b = 0; b < lo; ++b) q = dw_widen_edge(q, off2, row, g++);
        const int8_t *s = row + first;
        for (const int8_t *const end = s + inner; s != end; s += 4 * ch)
            q = dw_widen_block(q, off2, dsp_read4(s), dsp_read4(s + ch), dsp_read4(s + 2 * ch),
                               dsp_read4(s + 3 * ch));
        for (int32_t b = hi; b < blocks; ++b) q = dw_widen_edge(q, off2, row, g++);
    }
}

/* The kernel's channel loop (below) with dw_group_padded for every whole group of four. */
static __attribute__((noinline)) void dw_run_padded(const struct dw *d, int32_t ph, int32_t pw) {
    const struct depthwise_conv2d_s8_params *p = &d->p;
    const int32_t ch = p->input_c, taps = p->filter_h * p->filter_w;
    const int offset_ok = p->output_offset >= -(1 << 30) && p->output_offset < (1 << 30);
    const int full = p->act_min <= -128 && p->act_max >= 127;
    struct group g;
    uint32_t *const buf = d->buf; /* depthwise_conv2d_s8_dsp_buffer_size bytes */
    for (int32_t b = 0; b < p->batches; ++b) {
        for (int32_t c = 0; c < ch;) {
            if (!dw_group_whole(p, c)) {
                depthwise_conv2d_s8_dsp_channel(d, b, c);
                ++c;
                continue;
            }
            const int trained = c < p->train_rows;
            const int8_t *w = (trained ? d->trained_filter : d->filter) + c;
            const size_t wstride = trained ? (size_t)p->train_rows : (size_t)ch;
            for (int32_t t = 0; t < taps; ++t) {
                const uint32_t wv = dsp_read4(w + (size_t)t * wstride);
                g.w[t] = (uint64_t)dsp_sxtb16(wv) | ((uint64_t)dsp_sxtb16_hi(wv) << 32);
            }
            g.rq.fast = offset_ok;
            for (int k = 0; k < 4; ++k) {
                const int32_t q = p->per_channel ? c + k : 0;
                g.rq.bias[k] = bias_of(d, c + k);
                g.rq.fast = g.rq.fast && rq_fast_ok(d->multipliers[q], d->shifts[q]);
                g.rq.m2[k] = rq_m2(d->multipliers[q]);
                g.rq.s1[k] = rq_s1(d->shifts[q]);
            }
            if (taps == 9 && full)
                dw_group_padded_9_full(d, &g, b, c, buf, ph, pw);
            else
                dw_group_padded_any(d, &g, b, c, buf, ph, pw);
            c += 4;
        }
    }
}

static size_t depthwise_conv2d_s8_dsp_buffer_offset(const void *params);

void depthwise_conv2d_s8_dsp_run(const void *params, void *const *operands, void *scratch) {
    struct dw d;
    struct group g;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    d.p = *(const struct depthwise_conv2d_s8_params *)params;
    const struct depthwise_conv2d_s8_params *p = &d.p;
    const int32_t taps = p->filter_h * p->filter_w;
    if (p->depth_multiplier != 1 || taps > DW_TAPS_MAX) {
        depthwise_conv2d_s8_ref_run(params, operands, scratch);
        return;
    }
    d.input = operands[DEPTHWISE_CONV2D_S8_INPUT];
    d.filter = operands[DEPTHWISE_CONV2D_S8_FILTER];
    d.bias = p->has_bias ? (const int32_t *)operands[DEPTHWISE_CONV2D_S8_BIAS] : NULL;
    d.multipliers = operands[DEPTHWISE_CONV2D_S8_MULTIPLIERS];
    d.shifts = operands[DEPTHWISE_CONV2D_S8_SHIFTS];
    d.trained_filter = operands[DEPTHWISE_CONV2D_S8_TRAINED_FILTER];
    d.trained_bias = operands[DEPTHWISE_CONV2D_S8_TRAINED_BIAS];
    d.out = operands[DEPTHWISE_CONV2D_S8_OUTPUT];
    d.buf = (uint8_t *)scratch + depthwise_conv2d_s8_dsp_buffer_offset(params);
    const int32_t ch = p->input_c;
    d.in_row = (size_t)p->input_w * (size_t)ch;
    for (int32_t t = 0; t < taps; ++t) {
        const int32_t fy = t / p->filter_w, fx = t % p->filter_w;
        d.toff[t] = fy * p->dilation_h * (int32_t)d.in_row + fx * p->dilation_w * ch;
    }
    if (depthwise_conv2d_s8_kxk_pair_dsp_takes(p)) { /* 5x5, 7x7: two taps per SMLAD */
        depthwise_conv2d_s8_kxk_pair_dsp_run(&d);
        return;
    }
    if (depthwise_conv2d_s8_kxk_dsp_takes(p)) { /* the other k x k: kxk_dsp.c */
        depthwise_conv2d_s8_kxk_dsp_run(&d);
        return;
    }
    const int offset_ok = p->output_offset >= -(1 << 30) && p->output_offset < (1 << 30);
    const int full = p->act_min <= -128 && p->act_max >= 127;
    if (depthwise_conv2d_s8_3x3_dsp_band(p) > 0) { /* 3x3, stride 1 or 2: 3x3_dsp.c */
        depthwise_conv2d_s8_3x3_dsp_run(&d);
        return;
    }
    int32_t ph = 0, pw = 0;
    if (dw_padded_pays(p, &ph, &pw)) { /* out of line: the loop below as before */
        dw_run_padded(&d, ph, pw);
        return;
    }
    for (int32_t b = 0; b < p->batches; ++b) {
        for (int32_t c = 0; c < ch;) {
            /* Four channels read from one filter array (all trained, or none). */
            if (!dw_group_whole(p, c)) {
                depthwise_conv2d_s8_dsp_channel(&d, b, c);
                ++c;
                continue;
            }
            const int trained = c < p->train_rows;
            const int8_t *w = (trained ? d.trained_filter : d.filter) + c;
            const size_t wstride = trained ? (size_t)p->train_rows : (size_t)ch;
            for (int32_t t = 0; t < taps; ++t) {
                const uint32_t wv = dsp_read4(w + (size_t)t * wstride);
                g.w[t] = (uint64_t)dsp_sxtb16(wv) | ((uint64_t)dsp_sxtb16_hi(wv) << 32);
            }
            g.rq.fast = offset_ok;
            for (int k = 0; k < 4; ++k) {
                const int32_t q = p->per_channel ? c + k : 0;
                g.rq.bias[k] = bias_of(&d, c + k);
                g.rq.fast = g.rq.fast && rq_fast_ok(d.multipliers[q], d.shifts[q]);
                g.rq.m2[k] = rq_m2(d.multipliers[q]);
                g.rq.s1[k] = rq_s1(d.shifts[q]);
            }
            if (taps == 9 && full)
                dw_group_9_full(&d, &g, b, c);
            else
                dw_group_any(&d, &g, b, c);
            c += 4;
        }
    }
}

/* The buffers of the variant the layer takes (the order of depthwise_conv2d_s8_dsp_run's
 * choice): the pair variant's copy and weight sets, the k x k variant's tile, the 3x3
 * variant's copy and constants, the padded variant's windows; none for the others. */
static size_t depthwise_conv2d_s8_dsp_buffer_size(const void *params) {
    const struct depthwise_conv2d_s8_params p = *(const struct depthwise_conv2d_s8_params *)params;
    if (p.depth_multiplier != 1 || p.filter_h * p.filter_w > DW_TAPS_MAX) return 0;
    if (depthwise_conv2d_s8_kxk_pair_dsp_takes(&p))
        return depthwise_conv2d_s8_kxk_pair_dsp_buffer_size(&p);
    if (depthwise_conv2d_s8_kxk_dsp_takes(&p)) return depthwise_conv2d_s8_kxk_dsp_buffer_size(&p);
    if (depthwise_conv2d_s8_3x3_dsp_band(&p) > 0)
        return depthwise_conv2d_s8_3x3_dsp_buffer_size(&p);
    int32_t ph = 0, pw = 0;
    if (dw_padded_pays(&p, &ph, &pw)) return (size_t)ph * (size_t)pw * sizeof(uint32_t);
    return 0;
}

/* The operator's scratch: the reference's (none), then the DSP variants' copy (8-aligned; the
 * planner aligns scratch to 16 bytes). Planned whatever the build (the host twin switches
 * between the two at run time), so one plan runs on both. */
static size_t depthwise_conv2d_s8_dsp_buffer_offset(const void *params) {
    return (depthwise_conv2d_s8_ref_scratch_size(params) + 7u) & ~(size_t)7u;
}

size_t depthwise_conv2d_s8_scratch_size(const void *params) {
    return depthwise_conv2d_s8_dsp_buffer_offset(params) +
           depthwise_conv2d_s8_dsp_buffer_size(params);
}

/* The selector, the runtime's entry for depthwise_conv2d_s8 (ops.def): the DSP variant above when
 * the build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (depthwise_conv2d_s8.c). The
 * DSP variant falls back to the reference itself for the shapes it does not take. */
void depthwise_conv2d_s8_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        depthwise_conv2d_s8_dsp_run(params, operands, scratch);
    else
        depthwise_conv2d_s8_ref_run(params, operands, scratch);
}
