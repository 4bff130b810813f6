"""The 3x3 depthwise channel-pair engine's bands and rq3 (firmware/kernels/depthwise_conv2d_s8_3x3_dsp.c)
and the widening's border table (dw_widen_init / dw_widen_rows, depthwise_conv2d_s8_dsp.c), against
the reference kernel bit for bit on the host (the C quads over a ring of three rows) and on the
emulated Cortex-M7 and Cortex-M4 (the blocks of assembly over bands of rows).

On the board each band of output rows runs in one block of assembly (its rows and the group's four
channels inside), a band's last 3 - stride copy rows moved up as the next band's first, the layer's
last row with a partial quad split into its whole quads and a C quad. Outputs quantized as ReLU6
with zero point -128 take rq3 (no sign step). The shapes: MobileNetV2's stride-2 patches (8 outputs
wide, now on the engine), maps of one to six bands, partial last quads at both strides (whose
spills cross band boundaries), explicit padding whose border needs more blocks than the table holds
(the per-pixel selects), rq4 (another zero point) and a clamp inside int8 beside rq3, odd channel
counts, trained slices and two batches.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from pytools.model.kernels import host_lib
from pytools.model.lowering import lower
from tests.kernels.conv.support import conv_options
from tests.kernels.conv.test_conv_kernels import Case, _graph
from tests.kernels.conv.test_dsp_kernels import _compare, _operands, _run, _with_trained_slice
from tests.kernels.support import quant

# (batches, h, w, c, stride, (pad_top, pad_left), (oh, ow), activation, output zero point)
SHAPES = [
    (1, 17, 17, 12, 2, (0, 0), (8, 8), "RELU6", -128),  # MobileNetV2's stride-2 patch, rq3
    (1, 16, 17, 13, 2, (1, 0), (8, 8), "RELU6", -128),  # an edge patch, a partial group of four
    (1, 16, 16, 16, 1, (1, 1), (16, 16), "RELU6", -128),  # two bands
    (1, 8, 8, 24, 1, (1, 1), (8, 8), "RELU6", -128),  # bands of 7 and 1 rows
    (1, 19, 19, 8, 1, (0, 0), (17, 17), "RELU6", -128),  # a last quad of one output in every band
    (1, 40, 12, 8, 1, (1, 1), (40, 12), "RELU6", -128),  # six bands
    (1, 33, 20, 6, 2, (1, 1), (17, 10), "NONE", 5),  # rq4, a last quad of 2 at stride 2, bands
    (1, 30, 9, 9, 1, (1, 1), (30, 9), "RELU6", -60),  # a clamp inside int8, one output past the quads
    (1, 9, 17, 8, 2, (0, 0), (4, 9), "RELU6", -128),  # 3 right border blocks: per-pixel selects
    (1, 6, 4, 8, 1, (1, 9), (6, 8), "RELU6", -128),  # 3 left border blocks: per-pixel selects
    (1, 9, 18, 8, 1, (1, 5), (9, 14), "RELU6", -128),  # two left border blocks from the table
    (2, 12, 11, 8, 1, (1, 1), (12, 11), "RELU6", -128),  # two batches, bands and a partial quad
    (2, 21, 17, 4, 2, (1, 1), (11, 9), "RELU", 0),  # two batches at stride 2, a last quad of one
]


def _case(i: int) -> Case:
    n, h, w, c, st, (pt, pl), (oh, ow), activation, zp = SHAPES[i]
    rng = np.random.default_rng(86000 + i)
    bound = {"NONE": 3.0, "RELU": 3.0, "RELU6": 6.0}[activation]
    in_s = 0.02
    scales = (bound / (3 * 73 * 74 * in_s) * 10 ** rng.uniform(-0.5, 0.3, c)).astype(np.float32)
    wts = rng.integers(-127, 128, (1, 3, 3, c), dtype=np.int8)
    bias = (rng.integers(-3000, 3000, c).astype(np.int32), quant(list(in_s * scales), 0))
    out_q = quant(float(bound / (127 - zp) * rng.uniform(0.8, 1.1)), zp)
    options = conv_options("VALID", st, activation, depth_multiplier=1, explicit_pad=(pt, pl))
    in_q = quant(in_s, int(rng.integers(-128, 128)))
    w_q = quant(list(scales), 0, 3)
    g = _graph("DEPTHWISE_CONV_2D", (n, h, w, c), in_q, wts, w_q, bias, (n, oh, ow, c), out_q, options)
    return Case(g, out_q, activation)


def _pairs(call) -> bool:
    fn = host_lib().depthwise_conv2d_s8_3x3_dsp_pairs
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_char_p]
    return bool(fn(call.packed_params()))


@pytest.mark.parametrize("i", range(len(SHAPES)))
def test_the_cases_take_the_channel_pair_engine(i: int) -> None:
    case = _case(i)
    call = lower(case.graph, case.graph.ops[0])
    assert _pairs(call), call.params
    p = call.params
    assert (p["output_offset"] == -128) == (SHAPES[i][-1] == -128)  # rq3 where named


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("i", range(len(SHAPES)))
def test_bands_match_reference(i: int, trained: bool) -> None:
    out = _compare(_case(i), i, trained)
    assert np.unique(out).size >= 8  # informative: saturated outputs match anything


def _calls() -> list:
    calls = []
    for i in range(len(SHAPES)):
        g = _case(i).graph
        call = lower(g, g.ops[0])
        rng = np.random.default_rng(i)
        arrays = _operands(g, call, rng)
        calls.append((call, arrays))
        calls.append(_with_trained_slice(call, arrays, rng))
    return calls


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"])
def test_bands_are_bit_exact_on_the_emulated_board(tmp_path, board_name: str) -> None:
    """Every shape, with and without a trained slice, on the Cortex-M7 and the Cortex-M4: the
    bands' blocks of assembly against the reference on the host; the harness's guard bytes behind
    the output and the scratch fail a run that writes past them."""
    from tests.kernels import grad_support as gs

    calls = _calls()
    board = gs.run_on_board(calls, tmp_path, board_name)
    for (call, arrays), got in zip(calls, board, strict=True):
        np.testing.assert_array_equal(got[-1], _run(call, arrays, "ref"), err_msg=str(call.params))


def _border_blocks(i: int) -> tuple[int, int]:
    """The copy row's border blocks left and right (dw_widen_init: blocks [0, lo), [hi, blocks))."""
    _, _, w, _, st, (_, pl), (_, ow), _, _ = SHAPES[i]
    blocks = -(-ow // 4) * st + 1
    lo = -(-pl // 4)
    hi = max(lo, min((w + pl) // 4, blocks))
    return lo, blocks - hi


def test_the_shapes_cover_both_border_paths() -> None:
    """The table (at most DW_WIDEN_EDGE = 2 border blocks a side) and the per-pixel selects
    (more: a 9-wide map at stride 2, a left padding of 9)."""
    table = [max(_border_blocks(i)) <= 2 for i in range(len(SHAPES))]
    assert any(table) and not all(table)
    assert any(_border_blocks(i)[0] > 2 for i in range(len(SHAPES)))
    assert any(_border_blocks(i)[1] > 2 for i in range(len(SHAPES)))
