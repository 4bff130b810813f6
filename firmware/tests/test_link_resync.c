/* The link resynchronises (docs/protocol.md, "Resynchronisation"): whatever a dead or
 * noisy sender left half-received, a new host's first HELLO is answered within one retry
 * interval. The link runs here on a fake clock that advances at 115200 baud per byte, so
 * every case is exhaustive and deterministic. */
#include <stdlib.h>
#include <string.h>

#include "crc.h"
#include "link.h"
#include "protocol.h"
#include "unit.h"

#define RX_CAP 4096u          /* the boards' max_payload */
#define GAP_MS LINK_RX_GAP_MS /* the default (real boards') inter-byte timeout */
#define RETRY_MS 500u         /* the host's retry interval (pytools/link/client.py timeout) */
#define BYTE_US 87u           /* one byte at 115200 baud 8N1 */

static uint64_t now_us;
static uint32_t now_ms(void) {
    return (uint32_t)(now_us / 1000u);
}

/* What the link sends, with the time each frame left. */
static uint8_t out[8192];
static size_t out_len;
static int executed;

static void capture(void *ctx, const uint8_t *data, size_t n) {
    (void)ctx;
    if (out_len + n > sizeof out) out_len = 0; /* only the newest replies matter */
    memcpy(out + out_len, data, n);
    out_len += n;
}

static void echo_handler(void *ctx, uint8_t type, const uint8_t *payload, uint16_t len,
                         link_reply_t *reply) {
    (void)ctx;
    executed++;
    uint16_t n = len < reply->capacity ? len : reply->capacity;
    memcpy(reply->payload, payload, n);
    reply->type = (uint8_t)(type | 0x80u);
    reply->len = n;
}

static uint8_t rx[RX_CAP], reply_buf[1024];
static link_t l;

static void setup(void) {
    now_us = 1000000u;
    out_len = 0;
    executed = 0;
    link_init(&l, rx, sizeof rx, reply_buf, sizeof reply_buf, capture, NULL, echo_handler, NULL);
}

/* Bytes arriving back to back on the line. */
static void send_bytes(const uint8_t *data, size_t n) {
    for (size_t i = 0; i < n; i++) {
        now_us += BYTE_US;
        link_rx_byte(&l, data[i], now_ms());
    }
}

/* Whether the link has sent a frame of this type and sequence. */
static bool sent(uint8_t type, uint8_t seq) {
    static uint8_t buf[RX_CAP];
    frame_decoder_t d;
    frame_decoder_init(&d, buf, sizeof buf, 0);
    for (size_t i = 0; i < out_len; i++)
        if (frame_decoder_push(&d, out[i], 0) == FRAME_RX_OK && d.type == type && d.seq == seq)
            return true;
    return false;
}

/* A new host's HELLO: sent, then the line is quiet while the host waits one retry
 * interval, the link polled every millisecond as the board's main loop does. Returns the
 * milliseconds from the HELLO's last byte to its answer, or -1 if it was not answered. */
static long hello_answer_ms(uint8_t seq) {
    uint8_t hello[FRAME_OVERHEAD];
    frame_encode(hello, sizeof hello, MSG_HELLO, seq, NULL, 0);
    out_len = 0;
    send_bytes(hello, sizeof hello);
    uint64_t sent_at = now_us;
    for (;;) {
        if (sent(MSG_HELLO | 0x80u, seq)) return (long)((now_us - sent_at + 999u) / 1000u);
        if (now_us - sent_at >= RETRY_MS * 1000u) return -1;
        now_us += 1000u;
        link_poll(&l, now_ms());
    }
}

static const uint8_t message_types[] = {
#define MSG(name, code, dir, doc) code,
#include "messages.def"
#undef MSG
};

/* Worst answer time over every cut, printed for docs/protocol.md (tests/test_link_resync.py
 * checks the document states it). */
