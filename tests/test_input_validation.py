"""Hostile or absurd inputs get a one-line error before anything starts (issue 16, findings 4,
5 and 7): names from files are never paths, no value reaches a shell, every option and file is
checked up front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from invoke import Context

import tasks
from pytools import emulator, export, validate
from pytools.boards import load_board
from pytools.errors import ToolError
from pytools.paths import ROOT
from pytools.session import run_training_session
from pytools.train.scheme import load_scheme


def invoke(*args: str, run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TINYTRAIN_RUN_DIR": str(run_dir)},
        timeout=120,
    )


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


# ------------------------------------------------------------------ finding 4: names, not paths


def session_config(emulator_name: str, board: str = "mps2_an500") -> dict:
    """A session's config.json as run_training_session writes it (the fields resume reads)."""
    args = {
        "board_name": board,
        "dataset": "digits",
        "scheme": "bias=3,-1=1,-2=0.5",
        "epochs": 1,
        "lr": 0.01,
        "lr_schedule": "linear",
        "split": "writers",
        "port": None,
        "out_dir": None,
        "model": None,
        "seed": 0,
        "limit": 5,
        "held_out": 10,
        "save_every": None,
        "save": True,
    }
    emu = {"name": emulator_name, "pid": 1, "reused": None}
    return {
        "arguments": args,
        "board": {"name": board, "serial": "socket://127.0.0.1:1", "emulator": emu},
        "firmware": {"build_id": "x"},
        "plan": {},
        "first_sample_id": 0,
    }


def test_a_session_naming_its_emulator_outside_the_run_folder_is_refused(tmp_path, monkeypatch) -> None:
    run = tmp_path / "a" / "b" / "run"
    run.mkdir(parents=True)
    monkeypatch.setattr(emulator, "RUN", run)
    victim = tmp_path / "a" / "victim.flash"  # what RUN / "../../victim.flash" would name... and more
    victim.write_bytes(b"precious")
    (tmp_path / "a" / "b" / "victim.flash").write_bytes(b"precious")
    folder = tmp_path / "session"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(session_config("../../victim")))
    (folder / "board-flash.bin").write_bytes(b"\xff" * 16)
    (folder / "steps.jsonl").write_text("")
    with pytest.raises(ToolError, match=r"emulator name '\.\./\.\./victim' is not a valid name"):
        run_training_session(None, resume=True, out_dir=folder)
    assert victim.read_bytes() == b"precious"
    assert sorted(p.name for p in run.iterdir()) == []  # nothing started, nothing written
    with pytest.raises(ToolError, match="not a valid name"):
        export.pull(None, str(tmp_path / "x.tflite"), session=str(folder))


@pytest.mark.parametrize(
    "name", ["../../victim", "/tmp/x", "a/b", "..", ".hidden", "-rf", "x" * 65, "a\0b", ""]
)
def test_emulator_files_are_named_only_by_plain_names(name: str, run_dir) -> None:
    with pytest.raises(ToolError, match="not a valid name"):
        emulator.flash_file(name)
    with pytest.raises(ToolError, match="not a valid name"):
        emulator.start(load_board("mps2_an500"), Path("/nonexistent.elf"), name=name or "..")
    assert not list(run_dir.iterdir())


@pytest.mark.parametrize(
    "name", ["../boards/mps2_an500", "/work/x", "mps2_an500/../mps2_an500", "", "MPS2_AN500"]
)
def test_board_names_are_only_the_board_files_names(name: str) -> None:
    with pytest.raises(ToolError, match="unknown board"):
        load_board(name or "x/")


def test_a_session_config_with_a_traversing_board_is_refused(tmp_path) -> None:
    cfg = session_config("session-ok")
    cfg["board"]["name"] = "../../x"
    with pytest.raises(ToolError, match="not a valid name"):
        validate.session_config(cfg, tmp_path / "config.json")


@pytest.mark.parametrize(
    "dataset", ["digits", "../../../../etc/x", "/abs/my recordings.npz", "a\\..\\b", "..", ""]
)
def test_a_default_session_folder_stays_in_sessions_whatever_the_data_set_is_called(dataset: str) -> None:
    from pytools.session.folder import SESSIONS, session_path

    path = session_path(None, "mps2_an500", dataset)
    assert path.parent == SESSIONS and ".." not in path.name and "/" not in path.name
    assert validate.NAME.fullmatch(path.name.split("Z-", 1)[1]), path.name


# ------------------------------------------------------------------ finding 5: no shell


