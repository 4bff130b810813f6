/* STATE_LOAD: the host writes a whole trained state (the plan's storage-2 tensors, in tensor
 * order, as a SAVE keeps them) into the board, e.g. a fleet's aggregated global state.
 *
 * Each chunk carries the plan CRC-32, the state size and the state's CRC-32 it claims. A chunk
 * whose plan CRC or size is not the loaded plan's is refused before a byte is written
 * (STATE_MISMATCH). The chunks must come in order (offset 0 starts a load). When the last byte
 * has arrived the board computes the CRC-32 of its state (as TRAIN_STATUS does) and refuses a
 * mismatch (STATE_MISMATCH). From the first written byte until a load completes with the right
 * CRC, the state is not trusted: TRAIN, EVAL, PREDICT and SAVE are refused (BAD_STATE), so a
 * partly loaded or corrupted state is never trained on nor saved to flash. A reset restores the
 * last checkpoint. The count of trained samples is not changed (sample ids carry on). */
#ifndef APP_STATE_LOAD_H
#define APP_STATE_LOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "link.h"

/* Handles STATE_LOAD; false for any other type. */
bool state_load_handle(uint8_t type, const uint8_t *payload, uint16_t len, link_reply_t *reply);

/* False while the state holds a partial or refused load: nothing may train on it or save it.
 * Fills why (at most n bytes) when false. */
bool state_load_trusted(char *why, uint32_t n);

#endif