TEST(every_prefix_of_every_message_then_a_new_hello_is_answered_within_one_retry) {
    static const uint16_t lengths[] = {0, 1, 12, 80, 1024, RX_CAP};
    /* Before the new host speaks: none, just past the resync silence, the gap, 1 s. */
    static const uint32_t pauses_ms[] = {0, FRAME_RESYNC_SILENCE_MS + 1, GAP_MS, 1000};
    static uint8_t wire[RX_CAP + FRAME_OVERHEAD], payload[RX_CAP];
    static uint8_t rx_copy[RX_CAP];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)(i * 7u + 1u);
    long worst = 0, worst_after_pause = 0;
    unsigned cases = 0;
    for (size_t t = 0; t < sizeof message_types; t++) {
        for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
            size_t n = frame_encode(wire, sizeof wire, message_types[t], 7, payload, lengths[k]);
            setup();
            /* The dead sender's bytes go into one link; at every cut a copy of it meets the
             * new host, so each prefix costs its new bytes only. */
            link_t base;
            for (size_t cut = 0; cut < n; cut++) {
                if (cut) send_bytes(&wire[cut - 1], 1);
                base = l;
                memcpy(rx_copy, rx, sizeof rx);
                uint64_t base_us = now_us;
                for (size_t p = 0; p < sizeof pauses_ms / sizeof pauses_ms[0]; p++) {
                    l = base;
                    memcpy(rx, rx_copy, sizeof rx);
                    now_us = base_us + (uint64_t)pauses_ms[p] * 1000u;
                    int before = executed;
                    long ms = hello_answer_ms(42);
                    if (ms < 0 || executed != before + 1) {
                        char what[160];
                        snprintf(what, sizeof what,
                                 "type 0x%02x len %u cut at byte %u pause %u ms: HELLO %s",
                                 message_types[t], lengths[k], (unsigned)cut,
                                 (unsigned)pauses_ms[p], ms < 0 ? "unanswered" : "ran wrongly");
                        unit_fail(__FILE__, __LINE__, what);
                        return;
                    }
                    if (ms > worst) worst = ms;
                    if (pauses_ms[p] && ms > worst_after_pause) worst_after_pause = ms;
                    cases++;
                }
                l = base;
                memcpy(rx, rx_copy, sizeof rx);
                now_us = base_us;
                executed = 0;
            }
        }
    }
    printf(
        "resync: %u cuts, worst HELLO answer %ld ms after its last byte (gap %u ms); "
        "%ld ms after a pause\n",
        cases, worst, (unsigned)GAP_MS, worst_after_pause);
    CHECK(worst <= (long)GAP_MS + 1);
    CHECK(worst_after_pause <= 1); /* a new host after a pause is answered at once */
}

/* xorshift32: seeded, the same stream everywhere. */
static uint32_t rng = 1;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* Damages a frame's header: bit flips, a dropped, inserted or repeated byte. */
static size_t corrupt_header(uint8_t *f, size_t n) {
    size_t at = 2 + rnd() % (FRAME_HEADER_SIZE - 2);
    switch (rnd() % 4) {
        case 0: {
            /* 1 to 8 distinct header bytes, each XORed with a non-zero mask */
            unsigned first = rnd() % (FRAME_HEADER_SIZE - 2), count = 1 + rnd() % 8;
            for (unsigned b = 0; b < count; b++) {
                uint8_t mask = (uint8_t)(1u + rnd() % 255u);
                f[2 + (first + b) % (FRAME_HEADER_SIZE - 2)] ^= mask;
            }
            (void)at;
            return n;
        }
        case 1: memmove(f + at, f + at + 1, n - at - 1); return n - 1;
        case 2:
            memmove(f + at + 1, f + at, n - at);
            f[at] = (uint8_t)rnd();
            if (f[at] == f[at + 1]) f[at] ^= 0x01u;
            return n + 1;
        default: memmove(f + at + 1, f + at, n - at); return n + 1; /* a byte received twice */
    }
}

