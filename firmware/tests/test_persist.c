/* The slot logic of app/persist.c against a RAM-backed fake flash that behaves like NOR flash
 * (erase to 0xFF, program clears bits only, 32-bit words) and can lose power after N bytes. */
#include <string.h>

#include "crc.h"
#include "persist.h"
#include "unit.h"

#define SLOT 512u

typedef struct {
    uint8_t mem[2][SLOT];
    int fail_erase, fail_program;
    uint32_t programmed; /* bytes programmed so far, all slots */
} fake_t;

static const uint8_t *fake_map(void *ctx, uint32_t slot) {
    return ((fake_t *)ctx)->mem[slot];
}
static bool fake_erase(void *ctx, uint32_t slot) {
    fake_t *f = ctx;
    if (f->fail_erase) return false;
    memset(f->mem[slot], 0xFF, SLOT);
    return true;
}
static bool fake_program(void *ctx, uint32_t slot, uint32_t off, const uint8_t *d, uint32_t n) {
    fake_t *f = ctx;
    if (f->fail_program || (off & 3u) || (n & 3u) || off + n > SLOT) return false;
    for (uint32_t i = 0; i < n; i++) f->mem[slot][off + i] &= d[i];
    f->programmed += n;
    return true;
}

static fake_t fake;
static persist_flash_t flash = {&fake, SLOT, fake_map, fake_erase, fake_program};

/* The state: three pieces of odd sizes, so words straddle pieces. */
static uint8_t a[7], b[130], c[1];
static uint8_t *piece(void *ctx, uint32_t i, uint32_t *size) {
    (void)ctx;
    uint8_t *p[] = {a, b, c};
    uint32_t s[] = {sizeof a, sizeof b, sizeof c};
    *size = s[i];
    return p[i];
}
static persist_state_t state = {0, 3, piece};
#define PLAN 0x12345678u

static void fill(uint8_t v) {
    for (uint32_t i = 0; i < sizeof a; i++) a[i] = (uint8_t)(v + i);
    for (uint32_t i = 0; i < sizeof b; i++) b[i] = (uint8_t)(v * 3 + i);
    c[0] = v;
}
static uint32_t state_crc(void) {
    return crc32_update(crc32_update(crc32_update(0, a, sizeof a), b, sizeof b), c, sizeof c);
}
static void reset_fake(void) {
    memset(&fake, 0, sizeof fake);
    memset(fake.mem, 0xFF, sizeof fake.mem);
}
static persist_meta_t meta = {1234u, 3u};
static uint32_t save(uint32_t stop_after, persist_result_t want) {
    uint32_t slot = 99;
    persist_slot_info_t w;
    persist_result_t r = persist_save(&flash, PLAN, &state, &meta, stop_after, &slot, &w);
    return r == want ? slot : 99;
}
/* The header CRC of a format-2 slot: bytes 0..27, then the extension 36..63. */
static void rewrite_header_crc(uint8_t *h) {
    uint32_t hcrc = crc32_update(crc32_update(0, h, 28), h + 36, 28);
    memcpy(h + 28, &hcrc, 4);
}

TEST(persist_save_then_restore_round_trips_the_state) {
    reset_fake();
    fill(5);
    uint32_t want = state_crc();
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 0);
    fill(77);
    persist_slot_info_t info;
    CHECK_EQ(persist_restore(&flash, PLAN, &state, &info), 0);
    CHECK_EQ(state_crc(), want);
    CHECK_EQ(info.sequence, 1);
    CHECK_EQ(info.length, sizeof a + sizeof b + sizeof c);
}

TEST(persist_saves_alternate_slots_with_rising_sequence) {
    reset_fake();
    for (uint32_t k = 0; k < 5; k++) {
        fill((uint8_t)k);
        CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), k % 2);
        persist_slot_info_t info[2];
        CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), k % 2);
        CHECK_EQ(info[k % 2].sequence, k + 1);
    }
    fill(200);
    CHECK_EQ(persist_restore(&flash, PLAN, &state, 0), 0);
    fill(4);
    uint32_t want = state_crc();
    fill(200);
    CHECK_EQ(persist_restore(&flash, PLAN, &state, 0), 0);
    CHECK_EQ(state_crc(), want);
}

