"""`invoke train --loss auto|ce|bce|mse` and `--new-head N` end to end on the host twin
(`--board host`, the firmware's C: the same code path as a board session), through tasks.py's
`train` and `pull` task bodies, with the user's own data (`--dataset some.npz`):

  - a binary classifier ending in LOGISTIC (built here with TensorFlow), fine-tuned with bce
    (labels 0/1) on a task it does poorly on, then pulled: the export's logits equal the
    twin's bit for bit in TFLite's interpreter;
  - an autoencoder (tests/test_losses.py's, MLPerf Tiny's anomaly detector in small) trained
    with mse against its input on normal samples: held-out reconstruction error and ROC AUC;
  - a 10-class model given a new 3-class head (`--new-head 3`) on a 3-class .npz, pulled as a
    .tflite whose output has 3 classes;
  - what is refused, with what to do: bce on 3 classes, ce on a LOGISTIC output, a bad --loss
    or --new-head, a new head of N classes on data of more.
The same on the emulated board: tests/test_train_losses_board.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from invoke import Context

import tasks
from datasets import DataError
from pytools.boards import HOST
from pytools.console import SessionTail
from pytools.errors import ToolError
from pytools.model.ir import ModelError
from pytools.model.tflite_export import write_tflite
from pytools.model.tflite_import import import_tflite
from pytools.pretrain.zoo import ZOO, zoo_model
from pytools.session import run_training_session
from tests.conftest import jsonl
from tests.test_losses import SHIFT, _anomalous, _normal, autoencoder

__all__ = ["autoencoder"]  # a fixture

F = 12  # the binary classifier's input features
SCHEME = "bias=2,-1=1,-2=0.5"


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pytools.pretrain.zoo import import_tf

    import_tf()
    import keras

    return keras


def _task(n: int, seed: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Points in F dimensions, labelled by the side of a plane; angle turns the plane (radians)
    in its first two coordinates: 0 is the pretraining task, larger ones a new task."""
    r = np.random.default_rng(seed)
    x = r.normal(0, 1, (n, F)).astype(np.float32)
    w = np.zeros(F, np.float32)
    w[0], w[1] = np.cos(angle), np.sin(angle)
    return x, (x @ w > 0).astype(np.int64)


NEW_TASK = 1.4  # radians: the pretrained classifier is near chance on it


@pytest.fixture(scope="module")
def logistic_model(tmp_path_factory) -> Path:
    """A binary classifier ending in LOGISTIC (Dense 16 relu -> Dense 1 sigmoid), full int8."""
    from pytools.pretrain.zoo import export_tflite

    keras = _keras()
    keras.utils.set_random_seed(5)

    def make(batch: int | None) -> Any:
        i = keras.Input((F,), batch_size=batch)
        h = keras.layers.Dense(16, activation="relu")(i)
        return keras.Model(i, keras.layers.Dense(1, activation="sigmoid")(h))

    m = make(None)
    m.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    x, y = _task(2000, 1, 0.0)
    m.fit(x, y.astype(np.float32), epochs=5, batch_size=32, verbose=0)
    one = make(1)
    one.set_weights(m.get_weights())
    path = tmp_path_factory.mktemp("models") / "binary.tflite"
    path.write_bytes(export_tflite(one, x[:200], "int8"))
    assert [op.kind for op in import_tflite(path.read_bytes(), "b").ops][-1] == "LOGISTIC"
    return path


def binary_npz(path: Path, n: int = 400, classes: int = 2) -> Path:
    x, y = _task(n, 2, NEW_TASK)
    if classes > 2:  # classes by the third coordinate's range
        y = np.digitize(x[:, 2], np.linspace(-1, 1, classes - 1)).astype(np.int64)
    np.savez(path, x=x, y=y)
    return path


def _train(capsys, **kwargs: Any) -> str:
    """tasks.py's train task body, as `invoke train` runs it; returns what it printed."""
    try:
        tasks.train.body(Context(), **kwargs)
    finally:
        out = capsys.readouterr()
        print(out.out[-3000:] + out.err[-3000:])
    return out.out + out.err


def _pull(capsys, **kwargs: Any) -> str:
    try:
        tasks.pull.body(Context(), **kwargs)
    finally:
        out = capsys.readouterr()
        print(out.out[-3000:] + out.err[-3000:])
    return out.out + out.err


def _tflite_outputs(model: bytes, xs: np.ndarray) -> np.ndarray:
    from pytools.model.oracle import run_tflite

    return np.array([run_tflite(model, [x])[0].reshape(-1) for x in xs])


