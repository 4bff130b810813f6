#include "train.h"

#include <string.h>

#include "bsp.h"
#include "crc.h"
#include "fmt.h"
#include "grad.h"
#include "log.h"
#include "model.h"
#include "protocol.h"
#include "runtime.h"
#include "state_load.h"
#include "stream.h"

/* Operator codes, from the one list (kernels/ops.def): the loss head is found by its code. */
enum {
#define OP(code, name, kernel) TRAIN_OP_##name = (code),
#include "ops.def"
#undef OP
};

enum { KIND_TRAIN = 0, KIND_EVAL = 1, KIND_PREDICT = 2 };
#define NO_LABEL 0xFFFFu
#define NO_ID 0xFFFFFFFFu
#define LOG_EVERY 100u /* a LOG line every this many trained samples */

/* What the plan says a training step is; found once, on the first training request. */
static struct {
    bool probed;
    const rt_plan_t *plan; /* 0: no usable training plan (why says why) */
    char why[72];          /* the longest reason, 71 characters, and its NUL */
    uint32_t input, label, loss, prediction, logits;
    uint32_t loss_end; /* operators [0, loss_end) compute the loss without training */
    uint16_t classes;
    bool streamed;         /* the sample is a streamed input (app/stream.h) */
    uint32_t first_window; /* sample bytes the board takes before a step runs */
} cfg;

/* The training state: what has been trained (kept across host sessions), what is loaded. */
static struct {
    uint32_t trained;  /* samples trained into the state (restored at boot): the next sample id */
    uint32_t restored; /* the count restored at boot: results before it were never kept */
    uint16_t last_epoch;
    bool loaded;
    uint32_t loaded_id, loaded_bytes;
    uint16_t loaded_label;
    /* A streamed sample is a step in progress: SAMPLE at offset 0 runs it to its first fetch,
     * each TRAIN / EVAL / PREDICT of its id runs it on until the next one (or the end). */
    uint16_t next_op;   /* the operator it resumes at */
    uint64_t step_cost; /* counter ticks of its segments so far */
    uint32_t evals, predicts, replays, refused;
    struct payload_STEP_RESULT kept[TRAIN_RESULTS_KEPT]; /* by sample id % TRAIN_RESULTS_KEPT */
} st;

static bool probe_fail(const char *why) {
    fmt_snprintf(cfg.why, sizeof cfg.why, "%s", why);
    cfg.plan = 0;
    return false;
}

static bool tensor_is(const rt_plan_t *p, uint32_t t, uint8_t dtype, uint32_t size) {
    return p->tensors[t].dtype == dtype && p->tensors[t].size == size;
}

static uint16_t operand(const rt_plan_t *p, const struct plan_PLAN_OP *op, uint32_t k) {
    const uint8_t *b = p->operands + 2u * (op->operands_index + k);
    return (uint16_t)(b[0] | (b[1] << 8));
}

/* Is this operator a loss head (pytools/train/losses.py)? Its operand 0 is what the loss
 * reads: int8 logits (SOFTMAX_XENT) or the output layer's un-clamped int32 values. */
static bool is_loss(uint16_t code) {
    return code == TRAIN_OP_SOFTMAX_XENT || code == TRAIN_OP_SOFTMAX_XENT_S32 ||
           code == TRAIN_OP_SIGMOID_XENT_S32 || code == TRAIN_OP_MSE_S32;
}

/* A streamed sample: every INPUT_ROWS is in the forward pass (a stopped step has trained
 * nothing, and EVAL / PREDICT reach every one), the first one's window starts the sample. */
static bool probe_stream(const rt_plan_t *p) {
    rt_fetch_t f;
    bool first = true;
    for (uint32_t o = 0; o < p->header->n_ops; o++) {
        if (!rt_op_fetch(p, o, &f)) continue;
        if (o >= p->header->n_forward_ops)
            return probe_fail(
                "the embedded plan fetches streamed input rows after its forward pass");
        if (first && f.offset != 0)
            return probe_fail("the embedded plan's first streamed rows do not start the sample");
        if (first) cfg.first_window = f.len;
        first = false;
    }
    return true;
}