TEST(persist_power_loss_at_every_byte_keeps_the_last_good_copy) {
    /* For every cut point of the second save: boot restores either the first copy or (once the
     * commit word is in) the second, never anything else, and never fails to restore. */
    fill(1);
    uint32_t first = state_crc();
    fill(2);
    uint32_t second = state_crc();
    uint32_t total = 0;
    reset_fake();
    fill(2);
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 0);
    total = fake.programmed;
    for (uint32_t cut = 0; cut <= total; cut += 4) {
        reset_fake();
        fill(1);
        CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 0);
        fill(2);
        CHECK_EQ(save(cut, cut >= total ? PERSIST_OK : PERSIST_ABORTED), 1);
        fill(9);
        persist_slot_info_t info;
        CHECK_EQ(persist_restore(&flash, PLAN, &state, &info), cut >= total ? 1 : 0);
        CHECK_EQ(state_crc(), cut >= total ? second : first);
        CHECK_EQ(info.sequence, cut >= total ? 2 : 1);
    }
}

TEST(persist_torn_header_is_not_restored) {
    reset_fake();
    fill(1);
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 0);
    fill(2);
    /* data and header written, commit word missing: uncommitted */
    uint32_t data_words = (persist_state_size(&state) + 3u) & ~3u;
    CHECK_EQ(save(data_words + 32u, PERSIST_ABORTED), 1);
    persist_slot_info_t info[2];
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), 0);
    CHECK_EQ(info[1].status, PERSIST_SLOT_UNCOMMITTED);
    /* half the header: also uncommitted */
    CHECK_EQ(save(data_words + 12u, PERSIST_ABORTED), 1);
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), 0);
    CHECK_EQ(info[1].status, PERSIST_SLOT_UNCOMMITTED);
    /* data only: the header reads erased */
    CHECK_EQ(save(data_words / 2u, PERSIST_ABORTED), 1);
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), 0);
    CHECK_EQ(info[1].status, PERSIST_SLOT_ERASED);
}

TEST(persist_damaged_data_or_header_is_rejected) {
    reset_fake();
    fill(1);
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 0);
    persist_slot_info_t info[2];
    fake.mem[0][PERSIST_HEADER_SIZE + 50] ^= 0x04; /* a flipped data bit */
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), PERSIST_NO_SLOT);
    CHECK_EQ(info[0].status, PERSIST_SLOT_BAD_DATA);
    fake.mem[0][PERSIST_HEADER_SIZE + 50] ^= 0x04;
    fake.mem[0][9] ^= 0x01; /* a flipped sequence bit: the header CRC catches it */
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), PERSIST_NO_SLOT);
    CHECK_EQ(info[0].status, PERSIST_SLOT_BAD_HEADER);
    fake.mem[0][9] ^= 0x01;
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), 0);
}

TEST(persist_never_restores_another_plans_state) {
    reset_fake();
    fill(1);
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 0);
    fill(3);
    uint32_t mine = state_crc();
    persist_slot_info_t info[2];
    CHECK_EQ(persist_newest(&flash, PLAN + 1u, persist_state_size(&state), info), PERSIST_NO_SLOT);
    CHECK_EQ(info[0].status, PERSIST_SLOT_OTHER_PLAN);
    CHECK_EQ(info[0].plan_crc, PLAN);
    CHECK_EQ(persist_restore(&flash, PLAN + 1u, &state, 0), PERSIST_NO_SLOT);
    CHECK_EQ(state_crc(), mine); /* untouched */
    /* the same plan CRC with another length is not this plan's state either */
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state) - 1u, info), PERSIST_NO_SLOT);
    CHECK_EQ(info[0].status, PERSIST_SLOT_WRONG_LENGTH);
}

