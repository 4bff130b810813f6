"""The depthwise k x k pair variant's two copies (firmware/kernels/depthwise_conv2d_s8_kxk_pair_dsp.c):
tiles, and the copy that slides down the map (full-width rows, the rows the next output row
shares moved up, stride_h new rows widened), on the layer shapes of MCUNet-5FPS (7x7/2 on
patches and whole maps, 5x5 on padded patches, 4x4 maps with 5x5 and 7x7 filters), against
the reference kernel bit for bit on the host (the portable twins of dsp.h) and on the
emulated Cortex-M7 (the assembly blocks: taps, requantization and store).

Each case says which copy it takes, so both stay covered whatever the cost model picks.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from pytools.model.lowering import lower
from tests.kernels.conv.support import conv_options
from tests.kernels.conv.test_conv_kernels import Case, _graph
from tests.kernels.conv.test_dsp_kernels import _compare
from tests.kernels.support import quant

# (h, w, c, k, stride, (pad_top, pad_left), (oh, ow), activation, slides): MCUNet's layers with
# fewer channels (a partial group of four in some), and shapes around them; slides: the copy
# the cost model (kp_slides) picks.
SHAPES = [
    (18, 18, 20, 7, 2, (3, 3), (8, 8), "RELU6", True),  # a 2x2 patch of MCUNet's 7x7/2 stage
    (19, 18, 13, 7, 2, (3, 3), (8, 8), "RELU6", True),
    (16, 16, 24, 7, 2, (3, 3), (8, 8), "NONE", True),  # 22x22 folded PAD -> 8x8
    (21, 17, 8, 7, 2, (2, 3), (8, 6), "RELU", False),  # 8x6 outputs: one tile pays
    (31, 30, 12, 5, 2, (2, 2), (16, 15), "RELU6", True),
    (20, 20, 16, 5, 1, (1, 1), (18, 18), "RELU6", False),  # a patch of the 5x5 stage
    (16, 16, 22, 5, 1, (2, 2), (16, 16), "NONE", False),
    (8, 8, 16, 7, 2, (3, 3), (4, 4), "RELU6", False),  # 14x14 folded PAD -> 4x4
    (4, 4, 36, 5, 1, (2, 2), (4, 4), "RELU6", False),
    (4, 4, 21, 7, 1, (3, 3), (4, 4), "RELU6", False),
    (9, 11, 7, 7, 3, (3, 2), (3, 4), "RELU6", True),  # stride 3: both weight sets
]


def _case(shape: tuple, seed: int) -> Case:
    h, w, c, k, st, (pt, pl), (oh, ow), activation, _ = shape
    rng = np.random.default_rng(83000 + seed)
    bound = {"NONE": 3.0, "RELU": 3.0, "RELU6": 6.0}[activation]
    in_s = 0.02
    scales = (bound / (k * 73 * 74 * in_s) * 10 ** rng.uniform(-0.5, 0.3, c)).astype(np.float32)
    wts = rng.integers(-127, 128, (1, k, k, c), dtype=np.int8)
    bias = (rng.integers(-3000, 3000, c).astype(np.int32), quant(list(in_s * scales), 0))
    zp = int(rng.integers(-128, 128)) if activation == "NONE" else int(rng.integers(-128, 0))
    out_q = quant(float(bound / max(127 - zp, 64) * rng.uniform(0.6, 1.2)), zp)
    options = conv_options("VALID", st, activation, depth_multiplier=1, explicit_pad=(pt, pl))
    in_q = quant(in_s, int(rng.integers(-128, 128)))
    w_q = quant(list(scales), 0, 3)
    g = _graph("DEPTHWISE_CONV_2D", (1, h, w, c), in_q, wts, w_q, bias, (1, oh, ow, c), out_q, options)
    return Case(g, out_q, activation)


def _lib_flag(name: str, call) -> bool:
    from pytools.model.kernels import host_lib

    fn = getattr(host_lib(), f"depthwise_conv2d_s8_kxk_pair_dsp_{name}")
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_char_p]
    return bool(fn(call.packed_params()))


@pytest.mark.parametrize("i", range(len(SHAPES)))
def test_the_cases_take_the_copy_they_name(i: int) -> None:
    case = _case(SHAPES[i], i)
    call = lower(case.graph, case.graph.ops[0])
    assert _lib_flag("takes", call)
    assert _lib_flag("slides", call) == SHAPES[i][-1], call.params


def test_both_copies_are_covered() -> None:
    slides = {s[-1] for s in SHAPES}
    assert {True, False} <= slides


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("i", range(len(SHAPES)))
def test_pair_copies_match_reference(i: int, trained: bool) -> None:
    out = _compare(_case(SHAPES[i], i), i, trained)
    assert np.unique(out).size >= 8  # informative: a saturated output would match anything


@pytest.mark.emulator
def test_pair_copies_are_bit_exact_on_the_emulated_board() -> None:
    """Every shape above as one plan of independent layers on the Cortex-M7 build (the
    assembly taps, requantization and store), against the reference kernel run on the host
    (explicit padding after the map, as a folded PAD or a patch leaves it, is no TFLite
    layer; the reference is held to TFLite's in test_conv_kernels.py)."""
    from pytools.model.ir import Graph, Op
    from tests.kernels.conv.test_dsp_kernels import _compile, dsp_on_host
    from tests.kernels.support import run_ours

    tensors, ops, ins, outs = [], [], [], []
    for i, shape in enumerate(SHAPES):
        g = _case(shape, i).graph
        base = len(tensors)
        for t in g.tensors:
            tensors.append(type(t)(base + t.index, f"l{i}_{t.name}", t.shape, t.dtype, t.quant, data=t.data))
        op = g.ops[0]
        io = ([base + j for j in op.inputs], [base + j for j in op.outputs])
        ops.append(Op(len(ops), op.kind, *io, op.options))
        ins.append(base + g.inputs[0])
        outs.append(base + g.outputs[0])
    graph = Graph(tensors, ops, inputs=ins, outputs=outs)
    compiled = _compile(graph, "dw_pair_paths")
    rng = np.random.default_rng(9)
    xs = [rng.integers(-128, 128, tensors[i].shape, dtype=np.int8) for i in ins]
    with dsp_on_host(False):
        want = run_ours(graph, xs)
    got = _on_board_all(compiled, xs)
    for g_, w_ in zip(got, want, strict=True):
        assert np.unique(w_).size > 8
        np.testing.assert_array_equal(g_, w_)


def _on_board_all(compiled, xs: list[np.ndarray]) -> list[np.ndarray]:
    """All outputs of one INVOKE of the plan on a fresh emulated board (several inputs)."""
    from tests.kernels.conv.test_dsp_kernels import emulated_model

    with emulated_model(compiled, True, "test-dwpair") as model:
        got, _ = model.invoke(xs)
        return [np.array(g) for g in got]
