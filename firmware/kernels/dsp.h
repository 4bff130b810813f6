/* A portable shim for the Armv7E-M DSP SIMD instructions the optimized kernels use
 * (*_dsp.c): on a core with the DSP extension (__ARM_FEATURE_SIMD32, e.g. the Cortex-M7)
 * each dsp_* function is one instruction: GCC's arm_acle.h intrinsic (SXTB16, SXTAB16,
 * SMLAD, SMLABB, SMLATT), or one line of assembly where GCC has no intrinsic or would not
 * emit the instruction (post-indexed LDRD, SXTB16/SXTAB16 with their ROR #8, PKHBT/PKHTB).
 * Elsewhere (the host twin) each is plain C with exactly the instruction's semantics (16-bit lanes
 * wrap, the 32-bit accumulations wrap), so the host runs the very same optimized code paths and
 * tests compare them bit for bit with the reference kernels.
 *
 * Selection of the optimized kernels (KERNELS_USE_DSP()):
 *   - built with -DKERNELS_DSP=1 (firmware/build.toml, [cpu.cortex-m7] cflags): always;
 *   - host builds (HOST_BUILD): at run time, when kernels_dsp_host is nonzero (a global
 *     Python sets through ctypes; 0, the reference kernels, by default);
 *   - otherwise: never (the reference kernels; the optimized code is not even linked). */
#ifndef KERNELS_DSP_H
#define KERNELS_DSP_H

#include <stdint.h>
#include <string.h>

#include "grad.h"
#include "kernel.h"

/* The DSP variants (X_dsp.c), behind the same interface as X_run (kernel.h). Each X_dsp.c
 * also holds X's selector X_run: X_dsp_run when KERNELS_USE_DSP(), else X_ref_run (X.c,
 * declared in X.h). A DSP variant may call its reference (for shapes it does not take); a
 * reference never calls a variant. All give bit-identical results; host builds export all
 * of them, so tests compare them directly. */
void conv2d_s8_dsp_run(const void *params, void *const *operands, void *scratch);
void depthwise_conv2d_s8_dsp_run(const void *params, void *const *operands, void *scratch);
void fully_connected_s8_dsp_run(const void *params, void *const *operands, void *scratch);
/* The same for the gradient kernels (*_grad_*_dsp.c). */
void conv2d_s8_grad_input_dsp_run(const void *params, void *const *operands, void *scratch);
void conv2d_s8_grad_update_dsp_run(const void *params, void *const *operands, void *scratch);
void fully_connected_s8_grad_input_dsp_run(const void *params, void *const *operands,
                                           void *scratch);
void fully_connected_s8_grad_update_dsp_run(const void *params, void *const *operands,
                                            void *scratch);
void depthwise_conv2d_s8_grad_input_dsp_run(const void *params, void *const *operands,
                                            void *scratch);
void depthwise_conv2d_s8_grad_update_dsp_run(const void *params, void *const *operands,
                                             void *scratch);
/* The fully-connected gradient kernels run as a 1x1 convolution over `batches` pixels of
 * 1x1 maps (fully_connected_s8_grad_{input,update}_dsp.c): the conv parameter fields they
 * share, filled from fully-connected parameters p, as designated initializers. */
#define DSP_FC_AS_CONV_1X1(p)                                                                      \
    .batches = (p).batches, .input_h = 1, .input_w = 1, .input_c = (p).input_depth, .filter_h = 1, \
    .filter_w = 1, .output_h = 1, .output_w = 1, .output_c = (p).output_depth, .stride_h = 1,      \
    .stride_w = 1, .dilation_h = 1, .dilation_w = 1, .pad_h = 0, .pad_w = 0,                       \
    .has_mask = (p).has_mask, .per_channel = (p).per_channel, .train_rows = (p).train_rows
void grad_add_dsp_run(const void *params, void *const *operands, void *scratch);
/* The optimized TRANSPOSE (transpose_dsp.c: blocked int8 transposes, no SIMD needed). */
void transpose_dsp_run(const void *params, void *const *operands, void *scratch);
void mean_s8_dsp_run(const void *params, void *const *operands, void *scratch);
void clamp_mask_s8_dsp_run(const void *params, void *const *operands, void *scratch);
void add_s8_dsp_run(const void *params, void *const *operands, void *scratch);
void mul_s8_dsp_run(const void *params, void *const *operands, void *scratch);
void sub_s8_dsp_run(const void *params, void *const *operands, void *scratch);
/* The elementwise int8 -> int8 kernels that run by table (dsp_unary_by_table below). */
void hard_swish_s8_dsp_run(const void *params, void *const *operands, void *scratch);
void relu_s8_dsp_run(const void *params, void *const *operands, void *scratch);
void leaky_relu_s8_dsp_run(const void *params, void *const *operands, void *scratch);
void requantize_s8_dsp_run(const void *params, void *const *operands, void *scratch);
void depthwise_conv2d_s8_grad_input_2pass_dsp_run(const void *params, void *const *operands,
                                                  void *scratch);
