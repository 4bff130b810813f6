"""The model path end to end: .tflite -> graph -> plan -> firmware image, with a memory
report whose totals come from the linker, not from an estimate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pytools.boards import Board
from pytools.build.builder import FirmwareImage, build_firmware
from pytools.errors import ToolError
from pytools.model.compiler import Compiled, compile_graph
from pytools.model.ir import Graph


@dataclass
class Converted:
    name: str
    board: Board
    compiled: Compiled
    base: FirmwareImage  # the firmware without a model
    image: FirmwareImage | None  # with the model; None when it does not fit
    link_error: str = ""

    @property
    def fits(self) -> bool:
        return self.image is not None


def load_model(path: Path) -> Graph:
    from pytools.model.tflite_import import load_tflite

    if not path.is_file():
        raise ToolError(f"no model at {path}")
    return load_tflite(path)


def convert(path: Path, board: Board) -> Converted:
    graph = load_model(path)
    compiled = compile_graph(graph, board, path.stem)
    base = build_firmware(board)
    try:
        image = build_firmware(board, compiled.blob, compiled.arena)
        return Converted(path.stem, board, compiled, base, image)
    except ToolError as e:
        return Converted(path.stem, board, compiled, base, None, str(e))


def _row(label: str, n: int, note: str = "") -> str:
    return f"  {label:<18}{n:>11,} B   {note}".rstrip()


def memory_report(c: Converted) -> str:
    b, m = c.board, c.board.memory
    base_ram, base_flash = c.base.regions["RAM"].used, c.base.regions["FLASH"].used
    plan_flash = len(c.compiled.blob)
    lines = [
        f"model     {c.name}: {len(c.compiled.plan.ops)} operators, {len(c.compiled.plan.tensors)} tensors",
        f"board     {b.name}: {m.flash_size // 1024} KiB flash, {m.ram_size // 1024} KiB SRAM",
        "SRAM",
        _row(
            "arena",
            c.compiled.arena,
            f"activations {c.compiled.activation_bytes:,} + scratch {c.compiled.scratch_bytes:,} "
            f"(lower bound: {c.compiled.peak_live:,} B alive at once)",
        ),
        _row("firmware", base_ram, "stacks, link buffers, .data/.bss (linker)"),
    ]
    ram_total = c.image.regions["RAM"].used if c.image else base_ram + c.compiled.arena
    flash_total = c.image.regions["FLASH"].used if c.image else base_flash + plan_flash
    src = "linker" if c.image else "sum; the link failed"
    lines += [
        _row("total", ram_total, f"of {m.ram_size:,} ({100 * ram_total / m.ram_size:.1f} %, {src})"),
        "flash",
        _row("weights", c.compiled.weights, "constants in the plan: weights, biases, multipliers"),
        _row("plan tables", c.compiled.tables, "tensors, operators, parameters"),
        _row("firmware", base_flash, "code and constants (linker)"),
        _row("total", flash_total, f"of {m.flash_size:,} ({100 * flash_total / m.flash_size:.1f} %, {src})"),
    ]
    return "\n".join(lines)


def check_fits(c: Converted) -> None:
    if not c.fits:
        raise ToolError(
            f"{c.name} does not fit {c.board.name}:\n{memory_report(c)}\n{c.link_error.splitlines()[0]}"
        )
