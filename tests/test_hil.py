"""`invoke hil`: the on-board suite against the emulated boards (what CI runs), and proof that a
check which finds a difference fails and says so in both reports."""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
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
    # The suite links the plan into the diagnostic build, which carries out DIAG_SAVE_ABORT:
    # the torn save runs, and the save before it is the one restored.
    assert "torn save (64 B then power lost): previous save restored" in by["persistence"].detail
    assert run.facts["firmware"].startswith("the diagnostic build")
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


@pytest.mark.emulator
def test_a_host_that_keeps_sending_during_a_slow_erase_loses_nothing(run_dir) -> None:
    """A flash erase that takes time (simulated on the emulated M4: 50 ms of virtual time, some
    seconds of wall time under QEMU): the host's SAVE waits without retransmitting (it holds off
    while the board erases), and a host that keeps sending anyway (a SAVE followed at once by
    20 PINGs, about 700 B: within the 1 KB receive ring that the erase loop fills, as the STM32's
    RAM-resident USART interrupt does) gets every reply, in order, exact. 40 PINGs (1.5 KB)
    overflow the ring and lose replies: a host must not have more than the ring in flight, and
    the stop-and-wait client never has more than one request."""
    from pytools import emulator, persist
    from pytools.flashing import compile_training_firmware
    from pytools.link import frame as fr
    from pytools.link.client import Link
    from pytools.link.protocol import Msg

    board = load_board("mps2_an386")
    slow = dataclasses.replace(
        board,
        name="mps2_an386_slow_erase",
        raw={**board.raw, "persist": {**board.raw["persist"], "simulated_erase_us": 50_000}},
    )
    ct, _ = compile_training_firmware(slow)
    name = f"slow-erase-{uuid.uuid4().hex[:6]}"
    emu = emulator.start(slow, ct.image.elf, name=name)
    try:
        with Link.open(emu.url) as link:
            link.request(Msg.PING, b"x")
            virtual0 = link.info()["counter"]
            t0 = time.monotonic()
            first = persist.save(link)
            seconds = time.monotonic() - t0
            erase_cost = link.info()["counter"] - virtual0
            assert erase_cost >= 50_000_000, "the erase took its simulated 50 ms (instructions)"
            assert seconds > link.timeout, "longer than a reply normally takes: the host had to hold off"
            assert link.stats.retransmits == 0 and link.stats.timeouts == 0, (seconds, link.stats)

            # A host that does not wait: SAVE, then PINGs straight behind it, all in flight.
            rng = random.Random(3)
            pings = [(seq, rng.randbytes(rng.randrange(8, 24))) for seq in range(100, 120)]
            assert sum(len(fr.encode(Msg.PING, s, p)) for s, p in pings) < 1024
            burst = fr.encode(Msg.SAVE, 99) + b"".join(fr.encode(Msg.PING, s, p) for s, p in pings)
            link.port.write(burst)
            dec, got = fr.Decoder(), []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len([f for f in got if f.seq >= 99]) < 1 + len(pings):
                got += [f for f in dec.feed(link.port.read(4096)) if isinstance(f, fr.Frame)]
            replies = [f for f in got if f.seq >= 99]
            assert [f.seq for f in replies] == [99, *(s for s, _ in pings)]
            assert replies[0].type == Msg.SAVE_RSP
            assert [(f.type, f.payload) for f in replies[1:]] == [(Msg.PONG, p) for _, p in pings]
            assert not [f for f in dec.feed(b"") if isinstance(f, fr.Damaged)]
            assert persist.info(link)["slot1_status_name"] == "valid" or first["slot"] == 1
    finally:
        emulator.stop(name)
        emulator.erase_flash(name)
