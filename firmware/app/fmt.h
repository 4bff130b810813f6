/* A small, allocation-free snprintf: %s %c %d %i %u %x %X %p and %%, with an optional
 * zero-pad flag and width (e.g. %08x) and an ignored 'l' modifier. newlib's printf family
 * can reach malloc; the firmware must not. */
#ifndef APP_FMT_H
#define APP_FMT_H

#include <stdarg.h>
#include <stddef.h>

/* Returns the length written (excluding the NUL), truncated to cap - 1. */
size_t fmt_vsnprintf(char *out, size_t cap, const char *fmt, va_list ap);
size_t fmt_snprintf(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
