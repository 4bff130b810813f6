"""PAD folded into the convolution after it (pytools/model/lowering/fold.py).

Oracles: TFLite's reference kernels on a TensorFlow-built model with explicit PADs before a
3x3/2 conv, a 5x5/2 depthwise and an asymmetric PAD before a 3x3/1 depthwise (zoo
"pad_fold"), on the host twin (reference and DSP kernels) and on the emulated board; for
training, the same step with the PADs kept as copies (their gradient cropped by PAD's own
backward): the int32 gradient sums are the same, so the gradients reaching below a folded PAD
agree to within one quantization step of the coarser of the two scales.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.model.compiler import compile_graph
from pytools.model.host_twin import HostTwin
from pytools.model.kernels import host_lib as twin_lib
from pytools.model.lowering.fold import fold_pads
from pytools.model.oracle import run_tflite
from pytools.model.tflite_import import import_tflite
from pytools.pretrain.zoo import zoo_model
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme
from pytools.train.trainer import Trainer

BOARD = load_board("mps2_an500")


@contextmanager
def dsp_on_host() -> Iterator[None]:
    flag = ctypes.c_int.in_dll(twin_lib(), "kernels_dsp_host")
    old, flag.value = flag.value, 1
    try:
        yield
    finally:
        flag.value = old


def _graph():
    return import_tflite(zoo_model("pad_fold"), "pad_fold")


def _inputs(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, (1, 32, 32, 3), dtype=np.int8) for _ in range(n)]


def test_every_pad_before_a_convolution_is_folded() -> None:
    g = _graph()
    pads = [op.index for op in g.ops if op.kind == "PAD"]
    assert len(pads) == 3
    f = fold_pads(g)
    assert [p for p, _ in f.folded] == pads
    assert "PAD" not in [op.kind for op in f.graph.ops]
    assert len(f.graph.ops) == len(g.ops) - 3
    for p, c in f.folded:  # the convolution reads the PAD's input now, with its padding
        conv = f.graph.ops[f.index_map[c]]
        assert conv.inputs[0] == g.ops[p].inputs[0]
        assert f.index_map[p] == f.index_map[c]
    compiled = compile_graph(g, BOARD, "pad_fold")
    assert "PAD" not in [op.kind for op in compiled.plan.ops]
    kept = compile_graph(g, BOARD, "pad_fold", fold=False)
    assert [op.kind for op in kept.plan.ops].count("PAD") == 3
    assert compiled.arena < kept.arena


@pytest.mark.parametrize("dsp", [False, True], ids=["reference", "dsp"])
def test_folded_model_is_bit_exact_with_tflite_on_the_host_twin(dsp: bool) -> None:
    model = zoo_model("pad_fold")
    twin = HostTwin(compile_graph(import_tflite(model, "pad_fold"), BOARD, "pad_fold").blob)
    with dsp_on_host() if dsp else nullcontext():
        for x in _inputs(6, seed=1):
            ref = run_tflite(model, [x])[0]
            np.testing.assert_array_equal(twin.invoke([x])[0], ref)


def test_what_is_not_exact_is_not_folded() -> None:
    """A PAD read twice, and a PAD whose padding would make a whole output row of padding
    (cnn_int8_io's ZeroPadding2D(1) before a 1x1 conv) stay copies."""
    g = import_tflite(zoo_model("cnn_int8_io"), "cnn")
    assert any(op.kind == "PAD" for op in g.ops)
    assert fold_pads(g).folded == []
    g = _graph()
    pad = next(op for op in g.ops if op.kind == "PAD")
    g.outputs.append(pad.outputs[0])  # its output also leaves the graph
    assert pad.index not in [p for p, _ in fold_pads(g).folded]


SCHEME = "bias=7,-1=1,-2=0.5,-4=1"  # gradients flow down through every folded PAD


def _gradient_below(fold: bool, pad: int) -> tuple[Trainer, np.ndarray, float]:
    """The int8 gradient (and its scale) wrt the input of the model's PAD #pad after one step's
    backward has produced it (the step run up to that operator: the arena reuses it later)."""
    g = _graph()
    ct = compile_training(g, load_scheme(SCHEME), BOARD, "pad_fold", link=False, fold=fold)
    tg = ct.train.graph
    ids = {tg.tensor(i).name: i for i in range(len(tg.tensors))}
    name = f"grad/{g.tensor(g.ops[pad].inputs[0]).name}"
    grad, scale = ids[name], ids[name + "/scale"]
    end = next(op.index for op in tg.ops if grad in op.outputs) + 1
    tr = Trainer(ct)
    x = _inputs(1, seed=3)[0]
    tr.backend.invoke([x, np.array([4], np.int32)], 0, end)
    gi = np.asarray(tr.backend.tensor(ct.compiled.plan_ids[grad])).astype(np.float64)
    gs = float(np.asarray(tr.backend.tensor(ct.compiled.plan_ids[scale])).reshape(-1)[0])
    return tr, gi, gs


def test_training_through_a_folded_pad_gives_the_unpadded_gradient() -> None:
    """The topmost PAD the gradient passes (#5, before the 3x3/1 depthwise, asymmetric)."""
    pad = [op.index for op in _graph().ops if op.kind == "PAD"][-1]
    folded, a, sa = _gradient_below(True, pad)
    kept, b, sb = _gradient_below(False, pad)
    assert "PAD" not in [op.kind for op in folded.ct.train.graph.ops]
    assert "PAD_GRAD_INPUT" in [op.kind for op in kept.ct.train.graph.ops]
    assert np.abs(a).max() > 0 and a.shape == b.shape
    # the folded scale is max|G| over the input's positions only, never above the kept one's
    assert sa <= sb * (1 + 1e-6)
    np.testing.assert_allclose(a * sa, b * sb, atol=1.01 * sb, rtol=0)


def test_patch_stages_take_a_model_with_pads() -> None:
    """A stage across folded PADs, numbered in the model's operators (#0 conv, #1 PAD, #2
    conv/2, #3 PAD, #4 depthwise 5x5/2), changes no bit of training."""
    g = _graph()
    scheme = "bias=3,-1=1"
    plain = compile_training(g, load_scheme(scheme), BOARD, "pad_fold", link=False)
    patched = compile_training(g, load_scheme(scheme + ",patch=0-4x2"), BOARD, "pad_fold", link=False)
    assert patched.patching and patched.patching[0].until == 2  # #4 is the folded graph's #2
    a, b = Trainer(plain), Trainer(patched)
    rng = np.random.default_rng(5)
    data = [(x, int(rng.integers(10))) for x in _inputs(4, seed=6)]
    assert [a.step(x, y) for x, y in data] == [b.step(x, y) for x, y in data]
    sa, sb = a.state(), b.state()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


@pytest.mark.emulator
def test_folded_model_is_bit_exact_on_the_emulated_board() -> None:
    from tests.test_models import EmulatedModel

    model = zoo_model("pad_fold")
    compiled = compile_graph(import_tflite(model, "pad_fold"), BOARD, "pad_fold")
    board = EmulatedModel(compiled)
    try:
        for x in _inputs(3, seed=7):
            out, _ = board.model.invoke([x])
            np.testing.assert_array_equal(out[0], run_tflite(model, [x])[0])
    finally:
        board.close()


def _dilated_graph(pads: list[list[int]], padding: str):
    """int8 input -> PAD -> CONV_2D (dilation (2, 1), strides (1, 2)) -> DEPTHWISE_CONV_2D."""
    from tests.import_support import GraphMaker, quant

    g = GraphMaker(3)
    q_in = quant(0.05, -3)
    x = g.t("input", (1, 9, 8, 3), "int8", q_in)
    shape = (1, 9 + pads[1][0] + pads[1][1], 8 + pads[2][0] + pads[2][1], 3)
    pt = g.t("paddings", (4, 2), "int64", None, pads)
    xp = g.t("padded", shape, "int8", q_in)
    g.op("PAD", [x, pt], [xp], paddings=pads)
    w_scales = [0.01, 0.02, 0.005, 0.03]
    w = g.weights("conv/w", (4, 3, 3, 3), quant(w_scales, 0, 0), 127)
    b = g.bias("conv/b", 4, quant([0.05 * s for s in w_scales], 0, 0))
    eff_h, eff_w = 5, 3
    if padding == "VALID":
        oh, ow = shape[1] - eff_h + 1, (shape[2] - eff_w) // 2 + 1
    else:
        oh, ow = shape[1], (shape[2] + 1) // 2
    y = g.t("conv", (1, oh, ow, 4), "int8", quant(0.1, -128))
    g.op(
        "CONV_2D", [xp, w, b], [y], padding=padding, stride_h=1, stride_w=2, dilation_h=2, dilation_w=1,
        activation="RELU",
    )  # fmt: skip
    dw_scales = [0.02, 0.01, 0.03, 0.015]
    dw = g.weights("dw/w", (1, 3, 3, 4), quant(dw_scales, 0, 3), 127)
    db = g.bias("dw/b", 4, quant([0.1 * s for s in dw_scales], 0, 0))
    z = g.t("dw", (1, oh, ow, 4), "int8", quant(0.07, 5))
    pz = g.t("paddings2", (4, 2), "int64", None, [[0, 0], [1, 1], [1, 1], [0, 0]])
    yp = g.t("padded2", (1, oh + 2, ow + 2, 4), "int8", quant(0.1, -128))
    g.op("PAD", [y, pz], [yp], paddings=[[0, 0], [1, 1], [1, 1], [0, 0]])
    g.op(
        "DEPTHWISE_CONV_2D", [yp, dw, db], [z], padding="VALID", stride_h=1, stride_w=1, depth_multiplier=1,
        dilation_h=1, dilation_w=1, activation="NONE",
    )  # fmt: skip
    return g.graph([x], [z], "dilated")


@pytest.mark.parametrize("dsp", [False, True], ids=["reference", "dsp"])
@pytest.mark.parametrize(
    "pads,padding",
    [
        ([[0, 0], [1, 1], [2, 0], [0, 0]], "VALID"),
        ([[0, 0], [0, 3], [1, 2], [0, 0]], "VALID"),
        ([[0, 0], [2, 1], [1, 0], [0, 0]], "SAME"),
    ],
)
def test_dilated_strided_asymmetric_folds_are_bit_exact(
    pads: list[list[int]], padding: str, dsp: bool
) -> None:
    """Asymmetric PADs before a dilated, strided CONV_2D (VALID, and SAME: the two paddings
    add up), and a PAD before a depthwise, folded, against TFLite."""
    from pytools.model.tflite_export import write_tflite

    model = write_tflite(_dilated_graph(pads, padding))
    g = import_tflite(model, "dilated")
    f = fold_pads(g)
    assert len(f.folded) == 2
    assert "PAD" not in [op.kind for op in compile_graph(g, BOARD, "d").plan.ops]
    twin = HostTwin(compile_graph(g, BOARD, "dilated").blob)
    rng = np.random.default_rng(11)
    with dsp_on_host() if dsp else nullcontext():
        for _ in range(6):
            x = rng.integers(-128, 128, (1, 9, 8, 3), dtype=np.int8)
            ref = run_tflite(model, [x])[0]
            assert np.unique(ref).size > 3
            np.testing.assert_array_equal(twin.invoke([x])[0], ref)


@pytest.mark.emulator
def test_training_through_folded_pads_on_the_emulated_board_matches_the_twin() -> None:
    import os
    import uuid

    from pytools import emulator
    from pytools.build.builder import build_firmware
    from pytools.link.client import Link
    from pytools.model.board_runner import BoardModel
    from pytools.model.host_twin import io_tensors, tensor_table

    ct = compile_training(_graph(), load_scheme(SCHEME), BOARD, "pad_fold", link=False)
    assert "PAD" not in [op.kind for op in ct.train.graph.ops]
    rng = np.random.default_rng(8)
    data = [(x, int(rng.integers(10))) for x in _inputs(3, seed=9)]
    twin = Trainer(ct)
    twin_steps = [twin.step(x, y) for x, y in data]
    name = f"test-padfold-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    emu = emulator.start(BOARD, build_firmware(BOARD, ct.compiled.blob, ct.compiled.arena).elf, name=name)
    try:
        with Link.open(emu.url) as link:
            ins, outs = io_tensors(ct.compiled.blob)
            board = Trainer(ct, BoardModel(link, tensor_table(ct.compiled.blob), ins, outs))
            board_steps = [board.step(x, y) for x, y in data]
            board_state = board.state()
    finally:
        emulator.stop(name)
    assert board_steps == twin_steps
    twin_state = twin.state()
    for k in twin_state:
        np.testing.assert_array_equal(board_state[k], twin_state[k], err_msg=k)
