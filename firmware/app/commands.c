#include "commands.h"

#include <string.h>

#include "bsp.h"
#include "crc.h"
#include "fmt.h"
#include "model.h"
#include "persist_cmd.h"
#include "protocol.h"
#include "state_load.h"
#include "train.h"

#ifndef BOARD_NAME
#error "BOARD_NAME comes from boards/<board>.toml through the build"
#endif
#ifndef BUILD_ID
#error "BUILD_ID comes from the build"
#endif
#ifndef FIRMWARE_DIAG
#error "FIRMWARE_DIAG (0 or 1) comes from the build: 1 only in a --diag build"
#endif

/* State of the link self-test sink (DIAG_SINK). */
static struct { uint32_t received, next_index, out_of_order, chain_crc; } sink;

static void copy_text(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memset(dst, 0, cap);
    memcpy(dst, src, n);
}

static bool expect_len(link_reply_t *reply, uint8_t type, uint16_t len, uint16_t want,
                       bool at_least, const char *name) {
    if (len == want || (at_least && len > want)) return true;
    char msg[96];
    fmt_snprintf(msg, sizeof msg, "%s payload must be %s%u bytes, got %u", name,
                 at_least ? "at least " : "", want, len);
    link_reply_error(reply, ERR_BAD_LENGTH, type, msg);
    return false;
}

static void reply_struct(link_reply_t *reply, uint8_t type, const void *data, uint16_t n) {
    memcpy(reply->payload, data, n);
    reply->type = type;
    reply->len = n;
}

static void on_hello(link_reply_t *reply, const link_t *link) {
    struct payload_HELLO_RSP r;
    memset(&r, 0, sizeof r);
    r.protocol_version = LINK_PROTOCOL_VERSION;
    r.max_payload = link->dec.capacity;
    r.max_reply = link->reply_capacity;
    r.rx_gap_ms = (uint8_t)(link->dec.gap_ms > 255u ? 255u : link->dec.gap_ms);
    r.counter_unit = bsp_counter_unit();
    r.flash_origin = bsp_flash_origin();
    r.flash_size = bsp_flash_size();
    r.ram_origin = bsp_ram_origin();
    r.ram_size = bsp_ram_size();
    r.clock_hz = BOARD_CLOCK_HZ;
    r.uptime_ms = bsp_uptime_ms();
    copy_text(r.board, sizeof r.board, BOARD_NAME);
    char id[sizeof r.build_id];
    uint32_t crc = model_plan_crc();
    if (crc)
        fmt_snprintf(id, sizeof id, "%s-%08x", BUILD_ID, (unsigned)crc);
    else
        fmt_snprintf(id, sizeof id, "%s", BUILD_ID);
    copy_text(r.build_id, sizeof r.build_id, id);
    reply_struct(reply, MSG_HELLO_RSP, &r, sizeof r);
}

static void on_info(link_reply_t *reply, const link_t *link) {
    struct payload_INFO_RSP r;
    memset(&r, 0, sizeof r);
    r.flash_origin = bsp_flash_origin();
    r.flash_size = bsp_flash_size();
    r.ram_origin = bsp_ram_origin();
    r.ram_size = bsp_ram_size();
    r.flash_used = bsp_flash_used();
    r.ram_static = bsp_ram_static();
    r.stack_size = bsp_stack_size();
    r.stack_high_water = bsp_stack_high_water();
    r.uptime_ms = bsp_uptime_ms();
    r.counter = bsp_counter_read64();
    r.counter_unit = bsp_counter_unit();
    r.rx_frames = link->stats.rx_frames;
    r.rx_bad_header = link->stats.rx_bad_header;
    r.rx_bad_crc = link->stats.rx_bad_crc;
    r.rx_too_long = link->stats.rx_too_long;
    r.rx_duplicates = link->stats.rx_duplicates;
    r.tx_frames = link->stats.tx_frames;
    r.rx_timeouts = link->stats.rx_timeouts;
    r.rx_resyncs = link->stats.rx_resyncs;
    reply_struct(reply, MSG_INFO_RSP, &r, sizeof r);
}

static void on_sink(link_reply_t *reply, const uint8_t *payload, uint16_t len) {
    struct payload_DIAG_SINK s;
    memcpy(&s, payload, sizeof s);
    if (s.index != sink.next_index) sink.out_of_order++;
    sink.next_index = s.index + 1u;
    sink.received++;
    sink.chain_crc = crc32_update(sink.chain_crc, payload, len);
    reply->type = MSG_ACK;
    reply->len = 0;
}

static void on_sink_stats(link_reply_t *reply) {
    struct payload_DIAG_SINK_STATS_RSP r = {
        .received = sink.received,
        .next_index = sink.next_index,
        .out_of_order = sink.out_of_order,
        .chain_crc = sink.chain_crc,
    };
    reply_struct(reply, MSG_DIAG_SINK_STATS_RSP, &r, sizeof r);
}

/* Recurses until the thread stack runs into its MPU guard (the bound is far beyond any
 * stack this firmware has; it only keeps the compiler from calling this infinite). */
static __attribute__((noinline)) uint32_t overflow_stack(uint32_t depth) {
    volatile uint8_t pad[256];
    pad[0] = (uint8_t)depth;
    if (depth > (1u << 24)) return pad[0];
    return overflow_stack(depth + 1u) + pad[0];
}

