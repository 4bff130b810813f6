"""Seeded, bounded fuzzing of what users hand the tools (issue 16): scheme files and inline
schemes, absurd option values for train, compile, infer, pull, plan and ping, and mutated
models through the training compiler. Every case must end in a Scheme/plan or a clean
ToolError (a task: exit 1 with one `error:` line), never another exception, and a refused
option must start nothing (no emulator, no board connection, no build, no file).

(The importer alone is fuzzed with 10,000 mutated models in tests/test_import.py; the frames
are the link's own tests.)
"""

from __future__ import annotations

import collections
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from invoke import Context

import tasks
from pytools import emulator
from pytools.boards import load_board
from pytools.errors import ToolError
from pytools.model.tflite_import import import_tflite
from pytools.paths import ROOT
from pytools.pretrain.zoo import zoo_model
from pytools.train.compile_train import compile_training
from pytools.train.scheme import Scheme, load_scheme, resolve

BOARD = load_board("mps2_an500")

# Pieces a hostile or careless scheme is made of.
TOKENS = [
    "bias", "bias_layers", "weights", "[weights]", "[[patch]]", "patch", "gradients", "qas", "start",
    "until", "patches", "=", "==", ",", "+", "-", "x", "-1", "-3", "0", "1", "0.25", "0.125", "1e999",
    "-1e999", "nan", "inf", "true", "false", '"', "'", "[", "]", "{", "}", "#", "\n", " ", "\t", "auto",
    "float32", "int8", "\x00", "\xff", "é", "../", "/", "\\", "0x10", "99999999999999999999", "-0",
]  # fmt: skip


def _random_text(rng: random.Random, longest: int = 40) -> str:
    return "".join(rng.choice(TOKENS) for _ in range(rng.randint(0, longest)))


