/* Firmware logging: LOG frames multiplexed on the serial link with everything else. */
#ifndef APP_LOG_H
#define APP_LOG_H

#include "link.h"

void log_attach(link_t *link);
void log_printf(uint8_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_info(...) log_printf(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_printf(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_printf(LOG_ERROR, __VA_ARGS__)

#endif