def test_invoke_test_passes_k_to_pytest_as_one_argument_never_to_a_shell(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "pwned"
    # The command itself is replaced by `true`: only a shell would run what follows the quote.
    monkeypatch.setattr(sys, "executable", "/bin/true")
    tasks.test.body(Context(), k=f"x'; touch {marker}; echo '")
    tasks.test.body(Context(), k=f'x"; touch {marker}; echo "$(touch {marker})')
    assert not marker.exists()


def test_invoke_test_hands_pytest_the_expression_verbatim(monkeypatch) -> None:
    seen: list[list[str]] = []

    def fake_run(cmd, **kw):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    k = "a and not b'; rm -rf / ; echo '"
    tasks.test.body(Context(), k=k, x=True)
    assert seen == [[sys.executable, "-m", "pytest", "-q", "-k", k, "-x"]]


# ------------------------------------------------------------------ finding 7: clear errors up front


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        (b'bias_layers = "x"\n', "bias_layers must be a whole number"),
        (b"bias_layers = 2.5\n", "bias_layers must be a whole number"),
        (b"weights = 3\n", "weights must be a table"),
        (b"[weights]\nabc = 1\n", "key 'abc' is not a layer number"),
        (b'[weights]\n-1 = "all"\n', "a ratio is a number"),
        (b"[weights]\n-1 = true\n", "a ratio is a number"),
        (b"bias_layers = 3\n\xff\xfe = 1\n", "not UTF-8 text"),
        (b"qas = 1\n", "qas must be true or false"),
        (b"patch = 7\n", "patch"),
        (b"bais_layers = 3\n", "unknown keys ['bais_layers']"),
        (b"bias_layers = [\n", "not valid TOML"),
    ],
)
def test_a_bad_scheme_file_is_a_one_line_error(tmp_path, text: bytes, expect: str) -> None:
    f = tmp_path / "s.toml"
    f.write_bytes(text)
    with pytest.raises(ToolError, match=expect.replace("[", r"\[").replace("]", r"\]")) as e:
        load_scheme(str(f))
    assert "\n" not in str(e.value)


def test_an_inline_scheme_longer_than_a_file_name_is_read_as_inline() -> None:
    long = "bias=1," + ",".join(["-1=1"] * 80)
    assert len(long) > 255
    assert load_scheme(long).weights == {-1: 1.0}
    with pytest.raises(ToolError, match="scheme item"):
        load_scheme("bias=1," + "x" * 300)
    with pytest.raises(ToolError, match="scheme item"):
        load_scheme("bias=1,\0=1")


@pytest.mark.parametrize("lr", ["3.5e38", "1e30", "1.5", "-0.1", "nan", "inf"])
def test_train_refuses_an_absurd_lr_with_the_reason_before_anything_starts(tmp_path, lr: str) -> None:
    line = one_line_error(invoke("train", "--lr", lr, "--out", str(tmp_path / "s"), run_dir=tmp_path / "run"))
    assert "--lr" in line
    if lr not in ("nan", "inf"):
        assert "SGD with QAS diverges" in line and "0.001 to 0.1" in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize("where", ["file/s", "/proc/tinytrain/s"])
def test_train_refuses_an_unwritable_out_before_the_emulator_starts(tmp_path, where: str) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    out = str(tmp_path / where) if where.startswith("file") else where
    line = one_line_error(
        invoke("train", "--epochs", "1", "--limit", "5", "--out", out, run_dir=tmp_path / "run")
    )
    assert "--out" in line
    assert not (tmp_path / "run").exists()  # no .run/session-* files


def test_infer_refuses_object_arrays_and_non_npy_inputs_before_converting(tmp_path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "text.npy").write_text("1,2,3\n")
    np.save(tmp_path / "ok.npy", np.zeros((1, 4), np.int8))
    model = tmp_path / "m.tflite"  # never read: the inputs are refused first
    for inputs, expect in (
        ("obj.npy", "holds Python objects (an object array)"),
        ("text.npy", "is not a .npy file"),
        ("missing.npy", "no file at"),
    ):
        r = invoke("infer", "--model", str(model), "--inputs", str(tmp_path / inputs), "--out",
                   str(tmp_path / "y.npy"), "--board", "host", run_dir=tmp_path / "run")  # fmt: skip
        assert expect in one_line_error(r)
    r = invoke("infer", "--model", str(model), "--inputs", str(tmp_path / "ok.npy"), "--out",
               "/proc/tinytrain/y.npy", "--board", "host", run_dir=tmp_path / "run")  # fmt: skip
    assert "--out" in one_line_error(r)
    assert not (tmp_path / "y.npy").exists()


def test_infer_refuses_an_empty_input_array() -> None:
    from pytools.model.inference import rows_for

    spec = {"shape": [1, 4], "dtype_name": "int8"}
    assert rows_for(np.zeros((3, 4), np.int8), spec, "x.npy").shape == (3, 1, 4)
    for empty in (np.zeros((0, 4), np.int8), np.zeros((0,), np.int8)):
        with pytest.raises(ToolError, match="holds no inputs"):
            rows_for(empty, spec, "x.npy")
