"""CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: our lowering + C kernels against TFLite's
reference kernels, bit for bit, on randomized (seeded, reproducible) cases.

Every case picks its output scale from the expected spread of the accumulators, so outputs
use much of the int8 range; `_assert_informative` guards against vacuous passes (an output
that is all saturated or constant would match TFLite whatever the arithmetic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from pytools.model.ir import Graph, ModelError, Op, Quant, Tensor
from pytools.model.lowering import lower
from pytools.model.oracle import run_tflite
from pytools.model.quant import activation_range
from pytools.model.tflite_export import write_tflite
from tests.kernels.support import check_bit_exact, quant, random_input, run_ours

SEEDS = range(36)
# E[(x - zp)^2] for x uniform on int8: the input spread the output scale is chosen for.
_X_VAR = (256**2 - 1) / 12


@dataclass
class Case:
    graph: Graph
    out_quant: Quant
    activation: str
    # TFLite's int8 CONV_2D and DEPTHWISE_CONV_2D insist on a bias tensor, so a bias-less
    # graph is checked against TFLite running `oracle`: the same layer with a zero bias.
    oracle: Graph | None = None


def _check(case: Case, seed: int) -> np.ndarray:
    """Bit-exact against TFLite; returns our output of the last trial."""
    rng = np.random.default_rng(seed)
    if case.oracle is None:
        return check_bit_exact(case.graph, rng)[0]
    model = write_tflite(case.oracle)
    for _ in range(2):
        x = random_input(case.graph.tensor(0), rng)
        ours = run_ours(case.graph, [x])[0]
        np.testing.assert_array_equal(ours, run_tflite(model, [x])[0])
    return ours


def _activation(rng: np.random.Generator) -> str:
    return str(rng.choice(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"], p=[0.4, 0.3, 0.2, 0.1]))


def _output_zero_point(rng: np.random.Generator, activation: str) -> int:
    # A ReLU output with its zero point near 127 has only a few levels left: keep room.
    if activation == "NONE":
        return int(rng.integers(-128, 128))
    return int(rng.integers(-128, 48))


def _filter_scales(rng: np.random.Generator, channels: int, per_channel: bool) -> np.ndarray:
    if not per_channel:
        return np.array([10 ** rng.uniform(-3, -1)], dtype=np.float32)
    # Spread over up to 2.5 orders of magnitude, as trained per-channel filters are.
    return (10 ** rng.uniform(-3.5, -1.0, channels)).astype(np.float32)


def _weights(rng: np.random.Generator, shape: tuple[int, ...], scales: np.ndarray, axis: int) -> np.ndarray:
    """int8 weights whose integer range shrinks as the channel's scale grows, so every channel's
    real output has a similar magnitude (the multipliers still differ by orders of magnitude)."""
    ranges = np.clip(np.round(127 * scales.min() / scales), 1, 127)
    bshape = [1] * len(shape)
    bshape[axis] = -1
    r = ranges.reshape(bshape) if scales.size > 1 else ranges[0]
    return np.round(rng.uniform(-1, 1, shape) * r).astype(np.int8)


def _channel_rms(w: np.ndarray, axis: int) -> np.ndarray:
    """Root mean square of each output channel's weights (at least 1)."""
    other = tuple(i for i in range(w.ndim) if i != axis)
    return np.maximum(np.sqrt(np.mean(w.astype(np.float64) ** 2, axis=other)), 1.0)


def _output_scale(
    rng: np.random.Generator, in_scale: float, w_scales: np.ndarray, w: np.ndarray, axis: int, taps: int
) -> float:
    """An output scale putting ~25 quanta on one standard deviation of a typical channel."""
    rms = _channel_rms(w, axis)
    real_std = in_scale * w_scales.astype(np.float64) * rms * math.sqrt(2 * taps * _X_VAR)
    return float(np.median(real_std) / 25 * 10 ** rng.uniform(-0.3, 0.3))


def _bias(
    rng: np.random.Generator, in_scale: float, w_scales: np.ndarray, w: np.ndarray, axis: int, taps: int
) -> tuple[np.ndarray, Quant]:
    """(int32 bias of about one accumulator standard deviation per channel, its quantization:
    input scale x filter scale, as the converter writes it)."""
    acc_std = _channel_rms(w, axis) * math.sqrt(taps * _X_VAR)
    data = np.round(rng.normal(0, 1, acc_std.size) * acc_std).astype(np.int32)
    s = (np.float32(in_scale) * w_scales).astype(np.float32)
    return data, quant([float(x) for x in s], 0)


