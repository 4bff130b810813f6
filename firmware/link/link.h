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
 * The link resynchronises (frame.h): a frame silent for more than LINK_RX_GAP_MS mid-way
 * is dropped, and a HELLO is answered whatever a dead sender left half-received.
 *
 * The link knows nothing of what requests mean: a handler does. */
#ifndef LINK_LINK_H
#define LINK_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "frame.h"

/* Inter-byte timeout, in bsp_uptime_ms() milliseconds, from boards/<board>.toml
 * ([link] rx_gap_ms). 50 ms is 575 byte times at 115200 baud, and a tenth of the host's
 * retry interval, so a new host is answered before it retransmits. */
#ifndef LINK_RX_GAP_MS
#define LINK_RX_GAP_MS 50u
#endif

typedef struct {
    uint32_t rx_frames;     /* valid frames received */
    uint32_t rx_bad_header; /* frames whose header CRC failed */
    uint32_t rx_bad_crc;    /* frames whose CRC-32 failed */
    uint32_t rx_too_long;   /* frames longer than the receive buffer */
    uint32_t rx_duplicates; /* retransmissions answered from the reply cache */
    uint32_t tx_frames;     /* frames sent */
    uint32_t rx_timeouts;   /* frames dropped because their bytes stopped arriving */
    uint32_t rx_resyncs;    /* HELLOs recovered from inside a dead or damaged frame */
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

/* Feeds one byte received at now_ms (bsp_uptime_ms()); runs the handler when a complete
 * request arrives. */
void link_rx_byte(link_t *l, uint8_t byte, uint32_t now_ms);

/* Call while no byte arrives: drops a frame whose bytes stopped coming (and answers a HELLO
 * that arrived inside it). */
void link_poll(link_t *l, uint32_t now_ms);

/* Sends an unsolicited frame (sequence 0): LOG, FAULT. */
void link_send_unsolicited(link_t *l, uint8_t type, const uint8_t *payload, uint16_t len);

/* Helper for handlers: an ERROR reply with a code and a message. */
void link_reply_error(link_reply_t *reply, uint8_t code, uint8_t request_type, const char *message);

#endif
