#include "link.h"

#include <string.h>

#include "protocol.h"

_Static_assert(MSG_HELLO == FRAME_HELLO_TYPE, "frame.h must know HELLO's code to resynchronise");

void link_init(link_t *l, uint8_t *rx_buf, uint16_t rx_capacity, uint8_t *reply_buf,
               uint16_t reply_capacity, frame_write_fn write, void *write_ctx,
               link_handler_fn handler, void *handler_ctx) {
    memset(l, 0, sizeof *l);
    frame_decoder_init(&l->dec, rx_buf, rx_capacity, LINK_RX_GAP_MS);
    l->reply_buf = reply_buf;
    l->reply_capacity = reply_capacity;
    l->write = write;
    l->write_ctx = write_ctx;
    l->handler = handler;
    l->handler_ctx = handler_ctx;
}

static void send(link_t *l, uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t len) {
    frame_write(l->write, l->write_ctx, type, seq, payload, len);
    l->stats.tx_frames++;
}

static void send_nack(link_t *l, uint8_t seq, uint8_t reason) {
    struct payload_NACK n = {.reason = reason};
    send(l, MSG_NACK, seq, (const uint8_t *)&n, sizeof n);
}

static void handle_request(link_t *l) {
    const frame_decoder_t *d = &l->dec;
    if (d->seq == 0) return; /* sequence 0 is for unsolicited frames; a host never sends it */
    if (d->type == MSG_HELLO) l->have_last = false;
    if (l->have_last && d->seq == l->last_seq) {
        l->stats.rx_duplicates++;
        send(l, l->last_type, l->last_seq, l->reply_buf, l->last_len);
        return;
    }
    link_reply_t reply = {
        .type = MSG_ACK, .len = 0, .payload = l->reply_buf, .capacity = l->reply_capacity};
    l->handler(l->handler_ctx, d->type, d->payload, d->len, &reply);
    l->last_seq = d->seq;
    l->last_type = reply.type;
    l->last_len = reply.len;
    l->have_last = true;
    send(l, reply.type, d->seq, l->reply_buf, reply.len);
}

static void on_rx(link_t *l, frame_rx_t r) {
    switch (r) {
        case FRAME_RX_PENDING: break;
        case FRAME_RX_OK:
            l->stats.rx_frames++;
            if (l->dec.resynced) l->stats.rx_resyncs++;
            handle_request(l);
            break;
        case FRAME_RX_BAD_HEADER:
            l->stats.rx_bad_header++;
            send_nack(l, 0, ERR_BAD_HEADER);
            break;
        case FRAME_RX_BAD_CRC:
            l->stats.rx_bad_crc++;
            send_nack(l, l->dec.seq, ERR_BAD_CRC);
            break;
        case FRAME_RX_TOO_LONG:
            l->stats.rx_too_long++;
            send_nack(l, l->dec.seq, ERR_TOO_LONG);
            break;
        case FRAME_RX_TIMEOUT:
            /* No NACK: the sender is gone, or it retransmits on its own timer. */
            l->stats.rx_timeouts++;
            break;
    }
}

void link_poll(link_t *l, uint32_t now_ms) {
    on_rx(l, frame_decoder_poll(&l->dec, now_ms));
}

void link_rx_byte(link_t *l, uint8_t byte, uint32_t now_ms) {
    link_poll(l, now_ms);
    on_rx(l, frame_decoder_push(&l->dec, byte, now_ms));
}

void link_send_unsolicited(link_t *l, uint8_t type, const uint8_t *payload, uint16_t len) {
    send(l, type, 0, payload, len);
}

void link_reply_error(link_reply_t *reply, uint8_t code, uint8_t request_type,
                      const char *message) {
    struct payload_ERROR e = {.code = code, .request_type = request_type};
    uint16_t n = (uint16_t)sizeof e;
    memcpy(reply->payload, &e, n);
    size_t mlen = strlen(message);
    if (mlen > (size_t)(reply->capacity - n)) mlen = (size_t)(reply->capacity - n);
    memcpy(reply->payload + n, message, mlen);
    reply->type = MSG_ERROR;
    reply->len = (uint16_t)(n + mlen);
}
