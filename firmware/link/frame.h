/* Frame codec. Wire format (little-endian):
 *
 *   A5 5A | len u16 | type u8 | seq u8 | hcrc u8 | payload[len] | crc u32
 *
 * hcrc = CRC-8 over len..seq, so a damaged length is caught before the receiver waits
 * for a payload that never comes; crc = CRC-32 over everything after the sync bytes
 * (len..payload, hcrc included). */
#ifndef LINK_FRAME_H
#define LINK_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_SYNC0 0xA5u
#define FRAME_SYNC1 0x5Au
#define FRAME_HEADER_SIZE 7u
#define FRAME_TRAILER_SIZE 4u
#define FRAME_OVERHEAD (FRAME_HEADER_SIZE + FRAME_TRAILER_SIZE)

/* Byte sink the encoder writes to (a UART, a buffer in a test). */
typedef void (*frame_write_fn)(void *ctx, const uint8_t *data, size_t len);

/* Encodes and writes one frame without buffering it whole. */
void frame_write(frame_write_fn write, void *ctx, uint8_t type, uint8_t seq, const uint8_t *payload,
                 uint16_t len);

/* Encodes one frame into out; returns its size, or 0 if cap is too small. */
size_t frame_encode(uint8_t *out, size_t cap, uint8_t type, uint8_t seq, const uint8_t *payload,
                    uint16_t len);

typedef enum {
    FRAME_RX_PENDING = 0, /* need more bytes */
    FRAME_RX_OK,          /* a valid frame is in decoder.type/seq/len/payload */
    FRAME_RX_BAD_HEADER,  /* header CRC-8 failed; decoder hunts for sync again */
    FRAME_RX_BAD_CRC,     /* header fine (type/seq valid), payload CRC-32 failed */
    FRAME_RX_TOO_LONG,    /* header fine, len > capacity; the frame is skipped */
} frame_rx_t;

typedef struct {
    uint8_t *payload; /* caller's buffer, capacity bytes */
    uint16_t capacity;
    /* the frame being received / just received */
    uint16_t len;
    uint8_t type;
    uint8_t seq;
    /* internal */
    uint8_t state;
    uint8_t header[FRAME_HEADER_SIZE];
    uint32_t pos;
    uint32_t crc;
    uint8_t crc_bytes[FRAME_TRAILER_SIZE];
} frame_decoder_t;

void frame_decoder_init(frame_decoder_t *d, uint8_t *payload_buf, uint16_t capacity);

/* Feeds one received byte; returns what, if anything, completed. */
frame_rx_t frame_decoder_push(frame_decoder_t *d, uint8_t byte);

#endif