TEST(header_corruption_over_100000_frames_never_passes_a_wrong_length) {
    static uint8_t buf[RX_CAP], wire[2 * 512];
    frame_decoder_t d;
    frame_decoder_init(&d, buf, sizeof buf, 0);
    rng = 16;
    uint8_t payload[300];
    unsigned wrong = 0, wrong_len = 0, lost = 0;
    for (unsigned k = 0; k < 100000; k++) {
        for (size_t i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)rnd();
        uint16_t len = (uint16_t)(rnd() % sizeof payload);
        size_t n = frame_encode(wire, sizeof wire, (uint8_t)rnd(), (uint8_t)rnd(), payload, len);
        n = corrupt_header(wire, n);
        /* The next frame follows at once: a wrong length accepted would swallow it. */
        uint8_t seq = (uint8_t)(k | 1u);
        n += frame_encode(wire + n, sizeof wire - n, MSG_PING, seq, payload, 8);
        unsigned oks = 0;
        for (size_t i = 0; i < n; i++) {
            frame_rx_t r = frame_decoder_push(&d, wire[i], 0);
            /* A header just taken (the payload or CRC comes next) carries a length sent. */
            if (d.taken == FRAME_HEADER_SIZE && d.len != len && d.len != 8) wrong_len++;
            if (r != FRAME_RX_OK) continue;
            oks++;
            if (d.type != MSG_PING || d.seq != seq || d.len != 8) wrong++;
        }
        if (oks == 0) lost++;
    }
    CHECK_EQ(wrong_len, 0);
    CHECK_EQ(wrong, 0);
    CHECK_EQ(lost, 0);
}

static size_t encode_header_only(uint8_t *h, uint8_t type, uint8_t seq, uint16_t len) {
    h[0] = FRAME_SYNC0;
    h[1] = FRAME_SYNC1;
    h[2] = (uint8_t)len;
    h[3] = (uint8_t)(len >> 8);
    h[4] = type;
    h[5] = seq;
    uint32_t c = crc32_update(0, &h[2], 4);
    for (int i = 0; i < 4; i++) h[6 + i] = (uint8_t)(c >> (8 * i));
    return FRAME_HEADER_SIZE;
}

TEST(a_header_announcing_65535_bytes_skips_nothing) {
    setup();
    uint8_t wire[64];
    size_t n = encode_header_only(wire, MSG_DIAG_SINK, 3, 0xFFFFu);
    n += frame_encode(wire + n, sizeof wire - n, MSG_PING, 4, (const uint8_t *)"next", 4);
    send_bytes(wire, n);
    CHECK(sent(MSG_NACK, 3));
    CHECK_EQ(l.stats.rx_too_long, 1);
    CHECK(sent(MSG_PING | 0x80u, 4)); /* the very next frame, not 64 KB later */
    CHECK_EQ(executed, 1);
}

TEST(a_frame_silent_past_the_gap_is_dropped_and_the_next_one_decodes) {
    setup();
    uint8_t wire[64];
    size_t n = frame_encode(wire, sizeof wire, MSG_PING, 5, (const uint8_t *)"abcdefgh", 8);
    send_bytes(wire, n / 2);
    now_us += (GAP_MS + 1u) * 1000u + 999u;
    link_poll(&l, now_ms());
    CHECK_EQ(l.stats.rx_timeouts, 1);
    send_bytes(wire, n);
    CHECK_EQ(executed, 1);
    CHECK(sent(MSG_PING | 0x80u, 5));
}

TEST(bytes_slower_than_the_line_but_within_the_gap_are_one_frame) {
    setup();
    uint8_t wire[64];
    size_t n = frame_encode(wire, sizeof wire, MSG_PING, 5, (const uint8_t *)"abcdefgh", 8);
    for (size_t i = 0; i < n; i++) {
        now_us += (uint64_t)GAP_MS * 1000u - 1000u; /* stays within the gap on a 1 ms tick */
        link_poll(&l, now_ms());
        link_rx_byte(&l, wire[i], now_ms());
    }
    CHECK_EQ(l.stats.rx_timeouts, 0);
    CHECK_EQ(executed, 1);
}

