"""The elementwise and activation kernels (issue 12) in small chains, compiled into plans and
run by the runtime: on the host twin and on the emulated Cortex-M7 (QEMU mps2-an500), each
bit-exact with TFLite's reference kernels. One chain per kernel family:
- binary: squeeze-excite MUL ([1, H, W, C] x [1, 1, 1, C]), SUB, MAXIMUM, MINIMUM, a square
  MUL;
- activations: HARD_SWISH, LEAKY_RELU, RELU_N1_TO_1, TANH, LOGISTIC, RELU6, RELU and QUANTIZE
  int8 -> int8 on 1,024 elements (the DSP build's table path).
On the board each runs with the DSP build and with the reference build: both exact, the
DSP build cheaper.
"""

from __future__ import annotations

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.model.compiler import compile_graph
from pytools.model.host_twin import HostTwin
from pytools.model.ir import Graph
from pytools.model.oracle import run_tflite
from pytools.model.tflite_export import write_tflite
from tests.import_support import GraphMaker, quant


def binary_chain() -> Graph:
    g = GraphMaker(4)
    shape = (1, 12, 12, 24)
    qx, qa = quant(0.05, -3), quant(0.03, 7)
    x = g.t("x", shape, "int8", qx)
    axes = g.t("axes", (2,), "int32", None, [1, 2])
    m = g.t("se/mean", (1, 1, 1, 24), "int8", quant(0.02, -10))
    g.op("MEAN", [x, axes], [m], keep_dims=True, axes=[1, 2])
    a = g.t("se/mul", shape, "int8", qa)
    g.op("MUL", [x, m], [a], activation="NONE")
    b = g.t("sub", shape, "int8", qa)
    g.op("SUB", [a, x], [b], activation="RELU")
    c = g.t("maximum", shape, "int8", qa)
    g.op("MAXIMUM", [b, a], [c])
    d = g.t("minimum", shape, "int8", qa)
    g.op("MINIMUM", [c, b], [d])
    y = g.t("square", shape, "int8", quant(0.025, -128))
    g.op("MUL", [d, d], [y], activation="RELU6")
    return g.graph([x], [y], "binary_chain")


def activation_chain() -> Graph:
    g = GraphMaker(5)
    shape = (1, 8, 8, 16)
    x = g.t("x", shape, "int8", quant(0.05, 0))
    steps = [
        ("HARD_SWISH", quant(0.03, -115), {}),
        ("LEAKY_RELU", quant(0.03, -110), {"alpha": 0.2}),
        ("RELU_N1_TO_1", quant(1 / 127, 0), {}),
        ("TANH", quant(1 / 128, 0), {}),
        ("LOGISTIC", quant(1 / 256, -128), {}),
        ("RELU6", quant(1 / 256, -128), {}),
        ("RELU", quant(1 / 300, -128), {}),
        ("QUANTIZE", quant(0.003, -128), {}),
    ]
    t = x
    for kind, q, options in steps:
        y = g.t(kind.lower(), shape, "int8", q)
        g.op(kind, [t], [y], **options)
        t = y
    return g.graph([x], [t], "activation_chain")


CHAINS = {"binary": binary_chain, "activation": activation_chain}


def _case(family: str):
    graph = CHAINS[family]()
    model = write_tflite(graph)
    compiled = compile_graph(graph, load_board("mps2_an500"), f"{family}_chain")
    rng = np.random.default_rng(12)
    inputs = [rng.integers(-128, 128, graph.tensor(graph.inputs[0]).shape, dtype=np.int8) for _ in range(2)]
    expected = [run_tflite(model, [x])[0] for x in inputs]
    for y in expected:
        assert np.unique(y).size > 20, "a chain that saturates would prove little"
    return compiled, inputs, expected


@pytest.mark.parametrize("family", CHAINS)
def test_chain_is_bit_exact_on_the_host_twin(family: str) -> None:
    compiled, inputs, expected = _case(family)
    twin = HostTwin(compiled.blob)
    for x, want in zip(inputs, expected, strict=True):
        np.testing.assert_array_equal(twin.invoke([x])[0], want)


@pytest.mark.emulator
@pytest.mark.parametrize("family", CHAINS)
def test_chain_is_bit_exact_on_the_emulated_board(family: str) -> None:
    from tests.kernels.conv.test_dsp_kernels import _on_board

    compiled, inputs, expected = _case(family)
    cost = {}
    for dsp in (True, False):
        outs, costs = _on_board(compiled, dsp, inputs)
        for got, want in zip(outs, expected, strict=True):
            np.testing.assert_array_equal(got, want)
        cost[dsp] = min(costs)
    print(f"\n{family} chain: {cost[False]:,} instructions (reference kernels), {cost[True]:,} (DSP)")
    assert cost[True] < cost[False]
