/* conv2d_s8's narrow 1x1 variant: pointwise convolutions over few input channels.
 * Bit-identical with conv2d_s8_ref_run (see conv2d_s8_dsp.c). */
#include "conv2d_s8_dsp.h"

/* The narrow path: pointwise convolutions over few input channels, 8 per pass (MobileNetV2's
 * expansions 8 -> 48 and 16 -> 96 and projections 16 -> 8 in the patched first stages, and
 * the projections to 8-24 channels). With 8 or 16 MACs per output, the GEMM path's per-output
 * requantization, stores and per-pair setup weigh as much as the MACs (0.42-0.50
 * MAC/instruction). Here each output channel has records packed once per call, and each
 * output pixel keeps 8 widened input channels in 4 registers while the records stream past:
 *   - the last pass (input channels input_c - 8 .. input_c - 1): 8 words per output channel
 *     (its 8 filter taps widened to 16-bit lanes in SXTB16 order and doubled, the accumulator's
 *     start, then rq4's M, s1 and C, conv2d_s8_dsp.h); per output one LDM of 8 registers, 4
 *     SMLAD, rq4's 4 instructions and one STRB: 10 instructions for 8 MACs (11 with
 *     requant_fast.h's 5; 9 with rq3's 3 where the output offset is -128, rq3_ok: ReLU6
 *     expansions);
 *   - each earlier pass (input_c > 8): 5 words per output channel (8 taps and the
 *     accumulator's start: the bias for the first pass, else the partial sum the previous
 *     pass stored there); per output LDM, 4 SMLAD and a STR of the partial sum into the
 *     next pass's record: 6 instructions for 8 MACs.
 * The taps are doubled, and so is the bias, so every accumulator holds twice the reference's
 * sum (exactly: the layer's sums stay below 2^30, rq4_bias_limit), which rq4 takes.
 * The records live in the operator's scratch (the largest chunk's, planned in the arena),
 * at most NARROW_BUF_WORDS, hence the limit on output_c * (5 * passes + 3) words. Only for the full
 * activation range and channels all on rq4's path (rq4_ok), output channels a multiple of 4
 * (the loops are unrolled 8 times, entered halfway when output_c % 8 == 4); the rest takes the GEMM
 * path. The partial sums are the reference's products in another order (exact, see above). */
#define NARROW_BUF_WORDS 1536 /* 6 KB, as the GEMM variant's buffer */
/* Where the narrow path measured faster than the GEMM path (MobileNetV2 at 0.35, instructions
 * on the emulated board): 8 and 16 input channels always (one chunk); more only from 64 output
 * pixels (24 -> 144, 32 -> 192, 48 -> 8/16, 64 -> 64, 96 -> 16/24; at 16 pixels 56 -> 336 was
 * 5% slower: packing the records is not amortized), up to 64 input channels in chunks of output
 * channels, 96 in one chunk. */
#define NARROW_MIN_PIXELS 64
#define NARROW_MAX_C 64
#define NARROW_MAX_C_ONE_CHUNK 96

/* The pass state shared with the assembly (its offsets are fixed below). */
struct narrow_frame {
    uint32_t off2;      /* the input offset in both 16-bit lanes */
    int32_t head;       /* output_c % 8 == 4: the loops (8 outputs per iteration) start halfway */
    const int8_t *in;   /* the next pixel's input channels */
    uint32_t *rec0;     /* the first pass's records (5 words each; = rec1 for 8 channels) */
    int8_t *out;        /* the next pixel's outputs */
    int8_t *out_end;    /* the outputs' end: the last pixel's, the other chunks' skipped */
    uint32_t *rec_end;  /* the end of the last pass's records */
    int32_t mid;        /* passes between the first and the last (input_c / 8 - 2, or 0) */
    int32_t pass_bytes; /* an earlier pass's records: 20 * output_c */
    int32_t skip;       /* output channels of other chunks between two pixels' outputs */
    uint32_t *rec1;     /* the last pass's records (8 words each) */
};

/* The mark of the last pass's last record, in its s1 word (s1 <= 30; ASR by a register reads
 * the register's low byte only, and the C twin masks it). */
#define NARROW_END 0x100u

/* Words of records per output channel, input_c / 8 passes. */
static int32_t narrow_words(int32_t input_c) {
    return 5 * (input_c / 8 - 1) + 8;
}

