/* The embedded model: loads the plan linked into the image at boot and serves the
 * MODEL_INFO / TENSOR_WRITE / TENSOR_READ / INVOKE requests. */
#ifndef APP_MODEL_H
#define APP_MODEL_H

#include <stdbool.h>

#include "link.h"
#include "runtime.h"

void model_init(void);

/* The loaded plan's CRC-32 (its header's), or 0 without a usable plan: HELLO appends it to
 * the build id, so a build id names the firmware AND the plan it runs. */
uint32_t model_plan_crc(void);

/* The loaded plan, or 0 without a usable one (app/train.c runs training steps on it;
 * app/persist_cmd.c saves and restores its state). */
const rt_plan_t *model_plan(void);

/* Handles a model request; false if type is not one of them. */
bool model_handle(uint8_t type, const uint8_t *payload, uint16_t len, link_reply_t *reply);

#endif
