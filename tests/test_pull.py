"""`invoke pull`: the weights trained on the emulated board, exported into the original .tflite.

The oracle is TFLite's own interpreter (ai-edge-litert, reference kernels): on held-out inputs
the exported model must give the board's predictions and, bit for bit, the board's int8
logits; and only the trained weights and biases may differ from the original file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from pytools import emulator
from pytools.boards import load_board
from pytools.build.builder import build_firmware
from pytools.export import _buffer_spans, trained_params
from pytools.link.client import Link
from pytools.model.board_runner import BoardModel
from pytools.model.host_twin import io_tensors, tensor_table
from pytools.model.tflite_import import import_tflite
from pytools.paths import ROOT
from pytools.pretrain.zoo import zoo_model
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme
from pytools.train.trainer import Trainer

BOARD = load_board("mps2_an500")
SCHEME = "bias=4,-1=1,-2=0.5,-3=0.25"  # a depthwise bias, conv weight rows, the classifier
INPUT_SLICES = "bias=4,-1=1,-2=in:0.5,-5=in:0.25"  # conv weights on their first input channels
LR = 0.05


def tflite_run(model: bytes, x: np.ndarray, tensor: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's output and one intermediate tensor (the logits), with TFLite's reference kernels."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_content=model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy(), it.get_tensor(tensor).copy()


@pytest.mark.emulator
@pytest.mark.parametrize("scheme", [SCHEME, INPUT_SLICES], ids=["rows", "input-channels"])
def test_pulled_model_predicts_as_the_board_bit_for_bit(tmp_path: Path, scheme: str) -> None:
    original = zoo_model("mobilenet_tiny")
    model = tmp_path / "mt.tflite"
    model.write_bytes(original)
    ct = compile_training(import_tflite(original, "mt"), load_scheme(scheme), BOARD, "mt", False, LR)
    g = ct.train.graph
    x_t = g.tensor(g.inputs[0])
    rng = np.random.default_rng(21)
    train = [(rng.integers(-128, 128, x_t.shape, dtype=np.int8), int(rng.integers(10))) for _ in range(30)]
    held = [rng.integers(-128, 128, x_t.shape, dtype=np.int8) for _ in range(20)]

    name = f"test-pull-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    emu = emulator.start(BOARD, build_firmware(BOARD, ct.compiled.blob, ct.compiled.arena).elf, name=name)
    try:
        ins, outs = io_tensors(ct.compiled.blob)
        with Link.open(emu.url) as link:
            board = Trainer(ct, BoardModel(link, tensor_table(ct.compiled.blob), ins, outs))
            for x, y in train:
                board.step(x, y)
        # QEMU serves one client at a time: the pull connects on its own.
        out = tmp_path / "mt_trained.tflite"
        env = {**os.environ, "TINYTRAIN_RUN_DIR": str(emulator.RUN)}
        cmd = ["pull", "--port", emu.url, "--model", str(model), "--scheme", scheme, "--lr", str(LR)]
        r = subprocess.run(
            [sys.executable, "-m", "invoke", *cmd, "--out", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert "values changed by training" in r.stdout and f"wrote     {out}" in r.stdout, r.stdout
        board_pred, board_logits = [], []
        with Link.open(emu.url) as link:
            board = Trainer(ct, BoardModel(link, tensor_table(ct.compiled.blob), ins, outs))
            for x in held:
                # The forward pass alone: its int8 logits are what the exported model outputs
                # (predict runs on into the loss head, whose buffers may reuse theirs).
                board._invoke(x, 0, end=board.n_forward)
                board_logits.append(board._tensor(board.logits).reshape(-1).copy())
                board_pred.append(int(np.argmax(board_logits[-1])))
    finally:
        emulator.stop(name)
        emulator.erase_flash(name)

    exported = out.read_bytes()
    assert len(exported) == len(original) and exported != original
    differ_from_original = 0
    for k, x in enumerate(held):
        y, logits = tflite_run(exported, x, ct.train.logits)
        np.testing.assert_array_equal(logits.reshape(-1), board_logits[k], err_msg=f"sample {k}")
        assert int(np.argmax(logits)) == board_pred[k]
        assert int(np.argmax(y)) == board_pred[k], f"sample {k}: the model's own output"
        _, before = tflite_run(original, x, ct.train.logits)
        differ_from_original += not np.array_equal(before.reshape(-1), board_logits[k])
    assert differ_from_original > 0  # the board really trained: the original model disagrees

    # Only the trained parameters' bytes changed.
    buffers, spans, _ = _buffer_spans(original)
    changed = np.flatnonzero(np.frombuffer(exported, np.uint8) != np.frombuffer(original, np.uint8))
    allowed = np.zeros(len(original), bool)
    for p in trained_params(ct):
        start, length = spans[buffers[p.model_tensor]]
        allowed[start : start + length] = True
    assert changed.size and allowed[changed].all()


@pytest.mark.emulator
def test_pull_refuses_a_board_running_another_plan(tmp_path: Path) -> None:
    """The state layout comes from the plan: a board with another plan is refused, not misread."""
    model = tmp_path / "mt.tflite"
    model.write_bytes(zoo_model("mobilenet_tiny"))
    name = f"test-pull-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    emu = emulator.start(BOARD, build_firmware(BOARD).elf, name=name)  # no plan at all
    try:
        args = ["pull", "--port", emu.url, "--model", str(model), "--scheme", SCHEME]
        r = subprocess.run(
            [sys.executable, "-m", "invoke", *args, "--out", str(tmp_path / "x.tflite")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "TINYTRAIN_RUN_DIR": str(emulator.RUN)},
        )
    finally:
        emulator.stop(name)
        emulator.erase_flash(name)
    assert r.returncode == 1 and "does not run this training plan" in r.stderr, r.stdout + r.stderr
    assert not (tmp_path / "x.tflite").exists()