/* How many channels the two-pass DSP variant keeps between its passes for these parameters
 * (0: none), -1 where it falls back to the reference (for the tests). */
int32_t depthwise_conv2d_s8_grad_input_2pass_dsp_kept(const void *params);

/* KERNELS_FPV5=1 (firmware/build.toml, [cpu.cortex-m7]): the FPU is FPv5 (VCVTM and the other
 * directed-rounding conversions; the Cortex-M4's FPv4 lacks them). GCC defines no macro that
 * tells the two apart. */
#ifndef KERNELS_FPV5
#define KERNELS_FPV5 0
#endif
#ifndef KERNELS_DSP
#define KERNELS_DSP 0
#endif

#if KERNELS_DSP
#define KERNELS_USE_DSP() 1
#elif defined(HOST_BUILD)
/* Defined in conv2d_s8_dsp.c; host builds only. */
extern int kernels_dsp_host;
#define KERNELS_USE_DSP() (kernels_dsp_host != 0)
#else
#define KERNELS_USE_DSP() 0
#endif

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>

/* Lanes 0 and 2 of x (bytes 0 and 2), sign-extended to two 16-bit lanes. */
static inline uint32_t dsp_sxtb16(uint32_t x) {
    return (uint32_t)__sxtb16((int8x4_t)x);
}
/* Two 16-bit lanes: a.lo + sext(x.byte0), a.hi + sext(x.byte2) (each lane wraps). */
static inline uint32_t dsp_sxtab16(uint32_t a, uint32_t x) {
    return (uint32_t)__sxtab16((int16x2_t)a, (int8x4_t)x);
}
/* acc + a.lo * b.lo + a.hi * b.hi (signed 16-bit lanes). */
static inline int32_t dsp_smlad(uint32_t a, uint32_t b, int32_t acc) {
    return __smlad((int16x2_t)a, (int16x2_t)b, acc);
}
/* acc + a.lo * b.lo, and acc + a.hi * b.hi. */
static inline int32_t dsp_smlabb(uint32_t a, uint32_t b, int32_t acc) {
    return __smlabb((int32_t)a, (int32_t)b, acc);
}
static inline int32_t dsp_smlatt(uint32_t a, uint32_t b, int32_t acc) {
    return __smlatt((int32_t)a, (int32_t)b, acc);
}
/* acc + a.lo * b.hi, and acc + a.hi * b.lo. */
static inline int32_t dsp_smlabt(uint32_t a, uint32_t b, int32_t acc) {
    return __smlabt((int32_t)a, (int32_t)b, acc);
}
static inline int32_t dsp_smlatb(uint32_t a, uint32_t b, int32_t acc) {
    return __smlatb((int32_t)a, (int32_t)b, acc);
}
/* *lo, *hi = the two words at *p, then *p += 1: one post-indexed LDRD. (GCC splits a 64-bit
 * load whose halves are used apart into two LDR; hence the one line of assembly.) */
static inline void dsp_load_pair(const uint64_t **p, uint32_t *lo, uint32_t *hi) {
    __asm__("ldrd %0, %1, [%2], #8" : "=r"(*lo), "=r"(*hi), "+r"(*p) : "m"(**p));
}
/* The odd bytes (1 and 3): SXTB16 / SXTAB16 with their built-in rotation, which GCC does not
 * fold from dsp_ror8 by itself. */
