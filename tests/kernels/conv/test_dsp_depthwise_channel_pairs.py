"""The depthwise channel-pair engines (firmware/kernels/depthwise_conv2d_s8_dsp.h: a ring of
widened rows, one channel's four outputs per block of SMLAD / SMLATB / SMLABT, weights loaded
once per four outputs): the 3x3 variant's (depthwise_conv2d_s8_3x3_dsp.c, stride 1 and 2)
where its ring fits the bytes the variant plans and it pays (8 outputs wide or more at either
stride), else the band copy, and the 5x5 one at stride 1 and 7x7 at stride 1 and 2
(depthwise_conv2d_s8_kxk_pair_dsp.c) likewise (from one whole quad, 4 outputs), else the tiles;
against the reference kernel bit for bit on the host (the C quads) and on the emulated
Cortex-M7 and Cortex-M4 (the assembly rows).

The shapes cover what the engines' edges are made of: rows of one to 16 quads, partial last
quads (whose assembly stores reach into the next row, which overwrites them), maps of one row,
a 64-wide map in one band (MobileNetV2's first depthwise), SAME, VALID and explicit padding,
channel counts with a partial group of four, trained slices (a group straddling train_rows),
per-tensor scales, every fused activation (the clamp per byte) and gains above 1/2 (the exact
requantization instead of the fused one); the 5x5 and 7x7 ones MCUNet's layer shapes (patches,
16x16, 8x8, 4x4 maps) and ones around them. The shapes the engines leave to the older ones are
here too, so both stay covered.
"""

from __future__ import annotations

import ctypes
import dataclasses

import numpy as np
import pytest

from pytools.model.lowering import lower
from tests.kernels.conv.support import conv_options
from tests.kernels.conv.test_conv_kernels import Case, _graph
from tests.kernels.conv.test_dsp_depthwise_pair_paths import _case as _kxk_case
from tests.kernels.conv.test_dsp_kernels import _compare, _operands, _run, _with_trained_slice
from tests.kernels.support import check_bit_exact, quant

# (h, w, c, stride, padding, activation, gain, pairs): gain: real multipliers around 1 (the
# exact requantization); pairs: the engine the layer takes (depthwise_conv2d_s8_3x3_dsp_pairs).
SHAPES = [
    (16, 16, 12, 1, "SAME", "RELU6", False, True),
    (18, 18, 13, 1, "VALID", "NONE", False, True),  # a partial group of four
    (5, 64, 16, 1, "SAME", "RELU6", False, True),  # one output row per band in the old engine
    (6, 20, 9, 1, "SAME", "RELU_N1_TO_1", False, True),
    (4, 16, 5, 1, "SAME", "NONE", False, True),
    (1, 16, 8, 1, "SAME", "RELU", False, True),  # one row: the rows above and below all padding
    (6, 24, 7, 1, "SAME", "RELU6", True, True),
    (9, 64, 8, 2, "SAME", "RELU6", False, True),  # 32 wide, one band in the old engine
    (33, 32, 20, 2, "SAME", "NONE", False, True),
    (11, 33, 12, 2, "VALID", "RELU6", False, True),
    (10, 40, 8, 2, "SAME", "NONE", True, True),
    (8, 8, 16, 1, "SAME", "RELU6", False, True),  # 8 wide: two quads
    (4, 4, 12, 1, "SAME", "RELU6", False, False),
    (5, 18, 13, 1, "SAME", "RELU6", False, True),  # a partial last quad
    (7, 17, 6, 1, "VALID", "RELU", False, True),  # 15 wide: a last quad of 3
    (7, 9, 6, 2, "SAME", "RELU", False, False),
    (5, 38, 9, 2, "SAME", "RELU6", False, True),  # 19 wide: a partial last quad
    (5, 58, 8, 2, "SAME", "NONE", False, False),
    (6, 17, 10, 1, "SAME", "RELU6", False, True),  # 17 wide: a last quad of one output
    (7, 23, 9, 1, "VALID", "NONE", False, True),  # 21 wide
    (9, 34, 12, 2, "SAME", "RELU", False, True),  # 17 wide at stride 2 (21: the ring does not fit)
    (9, 7, 10, 1, "SAME", "RELU6", False, False),  # 7 wide: the band copy pays
    (6, 9, 7, 1, "VALID", "NONE", False, False),  # 7 wide, VALID
    (5, 10, 13, 1, "SAME", "RELU6", False, True),  # 10 wide: two quads and a partial one
    (7, 9, 9, 1, "SAME", "NONE", True, True),  # 9 wide: a last quad of one output
    (8, 30, 6, 2, "SAME", "RELU", False, True),  # 15 wide at stride 2 (from 8 wide: rq3, widening once)
]


