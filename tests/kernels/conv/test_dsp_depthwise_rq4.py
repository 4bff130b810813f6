"""The depthwise channel-pair engines' requantization on doubled accumulators (dwq_rq4,
firmware/kernels/depthwise_conv2d_s8_dsp.h: weights and biases doubled, SMMLAR with C =
(1 + 2 output_offset) << s1, no QADD), at the edges of the conditions that let a channel group
take it (dwq_rq4_ok), and just past them, where the group takes the C quads on requant_fast.h's
rq_fused instead: a multiplier of exactly 2^30 (fast, not rq4), a bias at the largest magnitude
it allows and one more, |1 + 2 output_offset| << s1 at 2^30 - 3 and past it. Each on a 3x3
(stride 1 and 2), a 5x5 and a 7x7/2 layer the engines take, against the reference kernel bit for
bit on the host and on the emulated Cortex-M7 and Cortex-M4 (the blocks of assembly)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pytools.model.lowering import lower
from tests.kernels.conv.test_dsp_depthwise_channel_pairs import SHAPES, SHAPES_KQ, _case, _pairs, _quads
from tests.kernels.conv.test_dsp_depthwise_pair_paths import _case as _kxk_case
from tests.kernels.conv.test_dsp_kernels import _operands, _run

BIAS, MULTIPLIERS, SHIFTS = 2, 3, 4  # depthwise_conv2d_s8.h's operand order

# The engines' layers: SHAPES[0] (3x3, 16x16x12), SHAPES[9] (3x3/2 VALID, 33 -> 16 wide, 12 channels),
# SHAPES_KQ[2] (5x5, 16x16x22), SHAPES_KQ[11] (7x7/2 -> 8x8x24); all without a clamp or with one.
LAYERS = [(False, 0), (False, 9), (True, 2), (True, 11)]
EDGES = ["multiplier_2_30", "bias_at_limit", "bias_past_limit", "offset_at_limit", "offset_past_limit"]


def _layer(kq: bool, i: int):
    case = _kxk_case(SHAPES_KQ[i], i) if kq else _case(SHAPES[i], i)
    g = case.graph
    call = lower(g, g.ops[0])
    assert (_quads if kq else _pairs)(call), call.params
    return g, call


def _edge(kq: bool, i: int, edge: str):
    """The layer's call and operands with channel group 1 (channels 4..7) at the edge, its
    channel 5 past it where the edge says so; the other groups as lowered."""
    g, call = _layer(kq, i)
    rng = np.random.default_rng(1400 + 10 * i + kq)
    arrays = _operands(g, call, rng)
    p = dict(call.params)
    assert p["per_channel"] and p["input_c"] >= 8
    m = arrays[MULTIPLIERS].copy()
    s = arrays[SHIFTS].copy()
    b = (arrays[BIAS] if p["has_bias"] else np.zeros(p["input_c"], np.int32)).copy()
    io = abs(p["input_offset"])
    sums = p["filter_h"] * p["filter_w"] * 128 * (128 + io)
    limit = (1 << 30) - 1 - sums  # the largest |bias| dwq_rq4 takes
    if edge == "multiplier_2_30":
        m[5] = 1 << 30  # requant_fast.h takes it, dwq_rq4 does not
    elif edge in ("bias_at_limit", "bias_past_limit"):
        b[4:8] = [limit, -limit, limit, -limit]
        if edge == "bias_past_limit":
            b[5] = -(limit + 1)
    else:  # |c| << s1 <= 2^30 - 3 with s1 = 24: |c| <= 63, c = 1 + 2 offset
        s[4:8] = -25
        p["output_offset"] = 31 if edge == "offset_at_limit" else 32
        p["act_min"], p["act_max"] = -128, 127
    arrays[MULTIPLIERS], arrays[SHIFTS], arrays[BIAS] = m, s, b
    p["has_bias"] = 1
    return dataclasses.replace(call, params=p), arrays


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("kq, i", LAYERS)
def test_rq4_edges_match_reference(kq: bool, i: int, edge: str) -> None:
    call, arrays = _edge(kq, i, edge)
    ref = _run(call, arrays, "ref")
    np.testing.assert_array_equal(_run(call, arrays, "dsp"), ref)
    others = np.delete(ref, range(4, 8), axis=-1)  # the groups as lowered: informative outputs
    assert np.unique(others).size >= 8


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"])
def test_rq4_edges_are_bit_exact_on_the_emulated_board(tmp_path, board_name: str) -> None:
    from tests.kernels import grad_support as gs

    calls = [_edge(kq, i, edge) for kq, i in LAYERS for edge in EDGES]
    board = gs.run_on_board(calls, tmp_path, board_name)
    for (call, arrays), got in zip(calls, board, strict=True):
        np.testing.assert_array_equal(got[-1], _run(call, arrays, "ref"), err_msg=str(call.params))