def test_a_logistic_binary_classifier_trains_with_bce_and_pulls(tmp_path, capsys, logistic_model) -> None:
    data = binary_npz(tmp_path / "door_events.npz")
    folder = tmp_path / "s"
    out = _train(capsys, board="host", dataset=str(data), model=str(logistic_model), epochs=3, lr=0.1,
                 seed=1, scheme=SCHEME, out=str(folder))  # fmt: skip
    assert "loss      bce (binary cross-entropy): the model ends in LOGISTIC" in out, out
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["arguments"]["loss"] == "auto" and cfg["loss"]["loss"] == "bce"
    assert cfg["loss"]["metric"] == "accuracy" and cfg["head"]["new"] is False
    kinds = [op.kind for op in import_tflite(logistic_model.read_bytes(), "b").ops]
    assert cfg["plan"]["forward_operators"] < len(kinds) + 1  # the LOGISTIC is the loss's, not run
    epochs = jsonl(folder / "epochs.jsonl")
    before, after = epochs[0]["held_out_accuracy"], epochs[-1]["held_out_accuracy"]
    print(f"\nLOGISTIC binary classifier, bce on a new task: held-out accuracy {before:.3f} -> {after:.3f}")
    assert after >= 0.85 and after > before + 0.15
    assert {s["label"] for s in jsonl(folder / "steps.jsonl")} == {0, 1}
    assert {s["prediction"] for s in jsonl(folder / "steps.jsonl")} <= {0, 1}
    assert "held-out accuracy by epoch" in (folder / "summary.txt").read_text()
    assert (folder / "accuracy.png").is_file()

    exported = tmp_path / "binary_trained.tflite"
    said = _pull(capsys, out=str(exported), session=str(folder))
    assert "check     50 of 50 held-out samples: predictions in TFLite's interpreter equal the twin's" in said
    # The exported model, in TFLite, on the held-out part: the session's accuracy (one logit
    # through LOGISTIC: class 1 where the probability is over one half).
    g = import_tflite(exported.read_bytes(), "t")
    t_in, t_out = g.tensor(g.inputs[0]), g.tensor(g.outputs[0])
    with np.load(data) as z:
        x, y = z["x"], z["y"]
    held = cfg["dataset"]["details"]["split"]["held_out_indices"]
    xq = np.clip(np.round(x[held] / t_in.quant.scale[0]) + t_in.quant.zero_point[0], -128, 127)
    prob = (
        _tflite_outputs(exported.read_bytes(), xq.astype(np.int8).reshape(-1, 1, F))[:, 0].astype(np.float64)
        - t_out.quant.zero_point[0]
    ) * t_out.quant.scale[0]
    acc = float(np.mean((prob > 0.5) == y[held]))
    assert abs(acc - after) <= 0.05, (acc, after)


def test_what_does_not_fit_the_loss_is_refused_with_what_to_do(tmp_path, logistic_model) -> None:
    three = binary_npz(tmp_path / "three.npz", classes=3)
    ok = binary_npz(tmp_path / "two.npz")
    common: dict[str, Any] = {"model": logistic_model, "epochs": 1, "lr": 0.1, "scheme": SCHEME}
    with pytest.raises(
        DataError,
        match=r"--loss bce \(the model ends in LOGISTIC.*\) on a single output takes labels 0 \.\. 1 \(a "
        r"binary classifier: 0 or 1\); for more classes use --loss ce.*label 2 is out of range",
    ):
        run_training_session(HOST, dataset=str(three), out_dir=tmp_path / "a", **common)
    with pytest.raises(ModelError, match=r"--loss ce does not fit a model ending in LOGISTIC: use bce"):
        run_training_session(HOST, dataset=str(ok), out_dir=tmp_path / "b", loss="ce", **common)
    with pytest.raises(ToolError, match=r"--loss 'hinge': one of auto, ce, bce, mse"):
        run_training_session(HOST, dataset=str(ok), out_dir=tmp_path / "c", loss="hinge", **common)
    with pytest.raises(ToolError, match=r"--new-head 1: .* at least 2"):
        run_training_session(HOST, dataset=str(ok), out_dir=tmp_path / "d", new_head=1, **common)
    # A built-in data set of 10 classes on a binary classifier: the session's own check.
    with pytest.raises(
        ModelError,
        match=r"--loss bce on .*binary.tflite's single output is a binary classifier \(labels 0 and 1\); "
        r"the data set has 10 classes: use --loss ce on a model with 10 outputs",
    ):
        run_training_session(HOST, dataset="digits", out_dir=tmp_path / "e", **common)
    assert not [p for p in tmp_path.iterdir() if p.is_dir()], "a refused session left a folder"

    # The same classifier without its LOGISTIC (one logit): auto takes it as a regression, which
    # a session cannot stream targets for; the refusal names --loss bce, which then trains.
    g = import_tflite(logistic_model.read_bytes(), "b")
    assert g.ops[-1].kind == "LOGISTIC"
    g.outputs = [g.ops[-1].inputs[0]]
    g.ops = g.ops[:-1]
    logit = tmp_path / "one_logit.tflite"
    logit.write_bytes(write_tflite(g))
    common["model"] = logit
    with pytest.raises(
        ModelError, match=r"its targets are float32 vectors.*one logit of a binary classifier: --loss bce"
    ):
        run_training_session(HOST, dataset=str(ok), out_dir=tmp_path / "f", **common)
    folder = run_training_session(
        HOST, dataset=str(ok), out_dir=tmp_path / "g", loss="bce", limit=10, **common
    )
    cfg = json.loads((folder / "config.json").read_text())
    assert (cfg["loss"]["loss"], cfg["loss"]["why"]) == ("bce", "as asked")


