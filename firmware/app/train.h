/* Training over the link (protocol v2): TRAIN_CONFIG, SAMPLE, TRAIN, EVAL, PREDICT and
 * TRAIN_STATUS on the plan embedded in the image (app/model.c).
 *
 * Exactly once across host sessions: the board numbers the samples it trains 0, 1, 2, ...
 * (its count of trained samples is the next id). A TRAIN of the next id trains; a TRAIN of
 * an id already trained is answered with the result kept from when it ran, and trains
 * nothing, whichever host process asks (HELLO does not reset this); a TRAIN that skips
 * ahead is refused. A restarted host asks TRAIN_STATUS and carries on from there. */
#ifndef APP_TRAIN_H
#define APP_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "link.h"

/* TRAIN results kept for replays (a host that lost replies re-asks at most this far back). */
#define TRAIN_RESULTS_KEPT 32u

/* The largest learning-rate schedule factor a TRAIN may carry: a bound on typos (1e6 for
 * 1e-6), not on schedules, which stay at or below 1 in practice. */
#define TRAIN_LR_SCALE_MAX 1000u

/* Handles a training request; false if type is not one of them. max_payload: the largest
 * request payload the link accepts (SAMPLE chunks are sized from it). */
bool train_handle(uint8_t type, const uint8_t *payload, uint16_t len, uint16_t max_payload,
                  link_reply_t *reply);

/* Forgets the loaded sample: the generic TENSOR_WRITE and INVOKE write the arena bytes it
 * lives in, so after them a TRAIN needs a fresh SAMPLE (NO_SAMPLE otherwise). */
void train_drop_sample(void);

#endif
