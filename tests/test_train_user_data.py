"""`invoke train --dataset <your own file>` end to end, with real data written in the test the
way users write theirs: digits as an .npz (on the emulated board and on the host twin: the
same trained state and losses), HAPT windows as a CSV with activity names as labels, a
Fashion-MNIST subset as PNG class folders (4 classes: the model's first 4 outputs); and bad
files, each refused with one `error:` line before anything is started or sent.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from invoke import Context
from PIL import Image

import datasets
import tasks
from datasets import fashion_mnist, hapt
from pytools import connect, emulator
from pytools.model.tflite_import import import_tflite
from pytools.pretrain import digits as digits_model
from pytools.session import board as session_board
from pytools.session import inputs as session_inputs
from pytools.train import compile_train
from tests.conftest import jsonl

ROOT = Path(__file__).resolve().parents[1]
SHORT = {"epochs": 1, "lr": 0.01, "seed": 2}  # --lr given: no sweep


@pytest.fixture(scope="module")
def digits_tflite() -> Path:
    digits_model.pretrained_model()  # built and cached once
    return digits_model.model_path()


def _digits_npz(path: Path) -> Path:
    """The digits data set's fine-tuning part as a user's .npz: float x in [0, 1], int y."""
    part = datasets.load_split("digits").finetune
    np.savez(path, x=part.x.astype(np.float32), y=part.y.astype(np.int64))
    return path


def _train(capsys, **kwargs: Any) -> str:
    """tasks.py's train task body, as `invoke train` runs it; returns what it printed."""
    tasks.train.body(Context(), **kwargs)
    out = capsys.readouterr()
    return out.out + out.err


def _state(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "trained_state.npz") as z:
        return {k: z[k] for k in z.files}


def _losses(folder: Path) -> list[tuple[int, int, float]]:
    return [(s["sample"], s["label"], s["loss"]) for s in jsonl(folder / "steps.jsonl")]


