"""Putting exactly the image we built on a real board, and checking that it runs there.

Every path flashes OUR ELF (or its .bin), the one with the training plan and the build id
in it: pyOCD, OpenOCD, st-flash, or PlatformIO's own upload tools fed that ELF
(`pio pkg exec`). PlatformIO's build (`pio run -t upload`) is not used from here; it builds
the same firmware and plan by itself (pio_build.py reads the plan `invoke flash` selected,
see `select_plan`). After flashing, HELLO's build id must be the image's.

The firmware a real board gets from `invoke flash` is the one `invoke train` needs: the
training plan of the default session (digits model, scheme DEFAULT_SCHEME, lr 0.01) or of
the given model/scheme/lr, so `invoke flash train --board nucleo_f746zg` just works.

Tools and their target names come from boards/<board>.toml [probe] (pyocd_target,
openocd_target).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytools.boards import Board, load_board
from pytools.build.builder import FirmwareImage
from pytools.errors import ToolError
from pytools.paths import BUILD, ROOT

# In order of preference when no --tool is given.
TOOLS = ("pyocd", "openocd", "st-flash", "pio-openocd", "pio-st-flash")
DEFAULT_LR = 0.01  # invoke train's default learning rate (tasks.py)


def probe(board: Board, key: str) -> str:
    value = board.raw.get("probe", {}).get(key)
    if not value:
        raise ToolError(f"boards/{board.name}.toml has no [probe] {key}: this tool cannot flash it")
    return str(value)


def flash_command(board: Board, image: FirmwareImage, tool: str) -> list[str]:
    """The command line that writes this image (its ELF, or its .bin at the flash origin)."""
    origin = f"0x{board.memory.flash_origin:08X}"
    openocd_args = [
        "-f",
        "interface/stlink.cfg",
        "-f",
        probe(board, "openocd_target"),
        "-c",
        f"program {image.elf} verify reset exit",
    ]
    st_flash_args = ["--reset", "write", str(image.bin), origin]
    if tool == "pyocd":
        target = probe(board, "pyocd_target")
        return [which("pyocd") or "pyocd", "load", "--target", target, "--format", "elf", str(image.elf)]
    if tool == "openocd":
        return ["openocd", *openocd_args]
    if tool == "st-flash":
        return ["st-flash", *st_flash_args]
    # PlatformIO's own packaged tools, fed our image (not `pio run -t upload`, which builds).
    pio_exec = [which("pio") or "pio", "pkg", "exec", "--package"]
    if tool == "pio-openocd":
        return [*pio_exec, "tool-openocd", "--", "openocd", *openocd_args]
    if tool == "pio-st-flash":
        return [*pio_exec, "tool-stlink", "--", "st-flash", *st_flash_args]
    raise ToolError(f"unknown flash tool '{tool}'; choose one of {', '.join(TOOLS)}")


def which(tool: str) -> str | None:
    """A tool beside this Python (the project's .venv: pyOCD, PlatformIO) or on PATH."""
    beside = Path(sys.executable).parent / tool
    return str(beside) if beside.exists() else shutil.which(tool)


def pick_tool(board: Board, requested: str | None) -> str:
    if requested:
        if requested not in TOOLS:
            raise ToolError(f"unknown flash tool '{requested}'; choose one of {', '.join(TOOLS)}")
        if not which("pio" if requested.startswith("pio-") else requested):
            raise ToolError(f"'{requested}' is not installed ({_install_hint(requested)})")
        return requested
    for tool in TOOLS:
        needs = "pio" if tool.startswith("pio-") else tool
        key = {"pyocd": "pyocd_target"}.get(tool, "openocd_target" if "openocd" in tool else None)
        if which(needs) and (key is None or board.raw.get("probe", {}).get(key)):
            return tool
    raise ToolError(
        "no flashing tool found: pip install pyocd (in .venv), or apt-get install openocd / "
        "stlink-tools, or install PlatformIO (its tool-openocd / tool-stlink packages)"
    )


def _install_hint(tool: str) -> str:
    return {
        "pyocd": ".venv/bin/pip install pyocd; pyocd pack install <target> once, with internet",
        "openocd": "apt-get install openocd",
        "st-flash": "apt-get install stlink-tools",
    }.get(tool, "pip install platformio")


@dataclass
class Flashed:
    tool: str
    build_id: str
    command: list[str]


def flash_image(board: Board, image: FirmwareImage, tool: str | None = None) -> Flashed:
    """Writes exactly this image to the board with one tool; prints the tool and the build id."""
    if board.is_emulated:
        raise ToolError(f"{board.name} is emulated: `invoke flash` starts it in QEMU instead")
    chosen = pick_tool(board, tool)
    cmd = flash_command(board, image, chosen)
    print(f"flashing {board.name} with {chosen}: {image.elf} (build id {image.build_id})")
    if subprocess.run(cmd).returncode != 0:
        raise ToolError(f"flashing {board.name} with {chosen} failed (command: {' '.join(cmd)})")
    return Flashed(chosen, image.build_id, cmd)


def check_running(board: Board, image: FirmwareImage, port: str | None, timeout: float = 10.0) -> str:
    """Connects after the flash and checks that HELLO names this image's build id."""
    from pytools.connect import open_link

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with open_link(board, port) as link:
                got = str(link.board.get("build_id", ""))
            break
        except (ToolError, OSError) as e:  # the USB port re-enumerates after a reset
            last = e
            time.sleep(0.5)
    else:
        raise ToolError(f"after flashing, {board.name} did not answer HELLO: {last}")
    if got != image.build_id:
        raise ToolError(
            f"after flashing, {board.name} runs build {got}, not the image's {image.build_id}: "
            "the flash did not take (write protection? another probe?); flash again with --tool"
        )
    return got


# --- which plan the firmware carries -----------------------------------------------------


def selected_plan_files(board_name: str) -> tuple[Path, Path]:
    """Where `invoke flash` leaves the plan it put in the firmware, for PlatformIO to build."""
    d = BUILD / board_name / "selected-plan"
    return d / "plan.bin", d / "plan.json"


def compile_training_firmware(
    board: Board, model: Path | None = None, scheme: str = "", lr: float = DEFAULT_LR
) -> tuple[Any, Any]:
    """The training step `invoke train` runs on this board (the default session's: the digits
    model, DEFAULT_SCHEME, lr 0.01; or model/scheme/lr), compiled and linked: (the
    CompiledTraining, its graph). Refuses a step that does not fit."""
    from pytools.model.tflite_import import import_tflite
    from pytools.session import DEFAULT_SCHEME
    from pytools.train.compile_train import check_fits, compile_training
    from pytools.train.scheme import load_scheme

    if model is None:
        from pytools.pretrain import digits

        data, name = digits.pretrained_model(), digits.NAME
    else:
        data, name = Path(model).read_bytes(), Path(model).stem
    spec = scheme or DEFAULT_SCHEME
    named = ROOT / "schemes" / f"{spec}.toml"  # a scheme named as `invoke train` takes it: head_only ...
    if "=" not in spec and not Path(spec).exists() and named.is_file():
        spec = str(named)
    graph = import_tflite(data, name)
    ct = compile_training(graph, load_scheme(spec), board, name, link=True, lr=lr)
    check_fits(ct)
    assert ct.image is not None
    return ct, graph


def training_image(
    board: Board, model: Path | None = None, scheme: str = "", lr: float = DEFAULT_LR
) -> FirmwareImage:
    """The firmware `invoke train` needs on this board, its plan linked in. The plan is also
    left in build/<board>/selected-plan/ so that `pio run -t upload` builds the same image."""
    from pytools.session import DEFAULT_SCHEME

    ct, _ = compile_training_firmware(board, model, scheme, lr)
    assert ct.image is not None
    name = Path(model).stem if model else ct.name
    what = f"{name}, {scheme or DEFAULT_SCHEME}, lr {lr:g}"
    select_plan(board, ct.compiled.blob, ct.compiled.arena, ct.image.build_id, what)
    return ct.image


def select_plan(board: Board, plan: bytes, arena: int, build_id: str, what: str) -> None:
    bin_path, meta = selected_plan_files(board.name)
    bin_path.parent.mkdir(parents=True, exist_ok=True)
    bin_path.write_bytes(plan)
    meta.write_text(json.dumps({"arena": arena, "build_id": build_id, "plan": what}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    """`python -m pytools.flashing select-plan --board B`: what pio_build.py runs."""
    p = argparse.ArgumentParser(prog="python -m pytools.flashing")
    p.add_argument("action", choices=["select-plan"])
    p.add_argument("--board", required=True)
    a = p.parse_args(argv)
    try:
        image = training_image(load_board(a.board))
    except ToolError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"selected the default training plan for {a.board}: build id {image.build_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
