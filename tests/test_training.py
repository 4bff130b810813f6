"""The training engine end to end: pruning, memory, and the board against the host twin."""

from __future__ import annotations

import dataclasses
import os
import uuid

import numpy as np
import pytest

from pytools import emulator
from pytools.boards import load_board
from pytools.build.builder import build_firmware
from pytools.link.client import Link
from pytools.model.board_runner import BoardModel
from pytools.model.compiler import compile_graph
from pytools.model.host_twin import io_tensors, tensor_table
from pytools.model.tflite_import import import_tflite
from pytools.pretrain.zoo import zoo_model
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme
from pytools.train.trainer import Trainer

BOARD = load_board("mps2_an500")


def compiled(name: str, scheme: str, link: bool = False, lr: float = 0.02):
    return compile_training(import_tflite(zoo_model(name), name), load_scheme(scheme), BOARD, name, link, lr)


def samples(ct, n: int, seed: int) -> list[tuple[np.ndarray, int]]:
    g = ct.train.graph
    x = g.tensor(g.inputs[0])
    rng = np.random.default_rng(seed)
    classes = g.tensor(ct.train.logits).shape[-1]
    return [(rng.integers(-128, 128, x.shape, dtype=np.int8), int(rng.integers(classes))) for _ in range(n)]


def producers(g) -> dict[int, int]:
    return {t: op.index for op in g.ops for t in op.outputs}


def test_training_only_the_head_keeps_nothing_below_it() -> None:
    ct = compiled("mobilenet_tiny", "bias=1,-1=1")
    tb, g = ct.train, ct.train.graph
    head = max(op.index for op in g.ops[: tb.n_forward] if op.kind == "FULLY_CONNECTED")
    made_by = producers(g)
    # The one saved activation is the head's input. No mask: the loss reads the head's
    # un-clamped int32 values (LOGITS_S32), so nothing is clamped on the loss's path.
    assert tb.saved == [g.ops[head].inputs[0]]
    assert tb.masks == [] and not any(made_by.get(t) for t in tb.masks)
    backward = g.ops[tb.n_forward :]
    assert [op.kind for op in backward] == ["LOGITS_S32", "SOFTMAX_XENT_S32", "FULLY_CONNECTED_GRAD_UPDATE"]


def test_nothing_below_the_lowest_updated_layer_keeps_anything_for_backward() -> None:
    ct = compiled("mobilenet_tiny", "bias=4,-1=1,-3=0.25")
    tb, g = ct.train, ct.train.graph
    lowest = min(tb.updates)  # forward op index in the model
    # every saved activation, mask and gradient belongs to layers at or above the lowest
    # updated one (op indices of the training step's forward copies match the model's
    # apart from the interleaved masks, so compare by tensor producers in the model graph)
    model = import_tflite(zoo_model("mobilenet_tiny"), "m")
    made_by = {t: op.index for op in model.ops for t in op.outputs}
    for t in tb.saved:
        assert made_by.get(t, -1) >= lowest - 1, g.tensor(t).name
    for m in tb.masks:
        src = g.ops[producers(g)[m]].inputs[0]
        assert made_by[src] >= lowest, g.tensor(m).name


def test_growing_the_scheme_grows_memory_exactly_as_the_report_predicts() -> None:
    small = compiled("mobilenet_tiny", "bias=1,-1=1", link=True)
    large = compiled("mobilenet_tiny", "bias=6,-1=1,-2=0.5,-4=0.25", link=True)
    assert large.compiled.arena > small.compiled.arena
    assert large.breakdown["trainable state"] > small.breakdown["trainable state"]
    # The firmware's RAM (the linker's figure) grows by exactly the planned arena growth.
    grown = large.image.regions["RAM"].used - small.image.regions["RAM"].used
    assert grown == large.compiled.arena - small.compiled.arena


def test_training_lowers_the_loss_on_the_host_twin() -> None:
    """Memorising 40 random samples: the loss must fall well below the untrained model's
    (lr = 0 runs the same step without changing anything). Measured: 3.32 untrained; 2.71
    after 8 passes at lr 0.02 (the first pass overshoots to 4.64)."""
    data = samples(compiled("cnn_int8_io", "bias=2,-1=1,-2=0.5"), 40, seed=3)

    def losses(lr: float, passes: int) -> list[float]:
        tr = Trainer(compiled("cnn_int8_io", "bias=2,-1=1,-2=0.5", lr=lr))
        return [float(np.mean([tr.step(x, y)[0] for x, y in data])) for _ in range(passes)]

    frozen = losses(0.0, 2)
    assert frozen[0] == frozen[1]  # lr 0 changes nothing
    trained = losses(0.02, 8)
    assert trained[-1] < 0.85 * frozen[0], (frozen, trained)
    assert trained[-1] < trained[1], trained


