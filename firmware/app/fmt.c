#include "fmt.h"

#include <stdint.h>

typedef struct {
    char *out;
    size_t cap, len;
} sink_t;

static void put(sink_t *s, char c) {
    if (s->len + 1 < s->cap) s->out[s->len] = c;
    s->len++;
}

static void put_uint(sink_t *s, uint32_t v, unsigned base, int upper, unsigned width, char pad) {
    char digits[12];
    unsigned n = 0;
    const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        digits[n++] = set[v % base];
        v /= base;
    } while (v);
    while (width > n) {
        put(s, pad);
        width--;
    }
    while (n) put(s, digits[--n]);
}

size_t fmt_vsnprintf(char *out, size_t cap, const char *fmt, va_list ap) {
    sink_t s = {out, cap, 0};
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            put(&s, *p);
            continue;
        }
        p++;
        char pad = ' ';
        unsigned width = 0;
        if (*p == '0') {
            pad = '0';
            p++;
        }
        while (*p >= '0' && *p <= '9') width = width * 10u + (unsigned)(*p++ - '0');
        while (*p == 'l') p++;
        switch (*p) {
            case 's': {
                const char *str = va_arg(ap, const char *);
                if (!str) str = "(null)";
                while (*str) put(&s, *str++);
                break;
            }
            case 'c': put(&s, (char)va_arg(ap, int)); break;
            case 'd':
            case 'i': {
                int32_t v = (int32_t)va_arg(ap, int);
                uint32_t mag = (uint32_t)v;
                if (v < 0) {
                    put(&s, '-');
                    mag = 0u - mag;
                    if (width) width--;
                }
                put_uint(&s, mag, 10, 0, width, pad);
                break;
            }
            case 'u': put_uint(&s, (uint32_t)va_arg(ap, unsigned), 10, 0, width, pad); break;
            case 'x':
            case 'X':
                put_uint(&s, (uint32_t)va_arg(ap, unsigned), 16, *p == 'X', width, pad);
                break;
            case 'p':
                put(&s, '0');
                put(&s, 'x');
                put_uint(&s, (uint32_t)(uintptr_t)va_arg(ap, void *), 16, 0, 8, '0');
                break;
            case '%': put(&s, '%'); break;
            case '\0': p--; break;
            default:
                put(&s, '%');
                put(&s, *p);
                break;
        }
    }
    if (cap) out[s.len < cap ? s.len : cap - 1] = '\0';
    return s.len < cap ? s.len : (cap ? cap - 1 : 0);
}

size_t fmt_snprintf(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t n = fmt_vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n;
}
