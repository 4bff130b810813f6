#include "frame.h"

#include <string.h>

#include "crc.h"

enum { ST_SYNC0, ST_SYNC1, ST_HEADER, ST_PAYLOAD, ST_CRC };

#define HCRC_AT 6u /* offset of the header CRC-32 */

static void put_u32le(uint8_t out[4], uint32_t v) {
    out[0] = (uint8_t)v;
    out[1] = (uint8_t)(v >> 8);
    out[2] = (uint8_t)(v >> 16);
    out[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32le(const uint8_t in[4]) {
    return (uint32_t)in[0] | ((uint32_t)in[1] << 8) | ((uint32_t)in[2] << 16) |
           ((uint32_t)in[3] << 24);
}

static void header_bytes(uint8_t h[FRAME_HEADER_SIZE], uint8_t type, uint8_t seq, uint16_t len) {
    h[0] = FRAME_SYNC0;
    h[1] = FRAME_SYNC1;
    h[2] = (uint8_t)(len & 0xFFu);
    h[3] = (uint8_t)(len >> 8);
    h[4] = type;
    h[5] = seq;
    put_u32le(&h[HCRC_AT], crc32_update(0, &h[2], HCRC_AT - 2));
}

static bool header_ok(const uint8_t h[FRAME_HEADER_SIZE]) {
    return h[0] == FRAME_SYNC0 && h[1] == FRAME_SYNC1 &&
           crc32_update(0, &h[2], HCRC_AT - 2) == get_u32le(&h[HCRC_AT]);
}

static uint32_t frame_crc(const uint8_t h[FRAME_HEADER_SIZE], const uint8_t *payload,
                          uint16_t len) {
    uint32_t crc = crc32_update(0, &h[2], FRAME_HEADER_SIZE - 2);
    return crc32_update(crc, payload, len);
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

void frame_decoder_init(frame_decoder_t *d, uint8_t *payload_buf, uint16_t capacity,
                        uint32_t gap_ms) {
    memset(d, 0, sizeof *d);
    d->payload = payload_buf;
    d->capacity = capacity;
    d->gap_ms = gap_ms;
    d->state = ST_SYNC0;
    d->since_ok = FRAME_OVERHEAD;
}

/* Back to hunting for a sync; whatever frame was in progress, and a HELLO kept inside it,
 * is forgotten. */
static void hunt(frame_decoder_t *d) {
    d->state = ST_SYNC0;
    d->taken = 0;
    d->hello_pending = false;
}

static frame_rx_t step(frame_decoder_t *d, uint8_t byte);

/* After a bad header, resume the hunt inside the bytes already taken: a sync pattern may
 * start there (the damaged "header" may have been the tail of a dead frame, or noise,
 * before a real frame). */
static frame_rx_t resync_from_header(frame_decoder_t *d) {
    uint8_t saved[FRAME_HEADER_SIZE - 1];
    memcpy(saved, &d->header[1], sizeof saved);
    hunt(d);
    /* Nine bytes cannot complete a ten-byte header, so this never recurses further. */
    for (size_t i = 0; i < sizeof saved; i++) (void)step(d, saved[i]);
    return FRAME_RX_BAD_HEADER;
}

/* After a bad CRC, resume the hunt inside the trailer: a frame that lost a byte on the
 * way ends early, and the next frame's sync is then among these bytes. */
static frame_rx_t resync_from_trailer(frame_decoder_t *d) {
    uint8_t saved[FRAME_TRAILER_SIZE];
    memcpy(saved, d->crc_bytes, sizeof saved);
    hunt(d);
    /* Four bytes cannot complete a header either. */
    for (size_t i = 0; i < sizeof saved; i++) (void)step(d, saved[i]);
    return FRAME_RX_BAD_CRC;
}

/* The frame state machine, one byte at a time. */
static frame_rx_t step(frame_decoder_t *d, uint8_t byte) {
    switch (d->state) {
        case ST_SYNC0:
            if (byte == FRAME_SYNC0) {
                d->header[0] = byte;
                d->taken = 1;
                d->state = ST_SYNC1;
            }
            return FRAME_RX_PENDING;
        case ST_SYNC1:
            if (byte == FRAME_SYNC1) {
                d->header[1] = byte;
                d->pos = 2;
                d->taken = 2;
                d->state = ST_HEADER;
            } else if (byte != FRAME_SYNC0) {
                hunt(d);
            }
            return FRAME_RX_PENDING;
        case ST_HEADER:
            d->header[d->pos++] = byte;
            d->taken++;
            if (d->pos < FRAME_HEADER_SIZE) return FRAME_RX_PENDING;
            if (!header_ok(d->header)) return resync_from_header(d);
            d->len = (uint16_t)(d->header[2] | (d->header[3] << 8));
            d->type = d->header[4];
            d->seq = d->header[5];
            d->crc = crc32_update(0, &d->header[2], FRAME_HEADER_SIZE - 2);
            d->pos = 0;
            if (d->len > d->capacity) {
                /* Refused at its header. Its bytes are hunted through like noise, never
                 * skipped by the count it announced, so a wrong length costs nothing. */
                hunt(d);
                return FRAME_RX_TOO_LONG;
            }
            d->state = d->len ? ST_PAYLOAD : ST_CRC;
            return FRAME_RX_PENDING;
        case ST_PAYLOAD:
            d->payload[d->pos++] = byte;
            d->taken++;
            if (d->pos == d->len) {
                d->crc = crc32_update(d->crc, d->payload, d->len);
                d->pos = 0;
                d->state = ST_CRC;
            }
            return FRAME_RX_PENDING;
        case ST_CRC: {
            d->crc_bytes[d->pos++] = byte;
            d->taken++;
            if (d->pos < FRAME_TRAILER_SIZE) return FRAME_RX_PENDING;
            if (get_u32le(d->crc_bytes) == d->crc) {
                hunt(d);
                return FRAME_RX_OK;
            }
            return resync_from_trailer(d);
        }
        default: hunt(d); return FRAME_RX_PENDING;
    }
}

/* The last FRAME_OVERHEAD bytes are a whole, valid HELLO frame (empty payload). */
static bool window_holds_hello(const frame_decoder_t *d) {
    const uint8_t *w = d->window;
    if (d->window_fill < FRAME_OVERHEAD || w[2] != 0 || w[3] != 0 || w[4] != FRAME_HELLO_TYPE)
        return false;
    if (!header_ok(w)) return false;
    return crc32_update(0, &w[2], FRAME_HEADER_SIZE - 2) == get_u32le(&w[FRAME_HEADER_SIZE]);
}

static void window_push(frame_decoder_t *d, uint8_t byte, bool after_silence) {
    memmove(d->window, d->window + 1, FRAME_OVERHEAD - 1);
    d->window[FRAME_OVERHEAD - 1] = byte;
    d->window_silent =
        (uint16_t)((d->window_silent >> 1) | (after_silence ? 1u << (FRAME_OVERHEAD - 1) : 0u));
    if (d->window_fill < FRAME_OVERHEAD) d->window_fill++;
}

static frame_rx_t deliver_hello(frame_decoder_t *d, uint8_t seq) {
    d->type = FRAME_HELLO_TYPE;
    d->seq = seq;
    d->len = 0;
    d->resynced = true;
    d->since_ok = 0;
    return FRAME_RX_OK;
}

static bool gap_expired(const frame_decoder_t *d, uint32_t now_ms) {
    return d->gap_ms && d->state != ST_SYNC0 && (uint32_t)(now_ms - d->last_ms) > d->gap_ms;
}

frame_rx_t frame_decoder_poll(frame_decoder_t *d, uint32_t now_ms) {
    if (!gap_expired(d, now_ms)) return FRAME_RX_PENDING;
    bool pending = d->hello_pending;
    uint8_t seq = d->hello_seq;
    bool in_frame = d->state >= ST_HEADER;
    hunt(d);
    if (pending) return deliver_hello(d, seq);
    return in_frame ? FRAME_RX_TIMEOUT : FRAME_RX_PENDING;
}

frame_rx_t frame_decoder_push(frame_decoder_t *d, uint8_t byte, uint32_t now_ms) {
    if (gap_expired(d, now_ms)) hunt(d); /* the caller did not poll: drop it silently */
    bool after_silence = (uint32_t)(now_ms - d->last_ms) >= FRAME_RESYNC_SILENCE_MS;
    d->last_ms = now_ms;
    d->resynced = false;
    bool pending = d->hello_pending;
    uint8_t pending_seq = d->hello_seq;
    frame_rx_t r = step(d, byte);
    window_push(d, byte, after_silence);
    if (r == FRAME_RX_OK) {
        d->since_ok = 0; /* a HELLO kept inside this frame was its data */
        return r;
    }
    if (d->since_ok < FRAME_OVERHEAD) d->since_ok++;
    /* The frame that held a HELLO was damaged: its sender is gone, the HELLO is a new host. */
    if (r == FRAME_RX_BAD_CRC && pending) return deliver_hello(d, pending_seq);
    /* A whole HELLO that no good frame overlaps, and that the state machine did not take
     * (it was inside another frame when the HELLO began). */
    if (d->since_ok >= FRAME_OVERHEAD && window_holds_hello(d)) {
        bool new_host = d->window_silent & 1u; /* its first byte came after a pause */
        if (d->state >= ST_HEADER && d->taken > FRAME_OVERHEAD && !new_host) {
            /* Inside a frame that began before it: data, or a new host right behind a dead
             * one. That frame's end (CRC) or silence (gap) will tell. */
            d->hello_pending = true;
            d->hello_seq = d->window[5];
            return r;
        }
        /* After a pause, or the frame that held its start has ended bad, or began inside
         * it: a new host; take it now. */
        hunt(d);
        return deliver_hello(d, d->window[5]);
    }
    return r;
}