def _mutate(rng: random.Random, data: bytes) -> bytes:
    d = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        pos = rng.randrange(len(d) + 1)
        if kind == 0 and d:  # flip a bit
            d[min(pos, len(d) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1:  # insert a token
            d[pos:pos] = rng.choice(TOKENS).encode("utf-8", "surrogatepass")
        elif kind == 2:  # delete a span
            del d[pos : pos + rng.randint(1, 12)]
        elif kind == 3:  # truncate
            del d[pos:]
        else:  # a raw byte
            d[pos:pos] = bytes([rng.randrange(256)])
    return bytes(d)


@pytest.fixture(scope="module")
def graph():
    return import_tflite(zoo_model("mobilenet_tiny"), "m")


def _clean(spec: str, graph) -> str:
    """'ok' or 'refused'; anything else than a ToolError fails the test with the case."""
    try:
        s = load_scheme(spec)
        assert isinstance(s, Scheme)
        resolve(graph, s)
        return "ok"
    except ToolError as e:
        assert "\n" not in str(e), f"{spec!r}: a multi-line error: {e}"
        return "refused"
    except Exception as e:
        raise AssertionError(f"scheme {spec!r}: {type(e).__name__}: {e}") from e


def test_mutated_scheme_files_load_or_are_refused_cleanly(tmp_path, graph) -> None:
    rng = random.Random(16)
    bases = [p.read_bytes() for p in sorted((ROOT / "schemes").glob("*.toml"))]
    bases.append(
        b"bias_layers = 3\n[weights]\n-1 = 1.0\n-2 = 0.5\n[[patch]]\nstart = 0\nuntil = 2\npatches = 2\n"
    )
    outcome: collections.Counter[str] = collections.Counter()
    f = tmp_path / "s.toml"
    for case in range(1500):
        data = _mutate(rng, rng.choice(bases))
        f.write_bytes(data)
        try:
            outcome[_clean(str(f), graph)] += 1
        except AssertionError as e:
            raise AssertionError(f"case {case} ({data[:200]!r}): {e}") from None
    assert outcome["ok"] > 50 and outcome["refused"] > 500, outcome  # both sides were exercised


def test_random_inline_schemes_parse_or_are_refused_cleanly(graph) -> None:
    rng = random.Random(17)
    outcome: collections.Counter[str] = collections.Counter()
    for _ in range(3000):
        spec = (
            _random_text(rng)
            if rng.random() < 0.7
            else _mutate(rng, b"bias=3,-1=1,-2=0.5").decode("utf-8", "replace")
        )
        if rng.random() < 0.05:
            spec *= rng.randint(10, 60)  # far longer than a file name may be
        outcome[_clean(spec, graph)] += 1
    assert outcome["ok"] > 100 and outcome["refused"] > 1000, outcome


def test_accepted_random_schemes_compile_or_are_refused_cleanly(graph) -> None:
    """The schemes the loader accepts, through the training compiler (host only, no build)."""
    rng = random.Random(18)
    compiled = refused = 0
    for _ in range(40):
        parts = [f"bias={rng.randint(0, 12)}"]
        for layer in rng.sample(range(-12, 0), rng.randint(0, 4)):
            parts.append(f"{layer}={rng.choice([0.125, 0.25, 0.5, 1])}")
        if rng.random() < 0.3:
            a = rng.randint(0, 8)
            parts.append(f"patch={a}-{a + rng.randint(0, 6)}x{rng.randint(1, 9)}")
        try:
            compile_training(graph, load_scheme(",".join(parts)), BOARD, "m", link=False, lr=0.01)
            compiled += 1
        except ToolError:
            refused += 1
        except Exception as e:
            raise AssertionError(f"scheme {','.join(parts)!r}: {type(e).__name__}: {e}") from e
    assert compiled > 5 and refused > 0, (compiled, refused)


def test_mutated_models_compile_or_are_refused_cleanly() -> None:
    """Models that survive import (tests/test_import.py fuzzes the importer) still go through
    the training compiler or are refused: mutated shapes, quantization and operator options."""
    from tests.import_support import Mutator

    mutator = Mutator(zoo_model("mobilenet_tiny"))
    outcome: collections.Counter[str] = collections.Counter()
    for seed in range(150):
        data, desc = mutator.mutate(seed)
        try:
            g = import_tflite(data, "m")
        except ToolError:
            outcome["import refused"] += 1
            continue
        try:
            compile_training(g, load_scheme("bias=2,-1=1"), BOARD, "m", link=False, lr=0.01)
            outcome["compiled"] += 1
        except ToolError:
            outcome["compile refused"] += 1
        except Exception as e:
            raise AssertionError(
                f"Mutator(mobilenet_tiny).mutate({seed}) ({desc}): {type(e).__name__}: {e}"
            ) from e
    assert outcome["compiled"] > 10 and outcome["import refused"] > 10, outcome


# ------------------------------------------------------------------ absurd options


class Started(AssertionError):
    """Something was started for an option that should have been refused first."""


@pytest.fixture
def nothing_starts(monkeypatch, run_dir) -> None:
    """Starting an emulator, opening a link or building firmware fails the case."""
    from pytools import connect
    from pytools.link import client
    from pytools.session import board as session_board
    from pytools.session import inputs as session_inputs
    from pytools.train import compile_train

    def forbid(what: str) -> Any:
        def f(*a: Any, **k: Any) -> Any:
            raise Started(what)

        return f

    monkeypatch.setattr(emulator, "start", forbid("an emulator"))
    monkeypatch.setattr(client.Link, "open", forbid("a link"))
    monkeypatch.setattr(connect, "open_link", forbid("a link"))
    monkeypatch.setattr(session_board, "open_link", forbid("a link"))
    monkeypatch.setattr(compile_train, "build_firmware", forbid("a firmware build"))
    monkeypatch.setattr(session_inputs, "compile_training", forbid("the training compiler"))


def refused(task: Any, capsys, **kwargs: Any) -> str:
    """Runs a task's body; it must exit 1 with one `error:` line. Returns the line."""
    with pytest.raises(SystemExit) as e:
        task.body(Context(), **kwargs)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and len(err) == 1 and err[0].startswith("error: "), (kwargs, e.value.code, err)
    return err[0]


ABSURD_LR = [float("nan"), float("inf"), -float("inf"), -1e-9, -5.0, 1.0000001, 3.5e38, 1e30, 1e308]
ABSURD_TRAIN: dict[str, list[Any]] = {
    "lr": ABSURD_LR,
    "epochs": [0, -1, 65536, 10**12],
    "seed": [-1, 2**32, 10**30],
    "limit": [-1, -(10**9)],
    "held_out": [-3],
    "save_every": ["-1", "abc", "1e3", "1.5", "\x00"],
    "lr_schedule": ["", "LINEAR", "../x", "\x00", "cosine"],
    "split": ["nope", "../../x", "\x00"],
    "dataset": ["../etc", "x" * 100, "", "digits/../x", "nope", "\x00"],
    "board": ["../boards/mps2_an500", "nucleo_f999", "/etc/passwd", "\x00", "x" * 300],
    "scheme": ["bias", "=", "bias=x", "-1=0.3", "patch=5-1x2", "1=1", "gradients=f16", "x" * 400, "a\x00b"],
    "model": ["/nonexistent/m.tflite", "MODEL_GARBAGE", "MODEL_DIR"],
    "out": ["/proc/tinytrain/s", "FILE_PARENT/s", "FILE_ITSELF"],
}


def _train_cases(tmp_path: Path) -> list[dict[str, Any]]:
    rng = random.Random(19)
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(bytes(rng.randrange(256) for _ in range(3000)))
    (tmp_path / "file").write_text("not a folder")
    subst = {
        "MODEL_GARBAGE": str(garbage),
        "MODEL_DIR": str(tmp_path),
        "FILE_PARENT/s": str(tmp_path / "file" / "s"),
        "FILE_ITSELF": str(tmp_path / "file"),
    }
    cases = [{k: subst.get(v, v) if isinstance(v, str) else v} for k, vs in ABSURD_TRAIN.items() for v in vs]
    for _ in range(30):  # and a few absurd values at once
        keys = rng.sample(sorted(ABSURD_TRAIN), rng.randint(2, 4))
        cases.append(
            {k: subst.get(v, v) if isinstance(v := rng.choice(ABSURD_TRAIN[k]), str) else v for k in keys}
        )
    return cases


def test_absurd_train_options_are_refused_before_anything_starts(tmp_path, capsys, nothing_starts) -> None:
    defaults = {"epochs": 1, "limit": 5, "out": str(tmp_path / "s")}
    for case in _train_cases(tmp_path):
        try:
            line = refused(tasks.train, capsys, **{**defaults, **case})
        except Started as e:
            raise AssertionError(f"train {case}: accepted, and {e} was started") from None
        assert not (tmp_path / "s").exists(), case
    assert "SGD with QAS diverges" in line or line  # the last line is one clean error
    assert not list(emulator.RUN.iterdir())


def test_absurd_compile_infer_pull_plan_ping_options_are_refused(tmp_path, capsys, nothing_starts) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(zoo_model("mobilenet_tiny"))
    (tmp_path / "file").write_text("not a folder")
    bad_out = ["/proc/tinytrain/x.plan", str(tmp_path / "file" / "x"), str(tmp_path)]
    rng = random.Random(20)
    cases: list[tuple[Any, dict[str, Any]]] = []
    for s in ["bias=x", "x" * 300, "-1=0.3", "\x00"]:
        cases.append((tasks.compile, {"model": str(model), "scheme": s}))
    for o in bad_out:
        cases.append((tasks.compile, {"model": str(model), "scheme": "bias=1", "out": o}))
        cases.append((tasks.convert, {"model": str(model), "out": o}))
    cases.append((tasks.compile, {"model": "/nonexistent.tflite", "scheme": "bias=1"}))
    cases.append((tasks.compile, {"model": str(model), "scheme": "bias=1", "board": "../x"}))
    arrays = {
        "objects.npy": np.array([{"a": 1}, None], dtype=object),
        "strings.npy": np.array(["a", "b"]),
        "complex.npy": np.zeros(4, np.complex64),
    }
    for name, arr in arrays.items():
        np.save(tmp_path / name, arr, allow_pickle=True)
    (tmp_path / "text.npy").write_text("1,2,3")
    (tmp_path / "random.npy").write_bytes(rng.randbytes(500))
    (tmp_path / "truncated.npy").write_bytes((tmp_path / "complex.npy").read_bytes()[:90])
    for name in [*arrays, "text.npy", "random.npy", "truncated.npy", "missing.npy"]:
        cases.append(
            (
                tasks.infer,
                {"model": str(model), "inputs": str(tmp_path / name), "out": str(tmp_path / "y.npy")},
            )
        )
    np.save(tmp_path / "ok.npy", np.zeros((1, 4), np.int8))
    for o in ["/proc/tinytrain/y.npy", str(tmp_path / "file" / "y.npy"), str(tmp_path / "y.txt")]:
        cases.append((tasks.infer, {"model": str(model), "inputs": str(tmp_path / "ok.npy"), "out": o}))
    out = str(tmp_path / "t.tflite")
    for lr in ABSURD_LR:
        cases.append((tasks.pull, {"out": out, "model": str(model), "scheme": "bias=1", "lr": lr}))
        cases.append((tasks.plan, {"lr": lr}))
    sessions = {"nonexistent": tmp_path / "nope", "not a session": tmp_path}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_bytes(b"\xff{not json")
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "config.json").write_text("[1, 2]")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "config.json").write_text('{"board": {"name": "mps2_an500"}}')
    for folder in [*sessions.values(), tmp_path / "bad", tmp_path / "list", tmp_path / "partial"]:
        cases.append((tasks.pull, {"out": out, "session": str(folder)}))
    for o in ["/proc/tinytrain/t.tflite", str(tmp_path / "file" / "t.tflite"), str(tmp_path / "t.onnx"), ""]:
        cases.append((tasks.pull, {"out": o, "model": str(model), "scheme": "bias=1"}))
    cases.append((tasks.pull, {"out": out, "allow_older": True}))
    cases.append((tasks.pull, {"out": out, "board": "../../x"}))
    for kw in ({"seeds": "a,b"}, {"seeds": "-1"}, {"steps": 0}, {"steps": -5}, {"budget": "abc"},
               {"budget": "-5KB"}, {"budget": "1e999KB"}, {"out": "/proc/tinytrain/s.toml"}):  # fmt: skip
        cases.append((tasks.plan, kw))
    for kw in ({"count": 0}, {"count": -1}, {"size": -1}, {"size": 10**9}):
        cases.append((tasks.ping, kw))
    for task, kwargs in cases:
        try:
            refused(task, capsys, **kwargs)
        except Started as e:
            raise AssertionError(f"{task.name} {kwargs}: accepted, and {e} was started") from None
    assert not (tmp_path / "y.npy").exists() and not (tmp_path / "t.tflite").exists()
    assert len(cases) > 60 and not list(emulator.RUN.iterdir())


def test_a_number_option_given_text_is_a_one_line_error(tmp_path) -> None:
    import subprocess

    for args in (["train", "--epochs", "abc"], ["train", "--lr", "1e"], ["ping", "--count", "x"]):
        r = subprocess.run(
            [sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().startswith(f"error: {args[1]} takes"), r.stderr
