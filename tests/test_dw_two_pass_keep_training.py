"""DEPTHWISE_CONV_2D_GRAD_INPUT_2PASS's keep in compiled steps: options["keep"] (0 when absent)
reaches the kernel's parameters, each kept channel adds its accumulators to the operator's
scratch, and a step trains the same at every keep (the kernel itself:
tests/kernels/conv/test_dw_grad_two_pass_keep.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.model.compiler import compile_graph
from pytools.model.ir import ModelError
from pytools.model.kernels import scratch_size
from pytools.model.tflite_import import import_tflite
from pytools.pretrain.zoo import zoo_model
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme
from pytools.train.trainer import Trainer
from tests.kernels.conv.test_dsp_kernels import dsp_on_host

BOARD = load_board("mps2_an500")
KIND = "DEPTHWISE_CONV_2D_GRAD_INPUT_2PASS"


@pytest.fixture(scope="module")
def ct():
    name = "mobilenet_tiny"
    scheme = load_scheme("bias=12,-1=1,-4=0.5,-7=0.25")
    return compile_training(import_tflite(zoo_model(name), name), scheme, BOARD, name, False, 0.02)


def _plan(ct):
    return compile_graph(ct.train.graph, BOARD, "m", n_forward=ct.train.n_forward)


def _call(ct, compiled, op):
    return compiled.calls[op.index]


def _samples(ct, n: int, seed: int) -> list[tuple[np.ndarray, int]]:
    g = ct.train.graph
    x = g.tensor(g.inputs[0])
    rng = np.random.default_rng(seed)
    classes = g.tensor(ct.train.logits).shape[-1]
    return [(rng.integers(-128, 128, x.shape, dtype=np.int8), int(rng.integers(classes))) for _ in range(n)]


@pytest.mark.parametrize("dsp", [False, True], ids=["reference", "dsp"])
def test_keep_reaches_the_kernel_grows_the_scratch_and_trains_the_same(ct, dsp: bool) -> None:
    g = ct.train.graph
    two = [op for op in g.ops if op.kind == KIND]
    assert two  # the compiler picked two-pass depthwise gradients here
    assert all("keep" not in op.options for op in two)  # today's compiler sets none: keep 0
    base = _plan(ct)
    assert all(_call(ct, base, op).params["keep"] == 0 for op in two)
    trainers = {}
    for frac in (0.5, 1.0):
        for op in two:
            channels = g.tensor(op.outputs[0]).shape[-1]
            op.options["keep"] = int(channels * frac)
        compiled = _plan(ct)
        for op in two:
            call, call0 = _call(ct, compiled, op), _call(ct, base, op)
            assert call.params["keep"] == op.options["keep"]
            p = call.params
            plane = p["batches"] * p["input_h"] * p["input_w"]
            grew = scratch_size(call) - scratch_size(call0)
            assert grew == -(-4 * op.options["keep"] * plane // 8) * 8, (op.index, grew)
            assert call0.params["keep"] == 0
        assert compiled.arena >= base.arena
        trainers[frac] = dataclasses.replace(ct, compiled=compiled)
    for op in two:
        op.options.pop("keep")
    assert _plan(ct).blob == base.blob  # no keep: the plan of keep 0, byte for byte
    data = _samples(ct, 5, seed=33)
    with dsp_on_host(dsp):
        runs = [Trainer(c) for c in (ct, *trainers.values())]
        losses = [[t.step(x, y) for x, y in data] for t in runs]
        states = [t.state() for t in runs]
    assert losses[0] == losses[1] == losses[2]
    for s in states[1:]:
        for k in states[0]:
            assert s[k].tobytes() == states[0][k].tobytes(), k


def test_a_keep_beyond_the_channels_is_refused(ct) -> None:
    two = [op for op in ct.train.graph.ops if op.kind == KIND]
    op = two[0]
    channels = ct.train.graph.tensor(op.outputs[0]).shape[-1]
    for bad in (-1, channels + 1):
        op.options["keep"] = bad
        with pytest.raises(ModelError, match=f"keep={bad} is not a number of its {channels} input"):
            _plan(ct)
    op.options.pop("keep")
