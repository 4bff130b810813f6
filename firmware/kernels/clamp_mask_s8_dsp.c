/* The 1-bit clamp mask of a forward output, optimized: bit-identical with
 * clamp_mask_s8_ref_run (clamp_mask_s8.c). Bit i is act_min < y_i < act_max, i.e.
 * lo <= y_i <= hi with lo = act_min + 1 and hi = act_max - 1 clipped to int8. Four elements at
 * a time: one word of outputs, two byte-lane comparisons (dsp_ge8: SSUB8 and SEL) and their
 * AND give 0xFF per kept byte, and a multiply gathers the four bytes' low bits into a nibble
 * (x & 0x01010101 times 0x01020408 puts byte j's bit at bit 24 + j, and no other partial
 * product reaches bits 24-27 or carries into them); two nibbles make a mask byte. Ranges
 * that keep nothing (act_min >= 127, act_max <= -128, or no integer between) and the last
 * partial byte run the reference's loop. */
#include "clamp_mask_s8.h"
#include "dsp.h"
#include "grad.h"

static inline uint32_t nibble(uint32_t keep) {
    return ((keep & 0x01010101u) * 0x01020408u) >> 24;
}

void clamp_mask_s8_dsp_run(const void *params, void *const *operands, void *scratch) {
    /* Plans pack parameters unaligned; one copy keeps the loop on plain locals. */
    const struct clamp_mask_s8_params p = *(const struct clamp_mask_s8_params *)params;
    const int64_t lo = (int64_t)p.act_min + 1 < -128 ? -128 : (int64_t)p.act_min + 1;
    const int64_t hi = (int64_t)p.act_max - 1 > 127 ? 127 : (int64_t)p.act_max - 1;
    if (lo > hi || lo > 127 || hi < -128) {
        clamp_mask_s8_ref_run(params, operands, scratch);
        return;
    }
    const int8_t *y = operands[CLAMP_MASK_S8_OUTPUT];
    uint8_t *mask = operands[CLAMP_MASK_S8_MASK];
    const size_t n = p.size > 0 ? (size_t)p.size : 0u;
    const uint32_t lo4 = (uint32_t)(uint8_t)(int8_t)lo * 0x01010101u;
    const uint32_t hi4 = (uint32_t)(uint8_t)(int8_t)hi * 0x01010101u;
    const size_t whole = n >> 3;
    for (size_t k = 0; k < whole; ++k, y += 8) {
        const uint32_t a = dsp_read4(y), b = dsp_read4(y + 4);
        const uint32_t ka = dsp_ge8(a, lo4) & dsp_ge8(hi4, a);
        const uint32_t kb = dsp_ge8(b, lo4) & dsp_ge8(hi4, b);
        mask[k] = (uint8_t)(nibble(ka) | nibble(kb) << 4);
    }
    if (n & 7) {
        uint32_t byte = 0;
        for (size_t k = 0; k < (n & 7); ++k) {
            const int32_t v = y[k];
            byte |= (uint32_t)(p.act_min < v && v < p.act_max) << k;
        }
        mask[whole] = (uint8_t)byte;
    }
}

/* The selector, the runtime's entry for clamp_mask_s8 (ops.def): the DSP variant above when the
 * build enables it (KERNELS_USE_DSP(), dsp.h), else the reference (clamp_mask_s8.c). The DSP
 * variant falls back to the reference itself for the shapes it does not take. */
void clamp_mask_s8_run(const void *params, void *const *operands, void *scratch) {
    if (KERNELS_USE_DSP())
        clamp_mask_s8_dsp_run(params, operands, scratch);
    else
        clamp_mask_s8_ref_run(params, operands, scratch);
}