/* A training plan (pytools/train/autodiff.py) takes (sample, label int32[1]), gives
 * (loss float32[1], prediction int32[1]), and has one loss head (is_loss). */
static bool probe(void) {
    if (cfg.probed) return cfg.plan != 0;
    cfg.probed = true;
    const rt_plan_t *p = model_plan();
    if (!p) return probe_fail("this firmware has no usable model (MODEL_INFO says why)");
    const struct plan_PLAN_HEADER *h = p->header;
    if (h->n_inputs != 2 || h->n_outputs != 2)
        return probe_fail(
            "the embedded plan is not a training step (it needs 2 inputs, 2 outputs)");
    cfg.input = rt_input_tensor(p, 0);
    cfg.label = rt_input_tensor(p, 1);
    cfg.loss = rt_output_tensor(p, 0);
    cfg.prediction = rt_output_tensor(p, 1);
    if (!tensor_is(p, cfg.label, PLAN_DTYPE_INT32, 4) ||
        !tensor_is(p, cfg.loss, PLAN_DTYPE_FLOAT32, 4) ||
        !tensor_is(p, cfg.prediction, PLAN_DTYPE_INT32, 4))
        return probe_fail("the embedded plan's inputs and outputs are not a batch-1 training step");
    for (uint32_t o = 0; o < h->n_ops; o++) {
        const struct plan_PLAN_OP *op = &p->ops[o];
        if (!is_loss(op->code)) continue;
        cfg.logits = operand(p, op, 0);
        cfg.loss_end = o + 1u;
        const bool int8 = op->code == TRAIN_OP_SOFTMAX_XENT;
        const uint8_t dtype = int8 ? PLAN_DTYPE_INT8 : PLAN_DTYPE_INT32;
        uint32_t n = rt_tensor_size(p, cfg.logits) / (int8 ? 1u : 4u);
        if (p->tensors[cfg.logits].dtype != dtype || n == 0 || n >= NO_LABEL)
            return probe_fail("the embedded plan's logits are not [1, classes]");
        if (h->n_forward_ops == 0 || h->n_forward_ops > o)
            return probe_fail("the embedded plan's forward pass is not before its loss");
        /* The labels a sample may carry: classes; 0/1 for one sigmoid output; for MSE (its
         * target is the input) any, e.g. an anomaly flag that only evaluation reads. */
        if (op->code == TRAIN_OP_SIGMOID_XENT_S32 && n == 1) n = 2;
        if (op->code == TRAIN_OP_MSE_S32) n = NO_LABEL;
        cfg.classes = (uint16_t)n;
        cfg.first_window = p->tensors[cfg.input].size;
        cfg.streamed = rt_input_streamed(p, 0) != 0;
        if (rt_input_streamed(p, 1)) return probe_fail("the embedded plan streams its label");
        if (cfg.streamed && !probe_stream(p)) return false;
        cfg.plan = p;
        return true;
    }
    return probe_fail("the embedded plan has no loss head: it is not a training step");
}

static void refuse(link_reply_t *reply, uint8_t code, uint8_t type, const char *msg) {
    st.refused++;
    link_reply_error(reply, code, type, msg);
}

static void reply_struct(link_reply_t *reply, uint8_t type, const void *data, uint16_t n) {
    memcpy(reply->payload, data, n);
    reply->type = type;
    reply->len = n;
}

static void on_config(uint16_t max_payload, link_reply_t *reply) {
    const rt_plan_t *p = cfg.plan;
    const struct plan_PLAN_TENSOR *in = &p->tensors[cfg.input];
    struct payload_TRAIN_CONFIG_RSP r;
    memset(&r, 0, sizeof r);
    r.sample_size = in->size;
    r.sample_dtype = in->dtype;
    r.sample_ndim = in->ndim;
    r.classes = cfg.classes;
    r.dim0 = in->dim0;
    r.dim1 = in->dim1;
    r.dim2 = in->dim2;
    r.dim3 = in->dim3;
    r.sample_scale = in->scale;
    r.sample_zero_point = in->zero_point;
    r.chunk_max = (uint16_t)(max_payload - sizeof(struct payload_SAMPLE));
    r.n_ops = p->header->n_ops;
    r.n_forward = p->header->n_forward_ops;
    r.results_kept = TRAIN_RESULTS_KEPT;
    r.state_size = p->header->state_size;
    r.plan_crc = p->header->crc32;
    r.first_window = cfg.first_window;
    reply_struct(reply, MSG_TRAIN_CONFIG_RSP, &r, sizeof r);
}

