"""rq3, rq4 without its sign step (firmware/kernels/conv2d_s8_dsp.h, the proof there): the narrow
conv variant and the stem's unrolled GEMM block take it where a layer's
output offset is -128 (the zero point of a ReLU6 expansion over [0, 6]). Swept against
fixedpoint.h's reference at that offset (and shown wrong at any other), and the variants held to
the reference kernel at that offset on the host and on the emulated Cortex-M7 and Cortex-M4:
negative sums (which rq3 leaves one higher before the shift, so they must still clamp to -128),
rounding near 0, the head of 4 output channels, chunks, trained slices, extreme sums at rq4's
bias limit, a lone last channel, odd tiles."""

from __future__ import annotations

import numpy as np
import pytest

from pytools.model.lowering import lower
from tests.kernels.conv.support import run_c_sweep, xorshift64_c
from tests.kernels.conv.test_dsp_conv_rq4 import _extreme_operands, _pointwise
from tests.kernels.conv.test_dsp_kernels import _operands, _run, _with_trained_slice
from tests.kernels.support import quant

RQ3_SWEEP_C = (
    r"""
#include <stdio.h>
#include <stdlib.h>
#include "fixedpoint.h"
#include "conv2d_s8_dsp.h"
"""
    + xorshift64_c(0x9E3779B97F4A7C15)
    + r"""
/* rq3 of A = 2a against the reference at output offset off, wherever rq4_ok takes the channel
 * and |a| < 2^30; counts checks and mismatches. */
static long long checks = 0, bad = 0;
static void check(int64_t a, int32_t m, int sh, int32_t off) {
    if (a <= -(1 << 30) || a >= (1 << 30)) return;
    const int32_t c = 1 + 2 * off;
    if (!rq4_ok(m, sh, c)) return;
    const struct rq4 q = rq4_of(m, sh, c);
    const int32_t want =
        fp_clamp(fp_multiply_by_quantized_multiplier((int32_t)a, m, sh) + off, -128, 127);
    ++checks;
    bad += rq3((int32_t)(2 * a), q.m, q.s1, q.cc) != want;
}

/* a around the reference's rounding ties of shift sh, both signs (k < 0: negative sums). */
static void ties(int32_t m, int sh, int64_t k, int32_t off) {
    const int e = -sh;
    const int64_t v = k * ((int64_t)1 << e) + ((int64_t)1 << (e - 1));
    const int64_t a = (int64_t)((__int128)v * ((__int128)1 << 31) / m);
    for (int64_t d = -3; d <= 3; ++d) check(a + d, m, sh, off);
}

/* Every shift, edge and random multipliers, small and large sums of both signs, the ties. */
static void sweep(int32_t off, long long random) {
    static const int64_t as[] = {-(1 << 30) + 1, -(1 << 29), -65536, -256, -3, -2, -1, 0, 1,
                                 2, 3, 256, 65535, 1 << 29, (1 << 30) - 1};
    for (int sh = -31; sh <= -1; ++sh) {
        const int32_t ms[] = {(1 << 30) + 1, INT32_MAX, 1518500250,
                              (int32_t)(0x40000001u | (uint32_t)(rnd() >> 34))};
        for (unsigned j = 0; j < sizeof ms / sizeof ms[0]; ++j) {
            for (unsigned i = 0; i < sizeof as / sizeof as[0]; ++i) check(as[i], ms[j], sh, off);
            for (int64_t k = -300; k <= 300; ++k) ties(ms[j], sh, k, off);
        }
    }
    for (long long i = 0; i < random; ++i) {
        const uint64_t r = rnd(), q = rnd();
        const int sh = -1 - (int)(r % 31);
        const int32_t m = (int32_t)(0x40000001u | (uint32_t)(r >> 34));
        int64_t a = (int64_t)(int32_t)(q >> 32) / 2;
        if ((q & 3) == 1) a = (int64_t)(q >> 40) - (1 << 23);
        if ((q & 3) == 2) a >>= (q >> 3) & 31;
        check(a, m, sh, off);
        ties(m, sh, (int64_t)(int32_t)(rnd() >> 32) >> (-sh + 1), off);
    }
}

int main(int argc, char **argv) {
    const long long random = argc > 1 ? atoll(argv[1]) : 1000000;
    sweep(-128, random);
    const long long at_128 = checks, bad_128 = bad;
    /* The condition is needed: at any other offset rq3 misses negative rounding ties. */
    long long missed = 0;
    for (int32_t off = -127; off <= 127; off += 127) {
        checks = bad = 0;
        sweep(off, 0);
        missed += bad > 0;
    }
    printf("%lld %lld\n", missed == 3 ? at_128 : 0, bad_128);
    return bad_128 != 0 || missed != 3;
}
"""
)


