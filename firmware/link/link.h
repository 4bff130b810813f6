/* Reliable request/reply link over a byte stream (the board side).
 *
 * The host sends one request at a time with a non-zero sequence number and retransmits
 * it until it gets the reply with that number. The board answers every request with
 * exactly one frame and remembers the last reply: a request repeating the last sequence
 * number is a retransmission, so the cached reply is sent again and the request is NOT
 * executed twice. A damaged frame is answered with NACK (retransmit now). HELLO resets
 * the duplicate detection so a new host session can start at any sequence number.
 * Frames with sequence 0 (LOG, FAULT) are unsolicited and never acknowledged.
 *
 * The link knows nothing of what requests mean: a handler does. */
#ifndef LINK_LINK_H
#define LINK_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "frame.h"

typedef struct {
    uint32_t rx_frames;     /* valid frames received */
    uint32_t rx_bad_header; /* frames whose header CRC-8 failed */
    uint32_t rx_bad_crc;    /* frames whose CRC-32 failed */
    uint32_t rx_too_long;   /* frames longer than the receive buffer */
    uint32_t rx_duplicates; /* retransmissions answered from the reply cache */
    uint32_t tx_frames;     /* frames sent */
} link_stats_t;

/* What a handler produces for one request. */
typedef struct {
    uint8_t type;     /* MSG_* of the reply */
    uint16_t len;     /* bytes written to payload */
    uint8_t *payload; /* the link's reply buffer */
    uint16_t capacity;
} link_reply_t;

/* Executes one request; must fill reply (type, len, payload). */
typedef void (*link_handler_fn)(void *ctx, uint8_t type, const uint8_t *payload, uint16_t len,
                                link_reply_t *reply);

typedef struct {
    frame_decoder_t dec;
    frame_write_fn write;
    void *write_ctx;
    link_handler_fn handler;
    void *handler_ctx;
    uint8_t *reply_buf;
    uint16_t reply_capacity;
    /* reply cache: the last reply sent, re-sent for a retransmitted request */
    uint8_t last_seq;
    bool have_last;
    uint8_t last_type;
    uint16_t last_len;
    link_stats_t stats;
} link_t;

void link_init(link_t *l, uint8_t *rx_buf, uint16_t rx_capacity, uint8_t *reply_buf,
               uint16_t reply_capacity, frame_write_fn write, void *write_ctx,
               link_handler_fn handler, void *handler_ctx);

/* Feeds one received byte; runs the handler when a complete request arrives. */
void link_rx_byte(link_t *l, uint8_t byte);

/* Sends an unsolicited frame (sequence 0): LOG, FAULT. */
void link_send_unsolicited(link_t *l, uint8_t type, const uint8_t *payload, uint16_t len);

/* Helper for handlers: an ERROR reply with a code and a message. */
void link_reply_error(link_reply_t *reply, uint8_t code, uint8_t request_type, const char *message);

#endif