def _graph(
    kind: str,
    in_shape: tuple[int, ...],
    in_q: Quant,
    w: np.ndarray,
    w_q: Quant,
    bias: tuple[np.ndarray, Quant] | None,
    out_shape: tuple[int, ...],
    out_q: Quant,
    options: dict,
    two_inputs: bool = False,
) -> Graph:
    tensors = [
        Tensor(0, "input", tuple(in_shape), "int8", in_q),
        Tensor(1, "filter", tuple(w.shape), "int8", w_q, data=w),
    ]
    if bias is not None:
        tensors.append(Tensor(2, "bias", (bias[0].size,), "int32", bias[1], data=bias[0]))
    out = len(tensors)
    tensors.append(Tensor(out, "output", tuple(out_shape), "int8", out_q))
    # No bias: an omitted optional input (-1), as the converter writes it; int8 CONV_2D in
    # TFLite refuses a node with only two inputs.
    inputs = list(range(out)) if bias is not None or two_inputs else [0, 1, -1]
    op = Op(0, kind, inputs, [out], options)
    return Graph(tensors, [op], inputs=[0], outputs=[out])


def _out_size(padding: str, size: int, filt: int, stride: int, dilation: int) -> int:
    if padding == "SAME":
        return math.ceil(size / stride)
    return math.ceil((size - (filt - 1) * dilation) / stride)


def _assert_informative(out: np.ndarray, case: Case) -> bool:
    """The output spreads over several values and is not mostly pinned to the clamp bounds.
    Returns whether the case was wide enough to be checked (a narrow clamp such as RELU6 or
    RELU_N1_TO_1 on a coarse scale, or a handful of outputs, legitimately saturates)."""
    lo, hi = activation_range(case.activation, case.out_quant)
    if hi - lo < 64 or out.size < 16:
        return False
    values = np.unique(out)
    pinned = np.mean((out == lo) | (out == hi))
    assert values.size >= 8, f"only {values.size} distinct output values"
    assert pinned <= 0.8, f"{pinned:.0%} of the output is at the clamp bounds [{lo}, {hi}]"
    return True


# --- CONV_2D -----------------------------------------------------------------------------


def conv_case(seed: int) -> Case:
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(1, 3))
    in_c, out_c = (int(x) for x in rng.integers(1, 33, 2))
    fh, fw = (int(x) for x in rng.choice([1, 1, 2, 3, 3, 5], 2))
    sh, sw = (int(x) for x in rng.integers(1, 4, 2))
    dh, dw = (int(x) for x in rng.choice([1, 1, 2, 3], 2))
    padding = str(rng.choice(["SAME", "VALID"]))
    h = int(rng.integers((fh - 1) * dh + 1, (fh - 1) * dh + 9))
    w = int(rng.integers((fw - 1) * dw + 1, (fw - 1) * dw + 9))
    activation = _activation(rng)
    per_channel = bool(rng.random() < 0.85)
    in_q = quant(10 ** rng.uniform(-2.5, -0.5), int(rng.integers(-128, 128)))
    scales = _filter_scales(rng, out_c, per_channel)
    wts = _weights(rng, (out_c, fh, fw, in_c), scales, 0)
    taps = fh * fw * in_c
    in_s = float(in_q.scale[0])
    bias = None
    if rng.random() < 0.8:
        bias = _bias(rng, in_s, scales, wts, 0, taps)
    out_q = quant(_output_scale(rng, in_s, scales, wts, 0, taps), _output_zero_point(rng, activation))
    oh, ow = _out_size(padding, h, fh, sh, dh), _out_size(padding, w, fw, sw, dw)
    options = {
        "padding": padding,
        "stride_h": sh,
        "stride_w": sw,
        "dilation_h": dh,
        "dilation_w": dw,
        "activation": activation,
    }
    w_q = quant(list(scales), 0, 0)
    shapes = ((n, h, w, in_c), (n, oh, ow, out_c))
    g = _graph("CONV_2D", shapes[0], in_q, wts, w_q, bias, shapes[1], out_q, options)
    oracle = None
    if bias is None:
        zero = _bias(rng, in_s, scales, wts, 0, taps)[1]
        oracle = _graph(
            "CONV_2D", shapes[0], in_q, wts, w_q, (np.zeros(out_c, np.int32), zero), shapes[1], out_q, options
        )
    return Case(g, out_q, activation, oracle)


