"""Putting a built image on a real board: PlatformIO, st-flash or OpenOCD, whichever is here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from pytools.boards import Board
from pytools.build.builder import FirmwareImage
from pytools.errors import ToolError
from pytools.paths import ROOT

TOOLS = ("pio", "st-flash", "openocd")


def flash_command(board: Board, image: FirmwareImage, tool: str) -> list[str]:
    if tool == "pio":
        # PlatformIO builds from the same manifest (pio_build.py) and uploads over ST-LINK.
        return [which("pio") or "pio", "run", "-d", str(ROOT), "-e", board.name, "-t", "upload"]
    if tool == "st-flash":
        return ["st-flash", "--reset", "write", str(image.bin), f"0x{board.memory.flash_origin:08X}"]
    if tool == "openocd":
        return [
            "openocd",
            "-f",
            "interface/stlink.cfg",
            "-f",
            "target/stm32f7x.cfg",
            "-c",
            f"program {image.elf} verify reset exit",
        ]
    raise ToolError(f"unknown flash tool '{tool}'; choose one of {', '.join(TOOLS)}")


def which(tool: str) -> str | None:
    """A tool beside this Python (the project's .venv: PlatformIO) or on PATH."""
    beside = Path(sys.executable).parent / tool
    return str(beside) if beside.exists() else shutil.which(tool)


def pick_tool(requested: str | None) -> str:
    if requested:
        if not which(requested):
            raise ToolError(f"'{requested}' is not installed")
        return requested
    for tool in TOOLS:
        if which(tool):
            return tool
    raise ToolError(
        "no flashing tool found: install PlatformIO (pip install platformio), "
        "or Debian's stlink-tools (st-flash) or openocd"
    )


def flash_hardware(board: Board, image: FirmwareImage, tool: str | None = None) -> str:
    chosen = pick_tool(tool)
    cmd = flash_command(board, image, chosen)
    if subprocess.run(cmd).returncode != 0:
        raise ToolError(f"flashing {board.name} with {chosen} failed (command: {' '.join(cmd)})")
    return chosen


def flash_image(board: Board, image: FirmwareImage) -> str:
    """Flashes exactly this image (e.g. one with a model embedded): st-flash or OpenOCD.

    PlatformIO uploads what it builds itself, which has no model in it, so it is not used here.
    """
    for tool in ("st-flash", "openocd"):
        if which(tool):
            cmd = flash_command(board, image, tool)
            if subprocess.run(cmd).returncode != 0:
                raise ToolError(f"flashing {board.name} with {tool} failed (command: {' '.join(cmd)})")
            return tool
    raise ToolError("flashing a model needs st-flash or openocd: apt-get install stlink-tools (or openocd)")
