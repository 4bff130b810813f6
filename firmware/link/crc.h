/* CRC-32 (IEEE 802.3, as zlib.crc32) for frame headers and whole frames.
 * Streaming: pass the previous value back in to continue. */
#ifndef LINK_CRC_H
#define LINK_CRC_H

#include <stddef.h>
#include <stdint.h>

/* crc32_update(0, ...) starts a new CRC; the result is the finished CRC-32 of everything
 * passed so far, so crc32_update(crc32_update(0, a), b) == crc32(a || b). */
uint32_t crc32_update(uint32_t crc, const uint8_t *data, size_t len);

#endif
