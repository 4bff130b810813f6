#include <string.h>

#include "crc.h"
#include "unit.h"

static const uint8_t check[] = "123456789";

TEST(crc32_matches_the_standard_check_value) {
    /* CRC-32/ISO-HDLC check value, as zlib.crc32(b"123456789"). */
    CHECK_EQ(crc32_update(0, check, 9), 0xCBF43926u);
}

TEST(crc32_streams_in_pieces) {
    uint32_t whole = crc32_update(0, check, 9);
    for (size_t cut = 0; cut <= 9; cut++) {
        CHECK_EQ(crc32_update(crc32_update(0, check, cut), check + cut, 9 - cut), whole);
    }
}

TEST(crc32_of_nothing_is_zero) {
    CHECK_EQ(crc32_update(0, check, 0), 0);
}
