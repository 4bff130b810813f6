"""Board definitions: boards/<name>.toml is the one place each board's facts live.

Every tool (build, linker script, flash, emulator, reports) reads them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytools.build import toml
from pytools.errors import ToolError
from pytools.paths import BOARDS

DEFAULT_BOARD = "mps2_an500"
# --board host: not a board but the host twin (the firmware's C compiled for this machine),
# for the tasks that can run there (infer, train).
HOST = "host"


@dataclass(frozen=True)
class Memory:
    flash_origin: int
    flash_size: int
    ram_origin: int
    ram_size: int
    stack_size: int
    handler_stack_size: int


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    kind: str  # "emulator" or "hardware"
    cpu: str
    bsp: str
    clock_hz: int
    memory: Memory
    counter_unit: str  # "cycles" or "instructions"
    counter_source: str
    baud: int
    max_payload: int
    rx_gap_ms: int  # inter-byte timeout of the board's link, in its bsp_uptime_ms() units
    qemu: dict[str, Any] = field(default_factory=dict)
    pio: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_emulated(self) -> bool:
        return self.kind == "emulator"

    @property
    def timing_note(self) -> str:
        """What a printed cost figure means on this board; print it beside every figure."""
        if self.counter_unit == "instructions":
            return "instructions counted by QEMU under -icount shift=0 (deterministic; not silicon cycles)"
        return f"CPU cycles at {self.clock_hz / 1e6:.0f} MHz ({self.counter_source})"


def board_names() -> list[str]:
    return sorted(p.stem for p in BOARDS.glob("*.toml"))


def load_board(name: str | None) -> Board:
    name = name or DEFAULT_BOARD
    # Only a board file's own name: a name from a command line or a session's config.json is
    # never taken as a path (no "../x", no absolute path).
    if name not in board_names():
        raise ToolError(f"unknown board {name!r}; known boards: {', '.join(board_names())}")
    path = BOARDS / f"{name}.toml"
    try:
        d = toml.loads(path.read_text())
    except toml.TOMLDecodeError as e:
        raise ToolError(f"{path}: not valid TOML: {e}") from e
    try:
        m = d["memory"]
        if d["name"] != name:  # it names build folders and emulator files
            raise ToolError(f"{path}: name = {d['name']!r}, but the file is {name}.toml")
        return Board(
            name=d["name"],
            description=d["description"],
            kind=d["kind"],
            cpu=d["cpu"],
            bsp=d["bsp"],
            clock_hz=int(d["clock_hz"]),
            memory=Memory(
                flash_origin=m["flash_origin"],
                flash_size=m["flash_size"],
                ram_origin=m["ram_origin"],
                ram_size=m["ram_size"],
                stack_size=m["stack_size"],
                handler_stack_size=m["handler_stack_size"],
            ),
            counter_unit=d["counter"]["unit"],
            counter_source=d["counter"]["source"],
            baud=int(d["serial"]["baud"]),
            max_payload=int(d["link"]["max_payload"]),
            rx_gap_ms=int(d["link"]["rx_gap_ms"]),
            qemu=d.get("qemu", {}),
            pio=d.get("pio", {}),
            raw=d,
        )
    except KeyError as e:
        raise ToolError(f"{path}: missing key {e}") from e