int conv2d_s8_1x1_narrow_dsp_shape_ok(const struct conv2d_s8_params *p) {
    if (!(p->input_c % 8 == 0 && p->input_c > 0 && p->filter_h == 1 && p->filter_w == 1 &&
          p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 && p->pad_w == 0 &&
          p->input_h == p->output_h && p->input_w == p->output_w && p->output_c % 4 == 0 &&
          p->output_c > 0))
        return 0;
    const int one_chunk = p->output_c * narrow_words(p->input_c) <= NARROW_BUF_WORDS;
    if (p->input_c <= 16 ? !one_chunk
                         : (p->batches * p->output_h * p->output_w < NARROW_MIN_PIXELS ||
                            p->input_c > (one_chunk ? NARROW_MAX_C_ONE_CHUNK : NARROW_MAX_C)))
        return 0;
    if (!(p->act_min <= -128 && p->act_max >= 127 && p->output_offset >= -(1 << 30) &&
          p->output_offset < (1 << 30) && p->input_offset >= -32768 && p->input_offset < 32768))
        return 0;
    return 1;
}

int conv2d_s8_1x1_narrow_dsp_ok(const struct conv2d_s8_params *p, const struct conv_ops *o) {
    if (!conv2d_s8_1x1_narrow_dsp_shape_ok(p)) return 0;
    /* Runs on every call: plain pointers, so the loop does not reload the operands. */
    const int32_t c = rq4_layer_c(p), n = p->per_channel ? p->output_c : 1;
    const int32_t *const mult = o->multipliers, *const shifts = o->shifts;
    for (int32_t q = 0; q < n; ++q)
        if (!rq4_ok(mult[q], shifts[q], c)) return 0;
    return rq4_biases_ok(p, o->bias, o->trained_bias, rq4_bias_limit(p));
}

/* 8 filter taps widened into 4 words, in the order the pixel's inputs are (SXTB16), doubled
 * (SXTAB16 adds the same bytes once more; 2w fits a 16-bit lane). */
static uint32_t *narrow_taps(uint32_t *dst, const int8_t *w) {
    const uint32_t a = dsp_read4(w), b = dsp_read4(w + 4);
    dst[0] = dsp_sxtab16(dsp_sxtb16(a), a);
    dst[1] = dsp_sxtab16_hi(dsp_sxtb16_hi(a), a);
    dst[2] = dsp_sxtab16(dsp_sxtb16(b), b);
    dst[3] = dsp_sxtab16_hi(dsp_sxtb16_hi(b), b);
    return dst + 4;
}

/* The records of all passes (struct narrow_frame) for output channels oc0 .. oc0 + cout - 1:
 * cout * narrow_words(input_c) words. Channel by channel, its records stepped to by pointer (a
 * channel's earlier passes lie 5 * cout words apart): packing runs once per call and chunk, over
 * every output channel, so it is a few % of a small layer (8x8x48 -> 288: 206 instructions per
 * channel with the records indexed, 0.07 of the layer). */
static void narrow_pack(uint32_t *buf, struct narrow_frame *f, int32_t oc0, int32_t cout,
                        const struct conv2d_s8_params *p, const struct conv_ops *o) {
    const int32_t passes = p->input_c / 8;
    uint32_t *const last = buf + 5 * (size_t)(passes - 1) * (size_t)cout;
    f->rec0 = buf;
    f->rec1 = last;
    f->rec_end = last + 8 * (size_t)cout;
    f->mid = passes > 2 ? passes - 2 : 0;
    f->pass_bytes = 20 * cout;
    const int32_t c = rq4_layer_c(p);
    const size_t pass_words = 5 * (size_t)cout, size = (size_t)p->input_c;
    const int32_t *const mult = o->multipliers, *const shifts = o->shifts;
    uint32_t *r1 = last;
    for (int32_t oc = oc0; oc < oc0 + cout; ++oc, r1 += 8) {
        const int8_t *row = row_of(oc, size, p, o);
        /* the accumulator's start: the bias, doubled as the taps, in the first pass; later
         * passes' hold the partial sum, per pixel */
        uint32_t start = 2u * (uint32_t)bias_of(oc, p, o);
        uint32_t *r = buf + 5 * (size_t)(oc - oc0);
        for (int32_t j = 1; j < passes; ++j, row += 8, r += pass_words) {
            narrow_taps(r, row);
            r[4] = start;
            start = 0;
        }
        narrow_taps(r1, row);
        r1[4] = start;
        const int32_t q = p->per_channel ? oc : 0;
        const struct rq4 k4 = rq4_of(mult[q], shifts[q], c);
        r1[5] = (uint32_t)k4.m;
        r1[6] = (uint32_t)k4.s1;
        r1[7] = (uint32_t)k4.cc;
    }
    last[8 * (size_t)(cout - 1) + 6] |= NARROW_END;
}

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
_Static_assert(offsetof(struct narrow_frame, head) == 4 && offsetof(struct narrow_frame, in) == 8 &&
                   offsetof(struct narrow_frame, rec0) == 12 &&
                   offsetof(struct narrow_frame, out) == 16 &&
                   offsetof(struct narrow_frame, out_end) == 20 &&
                   offsetof(struct narrow_frame, rec_end) == 24 &&
                   offsetof(struct narrow_frame, mid) == 28 &&
                   offsetof(struct narrow_frame, pass_bytes) == 32 &&
                   offsetof(struct narrow_frame, skip) == 36 &&
                   offsetof(struct narrow_frame, rec1) == 40 && sizeof(struct narrow_frame) == 44,
               "narrow_m7's offsets: the assembly copies the frame to its stack");

