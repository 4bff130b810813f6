"""rq4, the narrow and GEMM conv variants' requantization in 4 instructions on doubled
accumulators (firmware/kernels/conv2d_s8_dsp.h, the proof there): swept against fixedpoint.h's
reference on the edges of its conditions, and the variants held to the reference kernel where
a layer's channels or biases leave rq4's path (a multiplier of exactly 2^30, a shift whose C
would not fit, a bias too large to double, a clamped activation), and at rq4_bias_limit itself
with the sums at their bound (doubled accumulators of 2^31 - 2; one past it, the fallback; with
trained rows and biases), on the host and on the emulated Cortex-M7 and Cortex-M4."""

from __future__ import annotations

import numpy as np
import pytest

from pytools.model.lowering import lower
from tests.kernels.conv.support import run_c_sweep, xorshift64_c
from tests.kernels.conv.test_conv_kernels import Case, _graph
from tests.kernels.conv.test_dsp_kernels import TRAINED, _operands, _run, _with_trained_slice
from tests.kernels.support import quant

RQ4_SWEEP_C = (
    r"""
#include <stdio.h>
#include <stdlib.h>
#include "fixedpoint.h"
#include "conv2d_s8_dsp.h"
"""
    + xorshift64_c(0xD1B54A32D192ED03)
    + r"""
static long long checks = 0, bad = 0;

/* rq4 of A = 2a against the reference, wherever rq4_ok takes the channel and |a| < 2^30. */
static void check(int64_t a, int32_t m, int sh, int32_t off) {
    if (a <= -(1 << 30) || a >= (1 << 30)) return;
    const int32_t c = 1 + 2 * off;
    if (!rq4_ok(m, sh, c)) return;
    const struct rq4 q = rq4_of(m, sh, c);
    const int32_t want =
        fp_clamp(fp_multiply_by_quantized_multiplier((int32_t)a, m, sh) + off, -128, 127);
    ++checks;
    if (rq4((int32_t)(2 * a), q.m, q.s1, q.cc) != want && bad++ < 10)
        printf("mismatch a=%lld m=%d shift=%d offset=%d\n", (long long)a, m, sh, off);
}

/* a around the reference's rounding ties of shift sh (requant_fast.h's sweep: the second
 * rounding's tie v = k 2^e + 2^(e-1), a near v 2^31 / m, the first one's). */
static void ties(int32_t m, int sh, int64_t k, int32_t off) {
    const int e = -sh;
    const int64_t v = k * ((int64_t)1 << e) + ((int64_t)1 << (e - 1));
    const int64_t a = (int64_t)((__int128)v * ((__int128)1 << 31) / m);
    for (int64_t d = -3; d <= 3; ++d) check(a + d, m, sh, off);
}

int main(int argc, char **argv) {
    const long long random_triples = argc > 1 ? atoll(argv[1]) : 1000000;
    static const int64_t as[] = {-(1 << 30) + 1, -(1 << 29), -65536, -256, -3, -2, -1, 0, 1,
                                 2, 3, 256, 65535, 1 << 29, (1 << 30) - 1};
    for (int sh = -31; sh <= -1; ++sh) {
        const int s1 = -sh - 1;
        /* offsets at the edge of |C| <= 2^30 - 3 for this shift, and the usual ones */
        const int32_t edge = (int32_t)((((1 << 30) - 3) >> s1) - 1) / 2;
        const int32_t offs[] = {-128, -1, 0, 5, 127, edge, -edge, edge + 1, -edge - 1};
        int32_t ms[7] = {(1 << 30) + 1, (1 << 30) + 2, INT32_MAX, INT32_MAX - 1, 1518500250, 0, 0};
        ms[5] = (int32_t)(0x40000001u | (uint32_t)(rnd() >> 34));
        ms[6] = (int32_t)(0x40000001u | (uint32_t)(rnd() >> 34));
        for (int j = 0; j < 7; ++j)
            for (unsigned o = 0; o < sizeof offs / sizeof offs[0]; ++o) {
                for (unsigned i = 0; i < sizeof as / sizeof as[0]; ++i) check(as[i], ms[j], sh, offs[o]);
                for (int64_t k = -300; k <= 300; ++k) ties(ms[j], sh, k, offs[o]);
                for (int t = 0; t < 40; ++t)
                    ties(ms[j], sh, (int64_t)(int32_t)(rnd() >> 32) >> (-sh + 1), offs[o]);
            }
    }
    /* The conditions are needed: a multiplier of exactly 2^30 with a = -1 (v = 0 while a < 0),
     * and a C past 2^30 - 3, each break rq4 somewhere. */
    long long m30 = 0, big_c = 0;
    for (int sh = -31; sh <= -1; ++sh) {
        const struct rq4 q = rq4_of(1 << 30, sh, 1 + 2 * 3);
        m30 += rq4(-2, q.m, q.s1, q.cc) !=
               fp_clamp(fp_multiply_by_quantized_multiplier(-1, 1 << 30, sh) + 3, -128, 127);
    }
    for (int32_t off = (1 << 28); off < (1 << 28) + 64; ++off) {
        const struct rq4 q = rq4_of(INT32_MAX, -3, 1 + 2 * off);
        for (int32_t a = (1 << 30) - 256; a < (1 << 30); a += 17)
            big_c += rq4(2 * a, q.m, q.s1, q.cc) !=
                     fp_clamp(fp_multiply_by_quantized_multiplier(a, INT32_MAX, -3) + off, -128, 127);
    }
    if (rq4_ok(1 << 30, -5, 1) || m30 == 0 || big_c == 0) {
        printf("a condition of rq4_ok is not needed: m30 %lld big_c %lld\n", m30, big_c);
        ++bad;
    }
    /* Random triples: a uniform below 2^30, small, or scaled; multipliers in (2^30, 2^31). */
    for (long long i = 0; i < random_triples; ++i) {
        const uint64_t r = rnd(), q = rnd();
        const int sh = -1 - (int)(r % 31);
        const int32_t m = (int32_t)(0x40000001u | (uint32_t)(r >> 34));
        const int32_t off = (int32_t)((r >> 40) % 256) - 128;
        int64_t a = (int64_t)(int32_t)(q >> 32) / 2;
        if ((q & 3) == 1) a = (int64_t)(q >> 40) - (1 << 23);
        if ((q & 3) == 2) a >>= (q >> 3) & 31;
        check(a, m, sh, off);
        ties(m, sh, (int64_t)(int32_t)(rnd() >> 32) >> (-sh + 1), off);
    }
    printf("%lld %lld\n", checks, bad);
    return bad != 0;
}
"""
)


