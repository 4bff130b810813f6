#include <string.h>

#include "fmt.h"
#include "unit.h"

#define FMT_IS(expect, ...)                                     \
    do {                                                        \
        char fb_[64];                                           \
        size_t n_ = fmt_snprintf(fb_, sizeof fb_, __VA_ARGS__); \
        CHECK(strcmp(fb_, expect) == 0);                        \
        CHECK_EQ(n_, strlen(expect));                           \
    } while (0)

TEST(fmt_formats_integers_and_text) {
    FMT_IS("a 42 -7 ff 0x0000BEEF s", "a %d %i %x 0x%08X %s", 42, -7, 0xFFu, 0xBEEFu, "s");
    FMT_IS("[  5][005][-05]", "[%3u][%03u][%03d]", 5u, 5u, -5);
    FMT_IS("100% c", "100%% %c", 'c');
    FMT_IS("4294967295 -2147483648", "%u %d", 4294967295u, (int)0x80000000u);
}

TEST(fmt_truncates_and_terminates) {
    char b[6];
    size_t n = fmt_snprintf(b, sizeof b, "%s", "abcdefgh");
    CHECK_EQ(n, 5);
    CHECK(strcmp(b, "abcde") == 0);
}
