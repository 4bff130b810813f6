#include "state_load.h"

#include <string.h>

#include "crc.h"
#include "fmt.h"
#include "log.h"
#include "model.h"
#include "protocol.h"
#include "runtime.h"

static struct {
    bool untrusted; /* bytes of a load are in the state, and it has not completed with its CRC */
    uint32_t next;  /* the offset the next chunk must start at */
    uint32_t state_crc; /* what the load in progress claims */
    uint32_t loads;     /* completed loads since boot */
    char why[72];
} ld;

static uint32_t state_size(const rt_plan_t *p) {
    uint32_t n = 0;
    for (uint32_t t = 0; t < p->header->n_tensors; t++)
        if (p->tensors[t].storage == PLAN_STORAGE_STATE) n += p->tensors[t].size;
    return n;
}

/* Copies bytes [offset, offset + n) of the state (tensors in order) from src. */
static void write_state(const rt_plan_t *p, uint32_t offset, const uint8_t *src, uint32_t n) {
    uint32_t at = 0;
    for (uint32_t t = 0; t < p->header->n_tensors && n; t++) {
        if (p->tensors[t].storage != PLAN_STORAGE_STATE) continue;
        uint32_t size = p->tensors[t].size;
        if (offset < at + size) {
            uint32_t in = offset - at, k = size - in < n ? size - in : n;
            memcpy(p->arena + p->tensors[t].offset + in, src, k);
            src += k;
            offset += k;
            n -= k;
        }
        at += size;
    }
}

static uint32_t state_crc(const rt_plan_t *p) {
    uint32_t crc = 0;
    for (uint32_t t = 0; t < p->header->n_tensors; t++)
        if (p->tensors[t].storage == PLAN_STORAGE_STATE)
            crc = crc32_update(crc, p->arena + p->tensors[t].offset, p->tensors[t].size);
    return crc;
}

bool state_load_trusted(char *why, uint32_t n) {
    if (!ld.untrusted) return true;
    fmt_snprintf(why, n, "%s", ld.why);
    return false;
}

static void ack(link_reply_t *reply) {
    reply->type = MSG_ACK;
    reply->len = 0;
}

static void refuse(link_reply_t *reply, uint8_t code, const char *msg) {
    link_reply_error(reply, code, MSG_STATE_LOAD, msg);
}

bool state_load_handle(uint8_t type, const uint8_t *payload, uint16_t len, link_reply_t *reply) {
    if (type != MSG_STATE_LOAD) return false;
    char msg[112];
    struct payload_STATE_LOAD h;
    if (len < sizeof h) {
        fmt_snprintf(msg, sizeof msg, "STATE_LOAD payload must be at least %u bytes, got %u",
                     (unsigned)sizeof h, (unsigned)len);
        refuse(reply, ERR_BAD_LENGTH, msg);
        return true;
    }
    memcpy(&h, payload, sizeof h);
    const uint8_t *data = payload + sizeof h;
    uint32_t n = len - (uint32_t)sizeof h;
    const rt_plan_t *p = model_plan();
    uint32_t size = p ? state_size(p) : 0;
    if (!p || size == 0) {
        refuse(reply, ERR_NO_STATE, "the loaded plan has no trained state (or no plan is loaded)");
        return true;
    }
    if (h.plan_crc != p->header->crc32 || h.state_size != size) {
        fmt_snprintf(msg, sizeof msg,
                     "state for plan 0x%08x (%u B); this board runs plan 0x%08x (%u B): nothing "
                     "written",
                     (unsigned)h.plan_crc, (unsigned)h.state_size, (unsigned)p->header->crc32,
                     (unsigned)size);
        refuse(reply, ERR_STATE_MISMATCH, msg);
        return true;
    }
    if (h.offset != 0 && (!ld.untrusted || h.offset != ld.next || h.state_crc != ld.state_crc)) {
        fmt_snprintf(msg, sizeof msg,
                     "STATE_LOAD chunk at offset %u does not continue a load (next offset %u); "
                     "start again at 0",
                     (unsigned)h.offset, (unsigned)(ld.untrusted ? ld.next : 0u));
        refuse(reply, ERR_BAD_ARGUMENT, msg);
        return true;
    }
    if (n > size - h.offset) {
        fmt_snprintf(msg, sizeof msg, "STATE_LOAD chunk [%u, %u) runs past the %u-byte state",
                     (unsigned)h.offset, (unsigned)(h.offset + n), (unsigned)size);
        refuse(reply, ERR_BAD_ARGUMENT, msg);
        return true;
    }
    if (h.offset == 0) {
        ld.state_crc = h.state_crc;
        fmt_snprintf(ld.why, sizeof ld.why, "a STATE_LOAD is incomplete: load a whole state first");
    }
    ld.untrusted = true;
    write_state(p, h.offset, data, n);
    ld.next = h.offset + n;
    if (ld.next < size) {
        ack(reply);
        return true;
    }
    uint32_t crc = state_crc(p);
    if (crc != h.state_crc) {
        fmt_snprintf(ld.why, sizeof ld.why,
                     "the last STATE_LOAD was refused (CRC mismatch): load a good state");
        fmt_snprintf(msg, sizeof msg,
                     "the loaded state's CRC-32 is 0x%08x, the load claimed 0x%08x: refused, "
                     "training refused until a good load",
                     (unsigned)crc, (unsigned)h.state_crc);
        ld.next = 0;
        refuse(reply, ERR_STATE_MISMATCH, msg);
        log_warn("state: a loaded state failed its CRC check; refused");
        return true;
    }
    ld.untrusted = false;
    ld.next = 0;
    ld.loads++;
    log_info("state: loaded %u bytes of trained state, CRC-32 0x%08x", (unsigned)size,
             (unsigned)crc);
    ack(reply);
    return true;
}