@pytest.mark.emulator
def test_50_steps_on_the_emulated_board_are_bit_identical_with_the_host_twin() -> None:
    ct = compiled("mobilenet_tiny", "bias=6,-1=1,-2=0.5,-3=0.25,-5=0.125", link=True, lr=0.05)
    data = samples(ct, 50, seed=11)
    twin = Trainer(ct)
    twin_losses = [twin.step(x, y) for x, y in data]

    name = f"test-train-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    emu = emulator.start(BOARD, build_firmware(BOARD, ct.compiled.blob, ct.compiled.arena).elf, name=name)
    try:
        with Link.open(emu.url) as link:
            ins, outs = io_tensors(ct.compiled.blob)
            board = Trainer(ct, BoardModel(link, tensor_table(ct.compiled.blob), ins, outs))
            board_losses = [board.step(x, y) for x, y in data]
            board_state = board.state()
    finally:
        emulator.stop(name)
    twin_state = twin.state()
    assert board_losses == twin_losses  # every loss (float32) and prediction, step by step
    assert board_state.keys() == twin_state.keys() and len(board_state) >= 8
    for k in twin_state:
        np.testing.assert_array_equal(board_state[k], twin_state[k], err_msg=k)
    # and the weights did move: training happened
    initial = Trainer(ct).state()
    assert any(not np.array_equal(initial[k], twin_state[k]) for k in twin_state if "trained" in k)


def test_gradients_pass_max_pool_and_pad() -> None:
    """cnn_int8_io's depthwise layer lies below AVERAGE_POOL, MAX_POOL_2D and PAD: its update
    needs their input gradients (checked against TensorFlow in
    tests/kernels/test_pool_pad_grads.py). The max pool's input is saved (its gradient goes
    where each window's maximum was). Training that layer alone, so that every bit of
    learning came through the pools and the pad, lowers the loss of 30 random samples.
    Measured: 2.909 untrained; 2.921, 2.858, ..., 2.754 over 8 passes at lr 0.005."""
    ct = compiled("cnn_int8_io", "bias=3,-1=1,-3=0.5")
    g, tb = ct.train.graph, ct.train
    backward = [op.kind for op in g.ops[tb.n_forward :]]
    assert "MAX_POOL_2D_GRAD_INPUT" in backward and "PAD_GRAD_INPUT" in backward
    pool = next(op for op in g.ops[: tb.n_forward] if op.kind == "MAX_POOL_2D")
    assert pool.inputs[0] in tb.saved
    data = samples(ct, 30, seed=5)

    def losses(lr: float, passes: int) -> list[float]:
        tr = Trainer(compiled("cnn_int8_io", "-3=1", lr=lr))
        return [float(np.mean([tr.step(x, y)[0] for x, y in data])) for _ in range(passes)]

    frozen = losses(0.0, 2)
    assert frozen[0] == frozen[1]
    trained = losses(0.005, 8)
    assert trained[-1] < 0.97 * frozen[0] and trained[-1] < trained[0], (frozen, trained)


@pytest.mark.emulator
def test_max_pool_and_pad_backward_on_the_board_match_the_host_twin() -> None:
    ct = compiled("cnn_int8_io", "bias=3,-1=1,-3=0.5", link=True, lr=0.05)
    data = samples(ct, 10, seed=12)
    twin = Trainer(ct)
    twin_losses = [twin.step(x, y) for x, y in data]
    name = f"test-train-pool-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    emu = emulator.start(BOARD, build_firmware(BOARD, ct.compiled.blob, ct.compiled.arena).elf, name=name)
    try:
        with Link.open(emu.url) as link:
            ins, outs = io_tensors(ct.compiled.blob)
            board = Trainer(ct, BoardModel(link, tensor_table(ct.compiled.blob), ins, outs))
            board_losses = [board.step(x, y) for x, y in data]
            board_state = board.state()
    finally:
        emulator.stop(name)
    assert board_losses == twin_losses
    twin_state = twin.state()
    for k in twin_state:
        np.testing.assert_array_equal(board_state[k], twin_state[k], err_msg=k)


def test_two_pass_depthwise_gradients_shrink_the_arena_and_change_nothing() -> None:
    """Where a depthwise input gradient's whole-input int32 scratch decides the arena, the
    compiler runs it in two passes over one channel's scratch: a smaller arena, the same
    bits (the kernel itself: tests/kernels/conv/test_dw_grad_two_pass.py)."""
    ct = compiled("mobilenet_tiny", "bias=12,-1=1,-4=0.5,-7=0.25")
    g = ct.train.graph
    two = [op for op in g.ops if op.kind == "DEPTHWISE_CONV_2D_GRAD_INPUT_2PASS"]
    assert two
    for op in two:
        op.kind = "DEPTHWISE_CONV_2D_GRAD_INPUT"
    one = dataclasses.replace(ct, compiled=compile_graph(g, BOARD, "m", n_forward=ct.train.n_forward))
    for op in two:
        op.kind = "DEPTHWISE_CONV_2D_GRAD_INPUT_2PASS"
    assert ct.compiled.arena < one.compiled.arena
    data = samples(ct, 8, seed=9)
    a, b = Trainer(ct), Trainer(one)
    assert [a.step(x, y) for x, y in data] == [b.step(x, y) for x, y in data]
    sa, sb = a.state(), b.state()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
