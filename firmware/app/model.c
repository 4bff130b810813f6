#include "model.h"

#include <string.h>

#include "bsp.h"
#include "fmt.h"
#include "log.h"
#include "protocol.h"
#include "runtime.h"
#include "stream.h"

/* From the generated plan.S of the build (pytools/build/builder.py): the plan blob in flash
 * and the arena in .bss, sized for that plan so the linker enforces the RAM limit. */
extern const uint8_t plan_blob[], plan_blob_end[];
extern uint8_t plan_arena[], plan_arena_end[];

static rt_plan_t plan;
static rt_status_t status = RT_ERR_NO_PLAN;
static char load_error[96] = "this firmware was built without a model";

void model_init(void) {
    uint32_t size = (uint32_t)(plan_blob_end - plan_blob);
    uint32_t capacity = (uint32_t)(plan_arena_end - plan_arena);
    if (size == 0) return;
    status =
        rt_plan_load(&plan, plan_blob, size, plan_arena, capacity, load_error, sizeof load_error);
    if (status == RT_OK)
        status = rt_plan_check_board(&plan, bsp_ram_size(), bsp_flash_size(), load_error,
                                     sizeof load_error);
    if (status == RT_OK) {
        load_error[0] = '\0';
        log_info("model '%s': %u ops, arena %u bytes", plan.header->model,
                 (unsigned)plan.header->n_ops, (unsigned)plan.header->arena_size);
    } else {
        log_error("model not loaded: %s", load_error);
    }
}

uint32_t model_plan_crc(void) {
    return status == RT_OK ? plan.header->crc32 : 0;
}

const rt_plan_t *model_plan(void) {
    return status == RT_OK ? &plan : 0;
}

static void on_info(link_reply_t *reply) {
    struct payload_MODEL_INFO_RSP r;
    memset(&r, 0, sizeof r);
    r.status = (uint8_t)status;
    r.plan_size = (uint32_t)(plan_blob_end - plan_blob);
    r.arena_capacity = (uint32_t)(plan_arena_end - plan_arena);
    if (status == RT_OK) {
        r.n_inputs = (uint8_t)plan.header->n_inputs;
        r.n_outputs = (uint8_t)plan.header->n_outputs;
        r.n_ops = plan.header->n_ops;
        r.n_tensors = plan.header->n_tensors;
        r.arena_size = plan.header->arena_size;
        memcpy(r.model, plan.header->model, sizeof r.model);
    }
    memcpy(reply->payload, &r, sizeof r);
    size_t n = strlen(load_error);
    memcpy(reply->payload + sizeof r, load_error, n);
    reply->type = MSG_MODEL_INFO_RSP;
    reply->len = (uint16_t)(sizeof r + n);
}

/* The tensor an io/index pair names, or an error reply. */
static bool find_tensor(uint8_t io, uint8_t index, uint32_t *tensor, link_reply_t *reply,
                        uint8_t type) {
    uint32_t count = io == 0 ? plan.header->n_inputs : plan.header->n_outputs;
    if (io > 1 || index >= count) {
        char msg[64];
        fmt_snprintf(msg, sizeof msg, "the model has no %s %u", io == 0 ? "input" : "output",
                     index);
        link_reply_error(reply, ERR_BAD_ARGUMENT, type, msg);
        return false;
    }
    *tensor = io == 0 ? rt_input_tensor(&plan, index) : rt_output_tensor(&plan, index);
    return true;
}

static bool in_range(uint32_t size, uint32_t offset, uint32_t n, link_reply_t *reply,
                     uint8_t type) {
    if (offset <= size && n <= size - offset) return true;
    char msg[96];
    fmt_snprintf(msg, sizeof msg, "tensor is %u bytes: %u bytes at offset %u do not fit",
                 (unsigned)size, (unsigned)n, (unsigned)offset);
    link_reply_error(reply, ERR_BAD_ARGUMENT, type, msg);
    return false;
}

/* A streamed input (app/stream.h) is never held whole: its bytes go only into the window the
 * board asked for (NEED_INPUT), and it cannot be read back. */
static bool is_streamed(uint8_t io, uint8_t index) {
    return io == 0 && rt_input_streamed(&plan, index);
}

static void on_write(const uint8_t *payload, uint16_t len, link_reply_t *reply) {
    struct payload_TENSOR_WRITE w;
    memcpy(&w, payload, sizeof w);
    uint32_t t, n = len - (uint32_t)sizeof w;
    if (!find_tensor(w.io, w.index, &t, reply, MSG_TENSOR_WRITE)) return;
    if (is_streamed(w.io, w.index)) {
        char why[112];
        if (!stream_write(&plan, STREAM_INVOKE, w.index, w.offset, payload + sizeof w, n, false,
                          why, sizeof why))
            link_reply_error(reply, ERR_NOT_ASKED, MSG_TENSOR_WRITE, why);
        return;
    }
    if (!in_range(rt_tensor_size(&plan, t), w.offset, n, reply, MSG_TENSOR_WRITE)) return;
    memcpy((uint8_t *)rt_tensor_data(&plan, t) + w.offset, payload + sizeof w, n);
}

