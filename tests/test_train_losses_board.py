"""`invoke train --loss` / `--new-head` on the emulated board, against the host twin
(tests/test_train_losses.py runs the same sessions on the twin alone):

  - a binary classifier ending in LOGISTIC, trained with bce through `invoke train` on the
    emulated board and with `--board host`: the same per-step losses and predictions, and
    byte-identical trained states;
  - an autoencoder trained with mse (target = the input) by `invoke train` on the emulated
    board and on the twin: the same steps, held-out reconstruction errors and states;
  - a 10-class model given a new 3-class head on a user's .npz, trained on the emulated board,
    then `invoke pull --session`: the emulated board boots from the flash the session saved,
    and the exported .tflite (3 outputs) gives the board's logits bit for bit in TFLite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pytools.model.tflite_import import import_tflite
from pytools.pretrain.zoo import zoo_model
from tests.conftest import jsonl
from tests.test_train_losses import SCHEME, _ae_npz, _mlp_npz, _train, autoencoder, binary_npz, logistic_model

__all__ = ["autoencoder", "logistic_model"]  # fixtures

pytestmark = [pytest.mark.emulator, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


def _invoke(tmp_path: Path, *args: str) -> str:
    """`invoke ARGS` in a process of its own, as a user runs it; its output (it must succeed)."""
    env = {**os.environ, "TINYTRAIN_RUN_DIR": str(tmp_path / "run")}
    r = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def _state(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "trained_state.npz") as z:
        return {k: z[k] for k in z.files}


def _steps(folder: Path) -> list[tuple[int, int, int, float]]:
    return [(s["sample"], s["label"], s["prediction"], s["loss"]) for s in jsonl(folder / "steps.jsonl")]


def test_a_logistic_model_trains_the_same_with_bce_on_the_board_and_the_twin(
    tmp_path, capsys, logistic_model
) -> None:
    data = binary_npz(tmp_path / "door_events.npz")
    common = ["--dataset", str(data), "--model", str(logistic_model), "--scheme", SCHEME]
    common += ["--epochs", "1", "--lr", "0.1", "--seed", "1", "--limit", "40", "--held-out", "20"]
    out = _invoke(tmp_path, "train", *common, "--out", str(tmp_path / "board"))
    assert "loss      bce (binary cross-entropy): the model ends in LOGISTIC" in out
    _train(capsys, board="host", dataset=str(data), model=str(logistic_model), scheme=SCHEME, epochs=1,
           lr=0.1, seed=1, limit=40, held_out=20, out=str(tmp_path / "twin"))  # fmt: skip
    board, twin = tmp_path / "board", tmp_path / "twin"
    assert len(_steps(board)) == 40 and _steps(board) == _steps(twin)
    assert {s[1] for s in _steps(board)} == {0, 1}
    s_board, s_twin = _state(board), _state(twin)
    assert s_board.keys() == s_twin.keys() and s_board
    for k in s_board:
        assert np.array_equal(s_board[k], s_twin[k]), k
    assert any(not np.array_equal(v, 0) for v in s_board.values())
    e_board, e_twin = jsonl(board / "epochs.jsonl"), jsonl(twin / "epochs.jsonl")
    for a, b in zip(e_board, e_twin, strict=True):
        assert (a["held_out_correct"], a["held_out_loss"]) == (b["held_out_correct"], b["held_out_loss"])
    cfg = json.loads((board / "config.json").read_text())
    assert cfg["loss"]["loss"] == "bce" and cfg["board"]["name"] == "mps2_an500"
    assert not list((tmp_path / "run").glob("*.json")), "an emulator was left running"


def test_a_new_head_session_on_the_board_pulls_a_model_with_that_head(tmp_path) -> None:
    model = tmp_path / "mlp.tflite"
    model.write_bytes(zoo_model("mlp"))
    data, _ = _mlp_npz(tmp_path / "three_kinds.npz", 3)
    folder = tmp_path / "board"
    out = _invoke(tmp_path, "train", "--dataset", str(data), "--model", str(model), "--new-head", "3",
                  "--scheme", SCHEME, "--epochs", "1", "--lr", "0.02", "--seed", "4", "--limit", "60",
                  "--held-out", "30", "--out", str(folder))  # fmt: skip
    assert "new head: operator #1 (FULLY_CONNECTED) 10 -> 3 outputs" in out
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["head"]["classes"] == 3 and cfg["arguments"]["new_head"] == 3
    exported = tmp_path / "mlp3.tflite"
    said = _invoke(tmp_path, "pull", "--session", str(folder), "--out", str(exported))
    assert "booted from" in said and "head      new head: operator #1 (FULLY_CONNECTED)" in said
    assert "predictions in TFLite's interpreter equal the board's" in said and "bit for bit on all" in said
    assert "state     the session's final state: 60 samples trained" in said
    g = import_tflite(exported.read_bytes(), "mlp3")
    assert g.tensor(g.outputs[0]).shape[-1] == 3
    assert not list((tmp_path / "run").glob("*.json")), "an emulator was left running"


def test_an_autoencoder_session_is_the_same_on_the_board_and_the_twin(tmp_path, capsys, autoencoder) -> None:
    model = tmp_path / "ae.tflite"
    model.write_bytes(autoencoder)
    data = _ae_npz(tmp_path / "machine_sounds.npz")
    args = {"epochs": 1, "lr": 0.01, "seed": 3, "limit": 30, "held_out": 20}
    common = ["--dataset", str(data), "--model", str(model), "--scheme", SCHEME]
    common += [f"--{k.replace('_', '-')}={v}" for k, v in args.items()]
    out = _invoke(tmp_path, "train", *common, "--out", str(tmp_path / "board"))
    assert "loss      mse (mean squared error)" in out and "ROC AUC" in out
    twin_out = str(tmp_path / "twin")
    _train(capsys, board="host", dataset=str(data), model=str(model), scheme=SCHEME, out=twin_out, **args)
    board, twin = tmp_path / "board", tmp_path / "twin"
    assert _steps(board) == _steps(twin) and {s[1] for s in _steps(board)} == {0}
    for a, b in zip(jsonl(board / "epochs.jsonl"), jsonl(twin / "epochs.jsonl"), strict=True):
        assert (a["held_out_loss"], a["held_out_auc"]) == (b["held_out_loss"], b["held_out_auc"])
    s_board, s_twin = _state(board), _state(twin)
    assert s_board.keys() == s_twin.keys() and s_board
    for k in s_board:
        assert np.array_equal(s_board[k], s_twin[k]), k
    assert not list((tmp_path / "run").glob("*.json")), "an emulator was left running"
