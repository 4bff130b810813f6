"""Bit-exactness of the int8 ADD, pooling, MEAN, PAD, RESHAPE, SOFTMAX, QUANTIZE and
DEQUANTIZE kernels against TFLite's reference kernels, on randomized seeded cases.

Each case builds a one-op IR graph with random shapes, options and quantization, runs it
through TFLite (BUILTIN_REF resolver) and through our lowering + C kernels, and requires
identical outputs. Most cases also check that the output is not constant, so that a
degenerate clamp cannot make a comparison pass vacuously.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytools.model.ir import Graph, ModelError, Op, Quant, Tensor
from pytools.model.lowering import lower
from pytools.model.oracle import run_tflite
from pytools.model.tflite_export import write_tflite
from tests.kernels.support import check_bit_exact, quant, run_ours

SEEDS = range(40)
ACTS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def one_op(
    kind: str,
    inputs: list[Tensor],
    out: Tensor,
    options: dict | None = None,
) -> Graph:
    """A graph of one operator; tensors are renumbered in order (inputs, then output).
    Constant inputs (data set) are not graph inputs."""
    tensors = [*inputs, out]
    for i, t in enumerate(tensors):
        t.index = i
    op = Op(0, kind, [t.index for t in inputs], [out.index], dict(options or {}))
    graph_inputs = [t.index for t in inputs if t.data is None]
    return Graph(tensors, [op], graph_inputs, [out.index])


def t8(shape, q: Quant, name: str = "") -> Tensor:
    return Tensor(0, name, tuple(int(d) for d in shape), "int8", q)


def const_i32(values, shape=None) -> Tensor:
    data = np.asarray(values, dtype=np.int32)
    if shape is not None:
        data = data.reshape(shape)
    return Tensor(0, "const", tuple(data.shape), "int32", None, data)


def rand_scale(rng: np.random.Generator, lo: float = 1e-3, hi: float = 1.0) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def rand_zp(rng: np.random.Generator) -> int:
    return int(rng.integers(-128, 128))


def rand_shape(rng: np.random.Generator, rank: int, hi: int = 6) -> list[int]:
    return [int(d) for d in rng.integers(1, hi + 1, rank)]


def not_constant(out: np.ndarray) -> None:
    """Guards a comparison against passing vacuously on a saturated/constant output."""
    assert np.unique(out).size > 1, f"degenerate case: output is constant ({out.reshape(-1)[:4]})"


# ---- ADD -------------------------------------------------------------------------------


def _add_graph(rng: np.random.Generator, broadcast: bool) -> Graph:
    rank = int(rng.integers(1, 5))
    shape = rand_shape(rng, rank)
    a_shape, b_shape = list(shape), list(shape)
    if broadcast:
        for k in range(rank):  # each dimension may collapse to 1 in one input
            r = rng.random()
            if r < 0.3:
                a_shape[k] = 1
            elif r < 0.6:
                b_shape[k] = 1
        if rng.random() < 0.3:  # lower rank on one side
            b_shape = b_shape[int(rng.integers(0, rank)) :] or [1]
    s1, s2 = rand_scale(rng, 0.005, 0.2), rand_scale(rng, 0.005, 0.2)
    so = (s1 + s2) * float(rng.uniform(0.4, 2.0))
    a = t8(a_shape, quant(s1, rand_zp(rng)), "a")
    b = t8(b_shape, quant(s2, rand_zp(rng)), "b")
    out_shape = np.broadcast_shapes(tuple(a_shape), tuple(b_shape))
    out = t8(out_shape, quant(so, rand_zp(rng)), "out")
    return one_op("ADD", [a, b], out, {"activation": str(rng.choice(ACTS))})


@pytest.mark.parametrize("seed", SEEDS)
def test_add(seed):
    rng = np.random.default_rng(seed)
    graph = _add_graph(rng, broadcast=False)
    (out,) = check_bit_exact(graph, rng)
    if out.size > 4 and graph.ops[0].options["activation"] == "NONE":
        not_constant(out)  # a fused ReLU may legitimately clamp every element


@pytest.mark.parametrize("seed", range(20))
def test_add_broadcast(seed):
    rng = np.random.default_rng(100 + seed)
    graph = _add_graph(rng, broadcast=True)
    (out,) = check_bit_exact(graph, rng)
    if out.size > 4 and graph.ops[0].options["activation"] == "NONE":
        not_constant(out)


def test_add_same_tensor_and_equal_scales():
    # x + x with one scale: the multipliers are exactly 0.5 (q = 2^30, shift 0).
    rng = np.random.default_rng(7)
    a = t8((2, 5, 5, 3), quant(0.05, 10), "a")
    out = t8((2, 5, 5, 3), quant(0.1, -3), "out")
    graph = one_op("ADD", [a], out)
    graph.ops[0].inputs = [0, 0]
    (y,) = check_bit_exact(graph, rng)
    not_constant(y)


def test_add_rejects_rank_5_and_float():
    a = t8((1, 2, 2, 2, 2), quant(0.1), "a")
    b = t8((1, 2, 2, 2, 2), quant(0.1), "b")
    g = one_op("ADD", [a, b], t8((1, 2, 2, 2, 2), quant(0.2)))
    with pytest.raises(ModelError, match=r"operator #0 \(ADD\).*rank 5"):
        lower(g, g.ops[0])
    f = Tensor(0, "f", (4,), "float32")
    g = one_op("ADD", [f, Tensor(0, "g", (4,), "float32")], Tensor(0, "o", (4,), "float32"))
    with pytest.raises(ModelError, match=r"operator #0 \(ADD\).*int8"):
        lower(g, g.ops[0])


def test_add_rejects_incompatible_shapes():
    g = one_op("ADD", [t8((2, 3), quant(0.1)), t8((3, 3), quant(0.1))], t8((3, 3), quant(0.1)))
    with pytest.raises(ModelError, match="broadcast"):
        lower(g, g.ops[0])


# ---- pooling ---------------------------------------------------------------------------


def _pool_graph(rng: np.random.Generator, kind: str) -> Graph:
    n, h, w, c = (
        int(rng.integers(1, 3)),
        int(rng.integers(1, 13)),
        int(rng.integers(1, 13)),
        int(rng.integers(1, 6)),
    )
    padding = str(rng.choice(["SAME", "VALID"]))
    fh, fw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    if padding == "VALID":
        fh, fw = min(fh, h), min(fw, w)
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    if padding == "SAME":
        oh, ow = -(-h // sh), -(-w // sw)
    else:
        oh, ow = (h - fh) // sh + 1, (w - fw) // sw + 1
    q = quant(rand_scale(rng, 0.01, 0.2), rand_zp(rng))
    options = {
        "padding": padding,
        "filter_h": fh,
        "filter_w": fw,
        "stride_h": sh,
        "stride_w": sw,
        "activation": str(rng.choice(ACTS)),
    }
    return one_op(kind, [t8((n, h, w, c), q, "x")], t8((n, oh, ow, c), q, "y"), options)


@pytest.mark.parametrize("kind", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("seed", SEEDS)
def test_pool(kind, seed):
    rng = np.random.default_rng(seed)
    graph = _pool_graph(rng, kind)
    (out,) = check_bit_exact(graph, rng)
    if out.size > 8 and graph.ops[0].options["activation"] == "NONE":
        not_constant(out)


def test_avg_pool_rounds_half_away_from_zero():
    # 2x1 windows over pairs with odd sums, both signs: every average ends in .5.
    q = quant(0.1, 0)
    x = t8((1, 2, 8, 1), q, "x")
    y = t8((1, 1, 8, 1), q, "y")
    opts = {"padding": "VALID", "filter_h": 2, "filter_w": 1, "stride_h": 1, "stride_w": 1}
    graph = one_op("AVERAGE_POOL_2D", [x], y, opts)
    data = np.array([[3, -3, 5, -5, 127, -128, 0, -1], [4, -4, 6, -6, 126, -127, 1, 0]], np.int8)
    data = data.reshape(1, 2, 8, 1)
    ref = run_tflite(write_tflite(graph), [data])[0]
    ours = run_ours(graph, [data])[0]
    assert np.array_equal(ours, ref)
    assert ours.reshape(-1).tolist() == [4, -4, 6, -6, 127, -128, 1, -1]


def test_pool_rejects_requantization():
    x = t8((1, 4, 4, 1), quant(0.1, 0), "x")
    y = t8((1, 2, 2, 1), quant(0.2, 0), "y")
    opts = {"padding": "VALID", "filter_h": 2, "filter_w": 2, "stride_h": 2, "stride_w": 2}
    g = one_op("MAX_POOL_2D", [x], y, opts)
    with pytest.raises(ModelError, match=r"MAX_POOL_2D.*share quantization"):
        lower(g, g.ops[0])


# ---- MEAN ------------------------------------------------------------------------------


def _mean_graph(shape, axes, keep_dims, qin: Quant, qout: Quant) -> Graph:
    rank = len(shape)
    resolved = {a % rank for a in axes}
    if keep_dims:
        out_shape = [1 if k in resolved else d for k, d in enumerate(shape)]
    else:
        out_shape = [d for k, d in enumerate(shape) if k not in resolved]
    return one_op(
        "MEAN",
        [t8(shape, qin, "x"), const_i32(axes)],
        t8(out_shape, qout, "y"),
        {"keep_dims": keep_dims},
    )


@pytest.mark.parametrize("keep_dims", [True, False])
@pytest.mark.parametrize("seed", range(10))
def test_mean_spatial(seed, keep_dims):
    """Keras GlobalAveragePooling2D: axes [1, 2] of NHWC, equal and unequal quantization."""
    rng = np.random.default_rng(seed)
    shape = [
        int(rng.integers(1, 3)),
        int(rng.integers(1, 12)),
        int(rng.integers(1, 12)),
        int(rng.integers(2, 9)),
    ]
    qin = quant(rand_scale(rng, 0.01, 0.2), rand_zp(rng))
    if seed % 2:
        qout = qin
    else:
        qout = quant(float(qin.scale[0]) * float(rng.uniform(0.2, 1.5)), rand_zp(rng))
    axes = [1, 2] if seed % 3 else [2, 1]
    (out,) = check_bit_exact(_mean_graph(shape, axes, keep_dims, qin, qout), rng)
    if shape[0] * shape[3] > 4 and shape[1] * shape[2] < 8:
        not_constant(out)  # means of many values concentrate; only few-element ones spread


@pytest.mark.parametrize("seed", SEEDS)
def test_mean_any_axes(seed):
    rng = np.random.default_rng(1000 + seed)
    rank = int(rng.integers(1, 5))
    shape = rand_shape(rng, rank, 7)
    n_axes = int(rng.integers(1, rank + 1))
    axes = [int(a) for a in rng.choice(rank, n_axes, replace=False)]
    axes = [a - rank if rng.random() < 0.3 else a for a in axes]  # negative spellings
    if rng.random() < 0.2:
        axes.append(axes[0])  # a duplicate, which TFLite ignores
    qin = quant(rand_scale(rng, 0.01, 0.2), rand_zp(rng))
    qout = qin if rng.random() < 0.4 else quant(rand_scale(rng, 0.005, 0.2), rand_zp(rng))
    (out,) = check_bit_exact(_mean_graph(shape, axes, bool(rng.random() < 0.5), qin, qout), rng)
    count = math.prod(shape[a] for a in {a % rank for a in axes})
    if out.size > 4 and count <= 4 and qout is qin:
        not_constant(out)


def test_mean_large_count_and_scale_ratios():
    # 32x32 = 1024 elements per mean; a ratio of scales well above and below 1.
    rng = np.random.default_rng(5)
    for ratio in (8.0, 0.05):
        qin = quant(0.02, -5)
        qout = quant(0.02 / ratio, 3)
        check_bit_exact(_mean_graph([1, 32, 32, 3], [1, 2], True, qin, qout), rng)


def test_mean_rejects_bad_axis():
    g = _mean_graph([1, 4, 4, 2], [1, 2], True, quant(0.1), quant(0.1))
    g.tensors[1].data = np.array([1, 4], np.int32)
    with pytest.raises(ModelError, match=r"MEAN.*axis 4"):
        lower(g, g.ops[0])


# ---- PAD -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_pad(seed):
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 5))
    shape = rand_shape(rng, rank, 5)
    pads = rng.integers(0, 4, (rank, 2))
    q = quant(rand_scale(rng), rand_zp(rng))
    out_shape = [int(d + p.sum()) for d, p in zip(shape, pads, strict=True)]
    graph = one_op("PAD", [t8(shape, q, "x"), const_i32(pads)], t8(out_shape, q, "y"))
    (out,) = check_bit_exact(graph, rng)
    not_constant(out)


def test_pad_rejects_negative_paddings_and_requantization():
    q = quant(0.1, 3)
    g = one_op("PAD", [t8((2, 3), q, "x"), const_i32([[0, 1], [-1, 0]])], t8((3, 2), q, "y"))
    with pytest.raises(ModelError, match=r"operator #0 \(PAD\).*negative"):
        lower(g, g.ops[0])
    g = one_op("PAD", [t8((2, 3), q, "x"), const_i32([[0, 1], [1, 0]])], t8((3, 4), quant(0.1, 4), "y"))
    with pytest.raises(ModelError, match=r"operator #0 \(PAD\).*share quantization"):
        lower(g, g.ops[0])


# ---- RESHAPE ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int8", "float32"])
@pytest.mark.parametrize("seed", range(8))
def test_reshape(seed, dtype):
    rng = np.random.default_rng(seed)
    shape = rand_shape(rng, int(rng.integers(1, 5)))
    count = math.prod(shape)
    # A new shape from the count's factors, sometimes with one -1.
    new_shape: list[int] = []
    rest = count
    while rest > 1 and len(new_shape) < 3:
        f = int(rng.choice([d for d in range(1, rest + 1) if rest % d == 0]))
        new_shape.append(f)
        rest //= f
    new_shape.append(rest)
    out_shape = list(new_shape)
    if rng.random() < 0.5:
        new_shape[int(rng.integers(0, len(new_shape)))] = -1
    q = quant(rand_scale(rng), rand_zp(rng)) if dtype == "int8" else None
    x = Tensor(0, "x", tuple(shape), dtype, q)
    y = Tensor(0, "y", tuple(out_shape), dtype, q)
    graph = one_op("RESHAPE", [x, const_i32(new_shape)], y, {"new_shape": new_shape})
    (out,) = check_bit_exact(graph, rng)
    if out.size > 4:
        not_constant(out)


def test_reshape_rejects_wrong_output_shape():
    q = quant(0.1, 3)
    g = one_op("RESHAPE", [t8((2, 6), q, "x"), const_i32([3, -1])], t8((6, 2), q, "y"))
    with pytest.raises(ModelError, match=r"operator #0 \(RESHAPE\).*produces \[3, 4\]"):
        lower(g, g.ops[0])


# ---- SOFTMAX ---------------------------------------------------------------------------

SOFTMAX_OUT = quant(1.0 / 256.0, -128)


def _softmax_graph(shape, input_scale: float, zp: int, beta: float) -> Graph:
    return one_op(
        "SOFTMAX",
        [t8(shape, quant(input_scale, zp), "x")],
        t8(shape, SOFTMAX_OUT, "y"),
        {"beta": beta},
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_softmax(seed):
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 5))
    shape = rand_shape(rng, rank, 5)
    shape[-1] = int(rng.choice([1, 2, 3, 10, 37, 100, 256]))
    beta = 1.0 if seed % 3 == 0 else float(rng.choice([0.5, 2.0, rng.uniform(0.1, 3.0)]))
    scale = rand_scale(rng, 0.005, 2.0)  # from near-uniform outputs to diff_min cutting in
    (out,) = check_bit_exact(_softmax_graph(shape, scale, rand_zp(rng), beta), rng)
    if shape[-1] > 1:
        not_constant(out)


def test_softmax_extremes():
    # Large scales (only the maxima survive: diff_min cuts everything else), tiny scales
    # (everything near uniform), and equal inputs (the sum of exps is the row length).
    rng = np.random.default_rng(3)
    for scale, depth in ((4.0, 10), (30.0, 5), (1e-4, 50), (0.1, 1)):
        check_bit_exact(_softmax_graph([3, depth], scale, 0, 1.0), rng)
    graph = _softmax_graph([2, 256], 0.1, 0, 1.0)
    x = np.full((2, 256), 17, np.int8)
    assert np.array_equal(run_ours(graph, [x])[0], run_tflite(write_tflite(graph), [x])[0])


def test_softmax_row_sum_above_512():
    """600 near-equal inputs: the sum of exps exceeds 512, where TFLite's reference (and
    TFLite Micro) abort the process (TFLITE_CHECK on the final shift). We give the rounded
    value instead: every probability is below half an output quantum, so all -128."""
    graph = _softmax_graph([1, 600], 0.1, 0, 1.0)
    x = np.full((1, 600), 5, np.int8)
    x[0, 0] = 6
    out = run_ours(graph, [x])[0]
    p = np.exp(0.1 * (x.astype(np.float64) - 6))
    assert (p / p.sum() * 256).max() < 0.5
    assert (out == -128).all()


def test_softmax_rejects_other_output_quantization():
    g = one_op("SOFTMAX", [t8((1, 4), quant(0.1), "x")], t8((1, 4), quant(1.0 / 256.0, 0), "y"))
    with pytest.raises(ModelError, match=r"SOFTMAX.*1/256"):
        lower(g, g.ops[0])


# ---- QUANTIZE / DEQUANTIZE -------------------------------------------------------------


def _quantize_graph(shape, q: Quant) -> Graph:
    return one_op("QUANTIZE", [Tensor(0, "x", tuple(shape), "float32")], t8(shape, q, "y"))


def _dequantize_graph(shape, q: Quant) -> Graph:
    return one_op("DEQUANTIZE", [t8(shape, q, "x")], Tensor(0, "y", tuple(shape), "float32"))


@pytest.mark.parametrize("seed", SEEDS)
def test_quantize(seed):
    rng = np.random.default_rng(seed)
    shape = rand_shape(rng, int(rng.integers(1, 5)))
    q = quant(rand_scale(rng, 0.003, 0.2), rand_zp(rng))
    (out,) = check_bit_exact(_quantize_graph(shape, q), rng)
    if out.size > 4:
        not_constant(out)


@pytest.mark.parametrize("seed", range(6))
def test_quantize_at_rounding_boundaries(seed):
    """Inputs at and next to every (k + 1/2) * scale: where a double division (TFLite's
    reference divides in float), or rounding half to even instead of std::round, would
    differ; plus values far outside the int8 range (saturation)."""
    rng = np.random.default_rng(seed)
    scale, zp = rand_scale(rng, 1e-3, 1.0), rand_zp(rng)
    halves = ((np.arange(-300, 300) + 0.5) * np.float64(np.float32(scale))).astype(np.float32)
    x = np.concatenate(
        [
            halves,
            np.nextafter(halves, np.float32(np.inf)),
            np.nextafter(halves, np.float32(-np.inf)),
            np.float32([0.0, -0.0, 1e6 * scale, -1e6 * scale, 3e8 * scale, -3e8 * scale]),
        ]
    ).astype(np.float32)
    graph = _quantize_graph(x.shape, quant(scale, zp))
    ref = run_tflite(write_tflite(graph), [x])[0]
    ours = run_ours(graph, [x])[0]
    assert np.array_equal(ours, ref), np.argwhere(ours != ref)[:5].tolist()
    not_constant(ours)


@pytest.mark.parametrize("seed", SEEDS)
def test_dequantize(seed):
    rng = np.random.default_rng(seed)
    shape = rand_shape(rng, int(rng.integers(1, 5)))
    q = quant(rand_scale(rng, 1e-6, 10.0), rand_zp(rng))
    (out,) = check_bit_exact(_dequantize_graph(shape, q), rng)
    if out.size > 4:
        not_constant(out)


@pytest.mark.parametrize("scale", [1.0, 0.1, 1.0 / 3.0, 0.0078125, 3.3e-5, 123.456])
def test_dequantize_every_value(scale):
    graph = _dequantize_graph((256,), quant(scale, -7))
    x = np.arange(-128, 128, dtype=np.int8)
    ref = run_tflite(write_tflite(graph), [x])[0]
    ours = run_ours(graph, [x])[0]
    assert ours.tobytes() == ref.tobytes()


def test_dequantize_rejects_float_input():
    g = one_op("DEQUANTIZE", [Tensor(0, "x", (4,), "float32")], Tensor(0, "y", (4,), "float32"))
    with pytest.raises(ModelError, match=r"operator #0 \(DEQUANTIZE\).*int8"):
        lower(g, g.ops[0])


def test_quantize_rejects_per_channel_and_int16_input():
    # (an int8 input is a requantization: tests/kernels/elementwise/test_activation_kernels.py)
    g = _quantize_graph((2, 3), quant([0.1, 0.2, 0.3], 0, axis=1))
    with pytest.raises(ModelError, match=r"QUANTIZE.*per channel"):
        lower(g, g.ops[0])
    x = Tensor(0, "x", (4,), "int16", quant(0.1))
    g = one_op("QUANTIZE", [x], t8((4,), quant(0.2), "y"))
    with pytest.raises(ModelError, match=r"QUANTIZE.*'x' is int16; only float32"):
        lower(g, g.ops[0])


# ---- TFLite Micro ----------------------------------------------------------------------


def run_tflm(graph: Graph, inputs: list[np.ndarray]) -> np.ndarray:
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    it = runtime.Interpreter.from_bytes(write_tflite(graph), arena_size=1 << 20)
    for i, x in enumerate(inputs):
        it.set_input(x, i)
    it.invoke()
    return it.get_output(0)


@pytest.mark.parametrize("seed", range(10))
def test_softmax_and_mean_agree_with_tflite_micro(seed):
    """The firmware follows TFLite's reference kernels; TFLite Micro (what Cortex-M users
    compare against) must give the same bits for SOFTMAX and MEAN, and it does."""
    rng = np.random.default_rng(2000 + seed)
    depth = int(rng.choice([2, 10, 100, 300]))
    graphs = [
        _softmax_graph([2, depth], rand_scale(rng, 0.005, 4.0), rand_zp(rng), float(rng.uniform(0.2, 2.0))),
        _mean_graph(
            [1, int(rng.integers(1, 9)), int(rng.integers(1, 9)), 4],
            [1, 2],
            bool(seed % 2),
            quant(0.05, rand_zp(rng)),
            quant(rand_scale(rng, 0.01, 0.1), rand_zp(rng)),
        ),
    ]
    for graph in graphs:
        x = [rng.integers(-128, 128, graph.tensor(i).shape, dtype=np.int8) for i in graph.inputs]
        ours = run_ours(graph, x)[0]
        assert np.array_equal(ours, run_tflite(write_tflite(graph), x)[0])
        assert np.array_equal(ours, run_tflm(graph, x).reshape(ours.shape))
