#include "runtime.h"

#include <string.h>

#include "crc.h"
#include "fmt.h"
#include "input_rows.h"
#include "kernel.h"
#include "kernel_table.h"

#define MAX_OPERANDS 16

/* The code of INPUT_ROWS, from the one list (kernels/ops.def). */
enum {
#define OP(code, name, kernel) RT_OP_##name = (code),
#include "ops.def"
#undef OP
};

static uint16_t read_u16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static rt_status_t fail(rt_status_t s, char *err, size_t n, const char *fmt, uint32_t a,
                        uint32_t b) {
    if (err && n) fmt_snprintf(err, n, fmt, (unsigned)a, (unsigned)b);
    return s;
}

/* Is [off, off + len) inside [0, limit)? Written so that no sum can overflow. */
static int inside(uint32_t off, uint32_t len, uint32_t limit) {
    return off <= limit && len <= limit - off;
}

static struct input_rows_params input_rows_params(const rt_plan_t *p,
                                                  const struct plan_PLAN_OP *op) {
    struct input_rows_params q;
    memcpy(&q, p->params + op->params_offset, sizeof q);
    return q;
}

/* An INPUT_ROWS operator's fields are inside its band and its (streamed) input. */
static int input_rows_ok(const rt_plan_t *p, const struct plan_PLAN_OP *op) {
    if (op->n_operands != INPUT_ROWS_OPERANDS ||
        op->params_size != sizeof(struct input_rows_params))
        return 0;
    const struct input_rows_params q = input_rows_params(p, op);
    const struct plan_PLAN_TENSOR *band =
        &p->tensors[read_u16(p->operands + 2u * op->operands_index)];
    if (q.input < 0 || (uint32_t)q.input >= p->header->n_inputs) return 0;
    if (!rt_input_streamed(p, (uint32_t)q.input)) return 0;
    const uint32_t size = p->tensors[rt_input_tensor(p, (uint32_t)q.input)].size;
    if (q.keep_from < 0 || q.keep_len < 0 || q.fetch_offset < 0 || q.fetch_len < 0) return 0;
    return band->storage == PLAN_STORAGE_ARENA &&
           inside((uint32_t)q.keep_from, (uint32_t)q.keep_len, band->size) &&
           inside((uint32_t)q.keep_len, (uint32_t)q.fetch_len, band->size) &&
           inside((uint32_t)q.fetch_offset, (uint32_t)q.fetch_len, size);
}

static int is_input(const rt_plan_t *p, uint32_t t) {
    for (uint32_t i = 0; i < p->header->n_inputs; i++)
        if (rt_input_tensor(p, i) == t) return 1;
    return 0;
}