/* True if [a, a + 4) overlaps [lo, lo + n). */
static bool overlaps(uint32_t a, uint32_t lo, uint32_t n) {
    return a < lo + n && a + 4u > lo;
}

static void on_fault(link_reply_t *reply, const uint8_t *payload) {
    struct payload_DIAG_FAULT f;
    memcpy(&f, payload, sizeof f);
    volatile uint32_t *addr = (volatile uint32_t *)(uintptr_t)f.address;
    char msg[112];
    if (f.kind == 0) {
        /* A write is only a fault test where it cannot change what the board holds: never into
         * the firmware's own RAM (stacks, .data, .bss: the arena and the trained state) nor
         * into a persistence slot. There it would corrupt the state a later SAVE persists. */
        const uint32_t ram = bsp_ram_origin(), used = bsp_ram_static();
        const uint32_t slot_size = bsp_persist_slot_size();
        const char *what = overlaps(f.address, ram, used)
                               ? "the firmware's RAM (stacks, data, arena, state)"
                           : overlaps(f.address, bsp_persist_slot_addr(0), slot_size) ||
                                   overlaps(f.address, bsp_persist_slot_addr(1), slot_size)
                               ? "a persistence slot"
                               : 0;
        if (what) {
            fmt_snprintf(msg, sizeof msg, "refused: a write to 0x%08x would change %s",
                         (unsigned)f.address, what);
            link_reply_error(reply, ERR_BAD_ARGUMENT, MSG_DIAG_FAULT, msg);
            return;
        }
    }
    switch (f.kind) {
        case 0: *addr = 0xDEADBEEFu; break;
        case 1: (void)*addr; break;
        case 2: (void)overflow_stack(0); break;
        case 3: __asm volatile("udf #0"); break;
        default:
            link_reply_error(reply, ERR_BAD_ARGUMENT, MSG_DIAG_FAULT,
                             "DIAG_FAULT kind must be 0 (write), 1 (read), 2 (stack), 3 (udf)");
            return;
    }
    /* Reached only if the access did not fault: say what it did. */
    fmt_snprintf(msg, sizeof msg,
                 f.kind == 0
                     ? "the access did not fault: 0xDEADBEEF written to 0x%08x, outside the "
                       "firmware's RAM and slots"
                     : "the access did not fault: 0x%08x read, nothing changed",
                 (unsigned)f.address);
    link_reply_error(reply, ERR_BAD_STATE, MSG_DIAG_FAULT, msg);
}

/* Diagnostic and destructive requests: carried out only by a diagnostic build. */
static bool diag_only(uint8_t type) {
    return type == MSG_DIAG_SINK || type == MSG_DIAG_SINK_STATS || type == MSG_DIAG_SINK_RESET ||
           type == MSG_DIAG_FAULT || type == MSG_DIAG_SAVE_ABORT || type == MSG_PERSIST_ERASE;
}

void commands_handle(void *ctx, uint8_t type, const uint8_t *payload, uint16_t len,
                     link_reply_t *reply) {
    const link_t *link = (const link_t *)ctx;
    if (!FIRMWARE_DIAG && diag_only(type)) {
        char msg[112];
        fmt_snprintf(
            msg, sizeof msg,
            "request 0x%02x is diagnostic or destructive: this firmware was not built with "
            "--diag",
            type);
        link_reply_error(reply, ERR_BAD_STATE, type, msg);
        return;
    }
    switch (type) {
        case MSG_HELLO: on_hello(reply, link); break;
        case MSG_PING:
            if (len > reply->capacity) {
                link_reply_error(reply, ERR_BAD_LENGTH, type, "PING payload exceeds max_reply");
                break;
            }
            memcpy(reply->payload, payload, len);
            reply->type = MSG_PONG;
            reply->len = len;
            break;
        case MSG_INFO:
            if (expect_len(reply, type, len, 0, false, "INFO")) on_info(reply, link);
            break;
        case MSG_DIAG_SINK:
            if (expect_len(reply, type, len, sizeof(struct payload_DIAG_SINK), true, "DIAG_SINK"))
                on_sink(reply, payload, len);
            break;
        case MSG_DIAG_SINK_STATS: on_sink_stats(reply); break;
        case MSG_DIAG_SINK_RESET: memset(&sink, 0, sizeof sink); break;
        case MSG_DIAG_FAULT:
            if (expect_len(reply, type, len, sizeof(struct payload_DIAG_FAULT), false,
                           "DIAG_FAULT"))
                on_fault(reply, payload);
            break;
        default: {
            if (type == MSG_TENSOR_WRITE || type == MSG_INVOKE) train_drop_sample();
            if (type == MSG_STATE_LOAD) train_drop_stopped_step();
            if (model_handle(type, payload, len, reply)) break;
            if (train_handle(type, payload, len, link->dec.capacity, reply)) break;
            if (persist_handle(type, payload, len, reply)) break;
            if (state_load_handle(type, payload, len, reply)) break;
            char msg[64];
            fmt_snprintf(msg, sizeof msg, "unknown message type 0x%02x", type);
            link_reply_error(reply, ERR_UNKNOWN_TYPE, type, msg);
            break;
        }
    }
}