/* Registers: r0-r3 the pixel's 8 widened inputs, r12 the record pointer; in the last pass lr
 * the output pointer; in the earlier ones r9 the next pass's accumulator words, r10 the pass's
 * end, r11 the input pointer and lr the middle passes left. The frame is copied to the stack
 * (the same offsets from sp), so that one LDM starts a pixel. The loops take 8 outputs per
 * iteration; no register is free for the last pass's end, which is marked in its last record
 * instead (NARROW_END), tested in 2 instructions (TST, BEQ) where loading rec_end took 3. */
/* One output of the last pass: its record in r4-r11 (taps r4-r7, accumulator r8, M r9, s1
 * r10, C r11), 8 MACs, rq4 (SIGN: its ADD of the sign) or rq3 (an output offset of -128,
 * rq3_ok: SIGN empty, 9 instructions), one byte out. */
#define NARROW_OUT_WITH(SIGN)       \
    "ldm r12!, {r4-r11}\n"          \
    "smlad r8, r0, r4, r8\n"        \
    "smlad r8, r1, r5, r8\n"        \
    "smlad r8, r2, r6, r8\n"        \
    "smlad r8, r3, r7, r8\n"        \
    "smmlar r9, r8, r9, r11\n" SIGN \
    "asr r9, r9, r10\n"             \
    "ssat r9, #8, r9, asr #1\n"     \
    "strb r9, [lr], #1\n"
#define NARROW_OUT NARROW_OUT_WITH("add r9, r9, r8, asr #31\n")
#define NARROW_OUT_Z NARROW_OUT_WITH("")
/* One output of an earlier pass: taps r4-r7 and the accumulator's start r8; the partial sum
 * goes to the accumulator word of the next pass's record (r9, records of STRIDE bytes). */
#define NARROW_PART(STRIDE)  \
    "ldm r12!, {r4-r8}\n"    \
    "smlad r8, r0, r4, r8\n" \
    "smlad r8, r1, r5, r8\n" \
    "smlad r8, r2, r6, r8\n" \
    "smlad r8, r3, r7, r8\n" \
    "str r8, [r9], #" #STRIDE "\n"
/* The next 8 input bytes (r11, advanced) widened (+ the offset, r6) into r0-r3. */
#define NARROW_WIDEN_R6            \
    "ldr r7, [r11, #4]\n"          \
    "ldr r5, [r11], #8\n"          \
    "sxtab16 r0, r6, r5\n"         \
    "sxtab16 r1, r6, r5, ror #8\n" \
    "sxtab16 r2, r6, r7\n"         \
    "sxtab16 r3, r6, r7, ror #8\n"
/* The same with the offset reloaded (after records overwrote r6). */
#define NARROW_WIDEN "ldr r6, [sp, #0]\n" NARROW_WIDEN_R6
/* An earlier pass over the records at r12 up to r10 (8 per iteration, entered halfway per
 * head); A, B: a fresh pair of local labels. */
#define NARROW_PASS(STRIDE, A, B) \
    "ldr r4, [sp, #4]\n"                                                                 \
    "cmp r4, #0\n"                                                                       \
    "bne " #B "f\n" #A ":\n" NARROW_PART(STRIDE) NARROW_PART(STRIDE) NARROW_PART(STRIDE) \
        NARROW_PART(STRIDE) #B ":\n" NARROW_PART(STRIDE) NARROW_PART(STRIDE)             \
            NARROW_PART(STRIDE) NARROW_PART(STRIDE) "cmp r12, r10\n"                     \
    "bne " #A "b\n"

/* The pixels up to f->out_end (at least one) of input_c channels: the earlier passes (FIRST: none
 * for 8 channels, else the middle ones and the penultimate; each widens its inputs; they leave r12
 * at rec1, lr at out and r8 the head flag), the last pass's inputs widened (LAST), the last
 * pass, SKIP (chunks: the other chunks' outputs). */
