#include "persist.h"

#include <string.h>

#include "crc.h"

/* The first 32 bytes of a slot; the commit word follows at offset 32, then the extension. */
struct __attribute__((packed)) persist_header {
    uint32_t magic;
    uint16_t format;
    uint16_t header_size;
    uint32_t sequence;
    uint32_t samples_trained; /* format 1: reserved (0) */
    uint32_t plan_crc;
    uint32_t length;
    uint32_t data_crc;
    uint32_t header_crc; /* CRC-32 of the 28 bytes above, then of the extension (format 2) */
};
/* Bytes 36..63 (format 2): where training stood. Programmed with the header, before the
 * commit word; format 1 left them erased. */
struct __attribute__((packed)) persist_header_ext {
    uint16_t last_epoch;
    uint16_t reserved0;
    uint32_t reserved[6];
};
#define COMMIT_OFFSET 32u
#define EXT_OFFSET 36u
#define HEADER_CRC_BYTES 28u

_Static_assert(sizeof(struct persist_header) == 32, "slot header layout");
_Static_assert(EXT_OFFSET + sizeof(struct persist_header_ext) == PERSIST_HEADER_SIZE,
               "the extension fills the header");

static uint32_t header_crc(const uint8_t *base, uint16_t format) {
    uint32_t crc = crc32_update(0, base, HEADER_CRC_BYTES);
    if (format != PERSIST_FORMAT_OLD)
        crc = crc32_update(crc, base + EXT_OFFSET, sizeof(struct persist_header_ext));
    return crc;
}

static uint32_t read_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t persist_capacity(const persist_flash_t *f) {
    return f->slot_size > PERSIST_HEADER_SIZE ? f->slot_size - PERSIST_HEADER_SIZE : 0u;
}

uint32_t persist_state_size(const persist_state_t *s) {
    uint32_t total = 0, size;
    for (uint32_t i = 0; i < s->count; i++) {
        (void)s->piece(s->ctx, i, &size);
        total += size;
    }
    return total;
}

bool persist_seq_after(uint32_t a, uint32_t b) {
    return (int32_t)(a - b) > 0;
}

static bool all_erased(const uint8_t *p, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        if (p[i] != 0xFFu) return false;
    return true;
}

persist_slot_info_t persist_check(const persist_flash_t *f, uint32_t slot, uint32_t plan_crc,
                                  uint32_t length) {
    persist_slot_info_t info = {.status = PERSIST_SLOT_BAD_HEADER};
    const uint8_t *base = f->map(f->ctx, slot);
    struct persist_header h;
    memcpy(&h, base, sizeof h);
    if (read_u32(base + COMMIT_OFFSET) != PERSIST_COMMIT) {
        info.status =
            all_erased(base, PERSIST_HEADER_SIZE) ? PERSIST_SLOT_ERASED : PERSIST_SLOT_UNCOMMITTED;
        return info;
    }
    /* The checks in order; the first that fails is the slot's status (PERSIST_INFO reports it). */
    if (h.magic != PERSIST_MAGIC) {
        info.status = PERSIST_SLOT_BAD_MAGIC;
        return info;
    }
    if ((h.format != PERSIST_FORMAT && h.format != PERSIST_FORMAT_OLD) ||
        h.header_size != PERSIST_HEADER_SIZE) {
        info.status = PERSIST_SLOT_BAD_FORMAT;
        return info;
    }
    if (header_crc(base, h.format) != h.header_crc) return info; /* PERSIST_SLOT_BAD_HEADER */
    if (h.length > persist_capacity(f)) {
        info.status = PERSIST_SLOT_BAD_LENGTH;
        return info;
    }
    info.format = (uint8_t)h.format;
    info.sequence = h.sequence;
    info.length = h.length;
    info.plan_crc = h.plan_crc;
    if (h.format != PERSIST_FORMAT_OLD) { /* format 1 has no count: it reads 0 */
        struct persist_header_ext x;
        memcpy(&x, base + EXT_OFFSET, sizeof x);
        info.meta.samples_trained = h.samples_trained;
        info.meta.last_epoch = x.last_epoch;
    }
    if (h.plan_crc != plan_crc) {
        info.status = PERSIST_SLOT_OTHER_PLAN;
        return info;
    }
    if (h.length != length) {
        info.status = PERSIST_SLOT_WRONG_LENGTH;
        return info;
    }
    if (crc32_update(0, base + PERSIST_HEADER_SIZE, h.length) != h.data_crc) {
        info.status = PERSIST_SLOT_BAD_DATA;
        return info;
    }
    info.status = PERSIST_SLOT_VALID;
    return info;
}

uint32_t persist_newest(const persist_flash_t *f, uint32_t plan_crc, uint32_t length,
                        persist_slot_info_t info[PERSIST_SLOTS]) {
    uint32_t best = PERSIST_NO_SLOT;
    for (uint32_t s = 0; s < PERSIST_SLOTS; s++) {
        info[s] = persist_check(f, s, plan_crc, length);
        if (info[s].status != PERSIST_SLOT_VALID) continue;
        if (best == PERSIST_NO_SLOT || persist_seq_after(info[s].sequence, info[best].sequence))
            best = s;
    }
    return best;
}

