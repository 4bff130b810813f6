/* A minimal unit-test harness for the host build of the portable C. Each TEST registers
 * itself; `unit_tests --list` prints the names and `unit_tests NAME...` runs them, so
 * pytest can report every C test on its own (tests/test_c_units.py). */
#ifndef UNIT_H
#define UNIT_H

#include <stdint.h>
#include <stdio.h>

typedef void (*unit_fn)(void);
void unit_register(const char *name, unit_fn fn);
void unit_fail(const char *file, int line, const char *what);
extern int unit_failed;

#define TEST(name)                                                   \
    static void name(void);                                          \
    __attribute__((constructor)) static void register_##name(void) { \
        unit_register(#name, name);                                  \
    }                                                                \
    static void name(void)

#define CHECK(cond)                               \
    do {                                          \
        if (!(cond)) {                            \
            unit_fail(__FILE__, __LINE__, #cond); \
            return;                               \
        }                                         \
    } while (0)

#define CHECK_EQ(a, b)                                                              \
    do {                                                                            \
        long long a_ = (long long)(a), b_ = (long long)(b);                         \
        if (a_ != b_) {                                                             \
            char msg_[256];                                                         \
            snprintf(msg_, sizeof msg_, "%s == %s (%lld != %lld)", #a, #b, a_, b_); \
            unit_fail(__FILE__, __LINE__, msg_);                                    \
            return;                                                                 \
        }                                                                           \
    } while (0)

#endif