@pytest.mark.emulator
def test_an_npz_trains_the_same_on_the_emulated_board_and_the_host_twin(
    tmp_path, capsys, digits_tflite
) -> None:
    data = _digits_npz(tmp_path / "my_recordings.npz")
    common = ["--dataset", str(data), "--model", str(digits_tflite), "--epochs", "1", "--lr", "0.01"]
    common += ["--seed", "2", "--limit", "12", "--held-out", "10"]
    env = {**os.environ, "TINYTRAIN_RUN_DIR": str(tmp_path / "run")}
    r = subprocess.run(
        [sys.executable, "-m", "invoke", "train", *common, "--out", str(tmp_path / "board")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "(split stratified by the tool (seed 2))" in r.stdout
    twin = tmp_path / "twin"
    _train(capsys, board="host", dataset=str(data), model=str(digits_tflite), limit=12, held_out=10,
           out=str(twin), **SHORT)  # fmt: skip
    board = tmp_path / "board"
    assert len(_losses(board)) == 12
    assert _losses(board) == _losses(twin)  # the same samples, labels and per-step losses
    s_board, s_twin = _state(board), _state(twin)
    assert s_board.keys() == s_twin.keys() and s_board
    for k in s_board:
        assert np.array_equal(s_board[k], s_twin[k]), k
    cfg_b, cfg_t = (json.loads((f / "config.json").read_text()) for f in (board, twin))
    assert cfg_b["dataset"]["details"] == cfg_t["dataset"]["details"]
    assert cfg_b["dataset"]["details"]["sha256"] and cfg_b["dataset"]["kind"] == "user"
    exported = tmp_path / "trained.tflite"
    # pull --session re-loads the same file, seed and split for its check on held-out samples
    r = subprocess.run(
        [sys.executable, "-m", "invoke", "pull", "--session", str(board), "--out", str(exported)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert exported.is_file()
    assert re.search(r"check     (\d+) of \1 held-out \S*my_recordings.npz samples", r.stdout), r.stdout
    assert not list((tmp_path / "run").glob("*.json")), "an emulator was left running"


def test_hapt_windows_as_a_csv_with_activity_names_train_on_the_host_twin(tmp_path, capsys) -> None:
    part = datasets.load_split("hapt", "user21").finetune
    flat = part.x.reshape(len(part), -1)  # (1, 128, 6) -> 768 values per row, time-major
    header = "activity," + ",".join(f"{c}@{t}" for t in range(hapt.WINDOW) for c in hapt.COLUMNS)
    rows = [
        f"{hapt.ACTIVITIES[y]}," + ",".join(f"{v:.9g}" for v in row)
        for row, y in zip(flat, part.y, strict=True)
    ]
    f = tmp_path / "my_walks.csv"
    f.write_text("\n".join([header, *rows]) + "\n")
    folder = tmp_path / "s"
    out = _train(capsys, board="host", dataset=str(f), model=str(ROOT / "models" / "hapt_cnn1d.tflite"),
                 label_column="activity", limit=24, held_out=12, out=str(folder), **SHORT)  # fmt: skip
    assert "held-out accuracy by epoch" in out
    d = json.loads((folder / "config.json").read_text())["dataset"]
    names = sorted(hapt.ACTIVITIES)
    assert d["kind"] == "user" and d["classes"] == 6 and d["details"]["format"] == "csv"
    assert d["details"]["label_names"] == names and d["details"]["label_column"] == "activity"
    # every step's label is its window's activity, by the recorded label map
    held = set(d["details"]["split"]["held_out_indices"])
    fine = [i for i in range(len(part)) if i not in held]
    for s in jsonl(folder / "steps.jsonl"):
        assert names[s["label"]] == hapt.ACTIVITIES[part.y[fine[s["sample"]]]]
    assert len(jsonl(folder / "steps.jsonl")) == 24


def test_a_fashion_mnist_png_folder_of_4_classes_trains_the_first_4_outputs(tmp_path, capsys) -> None:
    x, y = fashion_mnist.load("test")
    root = tmp_path / "photos"
    for c in range(4):
        sub = root / fashion_mnist.LABELS[c].replace("/", "-")
        sub.mkdir(parents=True)
        for i in np.flatnonzero(y == c)[:10]:
            Image.fromarray(np.round(x[i, :, :, 0] * 255).astype(np.uint8), "L").save(sub / f"{i:05d}.png")
    folder = tmp_path / "s"
    out = _train(capsys, board="host", dataset=str(root), model=str(ROOT / "models" / "fashion_mbv2.tflite"),
                 limit=8, out=str(folder), **SHORT)  # fmt: skip
    assert "trains on the first 4" in out
    d = json.loads((folder / "config.json").read_text())["dataset"]
    assert d["classes"] == 4 and d["details"]["format"] == "images"
    assert d["sizes"] == {"pretrain": 0, "finetune": 32, "held_out": 8}
    assert d["details"]["label_names"] == sorted(n.replace("/", "-") for n in fashion_mnist.LABELS[:4])
    steps = jsonl(folder / "steps.jsonl")
    assert len(steps) == 8 and {s["label"] for s in steps} <= set(range(4))


class Started(Exception):
    pass


@pytest.fixture
def nothing_starts(monkeypatch, run_dir) -> None:
    """Starting an emulator, opening a link or compiling the step fails the case."""

    def forbid(what: str) -> Any:
        def f(*a: Any, **k: Any) -> Any:
            raise Started(what)

        return f

    monkeypatch.setattr(emulator, "start", forbid("an emulator"))
    monkeypatch.setattr(connect, "open_link", forbid("a link"))
    monkeypatch.setattr(session_board, "open_link", forbid("a link"))
    monkeypatch.setattr(compile_train, "build_firmware", forbid("a firmware build"))
    monkeypatch.setattr(session_inputs, "compile_training", forbid("the training compiler"))


def _bad_files(tmp_path: Path) -> list[tuple[str, dict[str, Any], str]]:
    """(what, train's arguments, a piece of the error) for each bad file."""
    part = datasets.load_split("digits").finetune
    x, y = part.x[:40].astype(np.float32), part.y[:40].astype(np.int64)
    cases: list[tuple[str, dict[str, Any], str]] = []

    def npz(name: str, **arrays: np.ndarray) -> str:
        np.savez(tmp_path / name, **arrays)
        return str(tmp_path / name)

    cases.append(("wrong shape", {"dataset": npz("shape.npz", x=x[:, :7, :7], y=y)}, "shape"))
    big = y.copy()
    big[5] = 12
    cases.append(("label out of range", {"dataset": npz("range.npz", x=x, y=big)}, "12"))
    nan = x.copy()
    nan[3, 2, 2, 0] = np.nan
    cases.append(("NaN", {"dataset": npz("nan.npz", x=nan, y=y)}, "NaN"))
    images = tmp_path / "images"
    for c in range(3):
        (images / f"c{c}").mkdir(parents=True)
        for i in np.flatnonzero(y == c)[:3]:
            Image.fromarray(np.round(x[i, :, :, 0] * 255).astype(np.uint8), "L").save(
                images / f"c{c}" / f"{i}.png"
            )
    (images / "c3").mkdir()
    cases.append(("empty class folder", {"dataset": str(images)}, "c3"))
    corrupt = tmp_path / "corrupt"
    for c in range(2):
        (corrupt / f"c{c}").mkdir(parents=True)
        for i in np.flatnonzero(y == c)[:3]:
            Image.fromarray(np.round(x[i, :, :, 0] * 255).astype(np.uint8), "L").save(
                corrupt / f"c{c}" / f"{i}.png"
            )
    (corrupt / "c1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 10)
    cases.append(("corrupt image", {"dataset": str(corrupt)}, "broken.png"))
    table = tmp_path / "table.csv"
    head = "label," + ",".join(f"p{i}" for i in range(64))
    table.write_text(
        "\n".join(
            [
                head,
                *(f"{c}," + ",".join(f"{v:g}" for v in r) for r, c in zip(x.reshape(40, -1), y, strict=True)),
            ]
        )
    )
    cases.append(("missing label column", {"dataset": str(table), "label_column": "class"}, "class"))
    return cases


def test_bad_files_get_one_error_line_and_nothing_starts(
    tmp_path, capsys, nothing_starts, digits_tflite
) -> None:
    for what, kwargs, piece in _bad_files(tmp_path):
        out = tmp_path / "s"
        with pytest.raises(SystemExit) as e:
            try:
                tasks.train.body(Context(), model=str(digits_tflite), out=str(out), **SHORT, **kwargs)
            except Started as s:
                raise AssertionError(f"{what}: accepted, and {s} was started") from None
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 1 and len(err) == 1 and err[0].startswith("error: "), (what, err)
        assert piece in err[0] and Path(kwargs["dataset"]).name in err[0], (what, err[0])
        assert not out.exists(), what


def test_plan_takes_the_same_files_and_label_column(tmp_path, capsys, digits_tflite) -> None:
    """invoke plan's data (pytools/plan/finetune.py) is the session's: a digits CSV with its
    label column first gives the digits' own quantized inputs; --label-column on a built-in
    data set is refused."""
    from pytools.plan.finetune import load as plan_load

    part = datasets.load_split("digits").finetune
    x, y = part.x[:100], part.y[:100]
    rows = [f"{c}," + ",".join(f"{v:.9g}" for v in r) for r, c in zip(x.reshape(100, -1), y, strict=True)]
    f = tmp_path / "digits.csv"
    f.write_text("\n".join(["label," + ",".join(f"p{i}" for i in range(64)), *rows]) + "\n")
    d = plan_load(str(f), digits_tflite, label_column="label")
    expected = datasets.quantize(x, 1 / 255, -128, "int8").reshape(100, -1)
    got = np.concatenate([d.x_train, d.x_eval]).reshape(-1, 64)
    labels = np.concatenate([d.y_train, d.y_eval])
    graph = import_tflite(digits_tflite.read_bytes(), "digits")
    session_data = session_inputs.load_data(str(f), graph, None, 0, "label")
    assert got.dtype == np.int8 and 75 <= len(got) < 100  # 20 % of each class held out, never seen
    assert len(got) == len(session_data.parts.finetune)  # the session's split
    for row, label in zip(got, labels, strict=True):
        hits = np.flatnonzero((expected == row).all(axis=1))
        assert len(hits) and label in y[hits]
    with pytest.raises(SystemExit):
        tasks.plan.body(Context(), dataset="digits", label_column="label")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --label-column label: "), err