def test_rq3_is_bit_identical_with_the_reference_at_offset_minus_128(tmp_path) -> None:
    """Every shift -31..-1, edge multipliers, sums up to +-(2^30 - 1), both rounding ties of
    either sign and random triples at output offset -128; and rq3 shown wrong at offsets -127,
    0 and 127 (the sweep fails otherwise)."""
    checks, bad = run_c_sweep(tmp_path, RQ3_SWEEP_C, 1_000_000)
    assert bad == 0 and checks > 1_000_000, (checks, bad)


# (h, w, in_c, out_c, filter): the narrow variant's rq3 functions (8 input channels; 16 with the
# head of 4 output channels; 8 over 192 outputs; 16 with one output pixel; 24, and 56 in 7 passes,
# in one chunk; 40 in chunks of 52 output channels and a last one of 8), the GEMM variant's
# doubled pixels (20 -> 13: odd pixel and channel counts; 4 x 4 x 32 -> 40: pairs_fast_full), and
# the stem's dense patches (hoisted on 11 x 9 outputs, odd tiles and an odd channel count; per
# tile on 7 x 7).
SHAPES = [
    (9, 9, 8, 32, 1),
    (10, 9, 16, 44, 1),
    (3, 7, 8, 192, 1),
    (1, 1, 16, 116, 1),
    (9, 8, 24, 20, 1),
    (9, 8, 56, 36, 1),
    (8, 9, 40, 164, 1),
    (5, 7, 20, 13, 1),
    (4, 4, 32, 40, 1),
    (13, 11, 3, 16, 3),
    (17, 13, 3, 15, 3),
    (9, 9, 3, 16, 3),
]


def _relu6_operands(shape: tuple[int, ...], seed: int, trained: bool):
    """The case as a ReLU6 layer whose output offset is -128, with biases that centre its sums
    near 0 (about half of them negative: rq3's steps differ from rq4's there) and multipliers
    that put the positive ones inside the int8 range."""
    h, w, in_c, out_c, k = shape
    case = _pointwise(seed, (h, w, in_c, out_c), "RELU6", k)
    g = case.graph
    call = lower(g, g.ops[0])
    assert call.params["output_offset"] == -128
    rng = np.random.default_rng(8100 + seed)
    arrays = [a.copy() for a in _operands(g, call, rng)]
    if trained:
        call, arrays = _with_trained_slice(call, arrays, rng)
    arrays[2][:] = rng.integers(-3000, 3000, out_c)
    arrays[3][:] = rng.integers((1 << 30) + 1, 1 << 31, out_c)
    arrays[4][:] = rng.integers(-13, -9, out_c)
    return call, arrays


