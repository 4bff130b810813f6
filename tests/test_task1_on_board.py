"""Issue 6, task 1 on the board: the Fashion-MNIST backbone fine-tuned on MNIST digits by
`invoke train` on the emulated board, with the scheme `invoke results` planned for it.

The board's held-out accuracy after training must equal the host twin's for the same seed and
sample order, and every step's loss and prediction too. A subset keeps it short (the whole
task is docs/RESULTS.md's, on the host twin, which this shows the board matches).
"""

from __future__ import annotations

import numpy as np
import pytest

import datasets
from pytools import session
from pytools.boards import load_board
from pytools.model.tflite_import import import_tflite
from pytools.paths import ROOT
from pytools.session import run_training_session
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme
from pytools.train.trainer import Trainer
from tests.conftest import jsonl

MODEL = ROOT / "models" / "fashion_mbv2.tflite"
SCHEME = ROOT / "docs" / "results" / "fashion_to_mnist-plan.toml"  # written by invoke results
LIMIT, HELD_OUT, SEED, LR = 60, 100, 3, 0.01


@pytest.mark.emulator
def test_task1_on_the_emulated_board_equals_the_host_twin(run_dir, tmp_path) -> None:
    folder = run_training_session(
        "mps2_an500",
        dataset="mnist",
        split="transfer",
        model=MODEL,
        scheme=str(SCHEME),
        epochs=1,
        lr=LR,
        seed=SEED,
        limit=LIMIT,
        held_out=HELD_OUT,
        out_dir=tmp_path / "s",
        save=False,
    )
    steps, epochs = jsonl(folder / "steps.jsonl"), jsonl(folder / "epochs.jsonl")
    assert len(steps) == LIMIT and [e["epoch"] for e in epochs] == [0, 1]

    # The host twin, given the same samples in the same order (the session's seed).
    board = load_board("mps2_an500")
    graph = import_tflite(MODEL.read_bytes(), MODEL.stem)
    ct = compile_training(graph, load_scheme(str(SCHEME)), board, MODEL.stem, False, LR)
    parts = datasets.load_split("mnist", "transfer")
    chosen = session.subset(parts.finetune.y, LIMIT)
    x = session.model_inputs(graph, parts.finetune.x[chosen])
    y = parts.finetune.y[chosen]
    order = np.random.default_rng(SEED).permutation(len(y))
    twin = Trainer(ct)
    for k, i in enumerate(order):
        loss, pred = twin.step(x[i], int(y[i]), float(np.float32(1 - k / len(order))))  # linear decay
        assert (steps[k]["label"], steps[k]["loss"], steps[k]["prediction"]) == (int(y[i]), loss, pred), k
    held = session.subset(parts.held_out.y, HELD_OUT)
    xh = session.model_inputs(graph, parts.held_out.x[held])
    correct = sum(twin.predict(xh[k]) == int(parts.held_out.y[j]) for k, j in enumerate(held))
    assert epochs[-1]["held_out_accuracy"] == correct / len(held)
    assert epochs[-1]["held_out_accuracy"] != epochs[0]["held_out_accuracy"]  # it trained
