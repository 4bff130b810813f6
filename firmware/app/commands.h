/* The board's request handlers (the session layer): what each message type does. */
#ifndef APP_COMMANDS_H
#define APP_COMMANDS_H

#include "link.h"

void commands_handle(void *ctx, uint8_t type, const uint8_t *payload, uint16_t len,
                     link_reply_t *reply);

#endif
