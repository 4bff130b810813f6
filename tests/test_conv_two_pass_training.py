"""CONV_2D_GRAD_INPUT_2PASS in compiled steps: with the scheme's conv_two_pass the compiler
switches a 1x1 stride-1 conv's input gradient to it only where the planned arena shrinks, with
the largest keep that arena allows, and the step trains exactly as with the one-pass kernel
(the kernel itself: tests/kernels/conv/test_conv_grad_two_pass.py); where nothing shrinks, or
without the option, the plan is today's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import pytools.model.lowering.training_conv as training_conv
from pytools.boards import load_board
from pytools.model.compiler import compile_graph
from pytools.model.tflite_import import import_tflite
from pytools.pretrain.zoo import zoo_model
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme
from pytools.train.trainer import Trainer
from tests.kernels.conv.test_dsp_kernels import dsp_on_host

BOARD = load_board("mps2_an500")


def _compiled(scheme: str, conv_two_pass: bool = True):
    name = "mobilenet_tiny"
    sch = dataclasses.replace(load_scheme(scheme), conv_two_pass=conv_two_pass)
    return compile_training(import_tflite(zoo_model(name), name), sch, BOARD, name, False, 0.02)


def _samples(ct, n: int, seed: int) -> list[tuple[np.ndarray, int]]:
    g = ct.train.graph
    x = g.tensor(g.inputs[0])
    rng = np.random.default_rng(seed)
    classes = g.tensor(ct.train.logits).shape[-1]
    return [(rng.integers(-128, 128, x.shape, dtype=np.int8), int(rng.integers(classes))) for _ in range(n)]


def _plan(ct):
    g = ct.train.graph
    return compile_graph(g, BOARD, "m", n_forward=ct.train.n_forward)


@pytest.mark.parametrize("dsp", [False, True], ids=["reference", "dsp"])
def test_two_pass_conv_gradients_shrink_the_arena_and_train_the_same(dsp: bool) -> None:
    ct = _compiled("bias=12,-1=1,-4=0.5,-7=0.25")
    g = ct.train.graph
    two = [op for op in g.ops if op.kind == "CONV_2D_GRAD_INPUT_2PASS"]
    assert two
    keeps = {op.index: op.options["keep"] for op in two}
    pixels = {op.index: int(np.prod(g.tensor(op.outputs[0]).shape[:-1])) for op in two}
    # Only what memory needs is computed twice: some pixels kept, one more kept grows the arena.
    assert any(0 < keeps[i] < pixels[i] for i in keeps), (keeps, pixels)
    for op in two:
        if keeps[op.index] < pixels[op.index]:
            op.options["keep"] += 1
            assert _plan(ct).arena > ct.compiled.arena, op.index
            op.options["keep"] -= 1
    for op in two:
        op.kind = "CONV_2D_GRAD_INPUT"
    one = dataclasses.replace(ct, compiled=_plan(ct))
    for op in two:
        op.kind = "CONV_2D_GRAD_INPUT_2PASS"
    assert ct.compiled.arena < one.compiled.arena
    data = _samples(ct, 6, seed=21)
    with dsp_on_host(dsp):
        a, b = Trainer(ct), Trainer(one)
        assert [a.step(x, y) for x, y in data] == [b.step(x, y) for x, y in data]
        assert [a.predict(x) for x, _ in data] == [b.predict(x) for x, _ in data]
        sa, sb = a.state(), b.state()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].tobytes() == sb[k].tobytes(), k


def test_where_the_arena_does_not_shrink_the_plan_is_unchanged(monkeypatch) -> None:
    scheme = "bias=4,-1=1,-3=0.25"
    ct = _compiled(scheme)
    g = ct.train.graph
    tried = [
        op for op in g.ops if op.kind == "CONV_2D_GRAD_INPUT" and training_conv.conv_two_pass_takes(g, op)
    ]
    assert tried  # candidates there were, and none was kept
    assert not any(op.kind.endswith("_2PASS") for op in g.ops)
    assert not any("keep" in op.options for op in g.ops)
    assert ct.compiled.blob == _compiled(scheme, conv_two_pass=False).compiled.blob
    monkeypatch.setattr(training_conv, "conv_two_pass_takes", lambda g, op: False)
    assert ct.compiled.blob == _compiled(scheme).compiled.blob


def test_without_the_option_nothing_switches(tmp_path) -> None:
    """conv_two_pass is off by default (the committed results' plans stay as they are) and a
    scheme file turns it on."""
    scheme = "bias=12,-1=1,-4=0.5,-7=0.25"
    ct = _compiled(scheme, conv_two_pass=False)
    assert not any(op.kind == "CONV_2D_GRAD_INPUT_2PASS" for op in ct.train.graph.ops)
    assert not load_scheme(scheme).conv_two_pass
    f = tmp_path / "s.toml"
    f.write_text("bias_layers = 2\nconv_two_pass = true\n")
    assert load_scheme(str(f)).conv_two_pass
    f.write_text("bias_layers = 2\nconv_two_pass = 1\n")
    with pytest.raises(Exception, match="conv_two_pass must be true or false"):
        load_scheme(str(f))