@pytest.mark.parametrize("seed", SEEDS)
def test_conv2d_random(seed: int) -> None:
    case = conv_case(seed)
    out = _check(case, seed)
    _assert_informative(out, case)


# --- DEPTHWISE_CONV_2D -------------------------------------------------------------------


def depthwise_case(seed: int) -> Case:
    rng = np.random.default_rng(2000 + seed)
    n = int(rng.integers(1, 3))
    in_c = int(rng.integers(1, 33))
    mult = int(rng.integers(1, 4))
    out_c = in_c * mult
    fh, fw = (int(x) for x in rng.choice([1, 2, 3, 3, 5], 2))
    sh, sw = (int(x) for x in rng.integers(1, 4, 2))
    dh, dw = (int(x) for x in rng.choice([1, 1, 2, 3], 2))
    padding = str(rng.choice(["SAME", "VALID"]))
    h = int(rng.integers((fh - 1) * dh + 1, (fh - 1) * dh + 10))
    w = int(rng.integers((fw - 1) * dw + 1, (fw - 1) * dw + 10))
    activation = _activation(rng)
    per_channel = bool(rng.random() < 0.85)
    in_q = quant(10 ** rng.uniform(-2.5, -0.5), int(rng.integers(-128, 128)))
    scales = _filter_scales(rng, out_c, per_channel)
    wts = _weights(rng, (1, fh, fw, out_c), scales, 3)
    taps = fh * fw
    in_s = float(in_q.scale[0])
    bias = None
    if rng.random() < 0.8:
        bias = _bias(rng, in_s, scales, wts, 3, taps)
    out_q = quant(_output_scale(rng, in_s, scales, wts, 3, taps), _output_zero_point(rng, activation))
    oh, ow = _out_size(padding, h, fh, sh, dh), _out_size(padding, w, fw, sw, dw)
    options = {
        "padding": padding,
        "stride_h": sh,
        "stride_w": sw,
        "dilation_h": dh,
        "dilation_w": dw,
        "depth_multiplier": mult,
        "activation": activation,
    }
    w_q = quant(list(scales), 0, 3)
    shapes = ((n, h, w, in_c), (n, oh, ow, out_c))
    g = _graph("DEPTHWISE_CONV_2D", shapes[0], in_q, wts, w_q, bias, shapes[1], out_q, options)
    oracle = None
    if bias is None:
        zero = (np.zeros(out_c, np.int32), _bias(rng, in_s, scales, wts, 3, taps)[1])
        oracle = _graph("DEPTHWISE_CONV_2D", shapes[0], in_q, wts, w_q, zero, shapes[1], out_q, options)
    return Case(g, out_q, activation, oracle)


@pytest.mark.parametrize("seed", SEEDS)
def test_depthwise_conv2d_random(seed: int) -> None:
    case = depthwise_case(seed)
    out = _check(case, seed)
    _assert_informative(out, case)


# --- FULLY_CONNECTED ---------------------------------------------------------------------


def fc_case(seed: int, per_channel: bool, weights_zp: bool = False) -> Case:
    rng = np.random.default_rng(3000 + seed + (500 if per_channel else 0))
    batches = int(rng.integers(1, 6))
    depth = int(rng.integers(1, 200))
    units = int(rng.integers(1, 48))
    # The input may have any shape; FULLY_CONNECTED flattens it to [batches, depth].
    in_shape = (batches, depth) if rng.random() < 0.6 else (batches, 1, 1, depth)
    keep_num_dims = bool(len(in_shape) == 4 and rng.random() < 0.5)
    activation = _activation(rng)
    in_q = quant(10 ** rng.uniform(-2.5, -0.5), int(rng.integers(-128, 128)))
    scales = _filter_scales(rng, units, per_channel)
    wts = _weights(rng, (units, depth), scales, 0)
    zp_w = int(rng.integers(-20, 21)) if weights_zp else 0
    w_q = quant(list(scales), zp_w, 0)
    in_s = float(in_q.scale[0])
    bias = None
    if rng.random() < 0.8:
        bias = _bias(rng, in_s, scales, wts, 0, depth)
    out_q = quant(_output_scale(rng, in_s, scales, wts, 0, depth), _output_zero_point(rng, activation))
    out_shape = (*in_shape[:-1], units) if keep_num_dims else (batches, units)
    options = {"activation": activation, "keep_num_dims": keep_num_dims}
    g = _graph("FULLY_CONNECTED", in_shape, in_q, wts, w_q, bias, out_shape, out_q, options)
    return Case(g, out_q, activation)


