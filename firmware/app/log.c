#include "log.h"

#include <stdarg.h>
#include <string.h>

#include "bsp.h"
#include "fmt.h"
#include "protocol.h"

#define LOG_TEXT_MAX 120

static link_t *log_link;

void log_attach(link_t *link) {
    log_link = link;
}

void log_printf(uint8_t level, const char *fmt, ...) {
    if (!log_link) return;
    uint8_t buf[sizeof(struct payload_LOG) + LOG_TEXT_MAX];
    struct payload_LOG head = {.level = level, .uptime_ms = bsp_uptime_ms()};
    memcpy(buf, &head, sizeof head);
    va_list ap;
    va_start(ap, fmt);
    size_t n = fmt_vsnprintf((char *)buf + sizeof head, LOG_TEXT_MAX, fmt, ap);
    va_end(ap);
    link_send_unsolicited(log_link, MSG_LOG, buf, (uint16_t)(sizeof head + n));
}
