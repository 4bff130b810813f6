/* Persistence of the trained state on the board: restore at boot, and the SAVE,
 * PERSIST_INFO, PERSIST_ERASE, DIAG_SAVE_ABORT and RESET requests (app/persist.c does the
 * slot logic; bsp.h reaches the flash). */
#ifndef APP_PERSIST_CMD_H
#define APP_PERSIST_CMD_H

#include <stdbool.h>
#include <stdint.h>

#include "link.h"

/* After model_init(): restores the newest valid copy of this plan's state, and logs what. */
void persist_boot(void);

/* Handles a persistence request; false if type is not one of them. */
bool persist_handle(uint8_t type, const uint8_t *payload, uint16_t len, link_reply_t *reply);

#endif
