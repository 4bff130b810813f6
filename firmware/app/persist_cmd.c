#include "persist_cmd.h"

#include <string.h>

#include "bsp.h"
#include "fmt.h"
#include "log.h"
#include "model.h"
#include "persist.h"
#include "protocol.h"
#include "runtime.h"
#include "state_load.h"
#include "train.h"

static const uint8_t *flash_map(void *ctx, uint32_t slot) {
    (void)ctx;
    return (const uint8_t *)(uintptr_t)bsp_persist_slot_addr(slot);
}
static bool flash_erase(void *ctx, uint32_t slot) {
    (void)ctx;
    return bsp_persist_erase(slot);
}
static bool flash_program(void *ctx, uint32_t slot, uint32_t offset, const uint8_t *data,
                          uint32_t n) {
    (void)ctx;
    return bsp_persist_program(slot, offset, data, n);
}

static persist_flash_t flash = {.map = flash_map, .erase = flash_erase, .program = flash_program};

/* The plan's state tensors (storage 2), in tensor order: what a slot holds. */
static uint8_t *state_piece(void *ctx, uint32_t i, uint32_t *size) {
    const rt_plan_t *p = (const rt_plan_t *)ctx;
    for (uint32_t t = 0; t < p->header->n_tensors; t++) {
        if (p->tensors[t].storage != PLAN_STORAGE_STATE) continue;
        if (i-- == 0) {
            *size = p->tensors[t].size;
            return p->arena + p->tensors[t].offset;
        }
    }
    *size = 0;
    return 0;
}

static persist_state_t plan_state(const rt_plan_t *p) {
    persist_state_t s = {.ctx = (void *)(uintptr_t)p, .count = 0, .piece = state_piece};
    if (!p) return s;
    for (uint32_t t = 0; t < p->header->n_tensors; t++)
        s.count += p->tensors[t].storage == PLAN_STORAGE_STATE;
    return s;
}

static struct {
    uint8_t restored_slot;
    uint32_t restored_sequence;
    uint32_t saves;
} boot = {.restored_slot = PERSIST_NO_SLOT};

void persist_boot(void) {
    flash.slot_size = bsp_persist_slot_size();
    const rt_plan_t *p = model_plan();
    persist_state_t s = plan_state(p);
    uint32_t size = persist_state_size(&s);
    if (!p || size == 0) return; /* nothing trains, nothing to restore */
    if (size > persist_capacity(&flash)) {
        log_warn("persist: the plan's %u bytes of state do not fit a %u-byte slot; not saved",
                 (unsigned)size, (unsigned)persist_capacity(&flash));
        return;
    }
    persist_slot_info_t info;
    uint32_t slot = persist_restore(&flash, p->header->crc32, &s, &info);
    if (slot == PERSIST_NO_SLOT) {
        persist_slot_info_t both[PERSIST_SLOTS];
        (void)persist_newest(&flash, p->header->crc32, size, both);
        log_info(
            "persist: no saved state for this plan (slot 0 %s, slot 1 %s); the plan's initial "
            "weights",
            persist_slot_status_name(both[0].status), persist_slot_status_name(both[1].status));
        return;
    }
    boot.restored_slot = (uint8_t)slot;
    boot.restored_sequence = info.sequence;
    if (info.format == PERSIST_FORMAT_OLD) {
        /* Restored without a count: what the weights hold is known, how many samples went into
         * them is not. Sample ids start at 0 again; a session's checkpoint never matches this
         * state (the host compares the state CRC), so it cannot be mistaken for one. */
        log_warn(
            "persist: restored %u bytes of trained state from slot %u, sequence %u; format 1: "
            "no sample count, ids start at 0",
            (unsigned)info.length, (unsigned)slot, (unsigned)info.sequence);
        return;
    }
    train_restore(info.meta.samples_trained, info.meta.last_epoch);
    /* At most 120 characters (a LOG frame's text). */
    log_info(
        "persist: restored %u bytes of trained state from slot %u, sequence %u; %u samples "
        "trained, epoch %u",
        (unsigned)info.length, (unsigned)slot, (unsigned)info.sequence,
        (unsigned)info.meta.samples_trained, (unsigned)info.meta.last_epoch);
}

/* Where training stands now: saved with the state. */
static persist_meta_t progress(void) {
    persist_meta_t m;
    train_progress(&m.samples_trained, &m.last_epoch);
    return m;
}

/* The loaded plan and its state, or an error reply. */
static const rt_plan_t *need_state(uint8_t type, persist_state_t *s, link_reply_t *reply) {
    const rt_plan_t *p = model_plan();
    *s = plan_state(p);
    if (!p || persist_state_size(s) == 0) {
        link_reply_error(reply, ERR_NO_STATE, type,
                         p ? "the loaded plan has no trained state (an inference plan)"
                           : "no plan is loaded: nothing to save");
        return 0;
    }
    return p;
}

