"""`invoke train --board host`: the same session on the host twin, and what a session resolves
by itself (split, learning rate, epochs, the data spec).

The twin and the board are held to each other: a session on the emulated board and one on the
twin, same data, seed, order and lr, log the same loss, prediction and lr factor at every step
and end with byte-identical trained tensors (each read back from where it trained).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import datasets
from datasets.files import is_path_spec
from pytools.errors import ToolError
from pytools.pretrain import digits
from pytools.session import inputs as session_inputs
from pytools.session import run_training_session
from pytools.session.inputs import default_epochs, is_user_data, load_data
from tests.conftest import jsonl

STEP_KEYS = (
    "epoch",
    "step",
    "sample",
    "sample_id",
    "label",
    "prediction",
    "loss",
    "lr_scale",
    "samples_trained",
)


@pytest.mark.emulator
def test_the_board_and_the_host_twin_give_the_same_session(run_dir, tmp_path) -> None:
    kw = {"epochs": 2, "limit": 24, "held_out": 30, "seed": 7, "lr": 0.02, "save": False}
    board = run_training_session("mps2_an500", out_dir=tmp_path / "board", **kw)
    twin = run_training_session("host", out_dir=tmp_path / "twin", **kw)

    b_steps, t_steps = jsonl(board / "steps.jsonl"), jsonl(twin / "steps.jsonl")
    assert len(b_steps) == len(t_steps) == 48
    assert [[s[k] for k in STEP_KEYS] for s in b_steps] == [[s[k] for k in STEP_KEYS] for s in t_steps]
    b_epochs, t_epochs = jsonl(board / "epochs.jsonl"), jsonl(twin / "epochs.jsonl")
    for k in ("held_out_correct", "held_out_loss", "train_loss", "train_accuracy"):
        assert [e[k] for e in b_epochs] == [e[k] for e in t_epochs], k

    b_state, t_state = np.load(board / "trained_state.npz"), np.load(twin / "trained_state.npz")
    assert sorted(b_state.files) == sorted(t_state.files) and b_state.files
    for name in t_state.files:
        assert b_state[name].tobytes() == t_state[name].tobytes(), name
    # The state moved: the comparison is not of two untouched copies.
    b_cfg, t_cfg = (json.loads((f / "config.json").read_text()) for f in (board, twin))
    assert b_cfg["first_state_crc"] == t_cfg["first_state_crc"]
    assert final_crc(board) == final_crc(twin) != f"0x{t_cfg['first_state_crc']:08x}"

    # The folder says where it ran.
    assert t_cfg["board"]["host_twin"] is True and t_cfg["board"]["name"] == "host"
    assert t_cfg["board"]["plan_board"] == "mps2_an500" and t_cfg["firmware"] is None
    assert b_cfg["board"]["host_twin"] is False and b_cfg["firmware"]["build_id"]
    assert b_cfg["plan"]["crc32"] == t_cfg["plan"]["crc32"]
    summary = (twin / "summary.txt").read_text()
    assert "host twin (the firmware's C on this machine; plan for mps2_an500): completed" in summary
    assert {p.name for p in twin.iterdir()} >= {"loss.png", "accuracy.png", "config.json", "epochs.jsonl"}


def final_crc(folder) -> str:
    line = next(x for x in (folder / "summary.txt").read_text().splitlines() if "CRC-32" in x)
    return line.split("CRC-32 ")[1]


def test_a_host_session_cannot_be_resumed_and_takes_no_port(tmp_path) -> None:
    folder = run_training_session("host", epochs=1, limit=6, held_out=6, out_dir=tmp_path / "s")
    with pytest.raises(ToolError, match=r"ran on the host twin .*cannot be resumed"):
        run_training_session(None, resume=True, out_dir=folder)
    with pytest.raises(ToolError, match=r"--port .*host twin runs in this process"):
        run_training_session("host", port="socket://localhost:1", out_dir=tmp_path / "p")


def test_hapt_trains_with_its_own_model_and_split_and_a_swept_lr(tmp_path, capsys) -> None:
    folder = run_training_session(
        "host", dataset="hapt", epochs=None, lr=None, limit=30, held_out=30, seed=1, out_dir=tmp_path / "s"
    )
    cfg = json.loads((folder / "config.json").read_text())
    out = capsys.readouterr().out
    assert cfg["dataset"]["split"] == datasets.module("hapt").SPLITS[0] == "users"
    assert cfg["model"]["name"] == "hapt_cnn1d"  # models/hapt_cnn1d.tflite, the default for hapt
    sweep = cfg["lr"]
    assert sweep["how"] == "sweep on the host twin" and len(sweep["candidates"]) == 5
    assert sweep["value"] in [c["lr"] for c in sweep["candidates"]]
    best = max(c["validation_accuracy"] for c in sweep["candidates"])
    chosen = next(c for c in sweep["candidates"] if c["lr"] == sweep["value"])
    assert chosen["validation_accuracy"] == best
    assert cfg["arguments"]["lr"] is None and f"lr {sweep['value']:g}" in (folder / "summary.txt").read_text()
    assert cfg["epochs"] == default_epochs(30) == 5 and cfg["arguments"]["epochs"] is None
    assert "<- chosen" in out and "epochs    5 (none given" in out
    assert len(jsonl(folder / "steps.jsonl")) == 5 * 30


def test_default_epochs_aim_at_about_a_thousand_steps() -> None:
    assert [default_epochs(n) for n in (40, 215, 381, 1945, 5000)] == [5, 5, 3, 1, 1]


def test_a_path_or_hook_is_user_data_by_the_loaders_rule(tmp_path) -> None:
    assert not is_user_data("hapt") and not is_user_data("cifar10")
    assert is_user_data("my.npz") and is_user_data("rec/x.csv") and is_user_data("mypkg.audio:load")
    folder = tmp_path / "images"
    folder.mkdir()
    assert is_user_data(str(folder))
    for spec in ("hapt", "my.npz", "rec/x.csv", "mypkg.audio:load", str(folder), "./digits", "nope"):
        assert is_user_data(spec) == is_path_spec(spec), spec  # one rule, the loaders'
    with pytest.raises(ToolError, match=r"--dataset .*my\.npz: no such file or folder"):
        run_training_session("host", dataset=str(tmp_path / "my.npz"), out_dir=tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_user_data_goes_through_datasets_files_load(tmp_path, monkeypatch) -> None:
    """The hand-off to the user-file loaders: what they are asked (the model input's type and
    quantization, its outputs, the seed) and what the session keeps (their record)."""
    calls = []
    real_load = session_inputs.files.load

    def load(spec, **kw):
        calls.append((spec, kw))
        return real_load(spec, **kw)

    monkeypatch.setattr(session_inputs.files, "load", load)
    part = datasets.load_split("digits").finetune
    data = tmp_path / "my_recordings.npz"
    np.savez(data, x=part.x[:60], y=part.y[:60])
    with pytest.raises(ToolError, match=r"is your own data: give the model to fine-tune on it with --model"):
        run_training_session("host", dataset=str(data), out_dir=tmp_path / "m")
    digits.pretrained_model()  # built and cached once
    model = digits.model_path()
    folder = run_training_session(
        "host",
        dataset=str(data),
        model=model,
        epochs=1,
        limit=10,
        held_out=10,
        seed=3,
        out_dir=tmp_path / "s",
    )
    ((spec, kw),) = calls
    assert spec == str(data) and kw["input_shape"] == (8, 8, 1) and kw["classes"] == 10
    assert kw["input_dtype"] == "int8" and kw["input_zero_point"] == -128 and kw["seed"] == 3
    assert abs(kw["input_scale"] - 1 / 255) < 1e-9 and kw["label_column"] is None
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["dataset"]["spec"] == str(data) and cfg["dataset"]["kind"] == "user"
    assert cfg["dataset"]["name"] == "my_recordings" and "seed 3" in cfg["dataset"]["split"]
    details = cfg["dataset"]["details"]
    assert details["format"] == "npz" and details["seed"] == 3 and details["split"]["seed"] == 3
    assert details["sha256"] and details["sizes"] == {"finetune": 49, "held_out": 11}  # 20 % of each class
    with pytest.raises(ToolError, match=r"--split writers: splits are the built-in data sets'"):
        run_training_session("host", dataset=str(data), model=model, split="writers", out_dir=tmp_path / "t")


def test_load_data_resolves_built_in_names_with_their_default_split() -> None:
    from pytools.model.tflite_import import import_tflite
    from pytools.pretrain.backbones import model_path

    graph = import_tflite(model_path("hapt_cnn1d").read_bytes(), "hapt_cnn1d")
    d = load_data("hapt", graph, None, 0)
    assert (d.kind, d.split, d.classes, d.shape) == ("builtin", "users", 6, (1, 128, 6))
    assert load_data("hapt", graph, "user21", 0).split == "user21"


def test_pull_exports_a_host_session_from_its_trained_state(tmp_path) -> None:
    from pytools import export

    folder = run_training_session("host", epochs=1, limit=20, held_out=10, seed=2, out_dir=tmp_path / "s")
    out = tmp_path / "trained.tflite"
    lines = export.pull(None, str(out), session=str(folder), check=30)
    text = "\n".join(lines)
    assert "a host-twin session" in text and "check     30 of 30 held-out samples" in text
    assert out.is_file() and out.read_bytes() != digits.model_path().read_bytes()