def test_rq4_is_bit_identical_with_the_reference(tmp_path) -> None:
    """Every shift -31..-1 with edge multipliers (2^30 + 1, 2^31 - 1, ...), accumulators up to
    +-(2^30 - 1), output offsets on both sides of rq4_ok's bound on C, both rounding ties, and
    random triples; and the two conditions shown to be needed (the sweep fails otherwise)."""
    checks, bad = run_c_sweep(tmp_path, RQ4_SWEEP_C, 1_000_000)
    assert bad == 0 and checks > 2_000_000, (checks, bad)


def _pointwise(seed: int, shape: tuple[int, int, int, int], kind: str = "NONE", k: int = 1) -> Case:
    """A k x k CONV_2D (VALID, stride 1) h x w x in_c -> out_c, per-channel scales that keep the
    outputs spread; RELU6 over the full int8 range (zero point -128) or a clamp inside it."""
    rng = np.random.default_rng(61000 + seed)
    h, w, in_c, out_c = shape
    scales = (10 ** rng.uniform(-3, -1.5, out_c)).astype(np.float32)
    wts = rng.integers(-127, 128, (out_c, k, k, in_c), dtype=np.int8)
    bias = (rng.integers(-5000, 5000, out_c).astype(np.int32), quant(list(0.02 * scales), 0))
    spread = float(0.02 * np.median(scales) * np.sqrt(in_c * k * k) * 73 * 74 / 25)
    out_q = quant(6.0 / 255.0, -128) if kind == "RELU6" else quant(spread, int(rng.integers(-60, 0)))
    options = {"padding": "VALID", "stride_h": 1, "stride_w": 1, "activation": kind}
    oh, ow = h - k + 1, w - k + 1
    in_q = quant(0.02, int(rng.integers(-128, 128)))
    g = _graph(
        "CONV_2D",
        (1, h, w, in_c),
        in_q,
        wts,
        quant(list(scales), 0, 0),
        bias,
        (1, oh, ow, out_c),
        out_q,
        options,
    )
    return Case(g, out_q, kind)