TEST(persist_sequence_wraps_around) {
    CHECK(persist_seq_after(0u, 0xFFFFFFFFu));
    CHECK(persist_seq_after(5u, 0xFFFFFFF0u));
    CHECK(!persist_seq_after(0xFFFFFFFFu, 0u));
    CHECK(!persist_seq_after(7u, 7u));
    /* Two real copies across the wrap: 0xFFFFFFFF in slot 0, then 0 in slot 1, then 1 in slot 0. */
    reset_fake();
    fill(1);
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 0);
    /* Give slot 0's copy sequence 0xFFFFFFFF (header CRC recomputed). */
    uint8_t *h = fake.mem[0];
    uint32_t seq = 0xFFFFFFFFu;
    memcpy(h + 8, &seq, 4);
    rewrite_header_crc(h);
    persist_slot_info_t info[2];
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), 0);
    CHECK_EQ(info[0].sequence, 0xFFFFFFFFu);
    fill(2);
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 1);
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), 1);
    CHECK_EQ(info[1].sequence, 0u);
    fill(3);
    uint32_t want = state_crc();
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 0);
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), 0);
    CHECK_EQ(info[0].sequence, 1u);
    fill(0);
    CHECK_EQ(persist_restore(&flash, PLAN, &state, 0), 0);
    CHECK_EQ(state_crc(), want);
}

TEST(persist_both_slots_bad_restores_nothing) {
    reset_fake();
    persist_slot_info_t info[2];
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), PERSIST_NO_SLOT);
    CHECK_EQ(info[0].status, PERSIST_SLOT_ERASED);
    CHECK_EQ(info[1].status, PERSIST_SLOT_ERASED);
    fill(1);
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 0);
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 1);
    fake.mem[0][PERSIST_HEADER_SIZE] ^= 1;
    fake.mem[1][4] ^= 1; /* format field */
    fill(42);
    uint32_t before = state_crc();
    CHECK_EQ(persist_restore(&flash, PLAN, &state, 0), PERSIST_NO_SLOT);
    CHECK_EQ(state_crc(), before);
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), PERSIST_NO_SLOT);
    CHECK_EQ(info[0].status, PERSIST_SLOT_BAD_DATA);
    CHECK_EQ(info[1].status, PERSIST_SLOT_BAD_FORMAT); /* the first check that fails */
    /* a zero-filled slot (never erased) is a bad header, not a copy */
    memset(fake.mem[0], 0, SLOT);
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), PERSIST_NO_SLOT);
    CHECK_EQ(info[0].status, PERSIST_SLOT_UNCOMMITTED);
    /* and a save still works, into slot 0 */
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 0);
}

TEST(persist_refuses_state_larger_than_a_slot_and_reports_flash_errors) {
    reset_fake();
    persist_flash_t small = flash;
    small.slot_size = PERSIST_HEADER_SIZE + 100u;
    uint32_t slot;
    CHECK_EQ(persist_save(&small, PLAN, &state, &meta, PERSIST_NO_LIMIT, &slot, 0),
             PERSIST_ERR_TOO_LARGE);
    CHECK_EQ(fake.programmed, 0);
    fake.fail_erase = 1;
    CHECK_EQ(persist_save(&flash, PLAN, &state, &meta, PERSIST_NO_LIMIT, &slot, 0),
             PERSIST_ERR_FLASH);
    fake.fail_erase = 0;
    fake.fail_program = 1;
    CHECK_EQ(persist_save(&flash, PLAN, &state, &meta, PERSIST_NO_LIMIT, &slot, 0),
             PERSIST_ERR_FLASH);
}

TEST(persist_keeps_the_trained_sample_count_and_epoch_with_the_state) {
    reset_fake();
    fill(5);
    meta = (persist_meta_t){77u, 2u};
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 0);
    fill(6);
    meta = (persist_meta_t){0xFFFFFFF0u, 65535u};
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 1);
    persist_slot_info_t info[2], restored;
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), 1);
    CHECK_EQ(info[0].format, PERSIST_FORMAT);
    CHECK_EQ(info[0].meta.samples_trained, 77u);
    CHECK_EQ(info[0].meta.last_epoch, 2u);
    CHECK_EQ(persist_restore(&flash, PLAN, &state, &restored), 1);
    CHECK_EQ(restored.meta.samples_trained, 0xFFFFFFF0u);
    CHECK_EQ(restored.meta.last_epoch, 65535u);
    /* The count and the epoch are under the header CRC: a flipped bit in either is refused. */
    fake.mem[1][12] ^= 0x08;
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), 0);
    CHECK_EQ(info[1].status, PERSIST_SLOT_BAD_HEADER);
    fake.mem[1][12] ^= 0x08;
    fake.mem[1][36] ^= 0x01;
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), 0);
    CHECK_EQ(info[1].status, PERSIST_SLOT_BAD_HEADER);
    fake.mem[1][36] ^= 0x01;
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), 1);
    meta = (persist_meta_t){1234u, 3u};
}

