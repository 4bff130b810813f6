#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "unit.h"

static frame_rx_t feed(frame_decoder_t *d, const uint8_t *data, size_t n, size_t *oks) {
    frame_rx_t last = FRAME_RX_PENDING;
    for (size_t i = 0; i < n; i++) {
        frame_rx_t r = frame_decoder_push(d, data[i], 0);
        if (r != FRAME_RX_PENDING) last = r;
        if (r == FRAME_RX_OK && oks) (*oks)++;
    }
    return last;
}

TEST(frame_round_trips) {
    uint8_t payload[300], wire[400], rx[512];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)(i * 7 + 1);
    size_t n = frame_encode(wire, sizeof wire, 0x42, 9, payload, sizeof payload);
    CHECK_EQ(n, sizeof payload + FRAME_OVERHEAD);
    frame_decoder_t d;
    frame_decoder_init(&d, rx, sizeof rx, 0);
    CHECK_EQ(feed(&d, wire, n, NULL), FRAME_RX_OK);
    CHECK_EQ(d.type, 0x42);
    CHECK_EQ(d.seq, 9);
    CHECK_EQ(d.len, sizeof payload);
    CHECK(memcmp(rx, payload, sizeof payload) == 0);
}

TEST(frame_encode_refuses_a_small_buffer) {
    uint8_t wire[5 + FRAME_OVERHEAD];
    const uint8_t payload[6] = {1, 2, 3, 4, 5, 6};
    CHECK_EQ(frame_encode(wire, sizeof wire, 1, 1, payload, 6), 0);
    CHECK_EQ(frame_encode(wire, sizeof wire, 1, 1, payload, 5), sizeof wire);
}

TEST(every_single_bit_flip_is_detected) {
    uint8_t payload[40], wire[64], rx[64];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)(i ^ 0x5A);
    size_t n = frame_encode(wire, sizeof wire, 3, 77, payload, sizeof payload);
    for (size_t bit = 0; bit < n * 8; bit++) {
        uint8_t bad[64];
        memcpy(bad, wire, n);
        bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        frame_decoder_t d;
        frame_decoder_init(&d, rx, sizeof rx, 0);
        size_t oks = 0;
        feed(&d, bad, n, &oks);
        CHECK_EQ(oks, 0);
    }
}

TEST(noise_before_a_frame_is_skipped) {
    uint8_t wire[80], rx[64];
    const uint8_t noise[] = {0x00, 0xA5, 0x13, 0xA5, 0xA5, 0xFF, 0x5A};
    memcpy(wire, noise, sizeof noise);
    size_t n = frame_encode(wire + sizeof noise, sizeof wire - sizeof noise, 5, 1,
                            (const uint8_t *)"hi", 2);
    frame_decoder_t d;
    frame_decoder_init(&d, rx, sizeof rx, 0);
    size_t oks = 0;
    feed(&d, wire, sizeof noise + n, &oks);
    CHECK_EQ(oks, 1);
    CHECK_EQ(d.type, 5);
}

TEST(a_frame_starting_inside_a_damaged_header_is_found) {
    /* A5 5A then a real frame: the first sync's "header" is the real frame's bytes. */
    uint8_t wire[64], rx[64];
    wire[0] = 0xA5;
    wire[1] = 0x5A;
    size_t n = frame_encode(wire + 2, sizeof wire - 2, 6, 2, (const uint8_t *)"abc", 3);
    frame_decoder_t d;
    frame_decoder_init(&d, rx, sizeof rx, 0);
    size_t oks = 0;
    feed(&d, wire, n + 2, &oks);
    CHECK_EQ(oks, 1);
    CHECK_EQ(d.type, 6);
}

TEST(a_too_long_frame_is_refused_at_its_header_and_the_next_frame_decodes) {
    uint8_t big[100], wire[256], rx[32];
    memset(big, 0xA5, sizeof big); /* sync-like bytes inside are hunted through harmlessly */
    size_t n1 = frame_encode(wire, sizeof wire, 7, 3, big, sizeof big);
    size_t n2 = frame_encode(wire + n1, sizeof wire - n1, 8, 4, (const uint8_t *)"ok", 2);
    frame_decoder_t d;
    frame_decoder_init(&d, rx, sizeof rx, 0);
    frame_rx_t first = FRAME_RX_PENDING;
    size_t i = 0;
    for (; i < n1 && first == FRAME_RX_PENDING; i++) first = frame_decoder_push(&d, wire[i], 0);
    CHECK_EQ(first, FRAME_RX_TOO_LONG);
    CHECK_EQ(i, FRAME_HEADER_SIZE); /* refused at its header, not after its payload */
    CHECK_EQ(d.seq, 3);
    size_t oks = 0;
    feed(&d, wire + i, n1 + n2 - i, &oks);
    CHECK_EQ(oks, 1);
    CHECK_EQ(d.type, 8);
}

TEST(back_to_back_frames_all_decode) {
    uint8_t wire[2048], rx[64];
    size_t n = 0;
    for (int k = 0; k < 50; k++) {
        uint8_t p[20];
        for (int j = 0; j < 20; j++) p[j] = (uint8_t)(k * 31 + j);
        n += frame_encode(wire + n, sizeof wire - n, 1, (uint8_t)(k + 1), p, (uint16_t)(k % 21));
    }
    frame_decoder_t d;
    frame_decoder_init(&d, rx, sizeof rx, 0);
    size_t oks = 0;
    feed(&d, wire, n, &oks);
    CHECK_EQ(oks, 50);
}
