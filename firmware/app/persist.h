/* Trained state in non-volatile memory: two alternating slots, each with a header that
 * carries a sequence number, the CRC-32 of the plan the state belongs to, the data length
 * and the data's CRC-32, and where training stood when the state was saved (the board's
 * count of trained samples and the last sample's epoch), so that sample ids carry on after a
 * reset from where the saved state stands.
 *
 * Slot layout, format 2 (offsets in bytes, little-endian):
 *   0   magic "TTSV"          16  plan_crc32
 *   4   format (u16, 2)       20  length (bytes of data)
 *   6   header_size (u16)     24  data_crc32
 *   8   sequence              28  header_crc32 (of bytes 0..27, then 36..63)
 *   12  samples_trained       32  commit word "CMIT": programmed last
 *   36  last_epoch (u16)      38..63 reserved (0)
 *   64  data, `length` bytes (padded with 0xFF to a word)
 *
 * Format 1 (firmware before checkpoints) had 0 at 12, bytes 36..63 erased, and its header
 * CRC over bytes 0..27 only. Such a slot is still restored, without a count: the board's
 * sample ids start again at 0 (the boot log says so), and a session checkpoint never
 * matches it (the host compares the state's CRC too).
 *
 * A save erases the slot that does not hold the newest good copy, programs the data, then
 * the header, then the commit word: a reset at any moment leaves either the old copy or
 * both copies intact, never a half-written one that passes the checks. At boot the valid
 * slot with the highest sequence (serial-number arithmetic, so the count may wrap) whose
 * plan CRC is the loaded plan's is restored.
 *
 * Portable C with no hardware in it: the flash is reached through persist_flash_t, so the
 * host unit tests (firmware/tests/test_persist.c) run it against a RAM fake. */
#ifndef APP_PERSIST_H
#define APP_PERSIST_H

#include <stdbool.h>
#include <stdint.h>

#define PERSIST_MAGIC 0x56535454u  /* "TTSV" little-endian */
#define PERSIST_COMMIT 0x54494D43u /* "CMIT" little-endian */
#define PERSIST_FORMAT 2u          /* what a save writes */
#define PERSIST_FORMAT_OLD 1u      /* still restored: the state without a trained-sample count */
#define PERSIST_HEADER_SIZE 64u    /* data starts here: a multiple of every program unit */
#define PERSIST_SLOTS 2u
#define PERSIST_NO_SLOT 0xFFu
#define PERSIST_NO_LIMIT 0xFFFFFFFFu

/* Erase/program/read of the two slots. Program takes a word-aligned offset and a length that
 * is a multiple of 4, and (like NOR flash) can only clear bits of an erased slot. */
typedef struct {
    void *ctx;
    uint32_t slot_size;                              /* bytes per slot, header included */
    const uint8_t *(*map)(void *ctx, uint32_t slot); /* the slot's bytes, for reading */
    bool (*erase)(void *ctx, uint32_t slot);         /* every byte 0xFF afterwards */
    bool (*program)(void *ctx, uint32_t slot, uint32_t offset, const uint8_t *data, uint32_t n);
} persist_flash_t;

/* Where the state lives in RAM: count pieces, saved and restored in order. */
typedef struct {
    void *ctx;
    uint32_t count;
    uint8_t *(*piece)(void *ctx, uint32_t i, uint32_t *size);
} persist_state_t;

/* The check a slot failed, or VALID (app/persist_status.def). */
typedef enum {
#define SLOT_STATUS(name, code, short_name, doc) PERSIST_SLOT_##name = code,
#include "persist_status.def"
#undef SLOT_STATUS
} persist_slot_status_t;

/* Where training stood when the state was saved (restored with it). */
typedef struct {
    uint32_t samples_trained; /* the board's count: also the next sample id */
    uint16_t last_epoch;      /* the epoch the host gave the last trained sample */
} persist_meta_t;

typedef struct {
    uint8_t status; /* persist_slot_status_t */
    uint8_t format; /* PERSIST_FORMAT, or PERSIST_FORMAT_OLD: no meta (it reads 0) */
    uint32_t sequence;
    uint32_t length;
    uint32_t plan_crc;
    persist_meta_t meta;
} persist_slot_info_t;

typedef enum {
    PERSIST_OK = 0,
    PERSIST_ERR_TOO_LARGE, /* the state does not fit a slot */
    PERSIST_ERR_FLASH,     /* erase or program failed */
    PERSIST_ERR_VERIFY,    /* read back, the slot does not check out */
    PERSIST_ABORTED,       /* stopped on purpose after stop_after bytes (power-loss test) */
} persist_result_t;

/* Bytes of state a slot can hold. */
uint32_t persist_capacity(const persist_flash_t *f);

/* Total bytes of the state. */
uint32_t persist_state_size(const persist_state_t *s);

/* Checks one slot against the plan (plan_crc) and the state size it must have. */
persist_slot_info_t persist_check(const persist_flash_t *f, uint32_t slot, uint32_t plan_crc,
                                  uint32_t length);

/* The slot holding the newest valid copy (PERSIST_NO_SLOT if none); info[] gets both slots. */
uint32_t persist_newest(const persist_flash_t *f, uint32_t plan_crc, uint32_t length,
                        persist_slot_info_t info[PERSIST_SLOTS]);

/* True if a is a later sequence number than b (serial-number arithmetic, wraps). */
bool persist_seq_after(uint32_t a, uint32_t b);

/* Copies the newest valid copy into the state; returns its slot (info in *restored), or
 * PERSIST_NO_SLOT and leaves the state untouched. */
uint32_t persist_restore(const persist_flash_t *f, uint32_t plan_crc, const persist_state_t *s,
                         persist_slot_info_t *restored);

/* Writes the state (and meta: where training stands) to the slot not holding the newest
 * copy, with the next sequence number. stop_after: program at most this many bytes of the slot
 * (data first, then header, then the commit word) and return PERSIST_ABORTED: a power loss
 * mid-save, for tests. Otherwise PERSIST_NO_LIMIT. *slot and *written say where and what. */
persist_result_t persist_save(const persist_flash_t *f, uint32_t plan_crc, const persist_state_t *s,
                              const persist_meta_t *meta, uint32_t stop_after, uint32_t *slot,
                              persist_slot_info_t *written);

/* Erases both slots. */
bool persist_erase_all(const persist_flash_t *f);

/* The status's short name ("bad data"): for logs. */
const char *persist_slot_status_name(uint8_t status);

#endif