def _informative(out: np.ndarray) -> None:
    """About half the outputs clamped at -128 (the negative sums), the rest spread."""
    low = np.mean(out == -128)
    assert 0.2 < low < 0.8 and np.unique(out).size >= 16, (low, np.unique(out).size)


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_variants_with_rq3_match_the_reference(shape: tuple[int, ...], trained: bool) -> None:
    """Bit for bit with the reference kernel on the host (the variants' portable C, rq3 where
    the offset is -128), with the layer's trained slice or without."""
    for seed in range(3):
        call, arrays = _relu6_operands(shape, seed, trained)
        ref = _run(call, arrays, "ref")
        np.testing.assert_array_equal(_run(call, arrays, "dsp"), ref)
        _informative(ref)


# rq4's bias limit with extreme sums of both signs (a negative sum of -(2^30 - 1): rq3's largest
# negative accumulator), on the narrow variant and the stem.
EXTREME_SHAPES = [(9, 9, 8, 32, 1), (10, 9, 16, 48, 1), (9, 9, 3, 16, 3)]
EXTREMES = [(1, False, False), (-1, False, False), (-1, True, False), (-1, False, True)]


def _extreme_rq3_operands(shape: tuple[int, ...], sign: int, over: bool, trained: bool, seed: int):
    """test_dsp_conv_rq4's extreme case with the output offset -128."""
    call, arrays, ex, pure = _extreme_operands(shape, sign, over, trained, seed)
    call.params["output_offset"] = -128
    return call, arrays, ex, pure


@pytest.mark.parametrize("extreme", EXTREMES, ids=str)
@pytest.mark.parametrize("shape", EXTREME_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_variants_with_rq3_at_rq4s_bias_limit(shape: tuple[int, ...], extreme: tuple) -> None:
    """Bit for bit with the reference kernel on the host where the doubled accumulator is at
    its largest, positive or negative, at offset -128."""
    for seed in range(2):
        call, arrays, ex, pure = _extreme_rq3_operands(shape, *extreme, seed)
        ref = _run(call, arrays, "ref")
        np.testing.assert_array_equal(_run(call, arrays, "dsp"), ref)
        at_bound = ref[0][pure][:, ex[0]]
        assert at_bound.size and (extreme[0] < 0 or np.all(at_bound > -128)), at_bound


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_variants_with_rq3_on_the_emulated_cortex_m7_and_m4(tmp_path, board_name: str) -> None:
    """Every shape above (trained slices too) and the extreme sums, through the firmware
    build's objects (narrow8z_m7, narrow16z_m7, narrow_chunkz_m7, pair_fast_m7z,
    pair_fast_m7_7z) on the emulated Cortex-M7 and Cortex-M4, against the host's reference
    kernel, bit for bit."""
    from tests.kernels import grad_support as gs
    from tests.kernels.conv.support import assert_board_matches_ref

    calls = [_relu6_operands(s, 0, t) for s in SHAPES for t in (False, True)]
    calls += [_extreme_rq3_operands(s, *e, 0)[:2] for s in EXTREME_SHAPES for e in EXTREMES]
    board = gs.run_on_board(calls, tmp_path, board_name)
    for k, want in enumerate(assert_board_matches_ref(calls, board)):
        if k < 2 * len(SHAPES):
            _informative(want[-1])


@pytest.mark.emulator
def test_rq3_layers_against_tflite_on_the_emulated_board() -> None:
    """ReLU6 layers quantized over [0, 6] (output zero point -128) through the whole firmware on
    the emulated Cortex-M7, against TFLite's reference: the narrow variant at 8 and 16 input
    channels and the 3-channel stem."""
    from tests.kernels.conv.test_dsp_conv_wide1x1 import board_and_tflite

    for k, (h, w, in_c, out_c, f) in enumerate([(17, 17, 8, 48, 1), (12, 10, 16, 36, 1), (23, 21, 3, 16, 3)]):
        g = _pointwise(k, (h, w, in_c, out_c), "RELU6", f).graph
        g.tensors[3].quant = quant(float(g.tensors[3].quant.scale[0]), -128)
        for got, want in board_and_tflite(g, f"rq3_{k}", 21 + k):
            _informative(want)
            np.testing.assert_array_equal(got, want)
