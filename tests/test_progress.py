"""Progress written to a log file: whole lines, a bounded number of them, no carriage returns."""

from __future__ import annotations

import io
import subprocess
import sys

from pytools import progress as progress_mod
from pytools.paths import ROOT
from pytools.progress import LogProgress, progress


def test_log_lines_every_tenth_and_a_last_line(monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(progress_mod, "LOG_GAP", 0.0)  # every 10 % however fast the loop
    bar = LogProgress(range(200), desc="epoch 1/3 train", unit="step", file=out)
    for k in bar:
        bar.set_postfix({"loss": f"{k / 100:.3f}"}, refresh=False)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10  # 10 %, 20 %, ... 90 %, and the last line at 100 %
    assert lines[0].startswith("epoch 1/3 train: 20/200 (10 %)") and "loss=0.190" in lines[0]
    assert lines[-1].startswith("epoch 1/3 train: 200/200 (100 %)") and "loss=1.990" in lines[-1]


def test_fast_work_in_a_log_gives_one_line() -> None:
    out = io.StringIO()
    for _ in LogProgress(range(10_000), desc="held-out", unit="sample", file=out):
        pass
    assert out.getvalue().count("\n") == 1 and "10000/10000 (100 %)" in out.getvalue()


def test_progress_to_a_pipe_is_lines_and_to_a_terminal_is_tqdm(monkeypatch) -> None:
    code = (
        "from pytools.progress import progress\n"
        "import time\n"
        "for _ in progress(range(30), desc='work', unit='it'):\n"
        "    time.sleep(0.1)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "\r" not in r.stderr
    assert r.stderr.splitlines()[-1].startswith("work: 30/30 (100 %)")
    monkeypatch.setattr(progress_mod, "is_terminal", lambda stream=None: True)
    assert type(progress(range(3), desc="x")).__name__ == "tqdm"


def test_a_long_build_says_what_it_compiles_and_a_short_one_says_nothing(capsys, monkeypatch) -> None:
    from pytools.build import builder

    clock = iter([0.0, 1.0, 6.0, 30.0])  # start; a file done at 1 s, one at 6 s; the end at 30 s
    monkeypatch.setattr(builder.time, "monotonic", lambda: next(clock, 0.0))
    lines = builder.StaleProgress(78, "mps2_an500: compiling 78 of 78 C files")
    lines.done()
    lines.done()
    lines.close()
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "build     mps2_an500: compiling 78 of 78 C files (a first build takes a while; later ones reuse it)",
        "build     2/78 compiled, 6 s",
        "build     mps2_an500: compiling 78 of 78 C files: done in 30.0 s",
    ]
    quiet = builder.StaleProgress(1, "plan.S")
    quiet.done()
    quiet.close()
    assert capsys.readouterr().err == ""