static uint32_t state_crc(void) {
    const rt_plan_t *p = cfg.plan;
    uint32_t crc = 0;
    for (uint32_t t = 0; t < p->header->n_tensors; t++)
        if (p->tensors[t].storage == PLAN_STORAGE_STATE)
            crc = crc32_update(crc, p->arena + p->tensors[t].offset, p->tensors[t].size);
    return crc;
}

static void on_status(link_reply_t *reply) {
    struct payload_TRAIN_STATUS_RSP r;
    memset(&r, 0, sizeof r);
    r.samples_trained = st.trained;
    r.last_id = st.trained ? st.trained - 1u : NO_ID;
    r.last_epoch = st.last_epoch;
    r.loaded = st.loaded;
    r.loaded_complete = st.loaded && st.loaded_bytes == rt_tensor_size(cfg.plan, cfg.input);
    r.loaded_id = st.loaded ? st.loaded_id : NO_ID;
    r.loaded_bytes = st.loaded ? st.loaded_bytes : 0;
    rt_fetch_t f;
    uint32_t got;
    if (cfg.streamed) { /* where the stopped step stands: whole if it can run on */
        r.loaded_complete = st.loaded && !stream_pending(cfg.plan, STREAM_STEP, &f, &got);
        r.loaded_bytes = 0;
        if (st.loaded && stream_pending(cfg.plan, STREAM_STEP, &f, &got)) {
            r.loaded_complete = got == f.len;
            r.loaded_bytes = f.offset + got;
        }
    }
    r.evals = st.evals;
    r.predicts = st.predicts;
    r.replays = st.replays;
    r.refused = st.refused;
    r.stack_high_water = bsp_stack_high_water();
    r.state_crc = state_crc();
    reply_struct(reply, MSG_TRAIN_STATUS_RSP, &r, sizeof r);
}

static void write_label(uint8_t kind) {
    /* PREDICT runs the loss head too, for its prediction, with no label (-1: it trains
     * nothing and its loss is NaN). */
    int32_t label = kind == KIND_PREDICT ? -1 : (int32_t)st.loaded_label;
    memcpy(rt_tensor_data(cfg.plan, cfg.label), &label, sizeof label);
}

/* Does the stopped step wait for rows it does not have yet? */
static bool step_waits(void) {
    rt_fetch_t f;
    uint32_t got;
    return stream_pending(cfg.plan, STREAM_STEP, &f, &got) && got < f.len;
}

/* Runs the loaded (streamed) step on from st.next_op towards end, a segment at a time, through
 * every fetch whose rows are all here; true once it reached end with nothing missing. Only the
 * operators are timed (ran: this request's ticks; st.step_cost: the step's). */
static bool advance(uint32_t end, uint8_t kind, uint64_t *ran) {
    const rt_plan_t *p = cfg.plan;
    while (!step_waits() && st.next_op < end) {
        uint32_t stop = rt_fetch_stop(p, st.next_op, end);
        write_label(kind);
        uint64_t t0 = bsp_counter_read64();
        rt_invoke_range(p, st.next_op, stop, 0, 0);
        uint64_t t1 = bsp_counter_read64();
        *ran += t1 - t0;
        st.step_cost += t1 - t0;
        (void)stream_after_run(p, st.next_op, stop, STREAM_STEP);
        st.next_op = (uint16_t)stop;
    }
    return !step_waits();
}

/* One chunk of a streamed sample (app/stream.h): offset 0 starts the sample (dropping any
 * stopped step: it trained nothing) and runs the step to its first fetch; its bytes and every
 * later chunk's go into the window the board waits for, continuing exactly where it stands. */
