/* Training over the link (protocol v2+): TRAIN_CONFIG, SAMPLE, TRAIN, EVAL, PREDICT and
 * TRAIN_STATUS on the plan embedded in the image (app/model.c).
 *
 * Exactly once across host sessions: the board numbers the samples it trains 0, 1, 2, ...
 * (its count of trained samples is the next id; restored with the state at boot, else 0). A TRAIN
 * of the next id trains; a TRAIN of an id already trained is answered with the result kept from
 * when it ran, and trains nothing, whichever host process asks (HELLO does not reset this); a TRAIN
 * that skips ahead is refused. A restarted host asks TRAIN_STATUS and carries on from there. */
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

/* Where training stands: the count of trained samples (the next sample id) and the epoch
 * of the last one. A SAVE keeps them with the state. */
void train_progress(uint32_t *samples_trained, uint16_t *last_epoch);

/* At boot, after the state was restored from flash: the count and epoch saved with it, so
 * sample ids carry on where the restored state stands. Results of the samples before it are
 * not kept (a TRAIN of one is refused with RESULT_GONE, nothing trained). */
void train_restore(uint32_t samples_trained, uint16_t last_epoch);

/* Forgets the loaded sample: the generic TENSOR_WRITE and INVOKE write the arena bytes it
 * lives in, so after them a TRAIN needs a fresh SAMPLE (NO_SAMPLE otherwise). */
void train_drop_sample(void);

/* A streamed sample is a step already partly run: a STATE_LOAD must not change the state under
 * it, so it drops it (it trained nothing; SAMPLE at offset 0 starts it again). Does nothing for
 * a plan without a streamed input (its loaded sample stays). */
void train_drop_stopped_step(void);

#endif
