"""The loss heads on the emulated board: bit-identical with the host twin (the same C).

Two steps: the autoencoder's MSE (tests/test_losses.py; LOGITS_S32 on FULLY_CONNECTED's
double requantization) and the MCUNet-style classifier of tests/test_no_stuck_runs.py (ce
on a CONV_2D -> RESHAPE head's un-clamped values: LOGITS_S32's fixed-point path), 30 steps
each through the generic INVOKE, then the training messages (TRAIN, EVAL, PREDICT: the
firmware finds any loss head) for the autoencoder.
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

from pytools import emulator
from pytools.build.builder import build_firmware
from pytools.link.client import Link
from pytools.model.board_runner import BoardModel, BoardTraining
from pytools.model.host_twin import io_tensors, tensor_table
from pytools.model.tflite_import import import_tflite
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme
from pytools.train.trainer import Trainer
from tests.test_losses import EMU, SHIFT, _normal, _quantize, autoencoder
from tests.test_no_stuck_runs import _data, model

pytestmark = pytest.mark.emulator
__all__ = ["autoencoder", "model"]  # fixtures


def _on_board(ct, data: list[tuple[np.ndarray, int]], messages: bool = False):
    twin = Trainer(ct)
    twin_steps = [twin.step(x, y) for x, y in data]
    name = f"test-loss-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    emu = emulator.start(EMU, build_firmware(EMU, ct.compiled.blob, ct.compiled.arena).elf, name=name)
    try:
        with Link.open(emu.url) as link:
            ins, outs = io_tensors(ct.compiled.blob)
            board = Trainer(ct, BoardModel(link, tensor_table(ct.compiled.blob), ins, outs))
            board_steps = [board.step(x, y) for x, y in data]
            state = board.state()
            if messages:
                # The training messages on the same board, from the state the steps left.
                bt = Trainer(ct, BoardTraining(link))
                x, y = data[0]
                assert bt.evaluate(x, y) == twin.evaluate(x, y)
                assert bt.predict(x) == twin.predict(x)
                assert bt.step(x, y) == twin.step(x, y)
                after_twin, after_board = twin.state(), bt.state()
                for k in after_twin:
                    np.testing.assert_array_equal(after_board[k], after_twin[k], err_msg=k)
    finally:
        emulator.stop(name)
    assert board_steps == twin_steps  # every loss (float32) and prediction
    twin_state = twin.state() if not messages else None
    if twin_state is not None:
        for k in twin_state:
            np.testing.assert_array_equal(state[k], twin_state[k], err_msg=k)
    return twin_steps


def test_autoencoder_mse_on_the_board_matches_the_host_twin(autoencoder) -> None:
    g = import_tflite(autoencoder, "ae")
    ct = compile_training(g, load_scheme("bias=2,-1=1,-2=0.5"), EMU, "ae", link=False, lr=0.01)
    xs = _quantize(g, _normal(30, 11) + SHIFT)
    steps = _on_board(ct, [(x, 0) for x in xs], messages=True)
    assert steps[-1][0] < steps[0][0]


def test_conv_logits_head_on_the_board_matches_the_host_twin(model) -> None:
    g = import_tflite(model, "m")
    ct = compile_training(g, load_scheme("bias=2,-1=1"), EMU, "m", link=False, lr=0.3)
    assert "LOGITS_S32" in [op.kind for op in ct.train.graph.ops]
    x, y = _data(30, 5)
    t = g.tensor(g.inputs[0])
    xq = np.clip(np.round(x / float(t.quant.scale[0])) + int(t.quant.zero_point[0]), -128, 127).astype(
        np.int8
    )
    _on_board(ct, [(xq[i], int(1 - y[i])) for i in range(30)])
