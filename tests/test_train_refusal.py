"""A scheme that would train through operators without a backward kernel is refused with
one message: every such operator with its index and tensors, that its backward kernel is
missing (the forward runs), and the nearest scheme that keeps them frozen, which must then
compile."""

from __future__ import annotations

import re

import pytest

from pytools.model.ir import Graph, ModelError
from pytools.train.autodiff import build_training_graph
from pytools.train.scheme import parse_scheme_text
from tests.import_support import GraphMaker, quant


def _net(activation_after_fc: bool = False) -> Graph:
    """conv -> DEQUANTIZE -> QUANTIZE -> conv -> DEQUANTIZE -> QUANTIZE -> reshape -> FC
    [-> DEQUANTIZE -> QUANTIZE] -> SOFTMAX: int8 -> float32 -> int8 round trips (what a
    float-I/O block spliced into an int8 graph leaves); DEQUANTIZE has no backward kernel
    (docs/operators.md: not trained through)."""
    g = GraphMaker(3)
    x = g.t("image", (1, 4, 4, 3), "int8", quant(0.05, 0))

    def round_trip(name: str, src: int, shape: tuple[int, ...], q) -> int:
        f = g.t(f"{name}/float", shape, "float32")
        g.op("DEQUANTIZE", [src], [f])
        y = g.t(name, shape, "int8", q)
        g.op("QUANTIZE", [f], [y])
        return y

    def conv(name: str, src: int, cin: int, cout: int) -> int:
        w = g.weights(f"{name}/w", (cout, 1, 1, cin), quant(0.01, 0))
        b = g.bias(f"{name}/b", cout, quant(0.0005, 0))
        y = g.t(name, (1, 4, 4, cout), "int8", quant(0.1, 0))
        g.op(
            "CONV_2D", [src, w, b], [y], padding="SAME", stride_h=1, stride_w=1, dilation_h=1, dilation_w=1,
            activation="NONE",
        )  # fmt: skip
        return y

    c1 = conv("conv1", x, 3, 4)
    s1 = round_trip("trip1", c1, (1, 4, 4, 4), quant(0.1, 0))
    c2 = conv("conv2", s1, 4, 4)
    h = round_trip("trip2", c2, (1, 4, 4, 4), quant(0.1, 0))
    shape = g.t("shape", (2,), "int32", None, [1, 64])
    flat = g.t("flat", (1, 64), "int8", quant(0.05, -10))
    g.op("RESHAPE", [h, shape], [flat], new_shape=[1, 64])
    fw = g.weights("fc/w", (5, 64), quant(0.02, 0))
    fb = g.bias("fc/b", 5, quant(0.001, 0))
    logits = g.t("fc", (1, 5), "int8", quant(0.2, 0))
    g.op("FULLY_CONNECTED", [flat, fw, fb], [logits], activation="NONE", keep_num_dims=False)
    if activation_after_fc:
        logits = round_trip("fc/trip", logits, (1, 5), quant(0.2, 0))
    probs = g.t("probs", (1, 5), "int8", quant(1 / 256, -128))
    g.op("SOFTMAX", [logits], [probs], beta=1.0)
    return g.graph([x], [probs], "refusal_net")


def _dequantize_line(index: int, src: str, name: str) -> str:
    """The refusal's line for one of _net's DEQUANTIZEs."""
    return f"operator #{index} (DEQUANTIZE): inputs '{src}'; outputs '{name}/float'"


def _refusal(graph: Graph, scheme: str) -> str:
    with pytest.raises(ModelError) as e:
        build_training_graph(graph, parse_scheme_text(scheme))
    return str(e.value)


@pytest.mark.parametrize("scheme", ["bias=3,-3=1", "-3=0.5", "bias=2,-1=1"])
def test_every_operator_without_backward_is_named_with_the_nearest_scheme(scheme: str) -> None:
    g = _net()
    msg = _refusal(g, scheme)
    both = scheme != "bias=2,-1=1"  # biases of the last two layers reach only the second trip
    n = 2 if both else 1
    assert msg.startswith(f"the scheme ({parse_scheme_text(scheme).describe()}) trains through {n} operator")
    assert "whose backward kernel is missing (the forward kernels exist" in msg
    assert (_dequantize_line(1, "conv1", "trip1") in msg) == both
    assert _dequantize_line(4, "conv2", "trip2") in msg
    assert "(QUANTIZE)" not in msg  # its gradient passes (int8 on both sides)
    assert "Backward kernels exist for: CONV_2D" in msg
    suggested = re.search(r'Nearest scheme that keeps them frozen: "([^"]+)"', msg)
    assert suggested, msg
    want = "bias=1,-1=1" if scheme == "bias=2,-1=1" else "bias=1"
    assert suggested[1] == want
    assert "trains only the 1 trainable layer after operator #4 (DEQUANTIZE)" in msg
    # ... and the suggestion compiles.
    tb = build_training_graph(g, parse_scheme_text(suggested[1]))
    assert list(tb.updates) == [7]


def test_nothing_trainable_after_the_last_such_operator_is_said() -> None:
    msg = _refusal(_net(activation_after_fc=True), "bias=1")
    assert _dequantize_line(8, "fc", "fc/trip") in msg
    assert "No trainable layer lies after operator #8 (DEQUANTIZE)" in msg
    assert "until DEQUANTIZE has a backward kernel" in msg
    assert "Nearest scheme" not in msg


def test_a_scheme_above_them_trains() -> None:
    tb = build_training_graph(_net(), parse_scheme_text("bias=1,-1=1"))
    assert list(tb.updates) == [7] and tb.n_forward > 0
