/* The 1-bit clamp mask of a forward output, optimized: bit-identical with
 * clamp_mask_s8_ref_run (clamp_mask_s8.c). Bit i is act_min < y_i < act_max, i.e.
 * lo <= y_i <= hi with lo = act_min + 1 and hi = act_max - 1 clipped to int8, i.e. (y_i - lo)
 * mod 256 <= hi - lo as unsigned bytes (a y_i below lo wraps to 256 + y_i - lo, above hi - lo
 * as y_i >= -128 and hi <= 127). Eight elements at a
 * time: per word, USUB8 (the differences), USUB8 of hi - lo against them (its GE flags: no
 * borrow) and SEL give 0x01 per kept byte (keep01); the second word's lanes shifted by 4 fill
 * the nibbles between, and one multiply gathers the eight bits into a byte (times 0x01020408,
 * bit 8j lands at 24 + j and bit 8j + 4 at 28 + j; every other partial product lands on a
 * distinct bit below 24 or beyond 31, so nothing carries into 24-31). Ranges that keep
 * nothing (act_min >= 127, act_max <= -128, or no integer between) and the last partial byte
 * run the reference's loop. */
#include "clamp_mask_s8.h"
#include "dsp.h"
#include "grad.h"

/* 0x01 in byte i where (a_i - lo_i) mod 256 <= range_i (unsigned), else 0x00. */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
static inline uint32_t keep01(uint32_t a, uint32_t lo4, uint32_t range4) {
    uint32_t r;
    __asm__(
        "usub8 %0, %1, %2\n"
        "usub8 %0, %3, %0\n" /* GE_i: range_i >= the difference; nothing may touch the flags */
        "sel %0, %4, %5"
        : "=&r"(r)
        : "r"(a), "r"(lo4), "r"(range4), "r"(0x01010101u), "r"(0u)
        : "cc");
    return r;
}
#else
static inline uint32_t keep01(uint32_t a, uint32_t lo4, uint32_t range4) {
    uint32_t r = 0;
    for (int i = 0; i < 32; i += 8)
        if ((uint8_t)((a >> i) - (lo4 >> i)) <= (uint8_t)(range4 >> i)) r |= 1u << i;
    return r;
}
#endif

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
/* Groups of 8 outputs: two words, keep01 of each (3 instructions a word), the bits to one byte
 * (ORR, MUL: the loop below's multiply); 4 groups' bytes (32 outputs) packed into one word and
 * stored once: 43 instructions per 32 outputs, where the C loop took 17 per 8 (its loop steps
 * and a byte store per group). y word-aligned (LDRD; the planner aligns tensors, so outputs
 * are), else the C loop; k[0], k[1]: keep01's lo4 and range4. n4 >= 1. */
#define CLAMP_MASK_GROUP_M7       \
    "ldrd r10, r11, [r0], #8\n"   \
    "usub8 r10, r10, r4\n"        \
    "usub8 r10, r5, r10\n"        \
    "sel r10, r6, r7\n"           \
    "usub8 r11, r11, r4\n"        \
    "usub8 r11, r5, r11\n"        \
    "sel r11, r6, r7\n"           \
    "orr r10, r10, r11, lsl #4\n" \
    "mul r10, r10, r8\n"
static __attribute__((naked, noinline)) void clamp_mask32_m7(const int8_t *y, uint8_t *mask,
                                                             uint32_t n4, const uint32_t *k) {
    (void)y, (void)mask, (void)n4, (void)k;
    __asm__ volatile(
        "push {r4-r11, lr}\n"
        "ldrd r4, r5, [r3]\n"
        "mov r6, #0x01010101\n"
        "mov r7, #0\n"
        "ldr r8, =0x01020408\n"
        "1:\n" CLAMP_MASK_GROUP_M7 "lsr r9, r10, #24\n" CLAMP_MASK_GROUP_M7
        "lsr r10, r10, #24\n"
        "orr r9, r9, r10, lsl #8\n" CLAMP_MASK_GROUP_M7
        "lsr r10, r10, #24\n"
        "orr r9, r9, r10, lsl #16\n" CLAMP_MASK_GROUP_M7
        "and r10, r10, #0xFF000000\n"
        "orr r9, r9, r10\n"
        "str r9, [r1], #4\n"
        "subs r2, r2, #1\n"
        "bne 1b\n"
        "pop {r4-r11, pc}\n"
        ".ltorg\n");
}
#undef CLAMP_MASK_GROUP_M7
#endif

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
    const uint32_t range4 = (uint32_t)(hi - lo) * 0x01010101u; /* hi - lo in [0, 254] */
    const size_t whole = n >> 3;
    size_t k = 0;
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    if (whole >= 4 && ((uintptr_t)y & 3u) == 0) { /* clamp_mask32_m7 (LDRD: word-aligned) */
        const uint32_t k2[2] = {lo4, range4};
        clamp_mask32_m7(y, mask, (uint32_t)(whole >> 2), k2);
        k = whole & ~(size_t)3;
        y += 8 * k;
    }
#endif
    for (; k < whole; ++k, y += 8) {
        const uint32_t a = dsp_read4(y), b = dsp_read4(y + 4);
        const uint32_t bits = keep01(a, lo4, range4) | keep01(b, lo4, range4) << 4;
        mask[k] = (uint8_t)((bits * 0x01020408u) >> 24);
    }
    if (n & 7) {
        uint32_t byte = 0;
        for (size_t i = 0; i < (n & 7); ++i) {
            const int32_t v = y[i];
            byte |= (uint32_t)(p.act_min < v && v < p.act_max) << i;
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
