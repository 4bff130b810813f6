"""The emulated board: QEMU mps2-an500 running the firmware, serial on a loopback TCP port.

`start` launches QEMU directly (no wrapper, so its own pid is what we stop) in its own
session, records pid/port/log in .run/<name>.json, and returns once QEMU listens. QEMU
holds the guest until the first client connects, so that client sees the boot log.
`stop` ends QEMU by that pid. Semihosting passes the firmware's exit code out as QEMU's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pytools.boards import Board
from pytools.errors import ToolError
from pytools.paths import RUN

QEMU = "qemu-system-arm"


@dataclass
class Emulator:
    name: str  # state name: the board's name for `invoke flash`, unique ones for tests
    board: str
    pid: int
    port: int
    elf: str
    log: str
    started: float

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return _is_qemu(self.pid)

    def wait(self, timeout: float) -> int | None:
        """Waits for QEMU to exit; its exit code (the firmware's), or None if still running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # not our child (started by another invoke)
                if not self.alive():
                    return None
                pid, status = 0, 0
            if pid == self.pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
        return None

    def log_text(self) -> str:
        return Path(self.log).read_text(errors="replace") if Path(self.log).exists() else ""


def _is_qemu(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return QEMU.encode() in cmdline and ") Z " not in stat  # not a zombie


def _state_file(name: str) -> Path:
    return RUN / f"{name}.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(board: Board, elf: Path, port: int) -> list[str]:
    q = board.qemu
    return [
        QEMU,
        "-M",
        q["machine"],
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on",
        "-semihosting-config",
        "enable=on,target=native",
        "-icount",
        q["icount"],
        "-kernel",
        str(elf),
    ]


def start(board: Board, elf: Path, name: str | None = None) -> Emulator:
    """Starts the emulated board (replacing one already running under the same name)."""
    if not board.is_emulated:
        raise ToolError(f"{board.name} is a real board; only emulated boards run in QEMU")
    name = name or board.name
    stop(name)
    RUN.mkdir(parents=True, exist_ok=True)
    log = RUN / f"{name}.log"
    for _ in range(5):  # another process may grab the free port between probe and bind
        port = _free_port()
        with open(log, "wb") as out:
            try:
                proc = subprocess.Popen(
                    command(board, elf, port),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C in the terminal must not kill the board
                )
            except FileNotFoundError as e:
                raise ToolError(f"{QEMU} not found: run ./setup.sh (installs qemu-system-arm)") from e
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if "waiting for connection" in log.read_text(errors="replace"):
                emu = Emulator(name, board.name, proc.pid, port, str(elf), str(log), time.time())
                _state_file(name).write_text(json.dumps(asdict(emu)))
                return emu
            time.sleep(0.02)
        text = log.read_text(errors="replace")
        if proc.poll() is None:
            proc.kill()
        if "Address already in use" not in text:
            raise ToolError(f"QEMU did not start:\n{text.strip()}")
    raise ToolError("QEMU could not bind a loopback port after 5 tries")


def find(name: str) -> Emulator | None:
    """The running emulator recorded under name, if it is still running."""
    f = _state_file(name)
    if not f.exists():
        return None
    try:
        emu = Emulator(**json.loads(f.read_text()))
    except (ValueError, TypeError):
        f.unlink(missing_ok=True)
        return None
    if not emu.alive():
        f.unlink(missing_ok=True)
        return None
    return emu


def stop(name: str) -> bool:
    """Stops the emulator recorded under name by its own pid; True if one was running."""
    emu = find(name)
    _state_file(name).unlink(missing_ok=True)
    if emu is None:
        return False
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        try:
            os.kill(emu.pid, sig)
        except ProcessLookupError:
            return True
        if emu.wait(grace) is not None or not emu.alive():
            return True
    return True
