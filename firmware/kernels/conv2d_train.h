/* Reading a conv2d_s8 filter through its training slice (conv2d_train.def): the rows
 * [0, train_rows) of output channels, or the columns [0, train_cols) of input channels (MIT's
 * input-channel slice, kept in RAM as [output_c, filter_h, filter_w, train_cols]), come from
 * TRAINED_FILTER, the rest from the filter in flash. Shared by the forward kernel (reference and
 * DSP variants), its input gradient and its update, so all read the same weights. */
#ifndef KERNELS_CONV2D_TRAIN_H
#define KERNELS_CONV2D_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Output channel oc's filter row (taps x input_c bytes): the trained copy below train_rows,
 * the flash row when no column is trained, else the row composed in buf (taps * input_c bytes:
 * per tap, the trained columns then the flash ones). A caller that needs two rows at once
 * passes two buffers. */
static inline const int8_t *conv_train_row(int8_t *buf, const int8_t *filter, const int8_t *trained,
                                           int32_t oc, int32_t taps, int32_t input_c,
                                           int32_t train_rows, int32_t train_cols) {
    const size_t size = (size_t)taps * (size_t)input_c;
    if (oc < train_rows) return trained + (size_t)oc * size;
    const int8_t *row = filter + (size_t)oc * size;
    if (train_cols <= 0) return row;
    const size_t tc = (size_t)train_cols, rest = (size_t)input_c - tc;
    const int8_t *t = trained + (size_t)oc * (size_t)taps * tc;
    int8_t *d = buf;
    for (int32_t k = 0; k < taps; ++k, d += input_c, row += input_c, t += tc) {
        memcpy(d, t, tc); /* the C library's: word and multi-word copies */
        memcpy(d + tc, row + tc, rest);
    }
    return buf;
}

/* W[oc, tap, k] as conv_train_row reads it, one weight at a time. */
static inline int8_t conv_train_weight(const int8_t *filter, const int8_t *trained, int32_t oc,
                                       int32_t tap, int32_t k, int32_t taps, int32_t input_c,
                                       int32_t train_rows, int32_t train_cols) {
    if (oc < train_rows)
        return trained[((size_t)oc * (size_t)taps + (size_t)tap) * (size_t)input_c + (size_t)k];
    if (k < train_cols)
        return trained[((size_t)oc * (size_t)taps + (size_t)tap) * (size_t)train_cols + (size_t)k];
    return filter[((size_t)oc * (size_t)taps + (size_t)tap) * (size_t)input_c + (size_t)k];
}

/* The bytes of row buffers a kernel needs for conv_train_row: `rows` filter rows when input
 * channels are sliced, else none. */
static inline size_t conv_train_row_bytes(int32_t taps, int32_t input_c, int32_t train_cols,
                                          int32_t rows) {
    return train_cols > 0 ? (size_t)rows * (size_t)taps * (size_t)input_c : 0;
}

/* The update of an input-channel slice is the update of a layer over the trained input
 * channels alone: its TRAINED_FILTER [output_c, filter_h, filter_w, train_cols] is that layer's
 * whole filter (every row trained), its INPUT the train_cols channels the forward pass saved
 * ([batches, input_h, input_w, train_cols]). The update kernels (and their scratch sizes) view
 * their parameters p so; the weights, their memory order (one stochastic-rounding draw each)
 * and the sums are the same. */
#define CONV_TRAIN_COLS_AS_LAYER(p)        \
    do {                                   \
        if ((p).train_cols > 0) {          \
            (p).input_c = (p).train_cols;  \
            (p).train_rows = (p).output_c; \
            (p).train_cols = 0;            \
        }                                  \
    } while (0)

#endif