static void on_sample_streamed(const struct payload_SAMPLE *s, const uint8_t *data, uint32_t n,
                               link_reply_t *reply) {
    char msg[112];
    if (s->offset == 0) {
        if (n > cfg.first_window) {
            fmt_snprintf(msg, sizeof msg,
                         "SAMPLE %u: %u bytes at offset 0, but the board takes bytes [0, %u) of a "
                         "sample first",
                         (unsigned)s->sample_id, (unsigned)n, (unsigned)cfg.first_window);
            refuse(reply, ERR_NOT_ASKED, MSG_SAMPLE, msg);
            return;
        }
        stream_drop(STREAM_STEP);
        st.loaded = true;
        st.loaded_id = s->sample_id;
        st.loaded_label = s->label;
        st.loaded_bytes = 0;
        st.next_op = 0;
        st.step_cost = 0;
        uint64_t ran = 0;
        (void)advance(cfg.plan->header->n_forward_ops, KIND_TRAIN, &ran);
    } else if (!st.loaded || st.loaded_id != s->sample_id) {
        fmt_snprintf(msg, sizeof msg,
                     "SAMPLE %u: chunk at offset %u, but sample %u has no chunk at offset 0",
                     (unsigned)s->sample_id, (unsigned)s->offset, (unsigned)s->sample_id);
        refuse(reply, ERR_SAMPLE_SIZE, MSG_SAMPLE, msg);
        return;
    } else if (s->label != st.loaded_label) {
        fmt_snprintf(msg, sizeof msg, "SAMPLE %u: label %u, but its first chunk said %u",
                     (unsigned)s->sample_id, s->label, st.loaded_label);
        refuse(reply, ERR_BAD_LABEL, MSG_SAMPLE, msg);
        return;
    }
    if (n && !stream_write(cfg.plan, STREAM_STEP, 0, s->offset, data, n, true, msg, sizeof msg)) {
        refuse(reply, ERR_NOT_ASKED, MSG_SAMPLE, msg);
        return;
    }
    reply->type = MSG_ACK;
    reply->len = 0;
}

/* One chunk of a sample. Offset 0 starts a sample (dropping any other loaded one); any
 * other offset must continue the loaded sample exactly where it stands. A refused chunk
 * changes nothing. */
static void on_sample(const uint8_t *payload, uint16_t len, link_reply_t *reply) {
    struct payload_SAMPLE s;
    memcpy(&s, payload, sizeof s);
    uint32_t n = len - (uint32_t)sizeof s;
    uint32_t size = rt_tensor_size(cfg.plan, cfg.input);
    char msg[112];
    if (s.label >= cfg.classes) {
        fmt_snprintf(msg, sizeof msg,
                     "SAMPLE %u: label %u is out of range: the plan has %u classes (0..%u)",
                     (unsigned)s.sample_id, s.label, cfg.classes, cfg.classes - 1u);
        refuse(reply, ERR_BAD_LABEL, MSG_SAMPLE, msg);
        return;
    }
    if (cfg.streamed) {
        on_sample_streamed(&s, payload + sizeof s, n, reply);
        return;
    }
    if (s.offset != 0) {
        if (!st.loaded || st.loaded_id != s.sample_id) {
            fmt_snprintf(msg, sizeof msg,
                         "SAMPLE %u: chunk at offset %u, but sample %u has no chunk at offset 0",
                         (unsigned)s.sample_id, (unsigned)s.offset, (unsigned)s.sample_id);
            refuse(reply, ERR_SAMPLE_SIZE, MSG_SAMPLE, msg);
            return;
        }
        if (s.offset != st.loaded_bytes) {
            fmt_snprintf(
                msg, sizeof msg,
                "SAMPLE %u: chunk at offset %u, but the board has %u bytes of it; the next "
                "chunk starts at %u",
                (unsigned)s.sample_id, (unsigned)s.offset, (unsigned)st.loaded_bytes,
                (unsigned)st.loaded_bytes);
            refuse(reply, ERR_SAMPLE_SIZE, MSG_SAMPLE, msg);
            return;
        }
        if (s.label != st.loaded_label) {
            fmt_snprintf(msg, sizeof msg, "SAMPLE %u: label %u, but its first chunk said %u",
                         (unsigned)s.sample_id, s.label, st.loaded_label);
            refuse(reply, ERR_BAD_LABEL, MSG_SAMPLE, msg);
            return;
        }
    }
    if (s.offset > size || n > size - s.offset) {
        fmt_snprintf(msg, sizeof msg,
                     "SAMPLE %u: a sample is %u bytes (the plan's input); %u bytes at offset %u do "
                     "not fit",
                     (unsigned)s.sample_id, (unsigned)size, (unsigned)n, (unsigned)s.offset);
        refuse(reply, ERR_SAMPLE_SIZE, MSG_SAMPLE, msg);
        return;
    }
    memcpy((uint8_t *)rt_tensor_data(cfg.plan, cfg.input) + s.offset, payload + sizeof s, n);
    st.loaded = true;
    st.loaded_id = s.sample_id;
    st.loaded_bytes = s.offset + n;
    st.loaded_label = s.label;
    reply->type = MSG_ACK;
    reply->len = 0;
}