# (h, w, in_c, out_c, filter): the narrow variant (8, 16, 24 input channels), the GEMM one
# (1x1 over 20 channels to 13: doubled pixels, an odd pixel count and channel count; over 72 to
# 24 and a 3x3 over 8 channels to 12: undoubled, requant_fast.h's rq_fused), the 3-channel
# stem (dense patches: doubled filter rows, hoisted for the whole layer on 11 x 9 outputs,
# widened per tile on 7 x 7).
SHAPES = [
    (9, 9, 8, 32, 1),
    (10, 9, 16, 48, 1),
    (9, 8, 24, 20, 1),
    (5, 7, 20, 13, 1),
    (7, 9, 72, 24, 1),
    (7, 6, 8, 12, 3),
    (13, 11, 3, 16, 3),
    (9, 9, 3, 16, 3),
]
EDGES = ["none", "m_2_30", "big_shift", "big_bias", "clamp"]


def _edge_operands(shape: tuple[int, ...], edge: str, seed: int):
    """The case's call and operands with `edge` planted in a few of its output channels."""
    h, w, in_c, out_c, k = shape
    case = _pointwise(seed, (h, w, in_c, out_c), "RELU" if edge == "clamp" else "NONE", k)
    rng = np.random.default_rng(seed)
    g = case.graph
    call = lower(g, g.ops[0])
    arrays = [a.copy() for a in _operands(g, call, rng)]
    some = rng.choice(out_c, size=max(1, out_c // 4), replace=False)
    if edge == "m_2_30":  # exactly 2^30: rq4 would round a = -1 wrong; the others' paths
        arrays[3][some] = 1 << 30
    elif edge == "big_shift":  # |C| = |c| 2^30 > 2^30 - 3 for these
        arrays[4][some] = -31
    elif edge == "big_bias":  # doubled, its sums could leave int32: off rq4's path
        arrays[2][some[0]] = (1 << 30) - 1000
    return call, arrays


# The narrow variant (8 and 16 input channels), the GEMM one's doubled pixels (1x1, 20 -> 13)
# and the stem's doubled dense filter rows (3x3x3): every path where rq4's bias limit applies.
EXTREME_SHAPES = [(9, 9, 8, 32, 1), (10, 9, 16, 48, 1), (5, 7, 20, 13, 1), (9, 9, 3, 16, 3)]
# (sign of the extreme sum, bias past rq4_bias_limit by 1, trained slice)
EXTREMES = [
    (1, False, False),
    (-1, False, False),
    (1, True, False),
    (-1, True, False),
    (1, False, True),
    (1, True, True),
]


def _extreme_operands(shape: tuple[int, ...], sign: int, over: bool, trained: bool, seed: int):
    """The worst case of rq4_bias_limit: its extreme channels (0 and out_c / 2) sum to
    +-taps * 128 * 255 over most pixels (all weights -128; input zero point 127 and inputs
    -128, so x + offset = -255 and the products reach the bound 128 (128 + |offset|) exactly,
    or zero point -128 and inputs 127), and channel 0's bias is +-limit (so |a| of the
    reference's sum reaches 2^30 - 1 for sign +1, its doubling 2^31 - 2) or, `over`, one more
    (a = 2^30, doubled 2^31: must take the fallback). The other biases are small submasks of
    the limit, so the OR rq4_biases_ok takes is the limit itself. `trained`: channel 0's row and
    bias are the trained slice's (the flash ones then are small and random), as a training step
    runs it. The extreme channels' shift puts |a| ~ 2^30 inside the int8 range."""
    h, w, in_c, out_c, k = shape
    case = _pointwise(seed, (h, w, in_c, out_c), "NONE", k)
    g = case.graph
    zp = 127 if sign > 0 else -128
    g.tensors[0].quant = quant(0.02, zp)
    call = lower(g, g.ops[0])
    rng = np.random.default_rng(7100 + seed)
    arrays = [a.copy() for a in _operands(g, call, rng)]
    if trained:
        call, arrays = _with_trained_slice(call, arrays, rng)
    w_idx, b_idx = TRAINED["conv2d_s8"]
    x = arrays[0]
    x[...] = -128 if sign > 0 else 127
    few = rng.random((h, w)) < 0.25  # a quarter of the pixels random, for varied outputs
    x[0, few] = rng.integers(-128, 128, (int(few.sum()), in_c), dtype=np.int8)
    worst = k * k * in_c * 128 * (128 + abs(zp))
    limit = (1 << 30) - 1 - worst
    ex = [0, out_c // 2]
    small = rng.integers(-5000, 5000, out_c)
    arrays[2] = (np.sign(small) * (np.abs(small) & limit)).astype(np.int32)
    arrays[2][ex] = sign * limit
    arrays[1][ex] = -128
    if trained:
        arrays[w_idx][0] = -128
        arrays[1][0] = rng.integers(-127, 128, arrays[1][0].shape)  # the flash row: not read
        tb = arrays[b_idx]
        arrays[b_idx] = (np.sign(tb) * (np.abs(tb) & limit)).astype(np.int32)
        arrays[b_idx][0] = sign * limit
        arrays[2][0] = int(small[0]) & 0xFF  # the flash bias: not read
        if out_c // 2 < call.params["train_rows"]:
            arrays[w_idx][out_c // 2] = -128
        if out_c // 2 < call.params["train_bias_rows"]:
            arrays[b_idx][out_c // 2] = sign * limit
    if over:
        bias = arrays[b_idx] if trained else arrays[2]
        bias[0] = sign * (limit + 1)
    arrays[3][:] = rng.integers((1 << 30) + 1, 1 << 31, out_c)
    arrays[4][:] = rng.integers(-12, -8, out_c)
    arrays[4][ex] = -24
    oh, ow = h - k + 1, w - k + 1
    pure = np.array([[not few[i : i + k, j : j + k].any() for j in range(ow)] for i in range(oh)])
    return call, arrays, ex, pure  # pure: the output pixels whose patch is all extreme


@pytest.mark.parametrize(
    "extreme",
    EXTREMES,
    ids=lambda e: "sign{:+d}{}{}".format(*e[:1], "-over" if e[1] else "", "-trained" if e[2] else ""),
)
@pytest.mark.parametrize("shape", EXTREME_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_variants_at_rq4s_bias_limit_with_extreme_sums(
    shape: tuple[int, ...], extreme: tuple[int, bool, bool]
) -> None:
    """Bit for bit with the reference kernel on the host where the doubled accumulator is at
    its largest: a bias of exactly rq4_bias_limit with the sums at their bound (rq4 on
    accumulators of 2^31 - 2), and one past it (the fallback); with the bias and row of the
    layer's trained slice too (rq4_biases_ok reads the trained biases)."""
    sign, over, trained = extreme
    for seed in range(2):
        call, arrays, ex, pure = _extreme_operands(shape, sign, over, trained, seed)
        ref = _run(call, arrays, "ref")
        dsp = _run(call, arrays, "dsp")
        np.testing.assert_array_equal(dsp, ref)
        at_bound = ref[0][pure][:, ex[0]]
        assert at_bound.size and np.all(np.abs(at_bound.astype(int)) < 127), at_bound  # unclamped
        assert np.unique(ref).size >= 8, np.unique(ref).size  # informative


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_variants_match_the_reference_off_rq4s_path(shape: tuple[int, ...], edge: str) -> None:
    """Bit for bit with the reference kernel on the host (the variants' portable C): the
    channels rq4 does not take fall back (the narrow variant to the GEMM one, the GEMM one to
    the reference's requantization, per channel pair or for the whole layer)."""
    for seed in range(3):
        call, arrays = _edge_operands(shape, edge, seed)
        ref = _run(call, arrays, "ref")
        dsp = _run(call, arrays, "dsp")
        np.testing.assert_array_equal(dsp, ref)
        assert np.unique(ref).size >= 8, np.unique(ref).size  # informative


@pytest.mark.emulator
def test_variants_off_rq4s_path_on_the_emulated_board() -> None:
    """The same fallbacks through the assembly, against TFLite's reference: power-of-two scales
    give every 4th channel a multiplier of exactly 2^30 (narrow -> GEMM; the GEMM pairs with one
    on the reference's requantization, the others in the assembly), and a bias of 2^30 - 2^20
    (doubled, its sums would overflow) sends its channel pair to the reference's requantization
    of halved sums."""
    from tests.kernels.conv.test_dsp_conv_wide1x1 import board_and_tflite

    for k, (h, w, in_c, out_c, edge) in enumerate(
        [(9, 9, 16, 48, "pow2"), (7, 9, 72, 24, "pow2"), (6, 5, 40, 12, "bias")]
    ):
        case = _pointwise(k, (h, w, in_c, out_c))
        g = case.graph
        wt, bt = g.tensors[1], g.tensors[2]
        if edge == "pow2":  # input 2^-6, weights of every 4th channel 2^-7, output a power of 2
            g.tensors[0].quant = quant(2.0**-6, int(g.tensors[0].quant.zero_point[0]))
            scales = np.array(wt.quant.scale, dtype=np.float32)
            scales[::4] = 2.0**-7
            wt.quant = quant(list(scales), 0, 0)
            bt.quant = quant(list(scales * np.float32(2.0**-6)), 0)
            zp = int(g.tensors[3].quant.zero_point[0])
            g.tensors[3].quant = quant(2.0 ** (-4 + round(np.log2(np.sqrt(in_c) / 4))), zp)
        else:
            bt.data = bt.data.copy()
            bt.data[0] = (1 << 30) - (1 << 20)
        for got, want in board_and_tflite(g, f"rq4_edge_{k}", 11 + k):
            assert np.unique(want).size > 8
            np.testing.assert_array_equal(got, want)


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_variants_off_rq4s_path_on_the_emulated_cortex_m7_and_m4(tmp_path, board_name: str) -> None:
    """Every shape and planted edge above, and the cases at rq4's bias limit with extreme sums
    (trained slices included), through the firmware build's objects (the assembly:
    narrow, pair_fast_m7 doubled and single, the stem's unrolled block) on the emulated
    Cortex-M7 and Cortex-M4, against the host's reference kernel, bit for bit."""
    from tests.kernels import grad_support as gs
    from tests.kernels.conv.support import assert_board_matches_ref

    calls = [_edge_operands(shape, edge, 0) for shape in SHAPES for edge in EDGES]
    calls += [_extreme_operands(s, *e, 0)[:2] for s in EXTREME_SHAPES for e in EXTREMES]
    board = gs.run_on_board(calls, tmp_path, board_name)
    for want in assert_board_matches_ref(calls, board):
        assert np.unique(want[-1]).size >= 8