@pytest.mark.parametrize("seed", SEEDS)
def test_fully_connected_per_tensor_random(seed: int) -> None:
    case = fc_case(seed, per_channel=False)
    out = check_bit_exact(case.graph, np.random.default_rng(seed))[0]
    _assert_informative(out, case)


@pytest.mark.parametrize("seed", SEEDS)
def test_fully_connected_per_channel_random(seed: int) -> None:
    case = fc_case(seed, per_channel=True)
    out = check_bit_exact(case.graph, np.random.default_rng(seed))[0]
    _assert_informative(out, case)


@pytest.mark.parametrize("seed", range(8))
def test_fully_connected_weights_zero_point(seed: int) -> None:
    """Per-tensor int8 FULLY_CONNECTED honours a weights zero point (filter_offset)."""
    case = fc_case(100 + seed, per_channel=False, weights_zp=True)
    check_bit_exact(case.graph, np.random.default_rng(seed))


# --- Edge cases --------------------------------------------------------------------------


def _conv_graph(
    in_shape: tuple[int, int, int, int],
    filt: tuple[int, int],
    out_c: int,
    in_zp: int,
    out_zp: int,
    out_scale: float,
    w_scales: list[float] | float = 0.01,
    padding: str = "SAME",
    stride: int = 1,
    activation: str = "NONE",
    bias: bool = True,
    seed: int = 0,
) -> Graph:
    rng = np.random.default_rng(seed)
    n, h, w, c = in_shape
    wts = rng.integers(-128, 128, (out_c, *filt, c), dtype=np.int8)  # -128 too: legal, if unusual
    scales = np.atleast_1d(np.asarray(w_scales, dtype=np.float32))
    b = None
    if bias:
        b = (rng.integers(-5000, 5000, out_c).astype(np.int32), quant(list(0.02 * scales), 0))
    oh, ow = _out_size(padding, h, filt[0], stride, 1), _out_size(padding, w, filt[1], stride, 1)
    options = {"padding": padding, "stride_h": stride, "stride_w": stride, "activation": activation}
    return _graph(
        "CONV_2D",
        in_shape,
        quant(0.02, in_zp),
        wts,
        quant(list(scales), 0, 0),
        b,
        (n, oh, ow, out_c),
        quant(out_scale, out_zp),
        options,
    )


@pytest.mark.parametrize("in_zp,out_zp", [(-128, -128), (127, 127), (-128, 127), (127, -128), (0, 0)])
def test_conv2d_extreme_zero_points(in_zp: int, out_zp: int) -> None:
    g = _conv_graph((1, 5, 6, 7), (3, 3), 6, in_zp, out_zp, out_scale=0.5)
    check_bit_exact(g, np.random.default_rng(1))


def test_conv2d_deep_accumulation() -> None:
    """3x3x256 taps: accumulators in the millions, still int32 like TFLite's."""
    g = _conv_graph((1, 4, 4, 256), (3, 3), 8, -128, 3, out_scale=20.0, padding="VALID", seed=2)
    check_bit_exact(g, np.random.default_rng(2))


def test_conv2d_multiplier_above_one_and_below_2_pow_minus_31() -> None:
    """Effective scales > 1 (left shift), around 1, tiny, and below 2^-31 (flushed to 0)."""
    scales = [2.0, 0.5, 0.02, 1e-4, 1e-9, 1e-12]
    g = _conv_graph((1, 3, 3, 2), (1, 1), 6, 5, -7, out_scale=0.01, w_scales=scales, seed=3)
    check_bit_exact(g, np.random.default_rng(3))


def test_conv2d_stride_larger_than_filter_and_1x1_image() -> None:
    check_bit_exact(
        _conv_graph((2, 7, 7, 3), (2, 2), 4, 1, 2, 0.3, stride=3, seed=4), np.random.default_rng(4)
    )
    check_bit_exact(_conv_graph((1, 1, 1, 5), (3, 3), 4, -3, 0, 0.1, seed=5), np.random.default_rng(5))


