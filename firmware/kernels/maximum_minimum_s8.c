/* int8 MAXIMUM / MINIMUM with broadcasting by strides. See maximum_minimum_s8.h. */
#include "maximum_minimum_s8.h"
#include "broadcast4.h"

/* One innermost run of the broadcast walk (broadcast4.h). */
static inline int8_t *max_min_row(const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                                  int32_t sa, int32_t sb, const void *ctx) {
    const struct maximum_minimum_s8_params *p = ctx;
    for (int32_t i3 = 0; i3 < n; ++i3) {
        const int8_t x = a[i3 * sa], y = b[i3 * sb];
        *out++ = p->is_maximum ? (x > y ? x : y) : (x < y ? x : y);
    }
    return out;
}

void maximum_minimum_s8_run(const void *params, void *const *operands, void *scratch) {
    (void)scratch;
    /* Plans pack parameters unaligned; one copy keeps the loops on plain locals. */
    const struct maximum_minimum_s8_params p = *(const struct maximum_minimum_s8_params *)params;
    const int8_t *in1 = operands[MAXIMUM_MINIMUM_S8_INPUT1];
    const int8_t *in2 = operands[MAXIMUM_MINIMUM_S8_INPUT2];
    int8_t *out = operands[MAXIMUM_MINIMUM_S8_OUTPUT];

    const struct broadcast4 s = broadcast4_of(&p);
    broadcast4_s8(&s, in1, in2, out, max_min_row, &p);
}

size_t maximum_minimum_s8_scratch_size(const void *params) {
    (void)params;
    return 0;
}

BROADCAST4_CHECK(maximum_minimum_s8);