static inline uint32_t dsp_sxtb16_hi(uint32_t x) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static inline uint32_t dsp_sxtab16_hi(uint32_t a, uint32_t x) {
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
#else

static inline uint32_t dsp_lane16(int32_t v) {
    return (uint32_t)v & 0xFFFFu;
}

static inline uint32_t dsp_sxtb16(uint32_t x) {
    return dsp_lane16((int8_t)(x & 0xFFu)) | (dsp_lane16((int8_t)((x >> 16) & 0xFFu)) << 16);
}
static inline uint32_t dsp_sxtab16(uint32_t a, uint32_t x) {
    const uint32_t lo = (a + (uint32_t)(int32_t)(int8_t)(x & 0xFFu)) & 0xFFFFu;
    const uint32_t hi = ((a >> 16) + (uint32_t)(int32_t)(int8_t)((x >> 16) & 0xFFu)) & 0xFFFFu;
    return lo | (hi << 16);
}
static inline int32_t dsp_smlad(uint32_t a, uint32_t b, int32_t acc) {
    const int32_t lo = (int32_t)(int16_t)(a & 0xFFFFu) * (int32_t)(int16_t)(b & 0xFFFFu);
    const int32_t hi = (int32_t)(int16_t)(a >> 16) * (int32_t)(int16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)lo + (uint32_t)hi);
}
static inline int32_t dsp_smlabb(uint32_t a, uint32_t b, int32_t acc) {
    const int32_t m = (int32_t)(int16_t)(a & 0xFFFFu) * (int32_t)(int16_t)(b & 0xFFFFu);
    return (int32_t)((uint32_t)acc + (uint32_t)m);
}
static inline int32_t dsp_smlatt(uint32_t a, uint32_t b, int32_t acc) {
    const int32_t m = (int32_t)(int16_t)(a >> 16) * (int32_t)(int16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)m);
}
static inline int32_t dsp_smlabt(uint32_t a, uint32_t b, int32_t acc) {
    const int32_t m = (int32_t)(int16_t)(a & 0xFFFFu) * (int32_t)(int16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)m);
}
static inline int32_t dsp_smlatb(uint32_t a, uint32_t b, int32_t acc) {
    const int32_t m = (int32_t)(int16_t)(a >> 16) * (int32_t)(int16_t)(b & 0xFFFFu);
    return (int32_t)((uint32_t)acc + (uint32_t)m);
}
static inline void dsp_load_pair(const uint64_t **p, uint32_t *lo, uint32_t *hi) {
    const uint64_t v = **p;
    *lo = (uint32_t)v;
    *hi = (uint32_t)(v >> 32);
    ++*p;
}
#endif

/* 0xFF in byte i where the signed byte a_i >= b_i, else 0x00: SSUB8 sets the GE flag of each
 * byte lane whose signed difference is >= 0, SEL then picks 0xFF or 0x00 by them (one block of
 * assembly: nothing may touch the flags between the two). */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
static inline uint32_t dsp_ge8(uint32_t a, uint32_t b) {
    uint32_t r;
    __asm__(
        "ssub8 %0, %1, %2\n"
        "sel %0, %3, %4"
        : "=&r"(r)
        : "r"(a), "r"(b), "r"(0xFFFFFFFFu), "r"(0u)
        : "cc");
    return r;
}
#else
static inline uint32_t dsp_ge8(uint32_t a, uint32_t b) {
    uint32_t r = 0;
    for (int i = 0; i < 32; i += 8)
        if ((int8_t)(a >> i) >= (int8_t)(b >> i)) r |= 0xFFu << i;
    return r;
}
#endif

/* Two 16-bit lanes from the low halves of a and b, (a.lo, b.lo), and from their high halves,
 * (a.hi, b.hi): one PKHBT, one PKHTB. */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