TEST(persist_a_format_1_slot_is_restored_without_a_count) {
    /* A slot written by the firmware before checkpoints: format 1, 0 at offset 12, bytes 36..63
     * erased, the header CRC over bytes 0..27 only. Built here byte by byte, as it wrote it. */
    reset_fake();
    fill(8);
    uint32_t want = state_crc();
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 0);
    uint8_t *h = fake.mem[0];
    const uint16_t one = 1;
    const uint32_t zero = 0;
    memcpy(h + 4, &one, 2);
    memcpy(h + 12, &zero, 4);
    memset(h + 36, 0xFF, 28);
    uint32_t hcrc = crc32_update(0, h, 28);
    memcpy(h + 28, &hcrc, 4);
    fill(0);
    persist_slot_info_t info;
    CHECK_EQ(persist_restore(&flash, PLAN, &state, &info), 0);
    CHECK_EQ(state_crc(), want);
    CHECK_EQ(info.format, PERSIST_FORMAT_OLD);
    CHECK_EQ(info.meta.samples_trained, 0u);
    CHECK_EQ(info.meta.last_epoch, 0u);
    /* The next save goes to slot 1 in format 2 with the next sequence, and wins. */
    fill(9);
    want = state_crc();
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 1);
    fill(0);
    CHECK_EQ(persist_restore(&flash, PLAN, &state, &info), 1);
    CHECK_EQ(state_crc(), want);
    CHECK_EQ(info.format, PERSIST_FORMAT);
    CHECK_EQ(info.sequence, 2u);
    CHECK_EQ(info.meta.samples_trained, 1234u);
    /* A format the firmware does not know is reported as such. */
    const uint16_t three = 3;
    memcpy(fake.mem[1] + 4, &three, 2);
    rewrite_header_crc(fake.mem[1]);
    persist_slot_info_t both[2];
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), both), 0);
    CHECK_EQ(both[1].status, PERSIST_SLOT_BAD_FORMAT);
}

TEST(persist_info_names_the_check_a_slot_failed) {
    /* Each header field damaged on its own gives the status of its own check, in the order
     * persist_check runs them: what PERSIST_INFO reports per slot, and `invoke pull` says. */
    reset_fake();
    fill(5);
    CHECK_EQ(save(PERSIST_NO_LIMIT, PERSIST_OK), 0);
    persist_slot_info_t info[2];
    uint8_t saved[PERSIST_HEADER_SIZE];
    memcpy(saved, fake.mem[0], sizeof saved);
    fake.mem[0][0] ^= 0x01; /* magic */
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), PERSIST_NO_SLOT);
    CHECK_EQ(info[0].status, PERSIST_SLOT_BAD_MAGIC);
    memcpy(fake.mem[0], saved, sizeof saved);
    const uint32_t huge = SLOT; /* a length larger than a slot, under a good header CRC */
    memcpy(fake.mem[0] + 20, &huge, 4);
    rewrite_header_crc(fake.mem[0]);
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), PERSIST_NO_SLOT);
    CHECK_EQ(info[0].status, PERSIST_SLOT_BAD_LENGTH);
    memcpy(fake.mem[0], saved, sizeof saved);
    CHECK_EQ(persist_newest(&flash, PLAN, persist_state_size(&state), info), 0);
    CHECK_EQ(info[0].status, PERSIST_SLOT_VALID);
    CHECK(strcmp(persist_slot_status_name(PERSIST_SLOT_BAD_MAGIC), "bad magic") == 0);
}