static void save_error(persist_result_t r, uint8_t type, uint32_t size, link_reply_t *reply) {
    char msg[112];
    if (r == PERSIST_ERR_TOO_LARGE) {
        fmt_snprintf(msg, sizeof msg, "the plan's %u bytes of state do not fit a slot (%u bytes)",
                     (unsigned)size, (unsigned)persist_capacity(&flash));
        link_reply_error(reply, ERR_STATE_TOO_LARGE, type, msg);
    } else {
        link_reply_error(reply, ERR_FLASH_FAILED, type,
                         r == PERSIST_ERR_VERIFY ? "the slot did not read back as written"
                                                 : "the flash reported an erase or program error");
    }
}

static void on_save(link_reply_t *reply) {
    persist_state_t s;
    const rt_plan_t *p = need_state(MSG_SAVE, &s, reply);
    if (!p) return;
    char why[72];
    if (!state_load_trusted(why, sizeof why)) { /* never a partial or refused load to flash */
        link_reply_error(reply, ERR_BAD_STATE, MSG_SAVE, why);
        return;
    }
    uint64_t t0 = bsp_counter_read64();
    uint32_t slot = 0;
    persist_slot_info_t written;
    persist_meta_t meta = progress();
    persist_result_t r =
        persist_save(&flash, p->header->crc32, &s, &meta, PERSIST_NO_LIMIT, &slot, &written);
    uint64_t t1 = bsp_counter_read64();
    if (r != PERSIST_OK) {
        save_error(r, MSG_SAVE, persist_state_size(&s), reply);
        return;
    }
    boot.saves++;
    struct payload_SAVE_RSP rsp = {
        .slot = (uint8_t)slot,
        .sequence = written.sequence,
        .length = written.length,
        .cost = t1 - t0,
    };
    memcpy(reply->payload, &rsp, sizeof rsp);
    reply->type = MSG_SAVE_RSP;
    reply->len = sizeof rsp;
}

static void on_info(link_reply_t *reply) {
    const rt_plan_t *p = model_plan();
    persist_state_t s = plan_state(p);
    uint32_t size = persist_state_size(&s), crc = p ? p->header->crc32 : 0;
    persist_slot_info_t info[PERSIST_SLOTS];
    uint32_t newest = persist_newest(&flash, crc, size, info);
    struct payload_PERSIST_INFO_RSP r = {
        .slot_size = flash.slot_size,
        .state_size = size,
        .plan_crc = crc,
        .restored_slot = boot.restored_slot,
        .newest_slot = (uint8_t)newest,
        .slot0_status = info[0].status,
        .slot1_status = info[1].status,
        .restored_sequence = boot.restored_sequence,
        .slot0_sequence = info[0].sequence,
        .slot0_length = info[0].length,
        .slot1_sequence = info[1].sequence,
        .slot1_length = info[1].length,
        .saves = boot.saves,
    };
    memcpy(reply->payload, &r, sizeof r);
    reply->type = MSG_PERSIST_INFO_RSP;
    reply->len = sizeof r;
}

/* A power loss in the middle of a save: program only the first `bytes` of the new slot,
 * then reset the chip. Answers only if it refuses. */
static void on_save_abort(const uint8_t *payload, link_reply_t *reply) {
    struct payload_DIAG_SAVE_ABORT a;
    memcpy(&a, payload, sizeof a);
    persist_state_t s;
    const rt_plan_t *p = need_state(MSG_DIAG_SAVE_ABORT, &s, reply);
    if (!p) return;
    uint32_t slot = 0;
    persist_meta_t meta = progress();
    persist_result_t r = persist_save(&flash, p->header->crc32, &s, &meta, a.bytes, &slot, 0);
    if (r != PERSIST_OK && r != PERSIST_ABORTED) {
        save_error(r, MSG_DIAG_SAVE_ABORT, persist_state_size(&s), reply);
        return;
    }
    bsp_reset();
}

static bool expect_len(uint8_t type, uint16_t len, uint16_t want, link_reply_t *reply) {
    if (len == want) return true;
    char msg[64];
    fmt_snprintf(msg, sizeof msg, "payload must be %u bytes, got %u", want, len);
    link_reply_error(reply, ERR_BAD_LENGTH, type, msg);
    return false;
}

bool persist_handle(uint8_t type, const uint8_t *payload, uint16_t len, link_reply_t *reply) {
    switch (type) {
        case MSG_SAVE:
            if (expect_len(type, len, 0, reply)) on_save(reply);
            return true;
        case MSG_PERSIST_INFO:
            if (expect_len(type, len, 0, reply)) on_info(reply);
            return true;
        case MSG_PERSIST_ERASE:
            if (expect_len(type, len, 0, reply) && !persist_erase_all(&flash))
                link_reply_error(reply, ERR_FLASH_FAILED, type, "erasing a slot failed");
            return true;
        case MSG_DIAG_SAVE_ABORT:
            if (expect_len(type, len, sizeof(struct payload_DIAG_SAVE_ABORT), reply))
                on_save_abort(payload, reply);
            return true;
        case MSG_RESET:
            if (expect_len(type, len, 0, reply)) bsp_reset();
            return true;
        default: return false;
    }
}
