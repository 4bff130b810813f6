"""The emulated board: QEMU mps2-an500 running the firmware, serial on a loopback TCP port.

`start` launches QEMU directly (no wrapper, so its own pid is what we stop) in its own
session, records pid/port/log in .run/<name>.json, and returns once QEMU listens. QEMU
holds the guest until the first client connects, so that client sees the boot log.
`stop` ends QEMU by that pid. Semihosting passes the firmware's exit code out as QEMU's.

Persistence: the machine's RAM (mps2-an500: the 16 MB PSRAM at 0x60000000, where
boards/mps2_an500.toml puts the slots for trained state) is a file, .run/<name>.flash,
mapped shared. A guest reset (AIRCR.SYSRESETREQ) re-loads only the ELF's segments, and a new
QEMU under the same name maps the same file, so saved state survives both. `stop` keeps the
file; `erase_flash` deletes it.
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
from pytools.validate import name as valid_name

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
    return RUN / f"{valid_name(name, 'emulator name')}.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flash_file(name: str) -> Path:
    """The file behind the emulated board's persistence region (kept across restarts)."""
    return RUN / f"{valid_name(name, 'emulator name')}.flash"


def _prepare_flash(board: Board, name: str) -> Path | None:
    """Creates the backing file on first use: sparse, with the slots reading as erased flash
    (0xFF) rather than zeros."""
    size = board.qemu.get("persist_backend_size")
    if not size:
        return None
    path = flash_file(name)
    if path.exists() and path.stat().st_size == size:
        return path
    persist = board.raw["persist"]
    start = persist["region_origin"] - board.qemu["persist_backend_base"]
    if start < 0 or start + persist["region_size"] > size:
        raise ToolError(
            f"boards/{board.name}.toml: the [persist] region lies outside the QEMU memory backend"
        )
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.truncate(size)
        f.seek(start)
        f.write(b"\xff" * persist["region_size"])
    tmp.replace(path)
    return path


def _region(board: Board) -> tuple[int, int]:
    """(offset in the backing file, size) of the persistence region."""
    persist = board.raw["persist"]
    return persist["region_origin"] - board.qemu["persist_backend_base"], persist["region_size"]


def export_flash(board: Board, name: str, dest: Path) -> None:
    """Copies the persistence region of the emulated board `name` to dest (just the region:
    the backing file is the machine's whole 16 MB PSRAM)."""
    start, size = _region(board)
    with open(flash_file(name), "rb") as f:
        f.seek(start)
        dest.write_bytes(f.read(size))


def import_flash(board: Board, name: str, src: Path) -> None:
    """Gives the emulated board `name` the persistence region saved by export_flash."""
    start, size = _region(board)
    data = src.read_bytes()
    if len(data) != size:
        raise ToolError(
            f"{src} holds {len(data):,} B, not the {size:,} B of {board.name}'s persistence region"
        )
    path = _prepare_flash(board, name)
    assert path is not None
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(data)


def erase_flash(name: str) -> None:
    """Forgets what the emulated board named `name` persisted (its backing file)."""
    flash_file(name).unlink(missing_ok=True)


def command(board: Board, elf: Path, port: int, flash: Path | None = None) -> list[str]:
    q = board.qemu
    backend = []
    if flash is not None:
        backend = [
            "-object",
            f"memory-backend-file,id=persist,size={q['persist_backend_size']},mem-path={flash},share=on",
            "-machine",
            "memory-backend=persist",
        ]
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
        *backend,
        "-kernel",
        str(elf),
    ]


def start(board: Board, elf: Path, name: str | None = None) -> Emulator:
    """Starts the emulated board (replacing one already running under the same name)."""
    if not board.is_emulated:
        raise ToolError(f"{board.name} is a real board; only emulated boards run in QEMU")
    name = valid_name(name or board.name, "emulator name")  # it names files in RUN
    stop(name)
    RUN.mkdir(parents=True, exist_ok=True)
    flash = _prepare_flash(board, name)
    log = RUN / f"{name}.log"
    for _ in range(5):  # another process may grab the free port between probe and bind
        port = _free_port()
        with open(log, "wb") as out:
            try:
                proc = subprocess.Popen(
                    command(board, elf, port, flash),
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
