/* Conventions every training (backward and update) kernel shares.
 *
 * Gradient tensors. A gradient is the derivative of the loss with respect to a REAL-valued
 * tensor (the dequantized activation), stored as int8 values g_q and one float32 scale
 * chosen at run time: G = scale * g_q, with scale = max|G| / 127 (int8 range -127..127,
 * symmetric, no zero point). The scale is its own 4-byte operand (a float32 "scale
 * tensor"), so kernels read the incoming gradient's scale and write the outgoing one.
 * Accumulation is int32; a kernel producing a gradient accumulates into int32 scratch and
 * requantizes with grad_requantize_s32 (so it asks for that scratch in X_scratch_size).
 *
 * Clamp masks. The derivative of a clamp (fused RELU/RELU6, or int8 saturation) is 1 inside
 * the range and 0 on its edges: bit i of a mask is 1 iff act_min < y_q[i] < act_max. Masks
 * take 1 bit per element, packed LSB first (element i is bit i % 8 of byte i / 8), so a
 * forward layer keeps 1/8 of its output for backward instead of the whole output.
 *
 * Rounding straight through: requantization in the forward pass has derivative 1.
 *
 * Stochastic rounding. Weight updates smaller than one int8 step would vanish with plain
 * rounding; updates are rounded up with probability equal to their fraction, using the
 * deterministic generator below. Its state is a uint32 operand in the plan, so the board
 * and the host twin draw the same numbers and end bit-identical.
 *
 * Float arithmetic is IEEE single precision evaluated in the written order (the build
 * passes -ffp-contract=off), so the host and the Cortex-M7 round identically. */
#ifndef KERNELS_GRAD_H
#define KERNELS_GRAD_H

#include <stddef.h>
#include <stdint.h>

static inline int grad_mask_get(const uint8_t *mask, size_t i) {
    return (mask[i >> 3] >> (i & 7)) & 1;
}

static inline void grad_mask_set(uint8_t *mask, size_t i, int bit) {
    if (bit)
        mask[i >> 3] = (uint8_t)(mask[i >> 3] | (1u << (i & 7)));
    else
        mask[i >> 3] = (uint8_t)(mask[i >> 3] & ~(1u << (i & 7)));
}

static inline size_t grad_mask_bytes(size_t elements) {
    return (elements + 7u) / 8u;
}

/* 0xFF in byte j of a word where bit j of bits (a value below 16) is set, else 0x00: four mask
 * bits as byte lanes (lane j of a little-endian word is element j). Times 0x00204081 (2^0 +
 * 2^7 + 2^14 + 2^21) puts bit j at bits j + 7m, among them bit 8j (m = j); no two partial
 * products meet, so nothing carries, and the AND keeps bit 8j of each byte; times 0xFF fills
 * its byte. */
static inline uint32_t grad_mask_lanes4(uint32_t bits) {
    return ((bits * 0x00204081u) & 0x01010101u) * 0xFFu;
}

/* Requantizes n int32 accumulators, whose real value is acc * acc_scale, to int8 with the
 * dynamic scale max|real| / 127 (round half away from zero). Returns that scale (0 if all
 * accumulators are 0, in which case out is all 0). */
float grad_requantize_s32(const int32_t *acc, size_t n, float acc_scale, int8_t *out);
/* grad_requantize_s32's rounding alone, for a max_abs known beforehand (the largest |acc| of
 * a tensor rounded in parts: conv2d_s8_grad_input_2pass): out[i] = round_half_away(acc[i] *
 * 127 / max_abs), all 0 if max_abs is 0. out may start where acc does (ascending). */
void grad_round_s32(const int32_t *acc, size_t n, uint32_t max_abs, int8_t *out);

/* xorshift32: the stochastic-rounding generator. Never 0 once seeded non-zero. */
static inline uint32_t grad_rng_next(uint32_t *state) {
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

/* The learning-rate schedule's factor for the current step, multiplied into every update's
 * plan-time lr (kernels/conv2d_s8_grad_update.h's QAS factors are the only readers). The
 * board's TRAIN (app/train.c) sets it for one step and puts it back, as the host twin does
 * (pytools/model/host_twin.py); 1.0 leaves the plan's lr exactly as is. */
extern float grad_lr_scale;

/* floor(v + u) with u uniform in [0, 1) from the generator: E[result] = v. */
int32_t grad_stochastic_round(float v, uint32_t *state);

#endif
