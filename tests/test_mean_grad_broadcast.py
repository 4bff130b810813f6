"""The global average pool's gradient as one row per image (pytools/train/mean_grad_broadcast.py)
in compiled steps: where the MEAN's input gradient is read only by conv gradient kernels, it is
[batch, 1, 1, C] instead of the materialised broadcast, and the step trains bit for bit as
without the fold (losses, predictions, trained state) on the host twin, reference and DSP
kernels, and on the emulated Cortex-M7 and M4; where a reader cannot take it, the graph and the
plan are as without the fold. The kernels themselves: tests/kernels/conv/test_conv_grad_broadcast.py."""

from __future__ import annotations

import dataclasses
import os
import uuid

import numpy as np
import pytest

import pytools.train.compile_train as compile_train
from pytools.boards import load_board
from pytools.model.compiler import compile_graph
from pytools.model.lowering import lower
from pytools.model.tflite_import import import_tflite
from pytools.pretrain.zoo import zoo_model
from pytools.train.autodiff import build_training_graph
from pytools.train.mean_grad_broadcast import fold_mean_grad_broadcast
from pytools.train.scheme import load_scheme
from pytools.train.trainer import Trainer
from tests.kernels.conv.test_dsp_kernels import dsp_on_host

BOARD = load_board("mps2_an500")
NAME = "mobilenet_tiny"  # ... CONV_2D (1x1, ReLU6) -> MEAN -> FULLY_CONNECTED -> SOFTMAX
SCHEME = "bias=4,-1=1,-3=0.25"  # the conv before the MEAN trains weights (a slice) and bias


def _compile(scheme: str, fold: bool, monkeypatch: pytest.MonkeyPatch, board=BOARD):
    with monkeypatch.context() as m:
        if not fold:
            m.setattr(compile_train, "fold_mean_grad_broadcast", lambda g: [])
        graph = import_tflite(zoo_model(NAME), NAME)
        return compile_train.compile_training(graph, load_scheme(scheme), board, NAME, False, 0.05)


def _mean_grad(ct):
    g = ct.train.graph
    (op,) = [op for op in g.ops if op.kind == "MEAN_GRAD_INPUT"]
    return g, op, [r for r in g.ops if op.outputs[0] in r.inputs]


def _samples(ct, n: int, seed: int) -> list[tuple[np.ndarray, int]]:
    g = ct.train.graph
    x = g.tensor(g.inputs[0])
    rng = np.random.default_rng(seed)
    classes = g.tensor(ct.train.logits).shape[-1]
    return [(rng.integers(-128, 128, x.shape, dtype=np.int8), int(rng.integers(classes))) for _ in range(n)]


def _trains_the_same(a_ct, b_ct, data) -> None:
    a, b = Trainer(a_ct), Trainer(b_ct)
    steps = [a.step(x, y) for x, y in data]
    assert steps == [b.step(x, y) for x, y in data]  # losses (float32) and predictions
    assert [a.predict(x) for x, _ in data] == [b.predict(x) for x, _ in data]
    sa, sb = a.state(), b.state()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].tobytes() == sb[k].tobytes(), k
    assert len({s[0] for s in steps}) > 1  # it trained: the losses move


def _as_two_pass(ct, keep: int):
    """The step with the MEAN-fed conv's input gradient in two passes (CONV_2D_GRAD_INPUT_2PASS
    keeping `keep` pixels; the compiler switches it only where the arena shrinks), replanned."""
    g, _, readers = _mean_grad(ct)
    (op,) = [r for r in readers if r.kind == "CONV_2D_GRAD_INPUT"]
    op.kind = "CONV_2D_GRAD_INPUT_2PASS"
    op.options["keep"] = keep
    return dataclasses.replace(ct, compiled=compile_graph(g, BOARD, NAME, n_forward=ct.train.n_forward))


@pytest.mark.parametrize("dsp", [False, True], ids=["reference", "dsp"])
@pytest.mark.parametrize("two_pass", [False, True], ids=["one-pass", "two-pass"])
def test_the_folded_gradient_trains_bit_identically(monkeypatch, dsp: bool, two_pass: bool) -> None:
    folded = _compile(SCHEME, True, monkeypatch)
    plain = _compile(SCHEME, False, monkeypatch)
    if two_pass:
        folded, plain = _as_two_pass(folded, 5), _as_two_pass(plain, 5)
    g, op, readers = _mean_grad(folded)
    pg, pop, preaders = _mean_grad(plain)
    b, h, w, c = pg.tensor(pop.outputs[0]).shape
    assert h * w > 1 and g.tensor(op.outputs[0]).shape == (b, 1, 1, c)
    assert op.options["grad_broadcast"] and "grad_broadcast" not in pop.options
    conv_input = "CONV_2D_GRAD_INPUT_2PASS" if two_pass else "CONV_2D_GRAD_INPUT"
    assert {r.kind for r in readers} == {"CONV_2D_GRAD_UPDATE", conv_input}
    assert all(r.options["grad_broadcast"] for r in readers)
    assert not any("grad_broadcast" in r.options for r in preaders)
    # the gradient's bytes: h * w times fewer
    sizes = [{t.name: t.size for t in ct.compiled.plan.tensors} for ct in (folded, plain)]
    name = g.tensor(op.outputs[0]).name
    assert sizes[0][name] * h * w == sizes[1][name] == b * h * w * c
    assert folded.compiled.arena <= plain.compiled.arena
    # the kernel writes what the tensor holds: one row per image, not a pixel past it
    p = lower(g, op).params
    assert p["dim0"] * p["dim1"] * p["dim2"] * p["dim3"] == b * c and p["count"] == h * w
    with dsp_on_host(dsp):
        _trains_the_same(folded, plain, _samples(folded, 5, seed=7))


