"""`invoke results` on its smallest task (the digits CNN -> sklearn digits), shortened: 2 epochs,
no learning-rate grid except the one the row without QAS needs, a short plan.

Oracles: the float path is TensorFlow (the float Keras model the int8 one was exported from:
before fine-tuning both score the same on held-out writers); the int8 rows run the board's C on
the host twin; the SRAM figures are the linker's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pytools import results
from pytools.boards import load_board
from pytools.pretrain import digits

NAMES = [
    "float32, whole network (cloud baseline)",
    "int8 classifier only",
    "int8 biases only",
    "int8 sparse, no QAS",
    "int8 sparse + QAS (ours)",
    "int8 full update",
]


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> tuple[results.TaskResult, Path]:
    out = tmp_path_factory.mktemp("results")
    spec = dataclasses.replace(results.TASKS[0], epochs=2, lr_grid=False, plan_steps=600, plan_seeds=(0,))
    tr = results.run_task(spec, load_board("mps2_an500"), progress=False, out_dir=out)
    return tr, out


def test_float_backbone_is_the_int8_model_s(task: tuple[results.TaskResult, Path], tmp_path: Path) -> None:
    """Before fine-tuning the float Keras model and the int8 model agree on held-out writers."""
    tr, _ = task
    path = tmp_path / f"{digits.NAME}.tflite"
    path.write_bytes(digits.pretrained_model())
    held = results._data(results.TASKS[0], "writers", path, validation=False)
    f = results.float_accuracy(results._digits_keras, held, 0.01, 0, 0)
    assert abs(f - tr.pretrained["writers"]) <= 0.02, (f, tr.pretrained)


def test_rows(task: tuple[results.TaskResult, Path]) -> None:
    tr, _ = task
    rows = {r.name: r for r in tr.rows["writers"]}
    assert list(rows) == NAMES
    print()
    for r in rows.values():
        print(f"{r.name:<42} lr {r.lr:<8g} {results._fmt_acc(r.accuracy):>12} {r.sram}")
    pre = tr.pretrained["writers"]
    assert 0.35 <= pre <= 0.55  # digits 0-4 only: docs/training.md measures 0.465
    for r in rows.values():
        assert len(r.accuracy) == len(results.SEEDS)
    mean = {k: float(np.mean(r.accuracy)) for k, r in rows.items()}
    # everything that trains weights learns the new classes
    for k in NAMES:
        if k != "int8 biases only":
            assert mean[k] >= pre + 0.1, (k, mean[k], pre)
    # ours beats the cheap schemes, and QAS matters (no-QAS at its best grid lr)
    assert mean["int8 sparse + QAS (ours)"] > mean["int8 classifier only"]
    assert mean["int8 sparse + QAS (ours)"] > mean["int8 biases only"]
    assert mean["int8 sparse + QAS (ours)"] > mean["int8 sparse, no QAS"]
    assert rows["int8 sparse, no QAS"].lr in [f * 0.01 for f in results.NO_QAS_LR_FACTORS]
    # memory: the linker's, ours within the budget, ordered as the schemes are
    s = {k: r.sram for k, r in rows.items()}
    assert s["float32, whole network (cloud baseline)"] is None
    assert s["int8 classifier only"] < s["int8 sparse + QAS (ours)"] <= tr.spec.budget < s["int8 full update"]
    assert s["int8 sparse, no QAS"] == s["int8 sparse + QAS (ours)"]


def test_writes_the_report(task: tuple[results.TaskResult, Path], tmp_path: Path) -> None:
    tr, out = task
    md = tmp_path / "RESULTS.md"
    results.write([tr], [(results.TASKS[1], "no backbone")], 12.0, "invoke results", md=md, out_dir=out)
    text = md.read_text()
    assert "| **int8 sparse + QAS (ours)** |" in text
    assert "Ours against the cloud baseline:" in text
    assert "no backbone" in text
    for f in ("digits.png", "digits.json", "digits-plan.toml", "digits-plan.png", "digits-plan.memory.txt"):
        assert (out / f).exists(), f


def test_a_partial_run_keeps_the_other_tasks_earlier_results(
    task: tuple[results.TaskResult, Path], tmp_path: Path
) -> None:
    """`invoke results --tasks X` rewrites X's section and keeps every other task's section from
    the JSON an earlier run wrote, saying so, instead of dropping them from the table."""
    tr, out = task
    md = tmp_path / "RESULTS.md"
    results.write([tr], [], 12.0, "invoke results", md=md, out_dir=out)  # the "earlier run"
    earlier = results.load_result(tr.spec, out)
    assert earlier is not None and earlier.plan_summary == tr.plan_summary
    assert [r.accuracy for r in earlier.rows["writers"]] == [r.accuracy for r in tr.rows["writers"]]
    other = dataclasses.replace(tr, spec=results.TASKS[1])  # a task this partial run did rerun
    md2 = tmp_path / "RESULTS2.md"
    results.write(
        [tr, other], [], 1.0, "invoke results --tasks fashion_to_mnist", md=md2, out_dir=out, kept=["digits"]
    )
    text = md2.read_text()
    assert "Tasks `digits` were not run this time" in text
    assert text.count("| **int8 sparse + QAS (ours)** |") == 2  # both sections are in the table
    assert results.load_result(results.TASKS[2], out) is None  # never run: nothing to keep


def test_run_all_with_tasks_reruns_those_and_keeps_the_rest(
    task: tuple[results.TaskResult, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    tr, _ = task
    ran: list[str] = []

    def run_task(spec: results.TaskSpec, board: object, progress: bool) -> results.TaskResult:
        ran.append(spec.name)
        return dataclasses.replace(tr, spec=spec)

    got: dict = {}
    monkeypatch.setattr(results, "run_task", run_task)
    monkeypatch.setattr(
        results, "load_result", lambda spec, out_dir=None: tr if spec.name == "digits" else None
    )
    monkeypatch.setattr(
        results, "write", lambda res, skipped, seconds, cmd, kept=None: got.update(res=res, kept=kept)
    )
    results.run_all(load_board("mps2_an500"), ["fashion_to_mnist"], progress=False)
    assert ran == ["fashion_to_mnist"]
    assert [t.spec.name for t in got["res"]] == ["digits", "fashion_to_mnist"] and got["kept"] == ["digits"]
