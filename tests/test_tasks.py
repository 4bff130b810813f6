"""The invoke tasks as a user types them."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from pytools.connect import board_from_command_line, resolve_board
from pytools.paths import ROOT


@pytest.mark.parametrize(
    ("argv", "board"),
    [
        (["flash", "train", "--board", "nucleo_f746zg"], "nucleo_f746zg"),
        (["flash", "--board=disco_f746ng", "info"], "disco_f746ng"),
        (["flash", "-b", "mps2_an500", "train"], "mps2_an500"),
        (["flash", "train"], None),
    ],
)
def test_one_board_serves_every_task_on_the_line(argv: list[str], board: str | None) -> None:
    assert board_from_command_line(argv) == board


def test_board_resolution_order(monkeypatch) -> None:
    monkeypatch.setenv("TINYTRAIN_BOARD", "disco_f746ng")
    assert resolve_board("nucleo_f746zg", ["x", "--board", "mps2_an500"]).name == "nucleo_f746zg"
    assert resolve_board(None, ["x", "--board", "mps2_an500"]).name == "mps2_an500"
    assert resolve_board(None, ["x"]).name == "disco_f746ng"
    monkeypatch.delenv("TINYTRAIN_BOARD")
    assert resolve_board(None, ["x"]).name == "mps2_an500"


def invoke(*args: str, run_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, "TINYTRAIN_RUN_DIR": str(run_dir)}
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.emulator
def test_flash_info_stop_on_the_default_emulated_board(tmp_path) -> None:
    r = invoke("flash", "info", "ping", "stop", run_dir=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "emulated board mps2_an500 running" in out
    assert "boot: board mps2_an500" in out  # the firmware's own log, decoded
    assert "flash      " in out and "of 1,048,576 bytes used" in out
    assert "(320 KiB at 0x20000000)" in out
    assert "-icount shift=0" in out  # every printed timing figure says what it is
    assert "10 pings of 64 bytes" in out
    assert "stopped mps2_an500" in out
    assert not list(tmp_path.glob("*.json")), "stop left the emulator's state behind"


@pytest.mark.emulator
def test_board_given_once_applies_to_flash_and_info(tmp_path) -> None:
    r = invoke("flash", "info", "--board", "mps2_an500", run_dir=tmp_path)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.count("mps2_an500") >= 3
    finally:
        invoke("stop", run_dir=tmp_path)


def test_info_without_a_running_emulator_says_what_to_do(tmp_path) -> None:
    r = invoke("info", run_dir=tmp_path)
    assert r.returncode == 1
    assert "not running: start it with `invoke flash`" in r.stderr
    assert "Traceback" not in r.stderr


def test_an_unknown_board_is_a_clear_error(tmp_path) -> None:
    r = invoke("build", "--board", "nucleo_f999", run_dir=tmp_path)
    assert r.returncode == 1 and "unknown board 'nucleo_f999'" in r.stderr


@pytest.mark.emulator
def test_monitor_shows_timestamped_logs_and_decoded_frames(tmp_path) -> None:
    r = invoke("flash", "monitor", "--seconds", "1", "--frames", "stop", run_dir=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    boot = next(line for line in lines if "boot: board mps2_an500" in line)
    assert re.match(r"\d\d:\d\d:\d\d\.\d{3} \[board +\d+ ms\] info ", boot), boot
    assert any(re.search(r"rx HELLO_RSP +seq=1 +80 bytes", line) for line in lines), r.stdout
    assert "connected to mps2_an500" in r.stdout


@pytest.mark.emulator
def test_flash_train_with_no_board_runs_a_session_on_the_emulated_board(tmp_path) -> None:
    r = invoke(
        "flash",
        "train",
        "--epochs",
        "1",
        "--limit",
        "30",
        "--held-out",
        "100",  # all 510 held-out samples, twice, on an emulator sharing 2 cores: past the time-out
        "--out",
        str(tmp_path / "s"),
        run_dir=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "flash: `train` will start the emulated board mps2_an500" in r.stdout
    assert "held-out accuracy by epoch (0 = before training)" in r.stdout
    assert (tmp_path / "s" / "steps.jsonl").read_text().count("\n") == 30
    assert "lr sweep" in r.stderr and "<- chosen" in r.stdout  # no --lr: swept on the host twin
    assert not list((tmp_path).glob("*.json")), "the session left an emulator running"


def test_compare_tflm_gives_each_model_its_row(tmp_path) -> None:
    """A model that cannot be imported gets a row saying why, and the others still get theirs."""
    from pytools.model.tflite_export import write_tflite
    from tests.import_support import GraphMaker, quant
    from tests.test_import import BO, RawCode, RawOp, RawTensor, tiny, write_raw

    tensors = [RawTensor(n, [1, 4], scale=[0.1]) for n in ("in", "a", "b")]
    codes = [RawCode(BO.SOFTMAX, BO.SOFTMAX), RawCode(BO.GELU, 127)]
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(write_raw(tiny(codes, [RawOp(0, [0], [1]), RawOp(1, [1], [2])], tensors)))
    g = GraphMaker(1)
    x = g.t("x", (1, 16), "int8", quant(0.1, 3))
    y = g.t("y", (1, 16), "int8", quant(1 / 256, -128))
    g.op("LOGISTIC", [x], [y])
    good = tmp_path / "good.tflite"
    good.write_bytes(write_tflite(g.graph([x], [y], "good")))
    r = invoke("compare-tflm", "--models", f"{bad},{good}", run_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| bad") or line.startswith("| good")]
    assert len(rows) == 2, r.stdout
    assert "ours: bad: 1 operator of the model has no forward kernel" in rows[0]
    assert "operator #1 (GELU): inputs tensor #1 'a'; outputs tensor #2 'b'" in rows[0]
    assert re.match(r"\| good \| [\d,]+ B \| [\d,]+ B \| [\d,]+ B \| \d+% \|", rows[1]), rows[1]


def test_each_short_flag_means_one_option_in_every_task() -> None:
    from invoke import Task

    import tasks

    meaning: dict[str, set[str]] = {}
    for name in dir(tasks):
        t = getattr(tasks, name)
        if isinstance(t, Task):
            for arg in t.get_arguments():
                for flag in (n for n in arg.names if len(n) == 1 and n != arg.name):
                    meaning.setdefault(flag, set()).add(arg.name)
    assert {f: m for f, m in meaning.items() if len(m) > 1} == {}
    assert meaning["b"] == {"board"}  # plan's --budget took -b before
    plan = {a.name: a.names for a in tasks.plan.get_arguments()}
    assert plan["budget"] == ("budget",) and "b" in plan["board"]


def test_train_help_lists_what_it_accepts() -> None:
    import datasets

    r = subprocess.run(
        [sys.executable, "-m", "invoke", "--help", "train"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    text = " ".join(r.stdout.split())
    for name in datasets.names():
        assert name in text
        assert f"{name}: {', '.join(datasets.module(name).SPLITS)}" in text  # its splits, default first
    assert "host (the bit-exact host twin" in text and "a short sweep on the host twin" in text


def test_plan_and_bench_say_why_they_do_not_run_on_the_host_twin(tmp_path) -> None:
    r = invoke("plan", "--board", "host", run_dir=tmp_path)
    assert r.returncode == 1 and "fine-tunes every candidate on the host twin already" in r.stderr
    r = invoke("bench", "--board", "host", "--suite", run_dir=tmp_path)
    assert r.returncode == 1 and "the host twin has none of these" in r.stderr