static inline uint32_t dsp_pack_lo(uint32_t a, uint32_t b) {
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static inline uint32_t dsp_pack_hi(uint32_t a, uint32_t b) {
    uint32_t r;
    __asm__("pkhtb %0, %2, %1, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#else
static inline uint32_t dsp_pack_lo(uint32_t a, uint32_t b) {
    return (a & 0xFFFFu) | (b << 16);
}
static inline uint32_t dsp_pack_hi(uint32_t a, uint32_t b) {
    return (a >> 16) | (b & 0xFFFF0000u);
}
#endif

/* Rotate right by 8: SXTB16 of it yields bytes 1 and 3. */
static inline uint32_t dsp_ror8(uint32_t x) {
    return (x >> 8) | (x << 24);
}

#if !(defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP))
static inline uint32_t dsp_sxtb16_hi(uint32_t x) {
    return dsp_sxtb16(dsp_ror8(x));
}
static inline uint32_t dsp_sxtab16_hi(uint32_t a, uint32_t x) {
    return dsp_sxtab16(a, dsp_ror8(x));
}
#endif

/* Four int8 from any address (Cortex-M7 LDR handles unaligned addresses; memcpy lets the
 * compiler use it). __builtin_memcpy, not memcpy: the firmware is built -ffreestanding, where
 * a plain memcpy stays a library call (a dozen instructions per word). */
static inline uint32_t dsp_read4(const int8_t *p) {
    uint32_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

#define DSP_TABLE_MIN 1024  /* elements from which a 256-entry table pays (dsp_unary_by_table) */
#define DSP_TABLE_PARAMS 64 /* the largest parameter block dsp_unary_by_table copies */

/* An elementwise int8 -> int8 kernel whose output element depends on its input element
 * alone, whose parameters begin with the element count (int32) and whose operands are
 * (input, output), run by table: the reference kernel `ref` computes the outputs of all 256
 * int8 values once (a 256-byte table on the stack), then each word of four inputs becomes
 * four lookups and one word store. Bit-identical with the reference by construction; below
 * DSP_TABLE_MIN elements the reference runs as it is. */
static inline void dsp_unary_by_table(kernel_run_fn ref, const void *params, size_t params_size,
                                      void *const *operands, void *scratch) {
    int32_t count;
    __builtin_memcpy(&count, params, sizeof count);
    if (count < DSP_TABLE_MIN || params_size > DSP_TABLE_PARAMS) {
        ref(params, operands, scratch);
        return;
    }
    uint8_t p[DSP_TABLE_PARAMS];
    __builtin_memcpy(p, params, params_size);
    const int32_t n = 256;
    __builtin_memcpy(p, &n, sizeof n);
    int8_t all[256], table[256];
    for (int32_t u = 0; u < 256; ++u) all[u] = (int8_t)(uint8_t)u; /* indexed by the byte */
    void *table_operands[2] = {all, table};
    ref(p, table_operands, scratch);

    const int8_t *in = operands[0];
    int8_t *out = operands[1];
    const uint8_t *t = (const uint8_t *)table;
    int32_t i = 0;
    for (; i + 4 <= count; i += 4) {
        const uint32_t w = dsp_read4(in + i);
        const uint32_t r = (uint32_t)t[w & 0xFFu] | ((uint32_t)t[(w >> 8) & 0xFFu] << 8) |
                           ((uint32_t)t[(w >> 16) & 0xFFu] << 16) | ((uint32_t)t[w >> 24] << 24);
        __builtin_memcpy(out + i, &r, sizeof r);
    }
    for (; i < count; ++i) out[i] = table[(uint8_t)in[i]];
}

/* A 16-bit lane pair holding v in both lanes (for sxtab16). */
static inline uint32_t dsp_pair(int32_t v) {
    return ((uint32_t)v & 0xFFFFu) * 0x00010001u;
}

/* One element of grad_requantize_s32's rounding (grad.c): round_half_away(v * 127 / max_abs)
 * for |v| <= max_abs > 0, with half = max_abs / 2 and k = 127.0f / (float)max_abs; see
 * dsp_grad_requantize_s32 below for why the float estimate and its correction are exact. */
static inline int8_t dsp_grad_round_s32(int32_t v, uint32_t max_abs, uint32_t half, float k) {
    const uint64_t m = max_abs;
    const uint32_t a = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    const uint64_t r = (uint64_t)a * 127u + half;
    uint32_t q = (uint32_t)((float)a * k + 0.5f);
    if ((uint64_t)(q + 1u) * m <= r) ++q;
    if ((uint64_t)q * m > r) --q;
    return (int8_t)(v < 0 ? -(int32_t)q : (int32_t)q);
}

/* dsp_grad_round_s32 for max_abs < 2^30, without 64-bit products: the estimate's remainder
 * r - q * M lies in [-M, 2M) (q is off by at most one), inside int32 for M < 2^30, so its 32-bit
 * wrap-around value is exact, and its sign and its excess over M - 1 correct q (branch-free:
 * ~20 instructions per element against ~35). */
static inline int8_t dsp_grad_round_s32_small(int32_t v, uint32_t max_abs, uint32_t half, float k) {
    const int32_t s = v >> 31;
    const uint32_t a = (uint32_t)((v ^ s) - s);
    uint32_t q = (uint32_t)((float)a * k + 0.5f);
    const uint32_t rem = a * 127u + half - q * max_abs;
    q += ((max_abs - 1u - rem) >> 31) - (rem >> 31);
    return (int8_t)(((int32_t)q ^ s) - s);
}

/* R = ceil(127 * 2^32 / M) for dsp_grad_round_s32_recip (< 2^32 as M > 127). */
static inline uint32_t dsp_grad_recip(uint32_t max_abs) {
    return (uint32_t)((((uint64_t)127u << 32) + max_abs - 1u) / max_abs);
}

/* dsp_grad_round_s32 for 128 <= max_abs < 2^30, r = dsp_grad_recip(max_abs): the estimate in
 * fixed point, floor(a * R / 2^32) = floor(127 a / M + d), 0 <= d < a / 2^32 < 1/4, so it is
 * floor(127 a / M) or one more, the exact quotient floor((127 a + M / 2) / M) is one of those
 * two, and the remainder correction of dsp_grad_round_s32_small applies (one UMULL instead of
 * the float estimate: ~12 instructions per element). */
static inline int8_t dsp_grad_round_s32_recip(int32_t v, uint32_t max_abs, uint32_t half,
                                              uint32_t r) {
    const int32_t s = v >> 31;
    const uint32_t a = (uint32_t)((v ^ s) - s);
    uint32_t q = (uint32_t)(((uint64_t)a * r) >> 32);
    const uint32_t rem = a * 127u + half - q * max_abs;
    q += ((max_abs - 1u - rem) >> 31) - (rem >> 31);
    return (int8_t)(((int32_t)q ^ s) - s);
}

#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
/* The two loops of dsp_grad_requantize_s32 below over n4 >= 1 groups of 4 accumulators, in
 * assembly (GCC's loops took 9 and 19 instructions per element, the branches as IT blocks
 * and the fixed-point estimate through a 64-bit multiply-add): LDM 4 accumulators, then per
 * element 5 instructions for the largest |acc| (returned, at least m), 11 for the rounding
 * (k[0] = R, k[1] = M: dsp_grad_requantize_s32's fixed-point branch, its integer steps).
 * out may start where acc does (the operator's OUTPUT_OVER_SCRATCH): out[i] is written after
 * acc[i] is read. In grad_dsp.c: one copy for every kernel that requantizes. */
uint32_t dsp_max_abs4(const int32_t *acc, uint32_t n4, uint32_t m);
void dsp_round4(const int32_t *acc, int8_t *out, uint32_t n4, const uint32_t *k);
#endif

/* grad_requantize_s32 (grad.c), bit-identical, without its 64-bit division per element (a
 * library call of ~100 instructions on the Cortex-M7): q = round_half_away(acc * 127 / max|acc|)
 * is estimated in float (|acc| * (127 / M) + 1/2 is within 10^-5 of the exact quotient
 * (127 |acc| + floor(M / 2)) / M <= 127.5, so the truncated estimate is off by at most one) and
 * then corrected with exact 64-bit products:
 * the result is the largest q with q * M <= r, i.e. the reference's integer quotient, whatever
 * the float rounding. Returns the scale, computed by the reference's expression. */
static inline float dsp_grad_requantize_s32(const int32_t *acc, size_t n, float acc_scale,
                                            int8_t *out) {
    uint32_t max_abs = 0;
    size_t i0 = 0; /* where the C loops start (past the assembly's groups of 4) */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    if (n >= 4) max_abs = dsp_max_abs4(acc, (uint32_t)(n >> 2), 0), i0 = n & ~(size_t)3;
#endif
    for (size_t i = i0; i < n; i++) {
        const uint32_t a = acc[i] < 0 ? 0u - (uint32_t)acc[i] : (uint32_t)acc[i];
        if (a > max_abs) max_abs = a;
    }
    if (max_abs == 0) {
        for (size_t i = 0; i < n; i++) out[i] = 0;
        return 0.0f;
    }
    const uint32_t half = max_abs / 2u;
    const float k = 127.0f / (float)max_abs;
    if (max_abs >= 128u && max_abs < (1u << 30)) {
        const uint32_t r = dsp_grad_recip(max_abs);
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
        const uint32_t k4[2] __attribute__((aligned(8))) = {r, max_abs};
        if (i0) dsp_round4(acc, out, (uint32_t)(i0 >> 2), k4);
#endif
        for (size_t i = i0; i < n; i++) out[i] = dsp_grad_round_s32_recip(acc[i], max_abs, half, r);
    } else if (max_abs < (1u << 30)) {
        for (size_t i = 0; i < n; i++) out[i] = dsp_grad_round_s32_small(acc[i], max_abs, half, k);
    } else {
        for (size_t i = 0; i < n; i++) out[i] = dsp_grad_round_s32(acc[i], max_abs, half, k);
    }
    return (float)max_abs * acc_scale / 127.0f;
}

/* 0xFF in byte j (j < n <= 4) iff bit i + j of the clamp mask is set (grad.h's layout). */
static inline uint32_t dsp_mask_bytes(const uint8_t *mask, size_t i, int32_t n) {
    const size_t byte = i >> 3;
    const uint32_t sh = (uint32_t)(i & 7u);
    uint32_t bits = mask[byte];
    if (sh + (uint32_t)n > 8u) bits |= (uint32_t)mask[byte + 1] << 8; /* only when needed */
    return grad_mask_lanes4((bits >> sh) & ((1u << n) - 1u));
}

#define DSP_BIAS_CHUNK 64 /* channels whose sums dsp_bias_sums keeps at once (512 B) */

/* sums[j] = the sum over positions of g[pos * channels + c0 + j], masked (bit clear: 0) when
 * mask is given, for j < n <= DSP_BIAS_CHUNK: the bias gradients of conv_grad_update_bias
 * (conv2d_s8_grad_update.h), the same integers. Per position and 4 channels one word of
 * gradients, its 4 mask bits spread to bytes, and SXTAB16 into two pairs of 16-bit lane sums
 * (at most 255 values of magnitude <= 128 per lane before they are added to the int32 sums,
 * so no lane overflows), instead of an index computation, a mask bit and a byte load per
 * element channel by channel. */
static inline void dsp_bias_sums(const int8_t *g, const uint8_t *mask, size_t positions,
                                 size_t channels, int32_t c0, int32_t n, int32_t *sums) {
    const int32_t groups = n >> 2;
    uint32_t lanes[DSP_BIAS_CHUNK / 2]; /* per group: channels (0, 2), then (1, 3) */
    for (int32_t j = 0; j < n; ++j) sums[j] = 0;
    for (size_t p0 = 0; p0 < positions; p0 += 255) {
        const size_t p1 = positions - p0 < 255 ? positions : p0 + 255;
        for (int32_t q = 0; q < 2 * groups; ++q) lanes[q] = 0;
        for (size_t pos = p0; pos < p1; ++pos) {
            const size_t i0 = pos * channels + (size_t)c0;
            const int8_t *row = g + i0;
            for (int32_t q = 0; q < groups; ++q) {
                uint32_t v = dsp_read4(row + 4 * q);
                if (mask) v &= dsp_mask_bytes(mask, i0 + 4u * (size_t)q, 4);
                lanes[2 * q] = dsp_sxtab16(lanes[2 * q], v);
                lanes[2 * q + 1] = dsp_sxtab16_hi(lanes[2 * q + 1], v);
            }
            for (int32_t j = 4 * groups; j < n; ++j) {
                const size_t i = i0 + (size_t)(j - 4 * groups) + 4u * (size_t)groups;
                if (!mask || ((mask[i >> 3] >> (i & 7u)) & 1u)) sums[j] += g[i];
            }
        }
        for (int32_t q = 0; q < groups; ++q) {
            const uint32_t e = lanes[2 * q], o = lanes[2 * q + 1];
            sums[4 * q] += (int16_t)(e & 0xFFFFu);
            sums[4 * q + 1] += (int16_t)(o & 0xFFFFu);
            sums[4 * q + 2] += (int16_t)(e >> 16);
            sums[4 * q + 3] += (int16_t)(o >> 16);
        }
    }
}

/* w[i * w_stride] = conv_grad_step_weight(w[i * w_stride], f * (float)acc[i * acc_stride], rng)
 * for i < n, in that order (conv2d_s8_grad_update.h; the draws of grad_stochastic_round,
 * grad.c): the same float operations in the same order (the build passes -ffp-contract=off),
 * so the same weights and the same generator state, with the generator's state and the
 * factor in registers for the whole loop instead of a call per weight that reloads them
 * (an int8 store may alias the state, so the compiler must reload it after each one), and
 * zero gradients (rows or taps no nonzero gradient reached) without the float steps. */
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP) && defined(__ARM_FP)
/* On the Cortex-M7 and M4 (FPv4/FPv5), the same step in 30 instructions per weight (25 with
 * FPv5's VCVTM; contiguous rows 26 / 21; GCC's loop below took about 45), branch-free. Why the
 * shortcuts give the reference's weight:
 *   - v = f * acc is not clamped to [-256, 256] nor NaN tested: VCVT.S32.F32 truncates with
 *     saturation and turns NaN into 0, and the result is saturated to 16 bits (SSAT) before
 *     the floor's correction, so |v| > 256 (or an infinity) still leaves w + floor(x) beyond
 *     [-127, 127] on the same side, and NaN (the reference's 0) gives floor 0 either way;
 *   - the draw u = (s >> 8) * 2^-24 is VCVT.F32.U32 with 24 fraction bits (exact: 24-bit);
 *   - floor(x) = trunc(x) - 1 where x < trunc(x), an ordered less-than (MI after VCMP: false
 *     for NaN), the comparison against trunc(x) converted back (exact while it matters); with
 *     FPv5 (the Cortex-M7: KERNELS_FPV5, firmware/build.toml) VCVTM's floor with the same
 *     saturation and NaN to 0, 5 instructions fewer;
 *   - the weight saturates with SSAT to [-128, 127], then -128 becomes -127 (contiguous rows:
 *     QSUB8 twice, see there);
 *   - acc == 0: x = 0 * f + u (NaN if f is not finite) floors to 0, as the reference's
 *     shortcut; the draw is made alike.
 * The vmul and vadd round as the reference's (FPSCR's round-to-nearest). */
/* x = f * acc + u into s15 (acc already in s15), the generator advanced; then floor(x)
 * saturated to 16 bits into r3 (VCVTM on FPv5, else truncation and its correction). */
#define DSP_STEP_X                    \
    "vcvt.f32.s32 s15, s15\n"         \
    "vmul.f32 s15, s15, %[f]\n"       \
    "eor %[s], %[s], %[s], lsl #13\n" \
    "eor %[s], %[s], %[s], lsr #17\n" \
    "eor %[s], %[s], %[s], lsl #5\n"  \
    "lsr r3, %[s], #8\n"              \
    "vmov s14, r3\n"                  \
    "vcvt.f32.u32 s14, s14, #24\n"    \
    "vadd.f32 s15, s15, s14\n"
#if KERNELS_FPV5 /* VCVTM: floor(x) in one instruction, saturated, NaN to 0 */
#define DSP_STEP_FLOOR         \
    "vcvtm.s32.f32 s14, s15\n" \
    "vmov r3, s14\n"           \
    "ssat r3, #16, r3\n"
#else
#define DSP_STEP_FLOOR        \
    "vcvt.s32.f32 s14, s15\n" \
    "vcvt.f32.s32 s13, s14\n" \
    "vmov r3, s14\n"          \
    "vcmp.f32 s15, s13\n"     \
    "ssat r3, #16, r3\n"      \
    "vmrs APSR_nzcv, fpscr\n" \
    "it mi\n"                 \
    "submi r3, r3, #1\n"
#endif
static inline void dsp_step_weights(int8_t *w, size_t w_stride, const int32_t *acc,
                                    size_t acc_stride, size_t n, float f, uint32_t *rng) {
    if (n == 0) return;
    uint32_t s = *rng, cnt = (uint32_t)n;
    if (w_stride == 1 && acc_stride == 1) {
        /* Contiguous rows (the conv and fully connected updates): post-indexed loads and
         * stores, and -128 to -127 as two byte-saturating negations (QSUB8 from 0: -(-128)
         * saturates to 127, its negation is -127; other values come back unchanged; only the
         * low byte is stored): 21 instructions per weight with VCVTM. */
        __asm__ volatile(
            "1:\n"
            "vldmia %[a]!, {s15}\n" DSP_STEP_X DSP_STEP_FLOOR
            "ldrsb r2, [%[w]]\n"
            "add r2, r2, r3\n"
            "ssat r2, #8, r2\n"
            "qsub8 r2, %[z], r2\n"
            "qsub8 r2, %[z], r2\n"
            "strb r2, [%[w]], #1\n"
            "subs %[n], %[n], #1\n"
            "bne 1b\n"
            : [a] "+r"(acc), [w] "+r"(w), [s] "+r"(s), [n] "+r"(cnt)
            : [f] "t"(f), [z] "r"(0u)
            : "r2", "r3", "s13", "s14", "s15", "cc", "memory");
        *rng = s;
        return;
    }
    const uint32_t ast = (uint32_t)(acc_stride * sizeof(int32_t)), wst = (uint32_t)w_stride;
    __asm__ volatile(
        "1:\n"
        "ldr r2, [%[a]]\n"
        "add %[a], %[a], %[ast]\n"
        "vmov s15, r2\n" DSP_STEP_X DSP_STEP_FLOOR
        "ldrsb r2, [%[w]]\n"
        "add r2, r2, r3\n"
        "ssat r2, #8, r2\n"
        "cmn r2, #128\n"
        "it eq\n"
        "mvneq r2, #126\n"
        "strb r2, [%[w]]\n"
        "add %[w], %[w], %[wst]\n"
        "subs %[n], %[n], #1\n"
        "bne 1b\n"
        : [a] "+r"(acc), [w] "+r"(w), [s] "+r"(s), [n] "+r"(cnt)
        : [f] "t"(f), [ast] "r"(ast), [wst] "r"(wst)
        : "r2", "r3", "s13", "s14", "s15", "cc", "memory");
    *rng = s;
}
#undef DSP_STEP_X
#undef DSP_STEP_FLOOR
#else
static inline void dsp_step_weights(int8_t *w, size_t w_stride, const int32_t *acc,
                                    size_t acc_stride, size_t n, float f, uint32_t *rng) {
    uint32_t s = *rng;
    for (size_t i = 0; i < n; ++i, w += w_stride, acc += acc_stride) {
        if (*acc == 0) {
            /* v = f * 0 is a zero (or NaN, which counts as 0) whatever f: x = u in [0, 1)
             * floors to 0, so the draw is made and the weight only saturates. */
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            if (*w < -127) *w = -127;
            continue;
        }
        float v = f * (float)*acc;
        if (v > 256.0f)
            v = 256.0f;
        else if (v < -256.0f)
            v = -256.0f;
        else if (v != v)
            v = 0.0f;
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        const float x = v + (float)(s >> 8) * (1.0f / 16777216.0f);
        int32_t r = (int32_t)x; /* truncates toward zero; then floor */
        if (x < 0.0f && (float)r != x) r -= 1;
        const int32_t q = (int32_t)*w + r;
        *w = (int8_t)(q > 127 ? 127 : (q < -127 ? -127 : q));
    }
    *rng = s;
}
#endif

/* max(m, max |a[i]| for i < n) (|INT32_MIN| as 2^31): dsp_max_abs4's assembly over the groups
 * of 4 on the Cortex-M, the C loop for the rest and elsewhere. */
static inline uint32_t dsp_max_abs_s32(const int32_t *a, size_t n, uint32_t m) {
    size_t i = 0;
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
    if (n >= 4) m = dsp_max_abs4(a, (uint32_t)(n >> 2), m), i = n & ~(size_t)3;
#endif
    for (; i < n; i++) {
        const uint32_t v = a[i] < 0 ? 0u - (uint32_t)a[i] : (uint32_t)a[i];
        if (v > m) m = v;
    }
    return m;
}

/* Shared by the conv input gradient and update: */
/* 0xFF in byte j iff bit j of the index is set (4 mask bits to a mask of 4 gradient bytes). */
static const uint32_t dsp_spread4[16] __attribute__((unused)) = {
    0x00000000u, 0x000000FFu, 0x0000FF00u, 0x0000FFFFu, 0x00FF0000u, 0x00FF00FFu,
    0x00FFFF00u, 0x00FFFFFFu, 0xFF000000u, 0xFF0000FFu, 0xFF00FF00u, 0xFF00FFFFu,
    0xFFFF0000u, 0xFFFF00FFu, 0xFFFFFF00u, 0xFFFFFFFFu,
};

/* --- s10e (conv2d_s8_grad_input_2pass): dsp_grad_requantize_s32's rounding alone (its
 * max in dsp_max_abs_s32), for a tensor computed and rounded in parts with one max|acc|. --- */

/* dsp_grad_requantize_s32's rounding with max_abs given (>= every |acc[i]|), its constants
 * computed once (the reciprocal is a 64-bit division) for any number of parts. */
struct dsp_round {
    uint32_t k4[2] __attribute__((aligned(8))); /* dsp_round4's: the reciprocal, max_abs */
    uint32_t max_abs, half;
    float k;
};

static inline void dsp_round_prepare(struct dsp_round *r, uint32_t max_abs) {
    r->max_abs = max_abs, r->half = max_abs / 2u;
    r->k = max_abs ? 127.0f / (float)max_abs : 0.0f;
    r->k4[0] = max_abs >= 128u && max_abs < (1u << 30) ? dsp_grad_recip(max_abs) : 0u;
    r->k4[1] = max_abs;
}

/* out[i] = the rounding of acc[i], i < n (max_abs 0: all 0); out may start where acc does
 * (ascending). */
static inline void dsp_round_apply(const struct dsp_round *r, const int32_t *acc, size_t n,
                                   int8_t *out) {
    const uint32_t max_abs = r->max_abs, half = r->half;
    if (max_abs == 0) {
        for (size_t i = 0; i < n; i++) out[i] = 0;
    } else if (r->k4[0]) {
        size_t i0 = 0;
#if defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP)
        i0 = n & ~(size_t)3;
        if (i0) dsp_round4(acc, out, (uint32_t)(i0 >> 2), r->k4);
#endif
        for (size_t i = i0; i < n; i++)
            out[i] = dsp_grad_round_s32_recip(acc[i], max_abs, half, r->k4[0]);
    } else if (max_abs < (1u << 30)) {
        for (size_t i = 0; i < n; i++)
            out[i] = dsp_grad_round_s32_small(acc[i], max_abs, half, r->k);
    } else {
        for (size_t i = 0; i < n; i++) out[i] = dsp_grad_round_s32(acc[i], max_abs, half, r->k);
    }
}

#endif