def test_a_reader_it_was_not_taught_leaves_the_graph_as_it_is() -> None:
    graph = import_tflite(zoo_model(NAME), NAME)
    tb = build_training_graph(graph, load_scheme(SCHEME), lr=0.05)
    (op,) = [op for op in tb.graph.ops if op.kind == "MEAN_GRAD_INPUT"]
    shape = tb.graph.tensor(op.outputs[0]).shape
    readers = [r for r in tb.graph.ops if op.outputs[0] in r.inputs]
    kind = readers[0].kind
    readers[0].kind = "DEPTHWISE_CONV_2D_GRAD_INPUT"  # a kernel without grad_broadcast
    assert fold_mean_grad_broadcast(tb.graph) == []
    assert tb.graph.tensor(op.outputs[0]).shape == shape
    assert not any("grad_broadcast" in o.options for o in tb.graph.ops)
    readers[0].kind = kind
    assert fold_mean_grad_broadcast(tb.graph) == [op.index]
    assert fold_mean_grad_broadcast(tb.graph) == []  # once


def test_a_scheme_without_a_mean_fed_trained_layer_plans_the_same_bytes(monkeypatch) -> None:
    """Only the classifier trains: nothing reads the MEAN's input gradient, no fold."""
    a, b = _compile("bias=1,-1=1", True, monkeypatch), _compile("bias=1,-1=1", False, monkeypatch)
    assert a.compiled.blob == b.compiled.blob


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_the_folded_step_on_the_emulated_board_matches_the_host_twin(monkeypatch, board_name: str) -> None:
    """The folded plan on QEMU (the DSP kernels of that core) against the host twin, and the
    host twin against the unfolded plan (above)."""
    from pytools import emulator
    from pytools.build.builder import build_firmware
    from pytools.link.client import Link
    from pytools.model.board_runner import BoardModel
    from pytools.model.host_twin import io_tensors, tensor_table

    board = load_board(board_name)
    ct = _compile(SCHEME, True, monkeypatch, board)
    data = _samples(ct, 3, seed=11)
    twin = Trainer(ct)
    twin_steps = [twin.step(x, y) for x, y in data]
    name = f"test-bcast-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    emu = emulator.start(board, build_firmware(board, ct.compiled.blob, ct.compiled.arena).elf, name=name)
    try:
        with Link.open(emu.url) as link:
            ins, outs = io_tensors(ct.compiled.blob)
            on_board = Trainer(ct, BoardModel(link, tensor_table(ct.compiled.blob), ins, outs))
            board_steps = [on_board.step(x, y) for x, y in data]
            state = on_board.state()
    finally:
        emulator.stop(name)
    assert board_steps == twin_steps
    twin_state = twin.state()
    for k in twin_state:
        np.testing.assert_array_equal(state[k], twin_state[k], err_msg=k)


@pytest.mark.slow
def test_mobilenet_v2_streamed_trains_the_same_folded(monkeypatch) -> None:
    """MobileNetV2-w0.35 with the suite's streamed scheme (mbv2_sparse's trained layers, the input
    streamed): Conv_1's 4x4x1280 gradient folded, two steps as without the fold."""
    from pytools.model.tflite_import import load_tflite
    from pytools.pretrain.mobilenet_v2 import mobilenet_v2_path

    scheme = "bias=20,-1=1,-5=0.25,-8=0.125,-11=0.25,-14=0.125,patch=0-5x4+6-12x2,stream_input=true"
    path = mobilenet_v2_path()
    cts = []
    for fold in (True, False):
        with monkeypatch.context() as m:
            if not fold:
                m.setattr(compile_train, "fold_mean_grad_broadcast", lambda g: [])
            cts.append(
                compile_train.compile_training(load_tflite(path), load_scheme(scheme), BOARD, "m", False)
            )
    folded, plain = cts
    g, op, _ = _mean_grad(folded)
    assert g.tensor(op.outputs[0]).shape == (1, 1, 1, 1280)
    assert _mean_grad(plain)[0].tensor(_mean_grad(plain)[1].outputs[0]).shape == (1, 4, 4, 1280)
    with dsp_on_host(True):
        _trains_the_same(folded, plain, _samples(folded, 2, seed=3))