/* The loaded sample, complete and of this id, or an error reply (NO_SAMPLE). */
static bool have_sample(uint32_t id, uint8_t type, const char *what, link_reply_t *reply) {
    uint32_t size = rt_tensor_size(cfg.plan, cfg.input);
    if (st.loaded && st.loaded_id == id && (cfg.streamed || st.loaded_bytes == size)) return true;
    char msg[112];
    if (!st.loaded)
        fmt_snprintf(msg, sizeof msg, "%s %u before its SAMPLE: no sample is loaded", what,
                     (unsigned)id);
    else if (st.loaded_id != id)
        fmt_snprintf(msg, sizeof msg, "%s %u before its SAMPLE: the loaded sample is %u", what,
                     (unsigned)id, (unsigned)st.loaded_id);
    else
        fmt_snprintf(msg, sizeof msg, "%s %u: its SAMPLE is incomplete, %u of %u bytes", what,
                     (unsigned)id, (unsigned)st.loaded_bytes, (unsigned)size);
    refuse(reply, ERR_NO_SAMPLE, type, msg);
    return false;
}

/* A step's result on the loaded sample, which it consumes: the step reuses the input's arena
 * bytes, so every TRAIN/EVAL/PREDICT needs a fresh SAMPLE. */
static void result(uint8_t kind, uint64_t cost, struct payload_STEP_RESULT *r) {
    const rt_plan_t *p = cfg.plan;
    const int32_t label = kind == KIND_PREDICT ? -1 : (int32_t)st.loaded_label;
    memset(r, 0, sizeof *r);
    r->sample_id = st.loaded_id;
    r->kind = kind;
    r->cost = cost;
    if (kind == KIND_PREDICT) {
        /* The loss head's prediction: the argmax of the (un-clamped) logits, ties to the
         * lowest class; for one sigmoid output, logit > 0. */
        int32_t pred;
        memcpy(&pred, rt_tensor_data(p, cfg.prediction), sizeof pred);
        uint32_t nan = 0x7FC00000u;
        memcpy(&r->loss, &nan, sizeof r->loss);
        r->label = NO_LABEL;
        r->prediction = (uint16_t)pred;
    } else {
        int32_t pred;
        memcpy(&r->loss, rt_tensor_data(p, cfg.loss), sizeof r->loss);
        memcpy(&pred, rt_tensor_data(p, cfg.prediction), sizeof pred);
        r->label = st.loaded_label;
        r->prediction = (uint16_t)pred;
        r->correct = pred == label;
    }
    st.loaded = false;
}

/* Runs operators [0, end) on the loaded sample and consumes it, or, streamed, runs the stopped
 * step on towards end: false if it stopped for rows again (reply: NEED_INPUT; nothing else
 * changed), true when it is done (*r: its result, the cost of all its segments). */
