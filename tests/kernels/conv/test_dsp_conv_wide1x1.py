"""Pointwise convolutions with wide inputs (512 to 768 input channels, conv2d_s8_dsp.c's
CONV_WBUF_GROUPS_1X1: the GEMM variant's buffer for 2 to 4 pixels; above 512 channels the wide
variant, conv2d_s8_1x1_wide_dsp.c, runs 4 pixels in it): bit for bit against the reference
kernel on the host, against TFLite's reference, and on the emulated Cortex-M7 (its assembly
block) against TFLite's reference."""

from __future__ import annotations

import numpy as np
import pytest

from tests.kernels.conv.test_conv_kernels import Case, _graph
from tests.kernels.conv.test_dsp_kernels import _compare, dsp_on_host
from tests.kernels.support import check_bit_exact, quant


def _case(
    seed: int, in_c: int | None = None, hw: tuple[int, int] | None = None, out_c: int | None = None
) -> Case:
    rng = np.random.default_rng(52000 + seed)
    in_c = in_c or int(rng.choice([512, 516, 576, 640, 700, 768]))
    out_c = out_c or int(rng.integers(1, 50))
    h, w = hw or (int(rng.integers(1, 7)), int(rng.integers(1, 7)))
    n = 1 if hw else int(rng.integers(1, 3))
    per_channel = bool(rng.random() < 0.8)
    activation = str(rng.choice(["NONE", "RELU6"]))
    scales = (10 ** rng.uniform(-3.5, -2.5, out_c if per_channel else 1)).astype(np.float32)
    out_scale = float(0.02 * np.median(scales) * np.sqrt(in_c) * 70 / 25)
    return pointwise_case(rng, (n, h, w), in_c, out_c, scales, out_scale, activation)


def pointwise_case(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    in_c: int,
    out_c: int,
    scales: np.ndarray,
    out_scale: float,
    activation: str,
) -> Case:
    """A 1x1 CONV_2D (VALID, stride 1) on (batches, h, w) = shape with these weight scales
    (one: per tensor) and output scale: random weights, input zero point and biases from rng;
    the output zero point random for NONE, -128 for the clamped activations."""
    n, h, w = shape
    wts = rng.integers(-127, 128, (out_c, 1, 1, in_c), dtype=np.int8)
    in_q = quant(0.02, int(rng.integers(-128, 128)))
    bias = (rng.integers(-5000, 5000, out_c).astype(np.int32), quant(list(0.02 * scales), 0))
    zp = int(rng.integers(-50, 50)) if activation == "NONE" else -128
    out_q = quant(out_scale, zp)
    options = {"padding": "VALID", "stride_h": 1, "stride_w": 1, "activation": activation}
    wq = quant(list(scales), 0, 0)
    g = _graph("CONV_2D", (n, h, w, in_c), in_q, wts, wq, bias, (n, h, w, out_c), out_q, options)
    return Case(g, out_q, activation)


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("seed", range(16))
def test_wide_1x1_dsp_matches_reference(seed: int, trained: bool) -> None:
    _compare(_case(seed), seed, trained)


def test_the_wide_cases_are_informative() -> None:
    """Most outputs spread over many values (a saturated output would match anything)."""
    outs = [_compare(_case(seed), seed, False) for seed in range(16)]
    spread = [np.unique(o).size >= 8 for o in outs if o.size >= 32]
    assert len(spread) >= 8 and np.mean(spread) >= 0.75, spread


@pytest.mark.parametrize("seed", range(3))
def test_wide_1x1_dsp_is_bit_exact_with_tflite(seed: int) -> None:
    with dsp_on_host():
        check_bit_exact(_case(seed).graph, np.random.default_rng(seed))


@pytest.mark.emulator
def test_wide_1x1_is_bit_exact_on_the_emulated_board() -> None:
    """MCUNet's 4x4x576 -> 96 layer (tiles of 2 pixels) and an odd 3x5x768 -> 33 one."""
    for k, (in_c, hw, out_c) in enumerate([(576, (4, 4), 96), (768, (3, 5), 33)]):
        g = _case(100 + k, in_c, hw, out_c).graph
        for got, want in board_and_tflite(g, f"wide1x1_{in_c}", 7):
            assert np.unique(want).size > 8
            np.testing.assert_array_equal(got, want)


def board_and_tflite(g, name: str, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """g's one CONV_2D compiled as plan `name`, on the emulated Cortex-M7 (the DSP build) and
    through TFLite's reference, for two random inputs (rng seed): (board's, TFLite's) outputs."""
    from pytools.model.ir import Graph, Op
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_export import write_tflite
    from tests.kernels.conv.test_dsp_kernels import _compile, _on_board
    from tests.test_models import random_inputs

    graph = Graph(
        g.tensors,
        [Op(0, "CONV_2D", g.ops[0].inputs, g.ops[0].outputs, g.ops[0].options)],
        g.inputs,
        g.outputs,
    )
    compiled = _compile(graph, name)
    inputs = random_inputs(compiled.blob, np.random.default_rng(seed), 2)
    expected = [run_tflite(write_tflite(graph), [x])[0] for x in inputs]
    outs, _ = _on_board(compiled, True, inputs)
    return list(zip(outs, expected, strict=True))