#define NARROW_BODY(FIRST, LAST, SKIP, OUT)       \
    "push {r4-r11, lr}\n"                         \
    "sub sp, sp, #44\n"                           \
    "ldm r0, {r1-r11}\n"                          \
    "stm sp, {r1-r11}\n"                          \
    "2:\n"                                        \
    "ldm sp, {r6, r8, r11, r12, lr}\n" FIRST LAST \
    "str r11, [sp, #8]\n"                         \
    "cmp r8, #0\n"                                \
    "bne 5f\n"                                    \
    "1:\n" OUT OUT OUT OUT "5:\n" OUT OUT OUT OUT \
    "tst r10, #256\n"                             \
    "beq 1b\n" SKIP                               \
    "str lr, [sp, #16]\n"                         \
    "ldr r4, [sp, #20]\n"                         \
    "cmp lr, r4\n"                                \
    "bne 2b\n"                                    \
    "add sp, sp, #44\n"                           \
    "pop {r4-r11, pc}\n"
/* The middle passes (input_c >= 24: mid >= 1 of them), into 5-word records. */
#define NARROW_MID \
    "ldr lr, [sp, #28]\n"                      \
    "7:\n" NARROW_WIDEN                        \
    "ldr r4, [sp, #32]\n"                      \
    "add r10, r12, r4\n"                       \
    "add r9, r10, #16\n" NARROW_PASS(20, 3, 6) \
    "subs lr, lr, #1\n"                        \
    "bne 7b\n"                                 \
    "ldr lr, [sp, #16]\n"
/* The last earlier pass, into the last pass's 8-word records (WIDEN: its inputs). */
#define NARROW_PENULTIMATE(WIDEN) \
    WIDEN                         \
    "ldr r10, [sp, #40]\n"        \
    "add r9, r10, #16\n" NARROW_PASS(32, 8, 9) "ldr r8, [sp, #4]\n"
#define NARROW_SKIP       \
    "ldr r4, [sp, #36]\n" \
    "add lr, lr, r4\n"

/* 8 input channels: the last pass only; z: with rq3 (NARROW_OUT_Z). */
static __attribute__((naked, noinline)) void narrow8_m7(struct narrow_frame *f) {
    (void)f;
    __asm__ volatile(NARROW_BODY("", NARROW_WIDEN_R6, "", NARROW_OUT));
}
static __attribute__((naked, noinline)) void narrow8z_m7(struct narrow_frame *f) {
    (void)f;
    __asm__ volatile(NARROW_BODY("", NARROW_WIDEN_R6, "", NARROW_OUT_Z));
}

/* 16 input channels: two passes; z: with rq3. */
static __attribute__((naked, noinline)) void narrow16_m7(struct narrow_frame *f) {
    (void)f;
    __asm__ volatile(
        NARROW_BODY(NARROW_PENULTIMATE(NARROW_WIDEN_R6), NARROW_WIDEN, "", NARROW_OUT));
}
static __attribute__((naked, noinline)) void narrow16z_m7(struct narrow_frame *f) {
    (void)f;
    __asm__ volatile(
        NARROW_BODY(NARROW_PENULTIMATE(NARROW_WIDEN_R6), NARROW_WIDEN, "", NARROW_OUT_Z));
}

/* 24 or more input channels, a chunk of the output channels (skip: the others) or all of them
 * (skip 0: 2 instructions a pixel more than a function without the skip, which took ~0.9 KB);
 * z: with rq3. */
static __attribute__((naked, noinline)) void narrow_chunk_m7(struct narrow_frame *f) {
    (void)f;
    __asm__ volatile(NARROW_BODY(NARROW_MID NARROW_PENULTIMATE(NARROW_WIDEN), NARROW_WIDEN,
                                 NARROW_SKIP, NARROW_OUT));
}
static __attribute__((naked, noinline)) void narrow_chunkz_m7(struct narrow_frame *f) {
    (void)f;
    __asm__ volatile(NARROW_BODY(NARROW_MID NARROW_PENULTIMATE(NARROW_WIDEN), NARROW_WIDEN,
                                 NARROW_SKIP, NARROW_OUT_Z));
}
#undef NARROW_SKIP
#undef NARROW_PENULTIMATE
#undef NARROW_MID
#undef NARROW_BODY
#undef NARROW_PASS
#undef NARROW_WIDEN
#undef NARROW_WIDEN_R6
#undef NARROW_PART
#undef NARROW_OUT_Z
#undef NARROW_OUT_WITH
#undef NARROW_OUT
#else
/* 8 input bytes (+ the offset) as 4 words of 16-bit lanes, in SXTB16 order. */
static void narrow_widen(uint32_t x[4], const int8_t *in, uint32_t off2) {
    const uint32_t a = dsp_read4(in), b = dsp_read4(in + 4);
    x[0] = dsp_sxtab16(off2, a);
    x[1] = dsp_sxtab16_hi(off2, a);
    x[2] = dsp_sxtab16(off2, b);
    x[3] = dsp_sxtab16_hi(off2, b);
}