def _case(shape: tuple, seed: int) -> Case:
    h, w, c, st, padding, activation, gain, _ = shape
    rng = np.random.default_rng(84000 + seed)
    in_s = 0.02
    per_channel = seed % 5 != 3
    n = c if per_channel else 1
    if gain:  # multipliers from 0.6 to 3: left shifts and M < 2^30 fall off the fused path
        wts = rng.integers(-3, 4, (1, 3, 3, c), dtype=np.int8)
        scales = (10 ** rng.uniform(-2, -1, n)).astype(np.float32)
        out_s = float(in_s * scales.max() / rng.uniform(0.6, 3.0))
        zp = int(rng.integers(-20, 20))
    else:
        bound = {"NONE": 3.0, "RELU": 3.0, "RELU6": 6.0, "RELU_N1_TO_1": 1.0}[activation]
        wts = rng.integers(-127, 128, (1, 3, 3, c), dtype=np.int8)
        scales = (bound / (3 * 73 * 74 * in_s) * 10 ** rng.uniform(-0.5, 0.3, n)).astype(np.float32)
        zp = int(rng.integers(-128, 128)) if activation == "NONE" else int(rng.integers(-128, 0))
        out_s = float(bound / max(127 - zp, 64) * rng.uniform(0.6, 1.2))
    bias = (rng.integers(-3000, 3000, c).astype(np.int32), quant(list(np.float32(in_s) * scales), 0))
    options = conv_options(padding, st, activation, depth_multiplier=1)
    in_q = quant(in_s, int(rng.integers(-128, 128)))
    w_q = quant(list(scales), 0, 3)

    def size(n: int) -> int:
        return -(-n // st) if padding == "SAME" else -(-(n - 2) // st)

    out = (1, size(h), size(w), c)
    g = _graph("DEPTHWISE_CONV_2D", (1, h, w, c), in_q, wts, w_q, bias, out, quant(out_s, zp), options)
    return Case(g, quant(out_s, zp), activation)


# 5x5 at stride 1 and 7x7 at stride 1 and 2, explicit padding (as a folded PAD or a patch leaves it):
# (h, w, c, k, stride, (pad_top, pad_left), (oh, ow), activation, quads): quads: the engine the
# layer takes (depthwise_conv2d_s8_kxk_pair_dsp_quads).
SHAPES_KQ = [
    (20, 20, 16, 5, 1, (2, 2), (20, 20), "RELU6", True),
    (21, 18, 13, 5, 1, (1, 1), (19, 16), "RELU6", True),  # a partial group of four
    (16, 16, 22, 5, 1, (2, 2), (16, 16), "NONE", True),
    (2, 16, 8, 5, 1, (2, 2), (2, 16), "RELU", True),  # every window reaches into the padding
    (20, 20, 16, 5, 1, (1, 1), (18, 18), "RELU6", True),  # a patch of MCUNet's 5x5 stage
    (21, 21, 12, 5, 1, (1, 1), (19, 19), "NONE", True),  # a partial last quad of 3
    (8, 8, 12, 5, 1, (2, 2), (8, 8), "RELU6", True),  # 8 wide: two quads
    (4, 4, 36, 5, 1, (2, 2), (4, 4), "RELU6", True),  # one quad per row
    (6, 100, 4, 5, 1, (2, 2), (6, 100), "RELU6", False),  # the ring needs more than the tiles plan
    (18, 18, 20, 7, 2, (3, 3), (8, 8), "RELU6", True),  # a 2x2 patch of MCUNet's 7x7/2 stage
    (19, 18, 13, 7, 2, (3, 3), (8, 8), "RELU6", True),
    (16, 16, 24, 7, 2, (3, 3), (8, 8), "NONE", True),
    (9, 16, 12, 7, 2, (3, 3), (5, 8), "RELU", True),
    (8, 8, 16, 7, 2, (3, 3), (4, 4), "RELU6", True),  # one quad per row
    (13, 11, 8, 7, 2, (3, 3), (7, 6), "RELU", True),  # 6 wide: a last quad of 2
    (7, 64, 4, 7, 2, (3, 3), (4, 32), "RELU6", False),  # the ring needs more than planned
    # 7x7/2 wider than 8 (so a partial last quad) needs a ring of 3 quads or more, 2464 bytes,
    # past the 2032 the layer plans: the tiles run (kq7_row's partial quads are never reached).
    (21, 21, 12, 7, 2, (3, 3), (11, 11), "RELU6", False),
    (12, 17, 12, 5, 1, (2, 2), (12, 17), "RELU6", True),  # a last quad of one output
    (21, 21, 8, 5, 1, (2, 2), (21, 21), "NONE", True),  # 21 wide
    (3, 3, 8, 5, 1, (2, 2), (3, 3), "RELU6", False),  # narrower than a quad: the tiles
    (6, 5, 8, 7, 2, (3, 3), (3, 3), "RELU", False),  # narrower than a quad
    (7, 5, 9, 5, 1, (2, 2), (7, 5), "RELU6", True),  # 5 wide: a last quad of one output
    (13, 11, 8, 7, 2, (3, 3), (7, 5), "NONE", False),  # 5 wide at stride 2: the ring needs more than planned
    # 7x7 at stride 1 (MCUNet's 4x4x288 layer; its weights E0, O1, E1, O2, E2, O3, E3 per row),
    # without a clamp (kq7s1_row has none: a clamped layer keeps the tiles)
    (4, 4, 20, 7, 1, (3, 3), (4, 4), "NONE", True),  # every window reaches into the padding
    (8, 8, 13, 7, 1, (3, 3), (8, 8), "NONE", True),  # two quads, a partial group of four
    (12, 12, 8, 7, 1, (0, 0), (6, 6), "NONE", True),  # VALID, a last quad of 2
    (9, 11, 9, 7, 1, (3, 3), (9, 5), "NONE", True),  # a last quad of one output
    (6, 3, 8, 7, 1, (3, 3), (6, 3), "NONE", False),  # narrower than a quad: the tiles
    (8, 8, 12, 7, 1, (3, 3), (8, 8), "RELU6", False),  # a clamp: the tiles
]

# Two batches through each engine's paths (the kernels loop over batches; the compiler's layers
# have one): (SHAPES_KQ or SHAPES, index) of the single-batch shape.
BATCHED = [(False, 0), (False, 18), (False, 16), (True, 17), (True, 18), (True, 11), (True, 24)]


def _batched(kq: bool, i: int, n: int = 2) -> Case:
    """Shape i of SHAPES_KQ (kq) or SHAPES with n batches: the same layer, input and output
    n deep."""
    case = _kxk_case(SHAPES_KQ[i], i) if kq else _case(SHAPES[i], i)
    g = case.graph
    op = g.ops[0]
    tensors = list(g.tensors)
    for t in (op.inputs[0], op.outputs[0]):
        tensors[t] = dataclasses.replace(tensors[t], shape=(n, *tensors[t].shape[1:]))
    return dataclasses.replace(case, graph=dataclasses.replace(g, tensors=tensors))


def _flag(name: str, call) -> bool:
    from pytools.model.kernels import host_lib

    fn = getattr(host_lib(), name)
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_char_p]
    return bool(fn(call.packed_params()))