rt_status_t rt_plan_load(rt_plan_t *p, const uint8_t *blob, uint32_t size, uint8_t *arena,
                         uint32_t arena_capacity, char *err, size_t n) {
    memset(p, 0, sizeof *p);
    const struct plan_PLAN_HEADER *h = (const struct plan_PLAN_HEADER *)blob;
    if (!blob || size < sizeof *h)
        return fail(RT_ERR_TRUNCATED, err, n, "plan is %u bytes, shorter than its header (%u)",
                    size, (uint32_t)sizeof *h);
    if (h->magic != PLAN_MAGIC)
        return fail(RT_ERR_MAGIC, err, n, "not a plan (magic 0x%08x)", h->magic, 0);
    if (h->version != PLAN_FORMAT_VERSION)
        return fail(RT_ERR_VERSION, err, n, "plan format v%u, this firmware runs v%u", h->version,
                    PLAN_FORMAT_VERSION);
    if (h->header_size != sizeof *h || h->total_size != size)
        return fail(RT_ERR_TRUNCATED, err, n, "plan says %u bytes, got %u", h->total_size, size);
    uint32_t crc = crc32_update(0, blob, offsetof(struct plan_PLAN_HEADER, crc32));
    static const uint8_t zero[4] = {0, 0, 0, 0};
    crc = crc32_update(crc, zero, 4);
    uint32_t after = offsetof(struct plan_PLAN_HEADER, crc32) + 4;
    crc = crc32_update(crc, blob + after, size - after);
    if (crc != h->crc32)
        return fail(RT_ERR_CRC, err, n, "plan CRC 0x%08x, expected 0x%08x", crc, h->crc32);

    const uint32_t tsz = sizeof(struct plan_PLAN_TENSOR), osz = sizeof(struct plan_PLAN_OP);
    if (!inside(h->tensors_offset, (uint32_t)h->n_tensors * tsz, size) ||
        !inside(h->ops_offset, (uint32_t)h->n_ops * osz, size) ||
        !inside(h->io_offset, 2u * ((uint32_t)h->n_inputs + h->n_outputs), size) ||
        h->operands_offset > h->io_offset || h->params_offset > h->data_offset ||
        !inside(h->data_offset, h->data_size, size))
        return fail(RT_ERR_BOUNDS, err, n, "plan sections out of bounds (size %u)", size, 0);
    if (h->arena_size > arena_capacity)
        return fail(RT_ERR_ARENA, err, n, "plan needs a %u-byte arena, this firmware has %u",
                    h->arena_size, arena_capacity);

    p->blob = blob;
    p->blob_size = size;
    p->header = h;
    p->tensors = (const struct plan_PLAN_TENSOR *)(blob + h->tensors_offset);
    p->ops = (const struct plan_PLAN_OP *)(blob + h->ops_offset);
    p->operands = blob + h->operands_offset;
    p->n_operand_ids = (h->io_offset - h->operands_offset) / 2u;
    p->io = blob + h->io_offset;
    p->params = blob + h->params_offset;
    p->params_size = h->data_offset - h->params_offset;
    p->data = blob + h->data_offset;
    p->arena = arena;

    for (uint32_t t = 0; t < h->n_tensors; t++) {
        const struct plan_PLAN_TENSOR *T = &p->tensors[t];
        if (T->storage == PLAN_STORAGE_STREAM) {
            if (T->offset != 0)
                return fail(RT_ERR_BOUNDS, err, n, "streamed tensor %u has offset %u (must be 0)",
                            t, T->offset);
            continue; /* no bytes of its own: INPUT_ROWS operators bring them */
        }
        uint32_t limit = T->storage == PLAN_STORAGE_CONSTANT ? h->data_size : h->arena_size;
        if (T->storage > PLAN_STORAGE_STATE || !inside(T->offset, T->size, limit) ||
            (T->storage == PLAN_STORAGE_STATE && !inside(T->init_offset, T->size, h->data_size)))
            return fail(RT_ERR_BOUNDS, err, n, "tensor %u at offset %u is out of bounds", t,
                        T->offset);
    }
    if (h->n_forward_ops > h->n_ops)
        return fail(RT_ERR_BOUNDS, err, n, "%u forward operators of %u", h->n_forward_ops,
                    h->n_ops);
    for (uint32_t i = 0; i < (uint32_t)h->n_inputs + h->n_outputs; i++)
        if (read_u16(p->io + 2 * i) >= h->n_tensors)
            return fail(RT_ERR_BOUNDS, err, n, "input/output %u names tensor %u", i,
                        read_u16(p->io + 2 * i));
    /* Only an input streams: an output, or a tensor no one writes, would have no bytes. */
    for (uint32_t i = 0; i < h->n_outputs; i++)
        if (p->tensors[rt_output_tensor(p, i)].storage == PLAN_STORAGE_STREAM)
            return fail(RT_ERR_BOUNDS, err, n, "output %u (tensor %u) is streamed", i,
                        rt_output_tensor(p, i));
    for (uint32_t t = 0; t < h->n_tensors; t++)
        if (p->tensors[t].storage == PLAN_STORAGE_STREAM && !is_input(p, t))
            return fail(RT_ERR_BOUNDS, err, n, "tensor %u is streamed but is no input of the plan",
                        t, 0);
    for (uint32_t o = 0; o < h->n_ops; o++) {
        const struct plan_PLAN_OP *op = &p->ops[o];
        if (op->code >= rt_kernels.count || !rt_kernels.run[op->code])
            return fail(RT_ERR_OP, err, n,
                        "operator %u has code %u, which this firmware has no kernel for", o,
                        op->code);
        if (op->n_operands > MAX_OPERANDS ||
            !inside(op->operands_index, op->n_operands, p->n_operand_ids) ||
            !inside(op->params_offset, op->params_size, p->params_size))
            return fail(RT_ERR_BOUNDS, err, n, "operator %u: operands or parameters out of bounds",
                        o, 0);
        for (uint32_t k = 0; k < op->n_operands; k++)
            if (read_u16(p->operands + 2u * (op->operands_index + k)) >= h->n_tensors)
                return fail(RT_ERR_BOUNDS, err, n, "operator %u: operand %u names no tensor", o, k);
        if (op->scratch_tensor != PLAN_NO_TENSOR &&
            (op->scratch_tensor >= h->n_tensors ||
             p->tensors[op->scratch_tensor].storage == PLAN_STORAGE_STREAM))
            return fail(RT_ERR_BOUNDS, err, n, "operator %u: scratch names no arena tensor", o, 0);
        for (uint32_t k = 0; k < op->n_operands; k++)
            if (p->tensors[read_u16(p->operands + 2u * (op->operands_index + k))].storage ==
                PLAN_STORAGE_STREAM)
                return fail(RT_ERR_BOUNDS, err, n,
                            "operator %u reads a streamed input directly (operand %u)", o, k);
        if (op->code == RT_OP_INPUT_ROWS && !input_rows_ok(p, op))
            return fail(RT_ERR_BOUNDS, err, n,
                        "operator %u (INPUT_ROWS): its rows do not fit its band or its input", o,
                        0);
    }

    rt_reset_state(p);
    return RT_OK;
}