static void on_read(const uint8_t *payload, link_reply_t *reply) {
    struct payload_TENSOR_READ r;
    memcpy(&r, payload, sizeof r);
    uint32_t t;
    if (!find_tensor(r.io, r.index, &t, reply, MSG_TENSOR_READ)) return;
    if (is_streamed(r.io, r.index)) {
        char msg[112];
        fmt_snprintf(msg, sizeof msg,
                     "input %u is streamed: the board holds a band of its rows at a time, never "
                     "the whole input; read the outputs",
                     r.index);
        link_reply_error(reply, ERR_BAD_ARGUMENT, MSG_TENSOR_READ, msg);
        return;
    }
    if (r.length > reply->capacity) {
        link_reply_error(reply, ERR_BAD_ARGUMENT, MSG_TENSOR_READ, "read longer than max_reply");
        return;
    }
    if (!in_range(rt_tensor_size(&plan, t), r.offset, r.length, reply, MSG_TENSOR_READ)) return;
    memcpy(reply->payload, (const uint8_t *)rt_tensor_data(&plan, t) + r.offset, r.length);
    reply->type = MSG_TENSOR_DATA;
    reply->len = (uint16_t)r.length;
}

static void on_invoke(const uint8_t *payload, uint16_t len, link_reply_t *reply) {
    struct payload_INVOKE range = {.first = 0, .end = plan.header->n_ops};
    if (len == sizeof range) memcpy(&range, payload, sizeof range);
    /* A streamed plan runs to the next INPUT_ROWS at most (stop: found before the counter
     * starts, so a segment costs what an INVOKE of its operators costs); an INVOKE that starts
     * past a fetch still missing rows runs nothing and asks for them again. */
    const bool streamed = stream_plan_streams(&plan);
    rt_fetch_t f;
    uint32_t got;
    if (streamed && stream_pending(&plan, STREAM_INVOKE, &f, &got) && got < f.len &&
        range.first > f.op) {
        stream_reply_need(&plan, STREAM_INVOKE, STREAM_NO_SAMPLE, STREAM_KIND_INVOKE, 0, 0, reply);
        return;
    }
    const uint32_t stop = streamed ? rt_fetch_stop(&plan, range.first, range.end) : range.end;
    uint64_t t0 = bsp_counter_read64();
    rt_invoke_range(&plan, range.first, stop, 0, 0);
    uint64_t t1 = bsp_counter_read64();
    if (streamed && stream_after_run(&plan, range.first, stop, STREAM_INVOKE)) {
        stream_reply_need(&plan, STREAM_INVOKE, STREAM_NO_SAMPLE, STREAM_KIND_INVOKE, t1 - t0,
                          t1 - t0, reply);
        return;
    }
    struct payload_INVOKE_RSP r = {
        .cost = t1 - t0,
        .counter_unit = bsp_counter_unit(),
        .n_ops = plan.header->n_ops,
        .stack_high_water = bsp_stack_high_water(),
    };
    memcpy(reply->payload, &r, sizeof r);
    reply->type = MSG_INVOKE_RSP;
    reply->len = sizeof r;
}

static void on_arena_read(const uint8_t *payload, link_reply_t *reply) {
    struct payload_ARENA_READ r;
    memcpy(&r, payload, sizeof r);
    if (r.length > reply->capacity) {
        link_reply_error(reply, ERR_BAD_ARGUMENT, MSG_ARENA_READ, "read longer than max_reply");
        return;
    }
    if (!in_range(plan.header->arena_size, r.offset, r.length, reply, MSG_ARENA_READ)) return;
    memcpy(reply->payload, plan.arena + r.offset, r.length);
    reply->type = MSG_TENSOR_DATA;
    reply->len = (uint16_t)r.length;
}

bool model_handle(uint8_t type, const uint8_t *payload, uint16_t len, link_reply_t *reply) {
    if (type == MSG_MODEL_INFO) {
        on_info(reply);
        return true;
    }
    if (type != MSG_TENSOR_WRITE && type != MSG_TENSOR_READ && type != MSG_INVOKE &&
        type != MSG_ARENA_READ)
        return false;
    if (status != RT_OK) {
        link_reply_error(reply, ERR_BAD_STATE, type, load_error);
        return true;
    }
    uint16_t need = type == MSG_TENSOR_WRITE  ? (uint16_t)sizeof(struct payload_TENSOR_WRITE)
                    : type == MSG_TENSOR_READ ? (uint16_t)sizeof(struct payload_TENSOR_READ)
                    : type == MSG_ARENA_READ  ? (uint16_t)sizeof(struct payload_ARENA_READ)
                                              : 0;
    int ok_len = type == MSG_TENSOR_WRITE ? len >= need
                 : type == MSG_INVOKE     ? (len == 0 || len == sizeof(struct payload_INVOKE))
                                          : len == need;
    if (!ok_len) {
        char msg[64];
        fmt_snprintf(msg, sizeof msg, "payload must be %s%u bytes, got %u",
                     type == MSG_TENSOR_WRITE ? "at least " : "", need, len);
        link_reply_error(reply, ERR_BAD_LENGTH, type, msg);
        return true;
    }
    if (type == MSG_TENSOR_WRITE) on_write(payload, len, reply);
    if (type == MSG_TENSOR_READ) on_read(payload, reply);
    if (type == MSG_INVOKE) on_invoke(payload, len, reply);
    if (type == MSG_ARENA_READ) on_arena_read(payload, reply);
    return true;
}
