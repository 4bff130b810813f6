#include "stream.h"

#include <string.h>

#include "bsp.h"
#include "fmt.h"
#include "protocol.h"

/* Zero: nothing pending (in .bss, no initialiser to keep in flash). */
static struct {
    uint16_t next; /* the operator after the INPUT_ROWS whose window is pending; 0 if none */
    uint8_t owner;
    uint32_t received; /* bytes of its window written so far */
} pending;

bool stream_plan_streams(const rt_plan_t *p) {
    for (uint32_t i = 0; i < p->header->n_inputs; i++)
        if (rt_input_streamed(p, i)) return true;
    return false;
}

bool stream_after_run(const rt_plan_t *p, uint32_t first, uint32_t stop, uint8_t owner) {
    rt_fetch_t f;
    memset(&pending, 0, sizeof pending);
    if (stop <= first || !rt_op_fetch(p, stop - 1u, &f)) return false;
    pending.next = (uint16_t)stop;
    pending.owner = owner;
    return true;
}

bool stream_pending(const rt_plan_t *p, uint8_t owner, rt_fetch_t *f, uint32_t *received) {
    if (pending.next == 0 || pending.owner != owner || !rt_op_fetch(p, pending.next - 1u, f))
        return false;
    *received = pending.received;
    return true;
}

bool stream_write(const rt_plan_t *p, uint8_t owner, uint32_t input, uint32_t offset,
                  const uint8_t *data, uint32_t n, bool exact, char *why, size_t why_size) {
    rt_fetch_t f;
    uint32_t got;
    if (!stream_pending(p, owner, &f, &got) || f.input != input) {
        fmt_snprintf(why, why_size,
                     "input %u is streamed and the board is not waiting for any of it: it asks "
                     "for its bytes itself (NEED_INPUT)",
                     (unsigned)input);
        return false;
    }
    const uint32_t at = f.offset + got, end = f.offset + f.len;
    const bool start_ok = exact ? offset == at : offset >= f.offset && offset <= at;
    if (!start_ok || n > end - offset) {
        if (got == f.len)
            fmt_snprintf(why, why_size,
                         "%u bytes at offset %u: the board has all of bytes [%u, %u) of input %u "
                         "it asked for; run on (repeat the request)",
                         (unsigned)n, (unsigned)offset, (unsigned)f.offset, (unsigned)end,
                         (unsigned)input);
        else
            fmt_snprintf(why, why_size,
                         "%u bytes at offset %u: the board takes bytes [%u, %u) of input %u now",
                         (unsigned)n, (unsigned)offset, (unsigned)at, (unsigned)end,
                         (unsigned)input);
        return false;
    }
    memcpy(f.dst + (offset - f.offset), data, n);
    if (offset + n - f.offset > got) pending.received = offset + n - f.offset;
    return true;
}

void stream_drop(uint8_t owner) {
    if (owner != STREAM_NONE && owner != pending.owner) return;
    memset(&pending, 0, sizeof pending);
}

void stream_reply_need(const rt_plan_t *p, uint8_t owner, uint32_t sample_id, uint8_t kind,
                       uint64_t cost, uint64_t step_cost, link_reply_t *reply) {
    rt_fetch_t f;
    uint32_t got = 0;
    memset(&f, 0, sizeof f);
    (void)stream_pending(p, owner, &f, &got);
    struct payload_NEED_INPUT r;
    memset(&r, 0, sizeof r);
    r.sample_id = sample_id;
    r.kind = kind;
    r.input = (uint8_t)f.input;
    r.next_op = (uint16_t)(f.op + 1u);
    r.offset = f.offset;
    r.length = f.len;
    r.received = got;
    r.cost = cost;
    r.step_cost = step_cost;
    r.stack_high_water = bsp_stack_high_water();
    memcpy(reply->payload, &r, sizeof r);
    reply->type = MSG_NEED_INPUT;
    reply->len = sizeof r;
}