def _ae_npz(path: Path) -> Path:
    normal = _normal(240, 21) + SHIFT
    odd = _anomalous(60, 22) + SHIFT
    x = np.concatenate([normal, odd]).astype(np.float32)
    y = np.array([0] * len(normal) + [1] * len(odd), np.int64)
    np.savez(path, x=x, y=y)
    return path


def test_an_autoencoder_session_trains_with_mse_and_reports_anomaly_scores(
    tmp_path, capsys, autoencoder
) -> None:
    model = tmp_path / "ae.tflite"
    model.write_bytes(autoencoder)
    data = _ae_npz(tmp_path / "machine_sounds.npz")
    folder = tmp_path / "s"
    out = _train(capsys, board="host", dataset=str(data), model=str(model), epochs=3, lr=0.01, seed=3,
                 scheme="bias=2,-1=1,-2=0.5", out=str(folder))  # fmt: skip
    assert "loss      mse (mean squared error): a linear output the size of the input" in out, out
    assert "trains on the 192 fine-tuning samples labelled normal (0), not the 48 labelled anomalous" in out
    cfg = json.loads((folder / "config.json").read_text())
    assert (cfg["loss"]["loss"], cfg["loss"]["target"]) == ("mse", "input")
    assert "ROC AUC" in cfg["loss"]["metric"] and cfg["dataset"]["finetune_used"] == 192
    steps = jsonl(folder / "steps.jsonl")
    assert len(steps) == 3 * 192 and {s["label"] for s in steps} == {0}  # anomalies never trained on
    epochs = jsonl(folder / "epochs.jsonl")
    assert all(e["held_out_accuracy"] is None and e["train_accuracy"] is None for e in epochs)
    err = [e["held_out_loss"] for e in epochs]
    auc = [e["held_out_auc"] for e in epochs]
    print(f"\nautoencoder, mse: held-out reconstruction error {err}, ROC AUC {auc}")
    assert err[-1] < 0.8 * err[0]  # it learns the shifted machine's normal sound
    assert auc[-1] > 0.7 and auc[-1] > auc[0]  # and then tells the anomalies apart
    summary = (folder / "summary.txt").read_text()
    assert "loss: mse (mean squared error)" in summary and "held-out ROC AUC" in summary
    assert "accuracy by epoch" not in summary
    assert (folder / "held_out.png").is_file() and not (folder / "accuracy.png").exists()
    # `invoke monitor --session` shows the same figures, and no accuracy.
    shown = SessionTail(folder).poll()
    assert any("epoch 3 done: held-out mse" in line and "ROC AUC" in line for line in shown), shown
    assert not any("accuracy" in line for line in shown), shown

    exported = tmp_path / "ae_trained.tflite"
    said = _pull(capsys, out=str(exported), session=str(folder))
    assert "check     50 of 50 held-out samples: its reconstruction" in said and "bit for bit" in said


