/* Frame codec. Wire format (little-endian):
 *
 *   A5 5A | len u16 | type u8 | seq u8 | hcrc u32 | payload[len] | crc u32
 *
 * hcrc = CRC-32 over len..seq: a damaged, dropped or inserted header byte passes it about
 * once in 4 billion (a CRC-8 let one dropped byte in 340 through), so a receiver never
 * trusts a wrong length. crc = CRC-32 over everything after the sync bytes (len..payload,
 * hcrc included).
 *
 * Resynchronisation (docs/protocol.md, "Resynchronisation"):
 *  - a frame whose bytes stop arriving for more than gap_ms is dropped (inter-byte timeout);
 *  - after a bad header the hunt for the sync resumes inside the header bytes already taken;
 *  - a frame longer than the receiver's capacity is refused at its header and its bytes are
 *    hunted through, never skipped by a count the header gave;
 *  - a whole HELLO frame seen inside another frame is a new host's when it came after a
 *    pause (FRAME_RESYNC_SILENCE_MS) and is answered at once; otherwise it is kept: when
 *    that frame turns out bad (CRC) or dead (gap), the HELLO is delivered; when it turns
 *    out good, the HELLO was its data and is forgotten. A new host is therefore answered
 *    at its first HELLO whatever state a dead sender left the decoder in. */
#ifndef LINK_FRAME_H
#define LINK_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_SYNC0 0xA5u
#define FRAME_SYNC1 0x5Au
#define FRAME_HEADER_SIZE 10u
#define FRAME_TRAILER_SIZE 4u
#define FRAME_OVERHEAD (FRAME_HEADER_SIZE + FRAME_TRAILER_SIZE)
#define FRAME_HELLO_TYPE 0x01u /* MSG_HELLO; link.c checks the two agree */
/* A HELLO inside another frame whose first byte came after this much quiet (two ticks of a
 * 1 ms clock: at least 1 ms) is a new host's, answered at once: a live sender does not
 * pause mid-frame, and only a payload that carries a whole valid HELLO frame could be
 * mistaken, and only after such a pause. Without the pause, the frame's end or the gap
 * decides. */
#define FRAME_RESYNC_SILENCE_MS 2u

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
    FRAME_RX_BAD_HEADER,  /* header CRC failed; decoder hunts for sync again */
    FRAME_RX_BAD_CRC,     /* header fine (type/seq valid), payload CRC-32 failed */
    FRAME_RX_TOO_LONG,    /* header fine, len > capacity; the hunt resumes after the header */
    FRAME_RX_TIMEOUT,     /* a frame stopped arriving mid-way and was dropped */
} frame_rx_t;

typedef struct {
    uint8_t *payload; /* caller's buffer, capacity bytes */
    uint16_t capacity;
    uint32_t gap_ms; /* inter-byte timeout: a frame silent this long mid-way is dropped */
    /* the frame being received / just received */
    uint16_t len;
    uint8_t type;
    uint8_t seq;
    bool resynced; /* the OK frame is a HELLO recovered from inside another frame */
    /* internal */
    uint8_t state;
    uint8_t header[FRAME_HEADER_SIZE];
    uint32_t pos;
    uint32_t crc;
    uint8_t crc_bytes[FRAME_TRAILER_SIZE];
    uint32_t taken;    /* bytes of the current candidate frame so far (0 while hunting) */
    uint32_t since_ok; /* bytes since the end of the last good frame (saturates) */
    uint32_t last_ms;  /* time of the last byte */
    uint8_t window[FRAME_OVERHEAD]; /* the last bytes seen: a whole HELLO frame fits */
    uint8_t window_fill;
    uint16_t window_silent; /* bit i: window[i] came after FRAME_RESYNC_SILENCE_MS of quiet */
    bool hello_pending;     /* a HELLO was seen inside the frame in progress */
    uint8_t hello_seq;
} frame_decoder_t;

/* gap_ms 0 disables the inter-byte timeout (a decoder of a buffer, not of a line). */
void frame_decoder_init(frame_decoder_t *d, uint8_t *payload_buf, uint16_t capacity,
                        uint32_t gap_ms);

/* Feeds one byte received at now_ms; returns what, if anything, completed. A frame silent
 * for more than gap_ms before this byte is dropped first: call frame_decoder_poll() before
 * each byte (and while idle) to learn of it, and to receive a HELLO kept inside it. */
frame_rx_t frame_decoder_push(frame_decoder_t *d, uint8_t byte, uint32_t now_ms);

/* Checks the inter-byte timeout at now_ms: FRAME_RX_TIMEOUT when a frame in progress was
 * dropped, FRAME_RX_OK when that frame held a HELLO (delivered now, resynced set),
 * FRAME_RX_PENDING otherwise. */
frame_rx_t frame_decoder_poll(frame_decoder_t *d, uint32_t now_ms);

#endif
