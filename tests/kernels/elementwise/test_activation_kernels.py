"""Bit-exactness of the int8 MUL, SUB, MAXIMUM / MINIMUM, LOGISTIC, TANH, HARD_SWISH,
RELU / RELU6 / RELU_N1_TO_1, LEAKY_RELU and int8 -> int8 QUANTIZE kernels (issue 12) against
TFLite's reference kernels (BUILTIN_REF), on randomized seeded cases: one-op IR graphs with
random shapes, broadcasts, quantization and options, run through TFLite and through our
lowering + C kernels on the host. Every case also checks that the output is not constant,
so a saturated case cannot pass vacuously, and the MUL cases run the DSP variant too.
"""

from __future__ import annotations

import numpy as np
import pytest

from pytools.model.ir import Graph, ModelError
from pytools.model.kernels import op_code
from pytools.model.lowering import lower
from tests.kernels.conv.test_dsp_kernels import dsp_on_host
from tests.kernels.support import check_bit_exact, quant
from tests.kernels.test_other_kernels import ACTS, not_constant, one_op, rand_scale, rand_shape, rand_zp, t8

SEEDS = range(30)


def _broadcast_shapes(rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Two input shapes: equal, broadcast along random dimensions, of lower rank, or the
    squeeze-excite pattern [1, H, W, C] x [1, 1, 1, C] (either order)."""
    kind = rng.integers(0, 4)
    if kind == 0:
        h, w, c = (int(d) for d in rng.integers(1, 12, 3))
        a, b = [1, h, w, c], [1, 1, 1, c]
        return (a, b) if rng.random() < 0.5 else (b, a)
    rank = int(rng.integers(1, 5))
    shape = rand_shape(rng, rank, 7)
    a, b = list(shape), list(shape)
    if kind >= 2:
        for k in range(rank):
            r = rng.random()
            if r < 0.3:
                a[k] = 1
            elif r < 0.6:
                b[k] = 1
        if kind == 3:
            b = b[int(rng.integers(0, rank)) :] or [1]
    return a, b


def _binary(rng: np.random.Generator, kind: str, so_of, options: dict | None = None) -> Graph:
    a_shape, b_shape = _broadcast_shapes(rng)
    s1, s2 = rand_scale(rng, 0.002, 0.5), rand_scale(rng, 0.002, 0.5)
    a = t8(a_shape, quant(s1, rand_zp(rng)), "a")
    b = t8(b_shape, quant(s2, rand_zp(rng)), "b")
    out_shape = np.broadcast_shapes(tuple(a_shape), tuple(b_shape))
    out = t8(out_shape, quant(so_of(s1, s2), rand_zp(rng)), "out")
    return one_op(kind, [a, b], out, options)


def _check(graph: Graph, rng: np.random.Generator, varied: bool = True) -> np.ndarray:
    """varied: the output must not be constant (unless a fused activation clamps it)."""
    (out,) = check_bit_exact(graph, rng)
    if varied and out.size > 8 and graph.ops[0].options.get("activation", "NONE") == "NONE":
        not_constant(out)
    return out


# ---- MUL ---------------------------------------------------------------------------------


def _mul_graph(rng: np.random.Generator) -> Graph:
    # Output scales around the product's range (|x1 x2| up to ~2^14 quanta of s1 s2), and in
    # one case of six a real multiplier near or above 1 (a left shift: mostly saturated).
    lo, hi = (0.6, 2.0) if rng.random() < 1 / 6 else (16.0, 4000.0)

    def so(s1: float, s2: float) -> float:
        return s1 * s2 * float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    return _binary(rng, "MUL", so, {"activation": str(rng.choice(ACTS))})


@pytest.mark.parametrize("seed", range(40))
def test_mul(seed: int) -> None:
    rng = np.random.default_rng(seed)
    graph = _mul_graph(rng)
    varied = lower(graph, graph.ops[0]).params["output_shift"] < 0
    _check(graph, rng, varied)
    with dsp_on_host():  # the DSP variant's host twin, against TFLite as well
        _check(graph, np.random.default_rng(seed), varied)


def test_mul_cases_cover_the_dsp_paths() -> None:
    """The random MUL cases reach the DSP kernel's four-at-a-time loop with contiguous,
    broadcast (stride 0) and mixed innermost strides, and its reference fallback."""
    seen = set()
    for seed in range(40):
        call = lower(g := _mul_graph(np.random.default_rng(seed)), g.ops[0])
        p = call.params
        fast = p["output_multiplier"] >= 1 << 30 and -31 <= p["output_shift"] <= -1
        if fast and p["dim3"] >= 4:
            seen.add((p["in1_stride3"], p["in2_stride3"]))
        seen.add(fast)
    assert {(1, 1), (0, 1), (1, 0), True, False} <= seen, seen


@pytest.mark.parametrize("seed", range(6))
def test_mul_squeeze_excite_large_map(seed: int) -> None:
    """[1, H, W, C] x [1, 1, 1, C] on maps of MobileNet size, reference and DSP."""
    rng = np.random.default_rng(500 + seed)
    h, c = int(rng.integers(8, 20)), int(rng.integers(8, 72))
    x = t8((1, h, h, c), quant(rand_scale(rng, 0.01, 0.2), rand_zp(rng)), "x")
    s = t8((1, 1, 1, c), quant(1 / 256, -128), "se_scale")
    out = t8((1, h, h, c), quant(float(x.quant.scale[0]) * float(rng.uniform(0.3, 1.0)), rand_zp(rng)), "y")
    graph = one_op("MUL", [x, s], out, {"activation": "NONE"})
    _check(graph, rng)
    with dsp_on_host():
        _check(graph, np.random.default_rng(500 + seed))


# ---- SUB ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_sub(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)

    def so(s1: float, s2: float) -> float:
        return (s1 + s2) * float(rng.uniform(0.4, 2.0))

    graph = _binary(rng, "SUB", so, {"activation": str(rng.choice(ACTS))})
    _check(graph, rng)
    with dsp_on_host():  # tables from 512 output elements, else the reference
        _check(graph, np.random.default_rng(seed))


@pytest.mark.parametrize("seed", range(6))
def test_sub_large_maps(seed: int) -> None:
    """[1, H, W, C] - [1, H, W, C] or - [1, 1, 1, C], beyond the DSP kernel's table threshold."""
    rng = np.random.default_rng(1500 + seed)
    h, c = int(rng.integers(8, 20)), int(rng.integers(8, 40))
    s1, s2 = rand_scale(rng, 0.005, 0.2), rand_scale(rng, 0.005, 0.2)
    a = t8((1, h, h, c), quant(s1, rand_zp(rng)), "a")
    b = t8((1, 1, 1, c) if seed % 2 else (1, h, h, c), quant(s2, rand_zp(rng)), "b")
    out = t8((1, h, h, c), quant((s1 + s2) * float(rng.uniform(0.4, 2.0)), rand_zp(rng)), "out")
    graph = one_op("SUB", [a, b], out, {"activation": "NONE"})
    assert h * h * c >= 512
    _check(graph, rng)
    with dsp_on_host():
        _check(graph, np.random.default_rng(1500 + seed))


# ---- MAXIMUM / MINIMUM -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["MAXIMUM", "MINIMUM"])
@pytest.mark.parametrize("seed", range(15))
def test_maximum_minimum(kind: str, seed: int) -> None:
    rng = np.random.default_rng(2000 + seed)
    a_shape, b_shape = _broadcast_shapes(rng)
    q = quant(rand_scale(rng), rand_zp(rng))
    a, b = t8(a_shape, q, "a"), t8(b_shape, q, "b")
    out = t8(np.broadcast_shapes(tuple(a_shape), tuple(b_shape)), q, "out")
    _check(one_op(kind, [a, b], out), rng)


def test_maximum_refuses_mixed_quantization() -> None:
    a, b = t8((1, 4), quant(0.1, 0), "a"), t8((1, 4), quant(0.2, 0), "b")
    graph = one_op("MAXIMUM", [a, b], t8((1, 4), quant(0.1, 0), "out"))
    with pytest.raises(ModelError, match=r"operator #0 \(MAXIMUM\).*'b'.*must share quantization"):
        lower(graph, graph.ops[0])


# ---- LOGISTIC, TANH, HARD_SWISH, the RELU family, LEAKY_RELU, requantize -----------------


def _unary(rng: np.random.Generator, kind: str, out_q, options: dict | None = None) -> Graph:
    shape = rand_shape(rng, int(rng.integers(1, 5)), 9)
    x = t8(shape, quant(rand_scale(rng, 0.002, 0.5), rand_zp(rng)), "x")
    return one_op(kind, [x], t8(shape, out_q(float(x.quant.scale[0])), "y"), options)


def _all_int8(graph: Graph) -> Graph:
    """The same graph on a [256] input holding every int8 value once (the whole table)."""
    x, y = graph.tensors
    x.shape = y.shape = (256,)
    return graph


@pytest.mark.parametrize("kind", ["LOGISTIC", "TANH"])
@pytest.mark.parametrize("seed", SEEDS)
def test_logistic_tanh(kind: str, seed: int) -> None:
    rng = np.random.default_rng(3000 + seed)
    out_q = quant(1 / 256, -128) if kind == "LOGISTIC" else quant(1 / 128, 0)
    # Input scales from 0.002 (|x| < 0.5: the near-linear part) to 0.5 (saturated tails).
    graph = _all_int8(_unary(rng, kind, lambda _s: out_q))
    _check(graph, rng)


@pytest.mark.parametrize("kind", ["LOGISTIC", "TANH"])
def test_logistic_tanh_refuse_other_output_quantization(kind: str) -> None:
    graph = one_op(kind, [t8((1, 8), quant(0.1, 0), "x")], t8((1, 8), quant(0.01, 3), "y"))
    with pytest.raises(ModelError, match=rf"operator #0 \({kind}\): output 'y' has scale .* needs scale"):
        lower(graph, graph.ops[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_hard_swish(seed: int) -> None:
    rng = np.random.default_rng(4000 + seed)
    # Output ranges from the input's to a tenth of it (the reluish multiplier then takes both
    # signs of exponent: inputs from |x| < 0.3 to |x| >> 3).
    graph = _unary(rng, "HARD_SWISH", lambda s: quant(s * float(rng.uniform(0.1, 1.5)), rand_zp(rng)))
    _check(graph, rng)


def test_hard_swish_cases_cover_both_reluish_shifts() -> None:
    exps = set()
    for seed in SEEDS:
        rng = np.random.default_rng(4000 + seed)
        g = _unary(rng, "HARD_SWISH", lambda s, r=rng: quant(s * float(r.uniform(0.1, 1.5)), rand_zp(r)))
        exps.add(np.sign(lower(g, g.ops[0]).params["reluish_multiplier_exponent"]))
    assert {-1, 1} <= exps, exps


@pytest.mark.parametrize("kind", ["RELU", "RELU6", "RELU_N1_TO_1"])
@pytest.mark.parametrize("seed", range(15))
def test_relu_ops(kind: str, seed: int) -> None:
    rng = np.random.default_rng(5000 + seed)
    graph = _unary(rng, kind, lambda s: quant(s * float(rng.uniform(0.3, 2.0)), rand_zp(rng)))
    _check(graph, rng)


@pytest.mark.parametrize("seed", SEEDS)
def test_leaky_relu(seed: int) -> None:
    rng = np.random.default_rng(6000 + seed)
    alpha = float(rng.choice([0.01, 0.1, 0.2, 0.3, 1.5, float(rng.uniform(0, 1))]))
    graph = _unary(
        rng, "LEAKY_RELU", lambda s: quant(s * float(rng.uniform(0.3, 2.0)), rand_zp(rng)), {"alpha": alpha}
    )
    _check(graph, rng)


@pytest.mark.parametrize("seed", SEEDS)
def test_quantize_int8_to_int8(seed: int) -> None:
    rng = np.random.default_rng(7000 + seed)
    graph = _unary(rng, "QUANTIZE", lambda s: quant(s * float(rng.uniform(0.2, 4.0)), rand_zp(rng)))
    _check(graph, rng)
    call = lower(graph, graph.ops[0])
    assert call.kernel == "requantize_s8"
    assert op_code("QUANTIZE", call.kernel) != op_code("QUANTIZE", "quantize_f32_s8")


# ---- the table-driven DSP variants (dsp.h, dsp_unary_by_table) ---------------------------

TABLE_MIN = 1024  # dsp.h DSP_TABLE_MIN
TABLE_KERNELS = {
    "HARD_SWISH": "hard_swish_s8",
    "RELU": "relu_s8",
    "RELU6": "relu_s8",
    "RELU_N1_TO_1": "relu_s8",
    "LEAKY_RELU": "leaky_relu_s8",
    "QUANTIZE": "requantize_s8",
}


def _run_variant(call, arrays: list[np.ndarray], variant: str) -> np.ndarray:
    """X_ref_run or X_dsp_run of the host library, called directly."""
    from pytools.model.kernels import run_kernel

    arrays = [a.copy() for a in arrays]
    run_kernel(call, arrays, variant)  # the planned scratch, guarded past its end
    return arrays[-1]


@pytest.mark.parametrize("kind", TABLE_KERNELS)
@pytest.mark.parametrize("seed", range(4))
def test_table_kernels_on_large_maps(kind: str, seed: int) -> None:
    """From DSP_TABLE_MIN elements the DSP build looks each output up in a table the reference
    fills once: the DSP and reference variants agree (counts not a multiple of 4 included),
    and both builds' dispatch agrees with TFLite."""
    rng = np.random.default_rng(8000 + seed)
    h, w, c = (2 * int(rng.integers(lo, hi)) + 1 for lo, hi in ((6, 15), (6, 15), (4, 9)))  # odd: a tail
    x = t8((1, h, w, c), quant(rand_scale(rng, 0.005, 0.3), rand_zp(rng)), "x")
    out_q = quant(float(x.quant.scale[0]) * float(rng.uniform(0.3, 1.5)), rand_zp(rng))
    graph = one_op(kind, [x], t8((1, h, w, c), out_q, "y"), {"alpha": 0.1} if kind == "LEAKY_RELU" else {})
    call = lower(graph, graph.ops[0])
    assert (
        call.kernel == TABLE_KERNELS[kind] and call.params["count"] >= TABLE_MIN and call.params["count"] % 4
    )
    arrays = [rng.integers(-128, 128, x.shape, dtype=np.int8), np.zeros(x.shape, dtype=np.int8)]
    ref, dsp = _run_variant(call, arrays, "ref"), _run_variant(call, arrays, "dsp")
    np.testing.assert_array_equal(dsp, ref)
    assert np.unique(ref).size > 2
    _check(graph, rng)
    with dsp_on_host():
        _check(graph, np.random.default_rng(seed))


def test_compiling_names_every_operator_the_kernels_cannot_run() -> None:
    """Two operators with quantizations no kernel takes: one error at compile time names both."""
    from pytools.boards import load_board
    from pytools.model.compiler import compile_graph
    from tests.import_support import GraphMaker

    g = GraphMaker(0)
    x = g.t("x", (1, 8), "int8", quant(0.1, 0))
    s = g.t("sig", (1, 8), "int8", quant(0.01, 3))  # LOGISTIC's output must be (1/256, -128)
    g.op("LOGISTIC", [x], [s])
    m = g.t("max", (1, 8), "int8", quant(0.1, 0))
    g.op("MAXIMUM", [s, x], [m])  # inputs of different quantization
    with pytest.raises(ModelError) as e:
        compile_graph(g.graph([x], [m], "two_bad"), load_board("mps2_an500"), "two_bad")
    msg = str(e.value)
    assert msg.startswith("2 operators cannot run here:\n")
    assert "operator #0 (LOGISTIC): output 'sig' has scale" in msg
    assert "operator #1 (MAXIMUM): input 'sig'" in msg and "must share quantization" in msg