static bool run(uint32_t end, uint8_t kind, struct payload_STEP_RESULT *r, link_reply_t *reply) {
    if (cfg.streamed) {
        uint64_t ran = 0;
        if (!advance(end, kind, &ran)) {
            stream_reply_need(cfg.plan, STREAM_STEP, st.loaded_id, kind, ran, st.step_cost, reply);
            return false;
        }
        result(kind, st.step_cost, r);
        return true;
    }
    write_label(kind);
    uint64_t t0 = bsp_counter_read64();
    rt_invoke_range(cfg.plan, 0, end, 0, 0);
    uint64_t t1 = bsp_counter_read64();
    result(kind, t1 - t0, r);
    return true;
}

static void finish(struct payload_STEP_RESULT *r, link_reply_t *reply) {
    r->samples_trained = st.trained;
    r->stack_high_water = bsp_stack_high_water();
    reply_struct(reply, MSG_STEP_RESULT, r, sizeof *r);
}

static void on_train(const uint8_t *payload, link_reply_t *reply) {
    struct payload_TRAIN t;
    memcpy(&t, payload, sizeof t);
    char msg[112];
    if (t.sample_id < st.trained) { /* trained before: the kept result, nothing trained */
        struct payload_STEP_RESULT *k = &st.kept[t.sample_id % TRAIN_RESULTS_KEPT];
        if (t.sample_id < st.restored && k->sample_id != t.sample_id) {
            fmt_snprintf(msg, sizeof msg,
                         "sample %u was trained before the last reset (the state restored from "
                         "flash holds %u samples); its result is not kept",
                         (unsigned)t.sample_id, (unsigned)st.restored);
            refuse(reply, ERR_RESULT_GONE, MSG_TRAIN, msg);
            return;
        }
        if (k->sample_id != t.sample_id) {
            fmt_snprintf(msg, sizeof msg,
                         "sample %u was trained already (the board has trained %u); its result is "
                         "no longer kept (only the last %u are)",
                         (unsigned)t.sample_id, (unsigned)st.trained, TRAIN_RESULTS_KEPT);
            refuse(reply, ERR_RESULT_GONE, MSG_TRAIN, msg);
            return;
        }
        struct payload_STEP_RESULT r = *k;
        r.replayed = 1;
        st.replays++;
        finish(&r, reply);
        return;
    }
    if (t.sample_id > st.trained) {
        fmt_snprintf(msg, sizeof msg,
                     "TRAIN %u skips ahead: the board has trained %u samples, the next sample id "
                     "is %u",
                     (unsigned)t.sample_id, (unsigned)st.trained, (unsigned)st.trained);
        refuse(reply, ERR_OUT_OF_ORDER, MSG_TRAIN, msg);
        return;
    }
    /* Written as a negated range test so that NaN fails it too. */
    if (!(t.lr_scale >= 0.0f && t.lr_scale <= TRAIN_LR_SCALE_MAX)) {
        fmt_snprintf(msg, sizeof msg,
                     "TRAIN %u: lr_scale must be a number from 0 to %u (1: the plan's lr); "
                     "nothing was trained",
                     (unsigned)t.sample_id, (unsigned)TRAIN_LR_SCALE_MAX);
        refuse(reply, ERR_BAD_ARGUMENT, MSG_TRAIN, msg);
        return;
    }
    if (!have_sample(t.sample_id, MSG_TRAIN, "TRAIN", reply)) return;
    struct payload_STEP_RESULT r;
    /* The schedule's factor reaches every update kernel through grad_lr_scale; it is put back
     * to 1 at once so that nothing else (EVAL, PREDICT, the generic INVOKE) ever sees it. */
    grad_lr_scale = t.lr_scale;
    const bool done = run(cfg.plan->header->n_ops, KIND_TRAIN, &r, reply);
    grad_lr_scale = 1.0f;
    if (!done) return; /* stopped for streamed rows: nothing trained yet */
    r.lr_scale = t.lr_scale;
    r.epoch = t.epoch;
    st.trained++;
    st.last_epoch = t.epoch;
    r.samples_trained = st.trained;
    st.kept[t.sample_id % TRAIN_RESULTS_KEPT] = r;
    if (st.trained % LOG_EVERY == 0)
        log_info("trained %u samples (epoch %u); stack high-water %u B", (unsigned)st.trained,
                 (unsigned)t.epoch, (unsigned)bsp_stack_high_water());
    finish(&r, reply);
}