@pytest.mark.parametrize("activation", ["NONE", "RELU", "RELU6", "RELU_N1_TO_1"])
def test_conv2d_activations_clamp(activation: str) -> None:
    """Coarse output scale: many values hit the activation bounds, which must match exactly."""
    g = _conv_graph((1, 6, 6, 4), (3, 3), 5, 10, -20, out_scale=0.02, activation=activation, seed=6)
    check_bit_exact(g, np.random.default_rng(6))


def _fc_graph(
    w_scales: list[float], zp_in: int, zp_out: int, out_scale: float, two_inputs: bool = False
) -> Graph:
    rng = np.random.default_rng(7)
    units = len(w_scales)
    wts = rng.integers(-127, 128, (units, 40), dtype=np.int8)
    return _graph(
        "FULLY_CONNECTED",
        (3, 40),
        quant(0.05, zp_in),
        wts,
        quant(w_scales, 0, 0),
        None,
        (3, units),
        quant(out_scale, zp_out),
        {"activation": "NONE"},
        two_inputs=two_inputs,
    )


def test_fully_connected_extreme_scales() -> None:
    """TFLite's reference FULLY_CONNECTED rounds acc * effective_scale in double: effective
    scales above 1, near 1, tiny and denormal-small all go through that one path."""
    g = _fc_graph([40.0, 2.0, 0.5, 0.02, 1e-4, 1e-9, 1e-30], -3, 4, out_scale=0.5)
    check_bit_exact(g, np.random.default_rng(7), trials=4)


def test_fully_connected_two_inputs() -> None:
    """A bias-less FULLY_CONNECTED may also list only two inputs."""
    g = _fc_graph([0.01, 0.02, 0.005], 7, -2, out_scale=2.0, two_inputs=True)
    assert g.ops[0].inputs == [0, 1]
    check_bit_exact(g, np.random.default_rng(8))


# Regression: TFLite's CalculateActivationRangeQuantized divides in float (f / scale with a
# float scale). Dividing in double puts the clamp one quantum off for scales such as 0.4
# (1 / 0.4 is 2.4999999 in double but 2.5f in float).
@pytest.mark.parametrize(
    "activation,out_scale", [("RELU_N1_TO_1", 0.4), ("RELU6", 2.4), ("RELU_N1_TO_1", 2 / 3)]
)
def test_activation_range_rounds_in_float(activation: str, out_scale: float) -> None:
    g = _conv_graph((1, 6, 6, 4), (3, 3), 5, 10, 0, out_scale=out_scale, activation=activation, seed=6)
    check_bit_exact(g, np.random.default_rng(6))


# --- Refusals ----------------------------------------------------------------------------


def _lower_error(g: Graph) -> str:
    with pytest.raises(ModelError) as e:
        lower(g, g.ops[0])
    return str(e.value)


def test_grouped_conv_refused() -> None:
    g = _conv_graph((1, 4, 4, 8), (3, 3), 4, 0, 0, 1.0)
    g.tensors[0].shape = (1, 4, 4, 16)  # 16 input channels, filter depth 8: two groups
    assert "grouped" in _lower_error(g) and "operator #0 (CONV_2D)" in _lower_error(g)


def test_filter_zero_point_refused() -> None:
    g = _conv_graph((1, 4, 4, 3), (3, 3), 2, 0, 0, 1.0)
    g.tensors[1].quant = quant([0.01, 0.02], [0, 3])
    assert "zero point" in _lower_error(g)


def test_uint8_refused() -> None:
    g = _conv_graph((1, 4, 4, 3), (3, 3), 2, 0, 0, 1.0)
    g.tensors[0].dtype = "uint8"
    assert "uint8" in _lower_error(g)


def test_fc_per_channel_weights_zero_point_refused() -> None:
    g = fc_case(0, per_channel=True).graph
    w = g.tensors[1]
    assert w.quant is not None
    w.quant = quant(list(w.quant.scale), 1, 0)
    assert "zero point" in _lower_error(g)


def test_fc_bias_scale_mismatch_refused() -> None:
    """TFLite refuses a per-tensor FC whose bias scale is not input x weights scale."""
    g = next(c.graph for c in (fc_case(s, per_channel=False) for s in range(20)) if len(c.graph.tensors) == 4)
    g.tensors[2].quant = quant(1.0, 0)
    assert "bias" in _lower_error(g)


def test_depthwise_multiplier_mismatch_refused() -> None:
    g = depthwise_case(0).graph
    g.ops[0].options["depth_multiplier"] = 7
    assert "depth_multiplier" in _lower_error(g)
