"""Finding and opening a board's serial link: the emulator's socket or a real port."""

from __future__ import annotations

import os
import sys
from typing import Any

from pytools import emulator
from pytools.boards import DEFAULT_BOARD, Board, load_board
from pytools.errors import ToolError
from pytools.link.client import Link

ST_LINK_VID = 0x0483
BOARD_ENV = "TINYTRAIN_BOARD"


def board_from_command_line(argv: list[str] | None = None) -> str | None:
    """The --board given to any task on this invoke line.

    `invoke flash train --board nucleo_f746zg` hands --board to `train` only; reading it
    here lets `flash` use it too, so one --board applies to every task on the line that
    was not given its own.
    """
    args = sys.argv[1:] if argv is None else argv
    for i, a in enumerate(args):
        if a in ("--board", "-b") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--board="):
            return a.split("=", 1)[1]
    return None


def resolve_board(name: str | None, argv: list[str] | None = None) -> Board:
    """Explicit --board, else one elsewhere on the line, else $TINYTRAIN_BOARD, else the emulator."""
    return load_board(name or board_from_command_line(argv) or os.environ.get(BOARD_ENV) or DEFAULT_BOARD)


def find_stlink_port() -> str:
    from serial.tools import list_ports

    ports = [p for p in list_ports.comports() if p.vid == ST_LINK_VID]
    if not ports:
        raise ToolError(
            "no ST-LINK virtual COM port found: connect the board's ST-LINK USB port, "
            "or name the port with --port (e.g. /dev/ttyACM0 or COM3)"
        )
    if len(ports) > 1:
        names = ", ".join(p.device for p in ports)
        raise ToolError(f"several ST-LINK ports ({names}): choose one with --port")
    return ports[0].device


def port_url(board: Board, port: str | None) -> str:
    """A pyserial URL for the board: --port if given, the running emulator, or the ST-LINK."""
    if port:
        return port
    if board.is_emulated:
        emu = emulator.find(board.name)
        if emu is None:
            raise ToolError(f"the emulated board {board.name} is not running: start it with `invoke flash`")
        return emu.url
    return find_stlink_port()


def open_link(board: Board, port: str | None = None, **kw: Any) -> Link:
    return Link.open(port_url(board, port), baudrate=board.baud, **kw)
