/* depthwise_conv2d_s8_inplace: DEPTHWISE_CONV_2D with its output over its input; see
 * depthwise_conv2d_s8_inplace.h. Every output value is computed by a depthwise_conv2d_s8 kernel
 * (the reference here: this file calls no variant, nor the DSP file's planning) on a band of
 * rows, so the results are that kernel's bit for bit; this file only orders the rows. */
#include "depthwise_conv2d_s8_inplace.h"

#include <string.h>

/* The prefix of the parameters is depthwise_conv2d_s8's, field for field (the .def says so;
 * tests/kernels/conv/test_dw_inplace.py holds the two layouts to each other). */
_Static_assert(sizeof(struct depthwise_conv2d_s8_params) ==
                   __builtin_offsetof(struct depthwise_conv2d_s8_inplace_params, band_rows),
               "depthwise_conv2d_s8_inplace's parameters start with depthwise_conv2d_s8's");

static struct depthwise_conv2d_s8_inplace_params params_of(const void *params) {
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    struct depthwise_conv2d_s8_inplace_params p;
    memcpy(&p, params, sizeof p);
    return p;
}

/* The filter's height in input rows (its dilation included). */
static int32_t window_h(const struct depthwise_conv2d_s8_inplace_params *p) {
    return (p->filter_h - 1) * p->dilation_h + 1;
}

int depthwise_conv2d_s8_inplace_takes(const void *params) {
    const struct depthwise_conv2d_s8_inplace_params p = params_of(params);
    return p.stride_h == 1 && p.stride_w == 1 && p.depth_multiplier == 1 && p.band_rows >= 1 &&
           p.output_h == p.input_h && p.output_w == p.input_w && p.filter_h >= 1 &&
           p.dilation_h >= 1 && p.pad_h >= 0 && p.pad_h < window_h(&p);
}

/* The layer's output rows [a, a + r) as a layer of their own: the input rows they read
 * ([*in_lo, *in_lo + input_h), inside the image), the padding above them, one batch. */
static void band(const struct depthwise_conv2d_s8_inplace_params *p, int32_t a, int32_t r,
                 struct depthwise_conv2d_s8_params *sub, int32_t *in_lo) {
    memcpy(sub, p, sizeof *sub);
    const int32_t top = a - p->pad_h; /* the input row of the band's first window row */
    int32_t lo = top < 0 ? 0 : top, hi = top + r - 1 + window_h(p);
    if (hi > p->input_h) hi = p->input_h;
    sub->batches = 1;
    sub->input_h = hi - lo;
    sub->output_h = r;
    sub->pad_h = lo - top;
    *in_lo = lo;
}

/* The scratch the band kernel needs (need: its scratch size function) for the largest of the
 * layer's bands (8-aligned), where the rows of scratch start. */
static size_t band_scratch(const struct depthwise_conv2d_s8_inplace_params *p,
                           kernel_scratch_fn need_fn) {
    size_t most = 0;
    struct depthwise_conv2d_s8_params sub;
    int32_t lo;
    for (int32_t a = 0; a < p->output_h; a += p->band_rows) {
        const int32_t r = p->output_h - a < p->band_rows ? p->output_h - a : p->band_rows;
        band(p, a, r, &sub, &lo);
        const size_t need = need_fn(&sub);
        if (need > most) most = need;
    }
    return (most + 7u) & ~(size_t)7u;
}

size_t depthwise_conv2d_s8_inplace_bands_scratch(const void *params, kernel_scratch_fn need) {
    const struct depthwise_conv2d_s8_inplace_params p = params_of(params);
    const size_t row = (size_t)p.output_w * (size_t)p.input_c;
    return band_scratch(&p, need) + (size_t)(p.band_rows + p.pad_h) * row;
}

size_t depthwise_conv2d_s8_inplace_ref_scratch_size(const void *params) {
    if (!depthwise_conv2d_s8_inplace_takes(params))
        return depthwise_conv2d_s8_ref_scratch_size(params);
    return depthwise_conv2d_s8_inplace_bands_scratch(params, depthwise_conv2d_s8_ref_scratch_size);
}

void depthwise_conv2d_s8_inplace_bands(const void *params, void *const *operands, void *scratch,
                                       kernel_run_fn run, kernel_scratch_fn need) {
    const struct depthwise_conv2d_s8_inplace_params p = params_of(params);
    const size_t row = (size_t)p.output_w * (size_t)p.input_c, image = (size_t)p.input_h * row;
    uint8_t *const rows = (uint8_t *)scratch + band_scratch(&p, need); /* band_rows + pad_h */
    void *ops[DEPTHWISE_CONV2D_S8_OPERANDS];
    memcpy(ops, operands, sizeof ops);
    struct depthwise_conv2d_s8_params sub;
    for (int32_t b = 0; b < p.batches; ++b) {
        const int8_t *in = (const int8_t *)operands[DEPTHWISE_CONV2D_S8_INPUT] + (size_t)b * image;
        int8_t *out = (int8_t *)operands[DEPTHWISE_CONV2D_S8_OUTPUT] + (size_t)b * image;
        int32_t done = 0;    /* output rows [0, done) are in place */
        int32_t pending = 0; /* output rows [done, done + pending) wait in the rows of scratch */
        for (int32_t a = 0; a < p.output_h; a += p.band_rows) {
            const int32_t r = p.output_h - a < p.band_rows ? p.output_h - a : p.band_rows;
            int32_t lo;
            band(&p, a, r, &sub, &lo);
            ops[DEPTHWISE_CONV2D_S8_INPUT] = (void *)(in + (size_t)lo * row);
            ops[DEPTHWISE_CONV2D_S8_OUTPUT] = rows + (size_t)pending * row;
            run(&sub, ops, scratch);
            pending += r;
            /* Input rows below a + r - pad_h are read by no later band: the output rows there
             * go over them (all that wait, after the last band). */
            const int32_t ready = a + r == p.output_h ? pending : a + r - p.pad_h - done;
            if (ready <= 0) continue;
            memcpy(out + (size_t)done * row, rows, (size_t)ready * row);
            pending -= ready;
            done += ready;
            if (pending) memmove(rows, rows + (size_t)ready * row, (size_t)pending * row);
        }
    }
}

void depthwise_conv2d_s8_inplace_ref_run(const void *params, void *const *operands, void *scratch) {
    if (depthwise_conv2d_s8_inplace_takes(params))
        depthwise_conv2d_s8_inplace_bands(params, operands, scratch, depthwise_conv2d_s8_ref_run,
                                          depthwise_conv2d_s8_ref_scratch_size);
    else
        depthwise_conv2d_s8_ref_run(params, operands, scratch);
}
