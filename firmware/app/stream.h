/* The pending fetch of a streamed input (runtime.h: a plan input of storage STREAM, read a
 * band of rows at a time through INPUT_ROWS operators). The board never holds such an input
 * whole: a run stops right after an INPUT_ROWS operator, the host sends the bytes it names
 * (the window: [offset, offset + len) of the input), and the run goes on from the next operator.
 *
 * One fetch is pending at a time, on behalf of its owner: a training step (app/train.c: SAMPLE
 * chunks fill the window) or a generic INVOKE (app/model.c: TENSOR_WRITE fills it). Only the
 * INPUT_ROWS operator's index and the bytes received are kept; the window itself is the plan's
 * (rt_op_fetch), so this costs a few bytes of RAM. */
#ifndef APP_STREAM_H
#define APP_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "link.h"
#include "runtime.h"

enum stream_owner { STREAM_NONE = 0, STREAM_STEP = 1, STREAM_INVOKE = 2 };

/* NEED_INPUT's kind of request (payloads.def): STEP_RESULT's kinds, and INVOKE. */
enum { STREAM_KIND_INVOKE = 3 };
#define STREAM_NO_SAMPLE 0xFFFFFFFFu

/* Does the plan stream any of its inputs? (Plans that do not run exactly as before.) */
bool stream_plan_streams(const rt_plan_t *p);

/* After a run of [first, stop): if it ran operators and the last, stop - 1, is an INPUT_ROWS,
 * its window becomes the pending fetch of owner (nothing of it received yet) and true;
 * otherwise no fetch is pending and false. */
bool stream_after_run(const rt_plan_t *p, uint32_t first, uint32_t stop, uint8_t owner);

/* The pending fetch, if owner's: its window in *f and the bytes of it received in *received. */
bool stream_pending(const rt_plan_t *p, uint8_t owner, rt_fetch_t *f, uint32_t *received);

/* n bytes of input `input` at `offset` into owner's pending window. exact: they must continue
 * where the window stands (SAMPLE); otherwise they may also rewrite bytes already received
 * (TENSOR_WRITE), never leave a gap. Never past the window. On refusal writes why (naming
 * what the board takes now) and changes nothing. */
bool stream_write(const rt_plan_t *p, uint8_t owner, uint32_t input, uint32_t offset,
                  const uint8_t *data, uint32_t n, bool exact, char *why, size_t why_size);

/* Forgets the pending fetch if owner's (STREAM_NONE: whoever's). */
void stream_drop(uint8_t owner);

/* The NEED_INPUT reply for owner's pending fetch: cost the ticks this request ran, step_cost
 * those of the whole stopped run so far. */
void stream_reply_need(const rt_plan_t *p, uint8_t owner, uint32_t sample_id, uint8_t kind,
                       uint64_t cost, uint64_t step_cost, link_reply_t *reply);

#endif