uint32_t persist_restore(const persist_flash_t *f, uint32_t plan_crc, const persist_state_t *s,
                         persist_slot_info_t *restored) {
    persist_slot_info_t info[PERSIST_SLOTS];
    uint32_t slot = persist_newest(f, plan_crc, persist_state_size(s), info);
    if (slot == PERSIST_NO_SLOT) return slot;
    const uint8_t *src = f->map(f->ctx, slot) + PERSIST_HEADER_SIZE;
    for (uint32_t i = 0; i < s->count; i++) {
        uint32_t size;
        uint8_t *dst = s->piece(s->ctx, i, &size);
        memcpy(dst, src, size);
        src += size;
    }
    if (restored) *restored = info[slot];
    return slot;
}

/* Programs a slot in order, word by word through a staging buffer, and stops for good once
 * `budget` bytes have been programmed (the simulated power loss). */
typedef struct {
    const persist_flash_t *f;
    uint32_t slot, offset, budget;
    uint8_t buf[256];
    uint32_t fill;
    persist_result_t result;
} writer_t;

static void program(writer_t *w, uint32_t offset, const uint8_t *data, uint32_t n) {
    if (w->result != PERSIST_OK) return;
    if (n > w->budget) {
        n = w->budget & ~3u; /* whole words only: the flash programs 32 bits at a time */
        w->result = PERSIST_ABORTED;
    }
    if (n && !w->f->program(w->f->ctx, w->slot, offset, data, n)) w->result = PERSIST_ERR_FLASH;
    w->budget -= n;
}

static void flush(writer_t *w) {
    while (w->fill & 3u) w->buf[w->fill++] = 0xFFu;
    program(w, w->offset, w->buf, w->fill);
    w->offset += w->fill;
    w->fill = 0;
}

static void put(writer_t *w, const uint8_t *data, uint32_t n) {
    while (n) {
        uint32_t k = (uint32_t)sizeof w->buf - w->fill;
        if (k > n) k = n;
        memcpy(w->buf + w->fill, data, k);
        w->fill += k;
        data += k;
        n -= k;
        if (w->fill == sizeof w->buf) flush(w);
    }
}

persist_result_t persist_save(const persist_flash_t *f, uint32_t plan_crc, const persist_state_t *s,
                              const persist_meta_t *meta, uint32_t stop_after, uint32_t *slot_out,
                              persist_slot_info_t *written) {
    uint32_t length = persist_state_size(s);
    if (length > persist_capacity(f)) return PERSIST_ERR_TOO_LARGE;
    persist_slot_info_t info[PERSIST_SLOTS];
    uint32_t newest = persist_newest(f, plan_crc, length, info);
    /* Never overwrite the newest good copy. Copies of another plan do not count: they are
     * never restored, so with no good copy the count starts again at 1 in slot 0. */
    uint32_t slot = newest != PERSIST_NO_SLOT ? 1u - newest : 0u;
    uint32_t sequence = newest != PERSIST_NO_SLOT ? info[newest].sequence + 1u : 1u;
    if (slot_out) *slot_out = slot;
    if (!f->erase(f->ctx, slot)) return PERSIST_ERR_FLASH;

    writer_t w = {.f = f, .slot = slot, .offset = PERSIST_HEADER_SIZE, .budget = stop_after};
    uint32_t crc = 0;
    for (uint32_t i = 0; i < s->count; i++) {
        uint32_t size;
        const uint8_t *p = s->piece(s->ctx, i, &size);
        crc = crc32_update(crc, p, size);
        put(&w, p, size);
    }
    flush(&w);

    /* The header as it will read back (commit word included), so its CRC is computed over
     * the very bytes the check reads. */
    uint8_t head[PERSIST_HEADER_SIZE];
    struct persist_header h = {
        .magic = PERSIST_MAGIC,
        .format = PERSIST_FORMAT,
        .header_size = PERSIST_HEADER_SIZE,
        .sequence = sequence,
        .samples_trained = meta ? meta->samples_trained : 0u,
        .plan_crc = plan_crc,
        .length = length,
        .data_crc = crc,
    };
    struct persist_header_ext x = {.last_epoch = meta ? meta->last_epoch : 0u};
    memset(head, 0xFF, sizeof head);
    memcpy(head, &h, sizeof h);
    memcpy(head + EXT_OFFSET, &x, sizeof x);
    h.header_crc = header_crc(head, PERSIST_FORMAT);
    memcpy(head, &h, sizeof h);
    program(&w, 0, head, sizeof h);
    program(&w, EXT_OFFSET, head + EXT_OFFSET, sizeof x);
    const uint32_t commit = PERSIST_COMMIT;
    program(&w, COMMIT_OFFSET, (const uint8_t *)&commit, sizeof commit);
    if (w.result != PERSIST_OK) return w.result;

    /* The state may have changed under us only if an interrupt trained: nothing does, but
     * read back anyway, so a flash that silently failed is reported, not trusted. */
    persist_slot_info_t check = persist_check(f, slot, plan_crc, length);
    if (written) *written = check;
    if (check.status != PERSIST_SLOT_VALID || check.sequence != sequence ||
        check.meta.samples_trained != h.samples_trained || check.meta.last_epoch != x.last_epoch)
        return PERSIST_ERR_VERIFY;
    return PERSIST_OK;
}

bool persist_erase_all(const persist_flash_t *f) {
    bool ok = true;
    for (uint32_t s = 0; s < PERSIST_SLOTS; s++) ok = f->erase(f->ctx, s) && ok;
    return ok;
}

const char *persist_slot_status_name(uint8_t status) {
    static const char *const names[] = {
#define SLOT_STATUS(name, code, short_name, doc) [code] = short_name,
#include "persist_status.def"
#undef SLOT_STATUS
    };
    return status < sizeof names / sizeof names[0] ? names[status] : "?";
}
