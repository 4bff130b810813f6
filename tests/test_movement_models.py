"""Whole graphs through the compiler, the host twin and the emulated board (issue 12):
- a chain of every shape and movement operator, bit-exact with TFLite's reference kernels;
- a person_detect-like model whose biases are quantized per channel along a dimension past
  their rank, as TFLite Micro's person_detect.tflite: LiteRT refuses it, TFLite Micro runs
  it, and so do we, bit-exact with TFLite Micro.
"""

from __future__ import annotations

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.model.compiler import compile_graph
from pytools.model.host_twin import HostTwin
from pytools.model.ir import Graph
from pytools.model.oracle import run_tflite
from pytools.model.plan import OP_FLAG_NOOP
from pytools.model.tflite_export import write_tflite
from pytools.model.tflite_import import import_tflite
from pytools.model.tflm import run_tflm
from tests.import_support import GraphMaker, graph_movement_ops, quant
from tests.test_models import EmulatedModel

BOARD = load_board("mps2_an500")


def _inputs(graph: Graph, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    t = graph.tensor(graph.inputs[0])
    return [rng.integers(-128, 128, t.shape, dtype=np.int8) for _ in range(n)]


def test_movement_chain_is_bit_exact_on_the_host_twin() -> None:
    model = write_tflite(graph_movement_ops())
    compiled = compile_graph(import_tflite(model, "movement"), BOARD, "movement")
    twin = HostTwin(compiled.blob)
    for x in _inputs(graph_movement_ops(), np.random.default_rng(0), 4):
        ref = run_tflite(model, [x])[0]
        assert np.unique(ref).size > 10
        np.testing.assert_array_equal(twin.invoke([x])[0], ref)


def test_squeeze_and_expand_dims_cost_nothing() -> None:
    """The compiler aliases them like RESHAPE: their outputs are their inputs' bytes, and
    the runtime skips them."""
    g = graph_movement_ops()
    compiled = compile_graph(import_tflite(write_tflite(g), "movement"), BOARD, "movement")
    name = {t.name: t.index for t in g.tensors}
    offset = {
        k: compiled.plan.tensors[compiled.plan_ids[name[k]]].offset for k in ("resized", "squeezed", "output")
    }
    assert offset["resized"] == offset["squeezed"] == offset["output"]
    assert [op.kind for op in compiled.plan.ops if op.flags & OP_FLAG_NOOP] == ["SQUEEZE", "EXPAND_DIMS"]


def channel_shuffle(groups: int = 3) -> Graph:
    """ShuffleNet's channel shuffle: RESHAPE to 5-D, TRANSPOSE of the two channel factors,
    RESHAPE back; between two 1x1 convolutions so that the shuffled order matters."""
    g = GraphMaker(21)
    q = quant(0.03, 5)
    x = g.t("input", (1, 5, 4, 6), "int8", q)
    s5 = g.t("shape5", (5,), "int32", None, [1, 5, 4, groups, 6 // groups])
    x5 = g.t("split", (1, 5, 4, groups, 6 // groups), "int8", q)
    g.op("RESHAPE", [x, s5], [x5], new_shape=[1, 5, 4, groups, 6 // groups])
    perm = g.t("perm", (5,), "int32", None, [0, 1, 2, 4, 3])
    t5 = g.t("shuffled", (1, 5, 4, 6 // groups, groups), "int8", q)
    g.op("TRANSPOSE", [x5, perm], [t5])
    s4 = g.t("shape4", (4,), "int32", None, [1, 5, 4, 6])
    y = g.t("output", (1, 5, 4, 6), "int8", q)
    g.op("RESHAPE", [t5, s4], [y], new_shape=[1, 5, 4, 6])
    return g.graph([x], [y], "channel_shuffle")


def test_five_dimensional_intermediates_compile_and_run() -> None:
    """The plan records 4 dimensions; a 5-D tensor inside the graph is recorded merged."""
    g = channel_shuffle()
    model = write_tflite(g)
    compiled = compile_graph(import_tflite(model, "shuffle"), BOARD, "shuffle")
    twin = HostTwin(compiled.blob)
    for x in _inputs(g, np.random.default_rng(3), 3):
        ref = run_tflite(model, [x])[0]
        assert not np.array_equal(ref, x)  # the shuffle moved the channels
        np.testing.assert_array_equal(twin.invoke([x])[0], ref)


@pytest.mark.emulator
def test_movement_chain_is_bit_exact_on_the_emulated_board() -> None:
    g = graph_movement_ops()
    model = write_tflite(g)
    compiled = compile_graph(import_tflite(model, "movement"), BOARD, "movement")
    twin = HostTwin(compiled.blob)
    board = EmulatedModel(compiled)
    try:
        for x in _inputs(g, np.random.default_rng(1), 2):
            out, _ = board.model.invoke([x])
            np.testing.assert_array_equal(out[0], run_tflite(model, [x])[0])
            np.testing.assert_array_equal(out[0], twin.invoke([x])[0])
    finally:
        board.close()


# ---- person_detect's per-channel biases ------------------------------------------------


def person_detect_like(bias_axis: int = 3) -> Graph:
    """person_detect's shape in small: CONV_2D, DEPTHWISE_CONV_2D, 1x1 CONV_2D, average pool,
    1x1 CONV_2D classifier, RESHAPE, SOFTMAX; weights per channel; every bias quantized per
    channel along `bias_axis` of its 1-D tensor (person_detect.tflite has 3)."""
    g = GraphMaker(12)
    x = g.t("input", (1, 12, 12, 1), "int8", quant(1 / 255, -128))
    cur, c_in, h = x, 1, 12

    def conv(kind: str, c_out: int, k: int, stride: int, name: str, out_q) -> None:
        nonlocal cur, c_in, h
        scales = [float(s) for s in g.rng.uniform(0.004, 0.02, c_out)]
        in_scale = float(g.tensors[cur].quant.scale[0])
        shape = (c_out, k, k, c_in) if kind == "CONV_2D" else (1, k, k, c_out)
        w = g.weights(f"{name}/w", shape, quant(scales, 0, 0 if kind == "CONV_2D" else 3))
        b = g.bias(f"{name}/b", c_out, quant([in_scale * s for s in scales], 0, bias_axis))
        h = -(-h // stride)
        y = g.t(name, (1, h, h, c_out), "int8", out_q)
        opts = dict(padding="SAME", stride_h=stride, stride_w=stride, dilation_h=1, dilation_w=1)
        if kind == "DEPTHWISE_CONV_2D":
            opts["depth_multiplier"] = 1
        g.op(kind, [cur, w, b], [y], activation="RELU6", **opts)
        cur, c_in = y, c_out

    conv("CONV_2D", 8, 3, 2, "conv0", quant(0.02, -128))
    conv("DEPTHWISE_CONV_2D", 8, 3, 1, "dw1", quant(0.02, -128))
    conv("CONV_2D", 16, 1, 1, "pw1", quant(0.02, -128))
    pooled = g.t("pool", (1, 1, 1, 16), "int8", quant(0.02, -128))
    g.op("AVERAGE_POOL_2D", [cur], [pooled], padding="VALID", stride_h=6, stride_w=6, filter_h=6, filter_w=6,
         activation="NONE")  # fmt: skip
    cur, h = pooled, 1
    conv("CONV_2D", 2, 1, 1, "logits", quant(0.05, 3))
    g.ops[-1].options["activation"] = "NONE"
    shape = g.t("shape", (2,), "int32", None, [1, 2])
    flat = g.t("flat", (1, 2), "int8", quant(0.05, 3))
    g.op("RESHAPE", [cur, shape], [flat], new_shape=[1, 2])
    y = g.t("probs", (1, 2), "int8", quant(1 / 256, -128))
    g.op("SOFTMAX", [flat], [y], beta=1.0)
    return g.graph([x], [y], "person_detect_like")


def test_per_channel_biases_along_any_dimension_run_as_in_tflite_micro() -> None:
    model = write_tflite(person_detect_like())
    # The property that matters: LiteRT refuses the file, TFLite Micro runs it.
    with pytest.raises(ValueError, match="quantized_dimension"):
        run_tflite(model, [np.zeros((1, 12, 12, 1), np.int8)])
    graph = import_tflite(model, "person_detect_like")
    assert [t.quant.axis for t in graph.tensors if t.name.endswith("/b")] == [3] * 4
    twin = HostTwin(compile_graph(graph, BOARD, "person_detect_like").blob)
    rng = np.random.default_rng(5)
    outs = []
    for _ in range(6):
        x = rng.integers(-128, 128, (1, 12, 12, 1), dtype=np.int8)
        ref = run_tflm(model, [x])[0]
        ours = twin.invoke([x])[0]
        np.testing.assert_array_equal(ours, ref)
        outs.append(int(ours[0, 0]))
    assert len(set(outs)) > 1  # the classifier's output moves with its input


def test_per_channel_bias_axis_does_not_change_the_result() -> None:
    """The same model with its biases along dimension 0 (what LiteRT accepts) gives the same
    bits in LiteRT's reference kernels as the dimension-3 model in ours."""
    rng = np.random.default_rng(6)
    x = rng.integers(-128, 128, (1, 12, 12, 1), dtype=np.int8)
    twin = HostTwin(compile_graph(import_tflite(write_tflite(person_detect_like(3))), BOARD, "pd").blob)
    np.testing.assert_array_equal(
        twin.invoke([x])[0], run_tflite(write_tflite(person_detect_like(0)), [x])[0]
    )


def nhwc_nchw_round_trip() -> Graph:
    """NHWC -> NCHW -> NHWC: the optimized kernel's blocked path both ways, with edges that
    fill no whole 4x4 block (9x10 pixels, 13 channels)."""
    g = GraphMaker(31)
    q = quant(0.02, -7)
    x = g.t("input", (1, 9, 10, 13), "int8", q)
    to_nchw = g.t("to_nchw", (4,), "int32", None, [0, 3, 1, 2])
    y = g.t("nchw", (1, 13, 9, 10), "int8", q)
    g.op("TRANSPOSE", [x, to_nchw], [y])
    to_nhwc = g.t("to_nhwc", (4,), "int32", None, [0, 2, 3, 1])
    z = g.t("nhwc", (1, 9, 10, 13), "int8", q)
    g.op("TRANSPOSE", [y, to_nhwc], [z])
    out = g.t("output", (1, 13, 9, 10), "int8", q)
    g.op("TRANSPOSE", [z, to_nchw], [out])
    return g.graph([x], [out], "nhwc_nchw")


@pytest.mark.emulator
def test_blocked_transposes_are_bit_exact_on_the_emulated_board() -> None:
    g = nhwc_nchw_round_trip()
    model = write_tflite(g)
    compiled = compile_graph(import_tflite(model, "nhwc_nchw"), BOARD, "nhwc_nchw")
    board = EmulatedModel(compiled)
    try:
        for x in _inputs(g, np.random.default_rng(2), 2):
            out, _ = board.model.invoke([x])
            np.testing.assert_array_equal(out[0], run_tflite(model, [x])[0])
            np.testing.assert_array_equal(out[0], np.transpose(x, (0, 3, 1, 2)))
    finally:
        board.close()
