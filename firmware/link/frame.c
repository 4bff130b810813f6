#include "frame.h"

#include <string.h>

#include "crc.h"

enum { ST_SYNC0, ST_SYNC1, ST_HEADER, ST_PAYLOAD, ST_CRC, ST_SKIP };

static void header_bytes(uint8_t h[FRAME_HEADER_SIZE], uint8_t type, uint8_t seq, uint16_t len) {
    h[0] = FRAME_SYNC0;
    h[1] = FRAME_SYNC1;
    h[2] = (uint8_t)(len & 0xFFu);
    h[3] = (uint8_t)(len >> 8);
    h[4] = type;
    h[5] = seq;
    h[6] = crc8_update(0, &h[2], 4);
}

static uint32_t frame_crc(const uint8_t h[FRAME_HEADER_SIZE], const uint8_t *payload,
                          uint16_t len) {
    uint32_t crc = crc32_update(0, &h[2], FRAME_HEADER_SIZE - 2);
    return crc32_update(crc, payload, len);
}

static void put_u32le(uint8_t out[4], uint32_t v) {
    out[0] = (uint8_t)v;
    out[1] = (uint8_t)(v >> 8);
    out[2] = (uint8_t)(v >> 16);
    out[3] = (uint8_t)(v >> 24);
}

void frame_write(frame_write_fn write, void *ctx, uint8_t type, uint8_t seq, const uint8_t *payload,
                 uint16_t len) {
    uint8_t h[FRAME_HEADER_SIZE];
    uint8_t t[FRAME_TRAILER_SIZE];
    header_bytes(h, type, seq, len);
    put_u32le(t, frame_crc(h, payload, len));
    write(ctx, h, sizeof h);
    if (len) write(ctx, payload, len);
    write(ctx, t, sizeof t);
}

size_t frame_encode(uint8_t *out, size_t cap, uint8_t type, uint8_t seq, const uint8_t *payload,
                    uint16_t len) {
    size_t total = (size_t)len + FRAME_OVERHEAD;
    if (cap < total) return 0;
    header_bytes(out, type, seq, len);
    if (len) memcpy(out + FRAME_HEADER_SIZE, payload, len);
    put_u32le(out + FRAME_HEADER_SIZE + len, frame_crc(out, payload, len));
    return total;
}

void frame_decoder_init(frame_decoder_t *d, uint8_t *payload_buf, uint16_t capacity) {
    memset(d, 0, sizeof *d);
    d->payload = payload_buf;
    d->capacity = capacity;
    d->state = ST_SYNC0;
}

/* After a bad header, resume the hunt inside the bytes already taken: a sync pattern may
 * start there (the damaged "header" may have been noise before a real frame). */
static frame_rx_t resync_from_header(frame_decoder_t *d) {
    uint8_t saved[FRAME_HEADER_SIZE - 1];
    size_t n = FRAME_HEADER_SIZE - 1;
    memcpy(saved, &d->header[1], n);
    d->state = ST_SYNC0;
    /* Six bytes cannot complete a seven-byte header, so this never recurses further. */
    for (size_t i = 0; i < n; i++) (void)frame_decoder_push(d, saved[i]);
    return FRAME_RX_BAD_HEADER;
}

frame_rx_t frame_decoder_push(frame_decoder_t *d, uint8_t byte) {
    switch (d->state) {
        case ST_SYNC0:
            if (byte == FRAME_SYNC0) {
                d->header[0] = byte;
                d->state = ST_SYNC1;
            }
            return FRAME_RX_PENDING;
        case ST_SYNC1:
            if (byte == FRAME_SYNC1) {
                d->header[1] = byte;
                d->pos = 2;
                d->state = ST_HEADER;
            } else {
                d->state = (byte == FRAME_SYNC0) ? ST_SYNC1 : ST_SYNC0;
            }
            return FRAME_RX_PENDING;
        case ST_HEADER:
            d->header[d->pos++] = byte;
            if (d->pos < FRAME_HEADER_SIZE) return FRAME_RX_PENDING;
            if (crc8_update(0, &d->header[2], 4) != d->header[6]) return resync_from_header(d);
            d->len = (uint16_t)(d->header[2] | (d->header[3] << 8));
            d->type = d->header[4];
            d->seq = d->header[5];
            d->crc = crc32_update(0, &d->header[2], FRAME_HEADER_SIZE - 2);
            d->pos = 0;
            if (d->len > d->capacity) {
                d->state = ST_SKIP;
                return FRAME_RX_TOO_LONG;
            }
            d->state = d->len ? ST_PAYLOAD : ST_CRC;
            return FRAME_RX_PENDING;
        case ST_PAYLOAD:
            d->payload[d->pos++] = byte;
            if (d->pos == d->len) {
                d->crc = crc32_update(d->crc, d->payload, d->len);
                d->pos = 0;
                d->state = ST_CRC;
            }
            return FRAME_RX_PENDING;
        case ST_CRC: {
            d->crc_bytes[d->pos++] = byte;
            if (d->pos < FRAME_TRAILER_SIZE) return FRAME_RX_PENDING;
            uint32_t got = (uint32_t)d->crc_bytes[0] | ((uint32_t)d->crc_bytes[1] << 8) |
                           ((uint32_t)d->crc_bytes[2] << 16) | ((uint32_t)d->crc_bytes[3] << 24);
            d->state = ST_SYNC0;
            return got == d->crc ? FRAME_RX_OK : FRAME_RX_BAD_CRC;
        }
        case ST_SKIP:
            /* Skip the payload and CRC of a frame too long to hold, staying in step. */
            if (++d->pos >= (uint32_t)d->len + FRAME_TRAILER_SIZE) d->state = ST_SYNC0;
            return FRAME_RX_PENDING;
        default: d->state = ST_SYNC0; return FRAME_RX_PENDING;
    }
}
