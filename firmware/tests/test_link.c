#include <string.h>

#include "link.h"
#include "protocol.h"
#include "unit.h"

/* Captures what the link sends; a handler that counts executions. */
static uint8_t out[4096];
static size_t out_len;
static int executed;

static void capture(void *ctx, const uint8_t *data, size_t n) {
    (void)ctx;
    memcpy(out + out_len, data, n);
    out_len += n;
}

static void handler(void *ctx, uint8_t type, const uint8_t *payload, uint16_t len,
                    link_reply_t *reply) {
    (void)ctx;
    executed++;
    if (type == 0x55) {
        link_reply_error(reply, ERR_UNKNOWN_TYPE, type, "nope");
        return;
    }
    memcpy(reply->payload, payload, len);
    reply->type = (uint8_t)(type | 0x80);
    reply->len = len;
}

static uint8_t rx[256], reply[256];
static link_t l;

static void setup(void) {
    out_len = 0;
    executed = 0;
    link_init(&l, rx, sizeof rx, reply, sizeof reply, capture, NULL, handler, NULL);
}

static void send_frame(uint8_t type, uint8_t seq, const char *text, int flip_bit) {
    uint8_t wire[300];
    size_t n =
        frame_encode(wire, sizeof wire, type, seq, (const uint8_t *)text, (uint16_t)strlen(text));
    if (flip_bit >= 0) wire[flip_bit / 8] ^= (uint8_t)(1u << (flip_bit % 8));
    for (size_t i = 0; i < n; i++) link_rx_byte(&l, wire[i], 0);
}

/* Decodes the frames the link sent. */
static int sent_frames(uint8_t types[8], uint8_t seqs[8]) {
    static uint8_t buf[512];
    frame_decoder_t d;
    frame_decoder_init(&d, buf, sizeof buf, 0);
    int n = 0;
    for (size_t i = 0; i < out_len; i++) {
        if (frame_decoder_push(&d, out[i], 0) == FRAME_RX_OK && n < 8) {
            types[n] = d.type;
            seqs[n] = d.seq;
            n++;
        }
    }
    return n;
}

TEST(a_request_is_answered_once_with_its_sequence) {
    setup();
    send_frame(0x02, 5, "hello", -1);
    uint8_t t[8], s[8];
    CHECK_EQ(sent_frames(t, s), 1);
    CHECK_EQ(t[0], 0x82);
    CHECK_EQ(s[0], 5);
    CHECK_EQ(executed, 1);
    CHECK_EQ(l.stats.rx_frames, 1);
}

TEST(a_retransmission_is_answered_from_cache_not_executed_again) {
    setup();
    send_frame(0x02, 5, "once", -1);
    send_frame(0x02, 5, "once", -1);
    send_frame(0x02, 5, "once", -1);
    uint8_t t[8], s[8];
    CHECK_EQ(sent_frames(t, s), 3);
    CHECK_EQ(executed, 1);
    CHECK_EQ(l.stats.rx_duplicates, 2);
    CHECK_EQ(t[2], 0x82);
    CHECK_EQ(s[2], 5);
}

TEST(a_new_sequence_number_executes_again) {
    setup();
    send_frame(0x02, 5, "a", -1);
    send_frame(0x02, 6, "b", -1);
    CHECK_EQ(executed, 2);
}

TEST(hello_resets_duplicate_detection) {
    setup();
    send_frame(0x02, 1, "a", -1);
    send_frame(MSG_HELLO, 1, "", -1);
    CHECK_EQ(executed, 2);
}

TEST(a_damaged_payload_is_nacked_with_its_sequence) {
    setup();
    send_frame(0x02, 9, "payload", 8 * (FRAME_HEADER_SIZE + 2)); /* a payload bit */
    uint8_t t[8], s[8];
    CHECK_EQ(sent_frames(t, s), 1);
    CHECK_EQ(t[0], MSG_NACK);
    CHECK_EQ(s[0], 9);
    CHECK_EQ(executed, 0);
    CHECK_EQ(l.stats.rx_bad_crc, 1);
}

TEST(a_damaged_header_is_nacked_with_sequence_zero) {
    setup();
    send_frame(0x02, 9, "payload", 8 * 4); /* the type byte */
    uint8_t t[8], s[8];
    CHECK_EQ(sent_frames(t, s), 1);
    CHECK_EQ(t[0], MSG_NACK);
    CHECK_EQ(s[0], 0);
    CHECK_EQ(l.stats.rx_bad_header, 1);
}

TEST(sequence_zero_requests_are_ignored) {
    setup();
    send_frame(0x02, 0, "x", -1);
    CHECK_EQ(executed, 0);
    CHECK_EQ(out_len, 0);
}

TEST(an_error_reply_carries_code_request_and_text) {
    setup();
    send_frame(0x55, 3, "", -1);
    static uint8_t buf[512];
    frame_decoder_t d;
    frame_decoder_init(&d, buf, sizeof buf, 0);
    frame_rx_t r = FRAME_RX_PENDING;
    for (size_t i = 0; i < out_len; i++) r = frame_decoder_push(&d, out[i], 0);
    CHECK_EQ(r, FRAME_RX_OK);
    CHECK_EQ(d.type, MSG_ERROR);
    CHECK_EQ(buf[0], ERR_UNKNOWN_TYPE);
    CHECK_EQ(buf[1], 0x55);
    CHECK(memcmp(buf + 2, "nope", 4) == 0);
}
