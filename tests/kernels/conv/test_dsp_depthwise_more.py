"""The depthwise 3x3 variant from a pre-widened copy (depthwise_conv2d_s8_3x3_dsp.c, stride 1
and 2) and its packed stores (four outputs clamped per byte and stored as one word),
against the reference kernel bit for bit on the host, and against TFLite's reference.

The cases are the layers that path takes: stride 1, dilation 1, depth multiplier 1, SAME and
VALID padding, maps from 1x1 to beyond one band of the copy (several bands, or too wide for
it: the other paths), channel counts with and without a partial group of four, trained
slices, and every fused activation (the packed clamp for RELU, RELU6 and RELU_N1_TO_1, none
for NONE), with output zero points that put the clamp bounds anywhere in the int8 range.
"""

from __future__ import annotations

import numpy as np
import pytest

from pytools.model.lowering import lower
from tests.kernels.conv.support import conv_options, depthwise_chain
from tests.kernels.conv.test_conv_kernels import Case, _graph
from tests.kernels.conv.test_dsp_kernels import _compare, _operands, _run
from tests.kernels.support import check_bit_exact, quant

ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def _case(seed: int, activation: str, large: bool = False, stride: int = 1) -> Case:
    rng = np.random.default_rng(31000 + seed + (500 if large else 0) + 1000 * stride)
    c = int(rng.choice([int(rng.integers(1, 41)), 16, 48, 96, 144]))
    padding = str(rng.choice(["SAME", "VALID"]))
    lo, hi = (3, 14) if not large else (14, 52)
    h, w = int(rng.integers(lo, hi)), int(rng.integers(lo, hi))
    if padding == "SAME" and not large and rng.random() < 0.2:
        h, w = int(rng.integers(1, 3)), int(rng.integers(1, 3))  # windows all padding but one
    per_channel = bool(rng.random() < 0.8)
    # Real outputs of about `bound` (the activation's upper bound; 3 for RELU): an output
    # scale that puts that bound inside the int8 range, so both ends of the clamp bite.
    bound = {"NONE": 3.0, "RELU": 3.0, "RELU6": 6.0, "RELU_N1_TO_1": 1.0}[activation]
    spread = 3 * 73 * 74 * 0.02  # the accumulator's spread, in input x filter quanta
    scales = (bound / spread * 10 ** rng.uniform(-0.5, 0.3, c if per_channel else 1)).astype(np.float32)
    wts = rng.integers(-127, 128, (1, 3, 3, c), dtype=np.int8)
    bias = (rng.integers(-3000, 3000, c).astype(np.int32), quant(list(0.02 * scales), 0))
    zp = int(rng.integers(-128, 128)) if activation == "NONE" else int(rng.integers(-128, 0))
    out_q = quant(float(bound / max(127 - zp, 64) * rng.uniform(0.6, 1.2)), zp)
    options = conv_options(padding, stride, activation, depth_multiplier=1)
    in_q = quant(0.02, int(rng.integers(-128, 128)))
    w_q = quant(list(scales), 0, 3)
    if padding == "VALID":
        h, w = max(h, 3), max(w, 3)

    def size(n: int) -> int:
        return -(-n // stride) if padding == "SAME" else -(-(n - 2) // stride)

    out = (1, size(h), size(w), c)
    g = _graph("DEPTHWISE_CONV_2D", (1, h, w, c), in_q, wts, w_q, bias, out, out_q, options)
    return Case(g, out_q, activation)


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("seed", range(25))
def test_depthwise3x3_s1_matches_reference(seed: int, activation: str, trained: bool) -> None:
    _compare(_case(seed, activation), seed, trained)


@pytest.mark.parametrize("large", [False, True])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("seed", range(15))
def test_depthwise3x3_s2_matches_reference(seed: int, activation: str, large: bool) -> None:
    """Stride 2: maps up to 32 outputs wide take the 3x3 variant (depthwise_conv2d_s8_3x3_dsp.c)
    in bands of one row or more, SAME and VALID; wider ones the selector's direct path."""
    _compare(_case(seed, activation, large=large, stride=2), seed, seed % 2 == 0)


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("seed", range(6))
def test_depthwise3x3_s1_large_maps_match_reference(seed: int, activation: str, trained: bool) -> None:
    _compare(_case(seed, activation, large=True), seed, trained)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("seed", range(4))
def test_depthwise3x3_s1_is_bit_exact_with_tflite(seed: int, activation: str) -> None:
    """The optimized kernel (X_run dispatches to it inside dsp_on_host) against TFLite."""
    from tests.kernels.conv.test_dsp_kernels import dsp_on_host

    with dsp_on_host():
        check_bit_exact(_case(seed, activation, large=seed % 2 == 1).graph, np.random.default_rng(seed))


def test_the_clamp_cases_are_informative() -> None:
    """The activations clamp: a good share of the outputs sit at each bound somewhere, and
    the rest spread (so a clamp per byte that picked the wrong side would show)."""
    at_lo = at_hi = inside = 0
    for seed in range(25):
        for activation in ("RELU", "RELU6", "RELU_N1_TO_1"):
            case = _case(seed, activation)
            g = case.graph
            call = lower(g, g.ops[0])
            arrays = _operands(g, call, np.random.default_rng(seed))
            out = _run(call, arrays, "dsp").astype(np.int32)
            lo, hi = call.params["act_min"], call.params["act_max"]
            at_lo += int((out == lo).sum())
            at_hi += int((out == hi).sum() if hi < 127 else 0)
            inside += int(((out > lo) & (out < hi)).sum())
    total = at_lo + at_hi + inside
    assert at_lo > 0.05 * total and at_hi > 0.01 * total and inside > 0.3 * total, (at_lo, at_hi, inside)


# 3x3 depthwise layers in a row: (k, stride, padding, activation, output bound).
CHAIN = (
    (3, 1, "SAME", "RELU6", 6.0),
    (3, 1, "VALID", "RELU", 3.0),
    (3, 1, "SAME", "NONE", 3.0),
    (3, 2, "SAME", "RELU6", 6.0),
    (3, 1, "SAME", "RELU_N1_TO_1", 1.0),
)


@pytest.mark.emulator
@pytest.mark.parametrize(
    "shape", [(8, 8, 48), (40, 40, 18), (20, 20, 24), (7, 9, 13), (12, 17, 37), (6, 64, 12)]
)
def test_depthwise_chain_is_bit_exact_on_the_emulated_board(shape: tuple[int, int, int]) -> None:
    """On the Cortex-M7 build (real LDRD, SSUB8/SEL, and the 3x3 variant's rows in assembly:
    depthwise_conv2d_s8_3x3_dsp.c), against TFLite's reference; 8x8x48 runs in one band of the
    copy, 40x40x18 in bands of two rows with a partial group of channels; 7x9x13 and 12x17x37:
    odd widths and channel counts (whole groups and a last single channel), rows of one to 17
    outputs, the stride-2 layer with padding in one band (its rows in assembly too); 6x64x12:
    bands of a single output row at both strides."""
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_export import write_tflite
    from tests.kernels.conv.test_dsp_kernels import _compile, _on_board
    from tests.test_models import random_inputs

    graph = depthwise_chain(*shape, CHAIN)
    compiled = _compile(graph, "dw_chain_{}x{}x{}".format(*shape))
    inputs = random_inputs(compiled.blob, np.random.default_rng(3), 2)
    expected = [run_tflite(write_tflite(graph), [x])[0] for x in inputs]
    outs, _ = _on_board(compiled, True, inputs)
    for got, want in zip(outs, expected, strict=True):
        assert np.unique(want).size > 20  # the outputs spread
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
@pytest.mark.emulator
def test_mobilenet_v2_forward_with_dsp_kernels_is_bit_exact_on_the_emulated_board() -> None:
    """MobileNetV2-w0.35 128x128 (every depthwise layer 3x3: 64x64 to 4x4 maps, stride 1 and 2,
    bands of one to many rows of the 3x3 variant) on the Cortex-M7 build against TFLite's
    reference."""
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_import import load_tflite
    from pytools.pretrain.mobilenet_v2 import mobilenet_v2_path
    from tests.kernels.conv.test_dsp_kernels import _compile, _on_board

    path = mobilenet_v2_path()
    compiled = _compile(load_tflite(path), path.stem)
    x = np.random.default_rng(0).integers(-128, 128, (1, 128, 128, 3), dtype=np.int8)
    (got,), _ = _on_board(compiled, True, [x])
    want = run_tflite(path.read_bytes(), [x])[0]
    assert np.unique(want).size > 3  # the logits spread
    np.testing.assert_array_equal(got, want)
