/* Executes a compiled plan: the static schedule the Python compiler produced. The runtime
 * decides nothing a compiler could; it checks the plan, resolves tensor addresses and calls
 * each operator's kernel in order. The same C runs on the board and in the host twin. */
#ifndef RUNTIME_RUNTIME_H
#define RUNTIME_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "plan_format.h"

typedef enum {
    RT_OK = 0,
    RT_ERR_TRUNCATED, /* shorter than its header says */
    RT_ERR_MAGIC,     /* not a plan */
    RT_ERR_VERSION,   /* compiled for another plan format version */
    RT_ERR_CRC,       /* damaged */
    RT_ERR_BOUNDS,    /* an offset, size or id points outside the plan or the arena */
    RT_ERR_OP,        /* an operator this firmware has no kernel for */
    RT_ERR_ARENA,     /* needs more arena than this firmware reserved */
    RT_ERR_BOARD,     /* compiled for a board with other memory limits */
    RT_ERR_NO_PLAN,   /* nothing loaded */
} rt_status_t;

typedef struct {
    const uint8_t *blob;
    uint32_t blob_size;
    const struct plan_PLAN_HEADER *header;
    const struct plan_PLAN_TENSOR *tensors;
    const struct plan_PLAN_OP *ops;
    const uint8_t *operands; /* u16 ids, read byte-wise: no alignment assumed */
    uint32_t n_operand_ids;
    const uint8_t *io;
    const uint8_t *params;
    uint32_t params_size;
    const uint8_t *data;
    uint8_t *arena;
} rt_plan_t;

/* Checks every field of the blob before anything runs; on failure writes why into err. */
rt_status_t rt_plan_load(rt_plan_t *p, const uint8_t *blob, uint32_t size, uint8_t *arena,
                         uint32_t arena_capacity, char *err, size_t err_size);

/* Refuses a plan compiled for other memory limits than this board's. */
rt_status_t rt_plan_check_board(const rt_plan_t *p, uint32_t ram_size, uint32_t flash_size,
                                char *err, size_t err_size);

/* Runs every operator in order. Optional hook: called before and after each operator
 * (phase 0 / 1), e.g. to read a cycle counter per layer. */
typedef void (*rt_op_hook_fn)(void *ctx, uint32_t op_index, int phase);
void rt_invoke(const rt_plan_t *p, rt_op_hook_fn hook, void *hook_ctx);

/* Runs operators [first, end): e.g. only the forward pass of a training plan (predict). */
void rt_invoke_range(const rt_plan_t *p, uint32_t first, uint32_t end, rt_op_hook_fn hook,
                     void *ctx);

/* A streamed input (storage PLAN_STORAGE_STREAM) is read a band of rows at a time: each
 * INPUT_ROWS operator moves the rows the next band keeps to the band's start, and then the
 * input's bytes [offset, offset + len) must be written at dst before the next operator runs.
 * Where they come from is the caller's business (the link's SAMPLE or TENSOR_WRITE on the
 * board, the whole sample in the host twin). */
typedef struct {
    uint32_t op;     /* the INPUT_ROWS operator */
    uint32_t input;  /* which plan input (index among the inputs) */
    uint32_t offset; /* the bytes of the whole input it asks for */
    uint32_t len;
    uint8_t *dst; /* where they go: inside the band, after the kept rows */
} rt_fetch_t;

/* Is operator o an INPUT_ROWS? If so, describes the rows it asks for in *f. */
int rt_op_fetch(const rt_plan_t *p, uint32_t o, rt_fetch_t *f);

/* Where a run of operators [first, end) must stop: right after the first INPUT_ROWS in the
 * range (its rows are then still to be written), or end. (The board finds it before its
 * counter starts, so a run's measured cost holds only its operators.) */
uint32_t rt_fetch_stop(const rt_plan_t *p, uint32_t first, uint32_t end);

/* Runs operators [first, end) like rt_invoke_range, but stops right after an INPUT_ROWS
 * operator: returns the next operator to run (end when the range is done). Where it stopped
 * early, rt_op_fetch(p, returned - 1, &f) says which rows to write before running on from
 * there. rt_invoke_range does not stop: use this for a plan with a streamed input. */
uint32_t rt_invoke_to_fetch(const rt_plan_t *p, uint32_t first, uint32_t end, rt_op_hook_fn hook,
                            void *ctx);

/* Does the plan stream input i (storage PLAN_STORAGE_STREAM)? Its bytes then come through
 * INPUT_ROWS operators only: rt_tensor_data gives 0 for it. */
int rt_input_streamed(const rt_plan_t *p, uint32_t i);

/* Puts every state tensor (trained weights, biases, RNG) back to the plan's initial values. */
void rt_reset_state(const rt_plan_t *p);

/* A tensor's bytes (arena or constant data; 0 for a streamed input) and size; io index into
 * inputs/outputs. */
void *rt_tensor_data(const rt_plan_t *p, uint32_t tensor);
uint32_t rt_tensor_size(const rt_plan_t *p, uint32_t tensor);
uint32_t rt_input_tensor(const rt_plan_t *p, uint32_t i);
uint32_t rt_output_tensor(const rt_plan_t *p, uint32_t i);

/* Size of rt_plan_t, for callers (the host twin) that allocate it opaquely. */
size_t rt_plan_struct_size(void);

const char *rt_status_name(rt_status_t s);

#endif
