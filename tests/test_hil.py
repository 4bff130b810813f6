"""`invoke hil`: the on-board suite against the emulated boards (what CI runs), and proof that a
check which finds a difference fails and says so in both reports."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytools import hil
from pytools.boards import load_board
from pytools.train.trainer import Trainer

CHECKS = ["identity", "link", "kernels", "training", "cost", "memory", "persistence"]


@pytest.fixture
def hil_dir(tmp_path, monkeypatch, run_dir) -> Path:
    monkeypatch.setattr(hil, "HIL_DIR", tmp_path / "hil")
    return tmp_path / "hil"


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"])
def test_the_suite_passes_on_the_emulated_boards_and_writes_its_reports(
    board_name: str, hil_dir: Path
) -> None:
    run = hil.run_hil(board_name)
    assert run.folder.parent == hil_dir and run.folder.name.endswith(f"-{board_name}")
    assert [c.name for c in run.checks] == CHECKS
    assert run.passed, [(c.name, c.figure, c.detail) for c in run.checks if not c.passed]
    by = {c.name: c for c in run.checks}
    assert f"{hil.TRAIN_STEPS} of {hil.TRAIN_STEPS} steps bit-exact" in by["training"].figure
    assert f"{hil.KERNEL_SAMPLES} of {hil.KERNEL_SAMPLES} forward passes bit-exact" in by["kernels"].figure
    assert "instructions per training step" in by["cost"].figure
    assert "previous save restored" in by["persistence"].detail
    assert "0 wrong answers" in by["link"].figure and " 0 bits flipped" not in by["link"].figure
    core = {"mps2_an500": "Cortex-M7", "mps2_an386": "Cortex-M4"}[board_name]
    assert run.facts["chip"].startswith(f"emulated {core}")

    report = (run.folder / "report.md").read_text()
    for fact in ("firmware build id", "plan CRC-32", "chip", "host", "date"):
        assert f"- {fact}: " in report, fact
    assert f"# Hardware-in-the-loop: {board_name}: PASSED" in report
    suite = ET.parse(run.folder / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("7", "0", "0")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["firmware build id"] == run.facts["firmware build id"]
    assert [t.get("name") for t in suite.iter("testcase")] == CHECKS


@pytest.mark.emulator
def test_a_board_that_trains_differently_from_the_twin_fails_the_training_check(hil_dir, monkeypatch) -> None:
    """The host twin here trains at half the learning rate: the board (at the plan's) no longer
    matches it, and the suite must say so instead of passing."""
    monkeypatch.setattr(hil, "TRAIN_STEPS", 3)
    monkeypatch.setattr(hil, "LINK_PINGS", 5)
    real_step = Trainer.step
    monkeypatch.setattr(Trainer, "step", lambda self, x, label, lr_scale=1.0: real_step(self, x, label, 0.5))
    run = hil.run_hil("mps2_an386")
    by = {c.name: c for c in run.checks}
    assert not run.passed and by["training"].passed is False
    assert "state" in by["training"].detail or "step" in by["training"].detail
    assert by["kernels"].passed, "the forward pass does not depend on the lr"
    assert "**FAIL**" in (run.folder / "report.md").read_text()
    suite = ET.parse(run.folder / "junit.xml").getroot()
    assert suite.get("failures") == "1"
    (case,) = [t for t in suite.iter("testcase") if t.get("name") == "training"]
    assert case.find("failure") is not None


def test_the_reports_mark_skipped_and_failed_checks(tmp_path: Path) -> None:
    run = hil.HilRun(load_board("nucleo_f446re"), tmp_path, facts={"chip": "STM32F4 idcode 0x10006421"})
    run.checks = [
        hil.Check("identity", True, "build x"),
        hil.Check("persistence", None, "-", "torn save skipped"),
        hil.Check("link", False, "3 wrong answers", "a | b"),
    ]
    md, xml = hil.write_reports(run)
    text = md.read_text()
    assert "FAILED" in text and "| link | **FAIL** | 3 wrong answers | a \\| b |" in text
    assert "| persistence | skipped |" in text
    suite = ET.parse(xml).getroot()
    assert (suite.get("failures"), suite.get("skipped")) == ("1", "1")


def test_the_corrupting_port_flips_exactly_one_bit_when_it_strikes() -> None:
    class Echo:
        in_waiting = 0

        def __init__(self) -> None:
            self.sent = b""

        def write(self, data: bytes) -> int:
            self.sent = data
            return len(data)

        def read(self, size: int = 1) -> bytes:
            return self.sent

        def close(self) -> None:
            pass

    port = hil._CorruptingPort(Echo(), 1.0, seed=1)
    port.write(b"\x00" * 32)
    assert sum(bin(b).count("1") for b in port.inner.sent) == 1 and port.injected == 1