void rt_reset_state(const rt_plan_t *p) {
    for (uint32_t t = 0; t < p->header->n_tensors; t++) {
        const struct plan_PLAN_TENSOR *T = &p->tensors[t];
        if (T->storage == PLAN_STORAGE_STATE)
            memcpy(p->arena + T->offset, p->data + T->init_offset, T->size);
    }
}

rt_status_t rt_plan_check_board(const rt_plan_t *p, uint32_t ram_size, uint32_t flash_size,
                                char *err, size_t n) {
    if (!p->header) return fail(RT_ERR_NO_PLAN, err, n, "no plan loaded", 0, 0);
    if (p->header->ram_limit != ram_size || p->header->flash_limit != flash_size)
        return fail(RT_ERR_BOARD, err, n, "plan compiled for %u bytes of RAM, this board has %u",
                    p->header->ram_limit, ram_size);
    return RT_OK;
}

void *rt_tensor_data(const rt_plan_t *p, uint32_t t) {
    const struct plan_PLAN_TENSOR *T = &p->tensors[t];
    if (T->storage == PLAN_STORAGE_STREAM) return 0;
    const uint8_t *base = T->storage == PLAN_STORAGE_CONSTANT ? p->data : p->arena;
    return (void *)(uintptr_t)(base + T->offset);
}

uint32_t rt_tensor_size(const rt_plan_t *p, uint32_t t) {
    return p->tensors[t].size;
}
uint32_t rt_input_tensor(const rt_plan_t *p, uint32_t i) {
    return read_u16(p->io + 2 * i);
}
uint32_t rt_output_tensor(const rt_plan_t *p, uint32_t i) {
    return read_u16(p->io + 2 * (p->header->n_inputs + i));
}

void rt_invoke(const rt_plan_t *p, rt_op_hook_fn hook, void *ctx) {
    rt_invoke_range(p, 0, p->header->n_ops, hook, ctx);
}

void rt_invoke_range(const rt_plan_t *p, uint32_t first, uint32_t end, rt_op_hook_fn hook,
                     void *ctx) {
    void *operands[MAX_OPERANDS];
    if (end > p->header->n_ops) end = p->header->n_ops;
    for (uint32_t o = first; o < end; o++) {
        const struct plan_PLAN_OP *op = &p->ops[o];
        if (hook) hook(ctx, o, 0);
        if (!(op->flags & PLAN_OP_FLAG_NOOP)) {
            for (uint32_t k = 0; k < op->n_operands; k++)
                operands[k] =
                    rt_tensor_data(p, read_u16(p->operands + 2u * (op->operands_index + k)));
            void *scratch =
                op->scratch_tensor == PLAN_NO_TENSOR ? 0 : rt_tensor_data(p, op->scratch_tensor);
            rt_kernels.run[op->code](p->params + op->params_offset, operands, scratch);
        }
        if (hook) hook(ctx, o, 1);
    }
}

int rt_input_streamed(const rt_plan_t *p, uint32_t i) {
    return i < p->header->n_inputs &&
           p->tensors[rt_input_tensor(p, i)].storage == PLAN_STORAGE_STREAM;
}

int rt_op_fetch(const rt_plan_t *p, uint32_t o, rt_fetch_t *f) {
    if (o >= p->header->n_ops || p->ops[o].code != RT_OP_INPUT_ROWS) return 0;
    const struct plan_PLAN_OP *op = &p->ops[o];
    const struct input_rows_params q = input_rows_params(p, op);
    f->op = o;
    f->input = (uint32_t)q.input;
    f->offset = (uint32_t)q.fetch_offset;
    f->len = (uint32_t)q.fetch_len;
    f->dst =
        (uint8_t *)rt_tensor_data(p, read_u16(p->operands + 2u * op->operands_index)) + q.keep_len;
    return 1;
}

uint32_t rt_fetch_stop(const rt_plan_t *p, uint32_t first, uint32_t end) {
    if (end > p->header->n_ops) end = p->header->n_ops;
    for (uint32_t o = first; o < end; o++)
        if (p->ops[o].code == RT_OP_INPUT_ROWS) return o + 1u;
    return end < first ? first : end;
}

uint32_t rt_invoke_to_fetch(const rt_plan_t *p, uint32_t first, uint32_t end, rt_op_hook_fn hook,
                            void *ctx) {
    const uint32_t stop = rt_fetch_stop(p, first, end);
    rt_invoke_range(p, first, stop, hook, ctx);
    return stop;
}

size_t rt_plan_struct_size(void) {
    return sizeof(rt_plan_t);
}

const char *rt_status_name(rt_status_t s) {
    static const char *const names[] = {"ok",    "truncated", "bad magic",  "version",
                                        "crc",   "bounds",    "unknown op", "arena too small",
                                        "board", "no plan"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}
