"""Shared fixtures: the firmware image, a fresh emulated board per test, a link to it."""

from __future__ import annotations

import json
import os
import random
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Emulators started by tests keep their state and logs out of the user's .run/ (set before
# pytools.paths is imported: it reads this once).
os.environ.setdefault("TINYTRAIN_RUN_DIR", tempfile.mkdtemp(prefix="tinytrain-test-run-"))

from pytools import emulator
from pytools.boards import Board, load_board
from pytools.build.builder import FirmwareImage, build_firmware
from pytools.link.client import Link


@pytest.fixture(scope="session")
def emu_board() -> Board:
    return load_board("mps2_an500")


@pytest.fixture(scope="session")
def image(emu_board: Board) -> FirmwareImage:
    """The diagnostic build (--diag): the link tests drive its self-test sink and fault
    injection, which every other build refuses."""
    return build_firmware(emu_board, diag=True)


@pytest.fixture
def emu(emu_board: Board, image: FirmwareImage) -> Iterator[emulator.Emulator]:
    """A freshly booted emulated board under a name of its own (a user's board is untouched)."""
    name = f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    e = emulator.start(emu_board, image.elf, name=name)
    try:
        yield e
    finally:
        emulator.stop(name)
        for suffix in (".log", ".json"):
            (emulator.RUN / f"{name}{suffix}").unlink(missing_ok=True)


@pytest.fixture
def link(emu: emulator.Emulator) -> Iterator[Link]:
    with Link.open(emu.url) as lk:
        yield lk


READ_UNIT = 64  # bytes: a read of this many is corrupted with the port's rate


class CorruptingPort:
    """Wraps a serial port and flips one random bit in a fraction of writes and reads."""

    def __init__(self, inner, rate: float, seed: int, tx: bool = True, rx: bool = True) -> None:
        self.inner, self.rate, self.tx, self.rx = inner, rate, tx, rx
        self.rng = random.Random(seed)
        self.injected_tx = 0
        self.injected_rx = 0

    def _flip(self, data: bytes) -> bytes:
        b = bytearray(data)
        bit = self.rng.randrange(len(b) * 8)
        b[bit // 8] ^= 1 << (bit % 8)
        return bytes(b)

    def write(self, data: bytes) -> int | None:
        if self.tx and data and self.rng.random() < self.rate:
            data = self._flip(data)
            self.injected_tx += 1
        return self.inner.write(data)

    def read(self, size: int = 1) -> bytes:
        data = self.inner.read(size)
        # rate is per frame-sized piece (READ_UNIT bytes), not per read call: the host reads
        # byte by byte while QEMU trickles a reply in, and a per-call rate then damaged almost
        # every long reply (a 200-byte PONG read in 200 calls), so nothing could ever pass.
        if self.rx and data and self.rng.random() < self.rate * len(data) / READ_UNIT:
            data = self._flip(data)
            self.injected_rx += 1
        return data

    @property
    def in_waiting(self) -> int:
        return self.inner.in_waiting

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def run_dir(tmp_path, monkeypatch) -> Path:
    """A temporary emulator run directory: emulator.RUN is patched, because the conftest has
    imported pytools before any test could set TINYTRAIN_RUN_DIR."""
    d = tmp_path / "run"
    d.mkdir()
    monkeypatch.setattr(emulator, "RUN", d)
    return d


def jsonl(path: Path) -> list[dict]:
    """The rows of a session's .jsonl file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- the same tests on every emulated core -------------------------------------------------

EMULATED_BOARDS = ("mps2_an500", "mps2_an386")  # Cortex-M7, Cortex-M4


@pytest.fixture(params=EMULATED_BOARDS, ids=["cortex-m7", "cortex-m4"])
def any_board(request) -> Board:
    """Each emulated board in turn (tests that must hold on every core)."""
    return load_board(request.param)


@pytest.fixture
def any_emu(any_board: Board) -> Iterator[emulator.Emulator]:
    name = f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    # The diagnostic build: the fault and stack-guard tests on every core inject faults (DIAG_FAULT).
    e = emulator.start(any_board, build_firmware(any_board, diag=True).elf, name=name)
    try:
        yield e
    finally:
        emulator.stop(name)
        for suffix in (".log", ".json", ".flash"):
            (emulator.RUN / f"{name}{suffix}").unlink(missing_ok=True)


@pytest.fixture
def any_link(any_emu: emulator.Emulator) -> Iterator[Link]:
    with Link.open(any_emu.url) as lk:
        yield lk