static void on_eval(uint8_t type, const uint8_t *payload, link_reply_t *reply) {
    uint32_t id;
    memcpy(&id, payload, sizeof id);
    bool eval = type == MSG_EVAL;
    if (!have_sample(id, type, eval ? "EVAL" : "PREDICT", reply)) return;
    struct payload_STEP_RESULT r;
    if (!run(cfg.loss_end, eval ? KIND_EVAL : KIND_PREDICT, &r, reply)) return;
    if (eval)
        st.evals++;
    else
        st.predicts++;
    finish(&r, reply);
}

void train_progress(uint32_t *samples_trained, uint16_t *last_epoch) {
    *samples_trained = st.trained;
    *last_epoch = st.last_epoch;
}

void train_restore(uint32_t samples_trained, uint16_t last_epoch) {
    st.trained = st.restored = samples_trained;
    st.last_epoch = last_epoch;
    /* No kept result belongs to an id before the count: a zeroed slot must not pass for
     * sample 0's. */
    for (uint32_t k = 0; k < TRAIN_RESULTS_KEPT; k++) st.kept[k].sample_id = NO_ID;
}

void train_drop_sample(void) {
    st.loaded = false;
    stream_drop(STREAM_STEP);
}

void train_drop_stopped_step(void) {
    if (cfg.plan && cfg.streamed) train_drop_sample();
}

static const char *name_of(uint8_t type) {
    switch (type) {
        case MSG_TRAIN_CONFIG: return "TRAIN_CONFIG";
        case MSG_SAMPLE: return "SAMPLE";
        case MSG_TRAIN: return "TRAIN";
        case MSG_EVAL: return "EVAL";
        case MSG_PREDICT: return "PREDICT";
        default: return "TRAIN_STATUS";
    }
}

bool train_handle(uint8_t type, const uint8_t *payload, uint16_t len, uint16_t max_payload,
                  link_reply_t *reply) {
    uint16_t need;
    bool at_least = false;
    switch (type) {
        case MSG_TRAIN_CONFIG:
        case MSG_TRAIN_STATUS: need = 0; break;
        case MSG_SAMPLE:
            need = sizeof(struct payload_SAMPLE);
            at_least = true;
            break;
        case MSG_TRAIN: need = sizeof(struct payload_TRAIN); break;
        case MSG_EVAL: need = sizeof(struct payload_EVAL); break;
        case MSG_PREDICT: need = sizeof(struct payload_PREDICT); break;
        default: return false;
    }
    if (!probe()) {
        bool no_model = model_plan() == 0;
        refuse(reply, no_model ? ERR_BAD_STATE : ERR_NOT_TRAINING, type, cfg.why);
        return true;
    }
    if (len != need && !(at_least && len > need)) {
        char msg[80];
        fmt_snprintf(msg, sizeof msg, "%s payload must be %s%u bytes, got %u", name_of(type),
                     at_least ? "at least " : "", need, len);
        refuse(reply, ERR_BAD_LENGTH, type, msg);
        return true;
    }
    char why[72];
    if ((type == MSG_TRAIN || type == MSG_EVAL || type == MSG_PREDICT) &&
        !state_load_trusted(why, sizeof why)) {
        refuse(reply, ERR_BAD_STATE, type, why); /* a partial or refused STATE_LOAD */
        return true;
    }
    switch (type) {
        case MSG_TRAIN_CONFIG: on_config(max_payload, reply); break;
        case MSG_TRAIN_STATUS: on_status(reply); break;
        case MSG_SAMPLE: on_sample(payload, len, reply); break;
        case MSG_TRAIN: on_train(payload, reply); break;
        default: on_eval(type, payload, reply); break;
    }
    return true;
}