def _pairs(call) -> bool:
    return _flag("depthwise_conv2d_s8_3x3_dsp_pairs", call)


def _quads(call) -> bool:
    return _flag("depthwise_conv2d_s8_kxk_pair_dsp_quads", call)


def engine_bytes(call) -> int | None:
    """The scratch bytes a channel-pair engine writes for the layer (None: it runs another
    engine) on the host: the 3x3 one's ring of three rows, the 5x5 / 7x7 one's four channels'
    constants and ring of filter_h rows (blocks of 32 bytes; depthwise_conv2d_s8_3x3_dsp.c and
    _kxk_pair_dsp.c). Less than the layer plans: the planned size is the older engines' (on the
    board the 3x3 one fills those planned bytes with bands of rows, which the board harness's guard
    behind the scratch holds it to: test_dsp_depthwise_pair_bands.py)."""
    p = call.params
    quads, k, st = -(-p["output_w"] // 4), p["filter_h"], p["stride_w"]
    if k == 3 and _pairs(call):
        return 3 * (quads * st + 1) * 32
    if k in (5, 7) and _quads(call):
        words = 7 if (k, st) == (7, 1) else 4  # weight words per filter row
        blocks = quads + 1 if k == 5 else quads + 2 if st == 1 else 2 * quads + 2
        return 4 * (48 + 4 * words * k) + k * blocks * 32
    return None


@pytest.mark.parametrize("i", range(len(SHAPES)))
def test_the_cases_take_the_engine_they_name(i: int) -> None:
    case = _case(SHAPES[i], i)
    call = lower(case.graph, case.graph.ops[0])
    assert _pairs(call) == SHAPES[i][-1], call.params


@pytest.mark.parametrize("i", range(len(SHAPES_KQ)))
def test_the_kxk_cases_take_the_engine_they_name(i: int) -> None:
    case = _kxk_case(SHAPES_KQ[i], i)
    call = lower(case.graph, case.graph.ops[0])
    assert _flag("depthwise_conv2d_s8_kxk_pair_dsp_takes", call)
    assert _quads(call) == SHAPES_KQ[i][-1], call.params


def test_the_cases_cover_both_engines() -> None:
    assert {s[-1] for s in SHAPES if s[3] == 1} == {s[-1] for s in SHAPES if s[3] == 2} == {True, False}
    for k in (5, 7):
        assert {s[-1] for s in SHAPES_KQ if s[3] == k} == {True, False}


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("i", range(len(SHAPES)))
def test_pairs_match_reference(i: int, trained: bool) -> None:
    out = _compare(_case(SHAPES[i], i), i, trained)
    if not (trained and SHAPES[i][6]):  # a trained slice's biases saturate the gain cases
        assert out.size < 16 or np.unique(out).size >= 8  # informative: saturated outputs match anything


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("i", range(len(SHAPES_KQ)))
def test_kxk_quads_match_reference(i: int, trained: bool) -> None:
    out = _compare(_kxk_case(SHAPES_KQ[i], i), i, trained)
    assert out.size < 16 or np.unique(out).size >= 8


@pytest.mark.parametrize("kq, i", BATCHED)
def test_two_batches_take_the_engine(kq: bool, i: int) -> None:
    g = _batched(kq, i).graph
    call = lower(g, g.ops[0])
    assert call.params["batches"] == 2
    assert (_quads if kq else _pairs)(call), call.params


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("kq, i", BATCHED)
def test_two_batches_match_reference(kq: bool, i: int, trained: bool) -> None:
    """Each batch its own: the engines' batch offsets, and the last row of the first batch
    (whose quads would otherwise reach into the second batch's first row)."""
    case = _batched(kq, i)
    out = _compare(case, 100 + i, trained)
    assert np.unique(out).size >= 8
    assert not np.array_equal(out[0], out[1])  # the batches differ: an engine that ran one twice fails
    if not (trained or kq):  # the reference's batches, TFLite's (explicit_pad is ours alone)
        check_bit_exact(case.graph, np.random.default_rng(i), trials=1)


def _calls() -> list:
    calls = []
    cases = [_case(s, i) for i, s in enumerate(SHAPES)] + [_kxk_case(s, i) for i, s in enumerate(SHAPES_KQ)]
    cases += [_batched(kq, i) for kq, i in BATCHED]
    for i, case in enumerate(cases):
        g = case.graph
        call = lower(g, g.ops[0])
        rng = np.random.default_rng(i)
        arrays = _operands(g, call, rng)
        calls.append((call, arrays))
        calls.append(_with_trained_slice(call, arrays, rng))
    return calls


@pytest.mark.parametrize("kq, i", [(False, 0), (False, 7), (True, 0), (True, 9), (True, 23)])
def test_the_engines_write_exactly_their_bytes(kq: bool, i: int, monkeypatch) -> None:
    """With the scratch cut to engine_bytes the engine runs bit-exact; 8 bytes fewer and the
    guard behind the scratch catches its writes (so engine_bytes is exactly what it uses)."""
    from pytools.model import kernels

    shape, make = (SHAPES_KQ[i], _kxk_case) if kq else (SHAPES[i], _case)
    g = make(shape, i).graph
    call = lower(g, g.ops[0])
    used = engine_bytes(call)
    assert used is not None and used < kernels.scratch_size(call)
    arrays = _operands(g, call, np.random.default_rng(i))
    ref = _run(call, arrays, "ref")
    for cut, fails in ((used, False), (used - 8, True)):
        monkeypatch.setattr(kernels, "scratch_size", lambda call, cut=cut: cut)
        if fails:
            with pytest.raises(RuntimeError, match=r"past the \d+ bytes \w+_scratch_size gives"):
                _run(call, arrays, "dsp")
        else:
            np.testing.assert_array_equal(_run(call, arrays, "dsp"), ref)


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"])
def test_pairs_are_bit_exact_on_the_emulated_board(tmp_path, board_name: str) -> None:
    """Every shape, with and without a trained slice, two batches too, on the Cortex-M7
    (mps2_an500) and the Cortex-M4 (mps2_an386) builds: the assembly rows, against the
    reference on the host. The harness's guard bytes behind the output and the scratch fail the
    run where an engine writes past them (a last row's whole quads, say)."""
    from tests.kernels import grad_support as gs

    calls = _calls()
    board = gs.run_on_board(calls, tmp_path, board_name)
    for (call, arrays), got in zip(calls, board, strict=True):
        np.testing.assert_array_equal(got[-1], _run(call, arrays, "ref"), err_msg=str(call.params))


@pytest.mark.emulator
def test_the_board_harness_catches_a_write_past_the_output(tmp_path) -> None:
    """The guard those runs rely on: the output operand one byte short of what the engine
    writes (a 19-wide map, a partial last quad), and the harness names the call and operand."""
    from tests.kernels import grad_support as gs

    g = _case(SHAPES[16], 16).graph
    call = lower(g, g.ops[0])
    assert _pairs(call)
    arrays = _operands(g, call, np.random.default_rng(0))
    arrays[-1] = arrays[-1].reshape(-1)[:-1]
    with pytest.raises(AssertionError, match=rf"guard: call 0 operand {len(arrays) - 1} byte 0"):
        gs.run_on_board([(call, arrays)], tmp_path)