static int32_t narrow_dot(const uint32_t x[4], const uint32_t *r, int32_t acc) {
    acc = dsp_smlad(x[0], r[0], acc);
    acc = dsp_smlad(x[1], r[1], acc);
    acc = dsp_smlad(x[2], r[2], acc);
    return dsp_smlad(x[3], r[3], acc);
}

/* The assembly's steps in portable C (the host twin). */
static void narrow_c(struct narrow_frame *f, int z) {
    const int32_t earlier = f->rec1 == f->rec0 ? 0 : f->mid + 1;
    const size_t cout = (size_t)f->pass_bytes / 20;
    while (f->out != f->out_end) {
        uint32_t x[4];
        const uint32_t *r = f->rec0;
        for (int32_t j = 0; j < earlier; ++j) {
            narrow_widen(x, f->in, f->off2);
            f->in += 8;
            /* the next pass's accumulator words: 5-word records, or the last pass's 8 */
            const size_t stride = j + 1 < earlier ? 5 : 8;
            uint32_t *q = (j + 1 < earlier ? (uint32_t *)r + 5 * cout : f->rec1) + 4;
            for (size_t oc = 0; oc < cout; ++oc, r += 5, q += stride)
                *q = (uint32_t)narrow_dot(x, r, (int32_t)r[4]);
        }
        narrow_widen(x, f->in, f->off2);
        f->in += 8;
        for (r = f->rec1; r < f->rec_end; r += 8) {
            const int32_t acc = narrow_dot(x, r, (int32_t)r[4]);
            const int32_t m = (int32_t)r[5], s1 = (int32_t)(r[6] & 0xFFu), cc = (int32_t)r[7];
            *f->out++ = (int8_t)(z ? rq3(acc, m, s1, cc) : rq4(acc, m, s1, cc));
        }
        f->out += f->skip;
    }
}
#endif

__attribute__((noinline)) void conv2d_s8_1x1_narrow_dsp(const struct conv2d_s8_params *p,
                                                        const struct conv_ops *o) {
    uint32_t *const buf = (uint32_t *)o->buf; /* conv2d_s8_1x1_narrow_dsp_buffer_size */
    const int32_t npix = p->batches * p->output_h * p->output_w, cout = p->output_c;
    if (npix <= 0) return;
    const int z = rq3_ok(p); /* rq3 (conv2d_s8_dsp.h) */
    /* Output channels per chunk (a multiple of 4); 8 and 16 input channels: one chunk. */
    int32_t chunk = (NARROW_BUF_WORDS / narrow_words(p->input_c)) & ~3;
    if (chunk > cout) chunk = cout;
    for (int32_t oc0 = 0; oc0 < cout; oc0 += chunk) {
        const int32_t n = cout - oc0 < chunk ? cout - oc0 : chunk;
        struct narrow_frame f = {.in = o->input,
                                 .out = o->out + oc0,
                                 .out_end = o->out + oc0 + (size_t)npix * (size_t)cout,
                                 .off2 = dsp_pair(p->input_offset),
                                 .head = n % 8 == 4,
                                 .skip = cout - n};
        narrow_pack(buf, &f, oc0, n, p, o);
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
        if (p->input_c > 16)
            (z ? narrow_chunkz_m7 : narrow_chunk_m7)(&f);
        else if (p->input_c == 16)
            (z ? narrow16z_m7 : narrow16_m7)(&f);
        else
            (z ? narrow8z_m7 : narrow8_m7)(&f);
#else
        narrow_c(&f, z);
#endif
    }
}

/* The records of the largest chunk (the first), as conv2d_s8_1x1_narrow_dsp packs them. */
size_t conv2d_s8_1x1_narrow_dsp_buffer_size(const struct conv2d_s8_params *p) {
    const int32_t words = narrow_words(p->input_c);
    int32_t chunk = (NARROW_BUF_WORDS / words) & ~3;
    if (chunk > p->output_c) chunk = p->output_c;
    return (size_t)chunk * (size_t)words * sizeof(uint32_t);
}