def test_an_autoencoder_trains_on_a_training_part_of_normal_samples_only(
    tmp_path, capsys, autoencoder
) -> None:
    """What an anomaly detector's recordings look like: x_train holds normal sounds only, x_test
    normal and anomalous. The loader takes it for an autoencoder (and says so); a classifier's
    loader still refuses a class with no training samples."""
    from datasets import files

    model = tmp_path / "ae.tflite"
    model.write_bytes(autoencoder)
    normal, odd = _normal(200, 31) + SHIFT, _anomalous(40, 32) + SHIFT
    data = tmp_path / "given.npz"
    np.savez(
        data,
        x_train=normal[:160].astype(np.float32),
        y_train=np.zeros(160, np.int64),
        x_test=np.concatenate([normal[160:], odd]).astype(np.float32),
        y_test=np.array([0] * 40 + [1] * 40, np.int64),
    )
    folder = tmp_path / "s"
    out = _train(capsys, board="host", dataset=str(data), model=str(model), epochs=2, lr=0.01, seed=3,
                 scheme="bias=2,-1=1,-2=0.5", out=str(folder))  # fmt: skip
    assert "the training part holds normal samples (0) only" in out, out
    epochs = jsonl(folder / "epochs.jsonl")
    assert len(steps := jsonl(folder / "steps.jsonl")) == 2 * 160 and {s["label"] for s in steps} == {0}
    assert (
        epochs[-1]["held_out_auc"] is not None
        and epochs[-1]["held_out_loss"] < epochs[0]["held_out_loss"] * 1.5
    )
    shape = normal.shape[1:]
    common = dict(input_shape=shape, classes=2, input_dtype="float32", input_scale=1.0, input_zero_point=0)
    with pytest.raises(DataError, match="class 1 has no samples in the training part"):
        files.load(data, **common)
    assert files.load(data, anomaly=True, **common).classes == 2
    no_normal = tmp_path / "no_normal.npz"
    np.savez(no_normal, x_train=odd.astype(np.float32), y_train=np.ones(40, np.int64),
             x_test=normal[:40].astype(np.float32), y_test=np.zeros(40, np.int64))  # fmt: skip
    with pytest.raises(DataError, match="class 0 has no samples"):
        files.load(no_normal, anomaly=True, **common)


def _mlp_npz(path: Path, classes: int) -> tuple[Path, tuple[int, ...]]:
    g = import_tflite(zoo_model("mlp"), "mlp")
    shape = tuple(g.tensor(g.inputs[0]).shape[1:])
    xf, y10 = ZOO["mlp"].data(600, 5)
    np.savez(path, x=xf.reshape(len(xf), *shape).astype(np.float32), y=(y10 % classes).astype(np.int64))
    return path, shape


def test_a_new_head_session_on_user_data_pulls_a_model_with_that_head(tmp_path, capsys) -> None:
    model = tmp_path / "mlp.tflite"
    model.write_bytes(zoo_model("mlp"))
    data, _shape = _mlp_npz(tmp_path / "three_kinds.npz", 3)
    folder = tmp_path / "s"
    out = _train(capsys, board="host", dataset=str(data), model=str(model), epochs=3, lr=0.02, seed=4,
                 new_head=3, scheme="bias=2,-1=1,-2=0.5", out=str(folder))  # fmt: skip
    assert "new head: operator #1 (FULLY_CONNECTED) 10 -> 3 outputs" in out and "seed 4" in out
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["head"] == {**cfg["head"], "new": True, "classes": 3, "seed": 4, "outputs": 3}
    assert cfg["arguments"]["new_head"] == 3 and cfg["loss"]["loss"] == "ce"
    epochs = jsonl(folder / "epochs.jsonl")
    before, after = epochs[0]["held_out_accuracy"], epochs[-1]["held_out_accuracy"]
    print(f"\nmlp with a new 3-class head: held-out accuracy {before:.3f} -> {after:.3f}")
    assert after >= 0.6 and after > before + 0.2
    assert "with a new 3-class head" in (folder / "summary.txt").read_text()

    exported = tmp_path / "mlp3.tflite"
    said = _pull(capsys, out=str(exported), session=str(folder))
    assert "head      new head: operator #1 (FULLY_CONNECTED)" in said
    assert "check     50 of 50 held-out samples: predictions in TFLite's interpreter equal the twin's" in said
    assert "a new flatbuffer: the model with its new, trained head" in said
    g3 = import_tflite(exported.read_bytes(), "mlp3")
    assert g3.tensor(g3.outputs[0]).shape[-1] == 3
    # The exported model in TFLite on the session's held-out samples: the session's accuracy.
    t_in = g3.tensor(g3.inputs[0])
    with np.load(data) as z:
        x, y = z["x"], z["y"]
    held = cfg["dataset"]["details"]["split"]["held_out_indices"]
    xq = np.clip(np.round(x[held] / t_in.quant.scale[0]) + t_in.quant.zero_point[0], -128, 127)
    xq = xq.astype(t_in.dtype).reshape(-1, *t_in.shape)
    acc = float(np.mean(np.argmax(_tflite_outputs(exported.read_bytes(), xq), axis=1) == y[held]))
    assert abs(acc - after) <= 0.05, (acc, after)

    # More classes in the data than the new head has: refused, saying what to give.
    four, _ = _mlp_npz(tmp_path / "four.npz", 4)
    with pytest.raises(
        DataError, match=r"--loss ce on the model's 3 outputs takes labels 0 \.\. 2.*--new-head K.*label 3"
    ):
        run_training_session(HOST, dataset=str(four), model=model, epochs=1, lr=0.02, new_head=3,
                             out_dir=tmp_path / "x")  # fmt: skip
    assert not (tmp_path / "x").exists()