TEST(a_hello_inside_a_good_frames_payload_is_its_data) {
    setup();
    uint8_t inner[FRAME_OVERHEAD], payload[64], wire[128];
    frame_encode(inner, sizeof inner, MSG_HELLO, 9, NULL, 0);
    memset(payload, 0x11, sizeof payload);
    memcpy(payload + 20, inner, sizeof inner);
    size_t n = frame_encode(wire, sizeof wire, MSG_DIAG_SINK, 8, payload, sizeof payload);
    send_bytes(wire, n);
    now_us += 1000000u;
    link_poll(&l, now_ms());
    CHECK_EQ(executed, 1);
    CHECK(sent(MSG_DIAG_SINK | 0x80u, 8));
    CHECK(!sent(MSG_HELLO | 0x80u, 9));
    CHECK_EQ(l.stats.rx_resyncs, 0);
}

TEST(a_hello_inside_a_damaged_frame_is_answered) {
    setup();
    uint8_t inner[FRAME_OVERHEAD], payload[64], wire[128];
    frame_encode(inner, sizeof inner, MSG_HELLO, 9, NULL, 0);
    memset(payload, 0x11, sizeof payload);
    memcpy(payload + 20, inner, sizeof inner);
    size_t n = frame_encode(wire, sizeof wire, MSG_DIAG_SINK, 8, payload, sizeof payload);
    wire[n - 1] ^= 0x80u; /* the frame's CRC */
    send_bytes(wire, n);
    CHECK_EQ(executed, 1);
    CHECK(sent(MSG_HELLO | 0x80u, 9));
    CHECK_EQ(l.stats.rx_resyncs, 1);
}

/* Mutated and random traffic with random pauses: nothing crashes or wedges, and a new host
 * is answered afterwards. Seeded, bounded. */
TEST(frame_fuzz_never_wedges_the_link) {
    static uint8_t wire[RX_CAP + 64], payload[RX_CAP];
    rng = 2026;
    setup();
    for (unsigned round = 0; round < 3000; round++) {
        uint16_t len = (uint16_t)(rnd() % 4 == 0 ? rnd() % (RX_CAP + 1) : rnd() % 64);
        for (size_t i = 0; i < len; i++) payload[i] = (uint8_t)rnd();
        uint8_t type = message_types[rnd() % sizeof message_types];
        size_t n = frame_encode(wire, sizeof wire, type, (uint8_t)rnd(), payload, len);
        switch (rnd() % 6) {
            case 0: n = rnd() % n; break; /* truncated */
            case 1: wire[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 2: encode_header_only(wire, type, (uint8_t)rnd(), (uint16_t)rnd()); break;
            case 3: n = corrupt_header(wire, n); break;
            case 4:
                for (size_t i = 0; i < n; i++) wire[i] = (uint8_t)rnd(); /* noise */
                break;
            default: break; /* intact */
        }
        send_bytes(wire, n);
        if (rnd() % 3 == 0) {
            now_us += (uint64_t)(rnd() % (3u * GAP_MS)) * 1000u;
            link_poll(&l, now_ms());
        }
    }
    long ms = hello_answer_ms(77);
    CHECK(ms >= 0 && ms <= (long)GAP_MS + 1);
}

TEST(a_hello_after_a_pause_inside_a_dead_frame_is_answered_at_once) {
    setup();
    static uint8_t payload[2000], wire[2100];
    memset(payload, 0x33, sizeof payload);
    size_t n = frame_encode(wire, sizeof wire, MSG_DIAG_SINK, 3, payload, sizeof payload);
    send_bytes(wire, 200);                            /* the sender dies here */
    now_us += (FRAME_RESYNC_SILENCE_MS + 1u) * 1000u; /* well inside the gap */
    CHECK_EQ(hello_answer_ms(21), 0);
    CHECK_EQ(l.stats.rx_resyncs, 1);
    CHECK_EQ(l.stats.rx_timeouts, 0);
    (void)n;
}
