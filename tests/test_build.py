"""Firmware images for every board: built from the one manifest, linked within the board's limits."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from pytools.boards import board_names, load_board
from pytools.build.builder import _check_forbidden, build_firmware
from pytools.errors import ToolError
from pytools.paths import ROOT

HARDWARE = ["nucleo_f746zg", "disco_f746ng"]


def _section_addr(elf, name: str) -> int:
    out = subprocess.run(
        ["arm-none-eabi-readelf", "-S", "-W", str(elf)], capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        parts = line.replace("[", " ").replace("]", " ").split()
        if name in parts:
            return int(parts[parts.index(name) + 2], 16)
    raise AssertionError(f"{name} not in {elf}")


@pytest.mark.parametrize("name", HARDWARE)
def test_real_board_images_link_within_their_limits(name: str) -> None:
    board = load_board(name)
    image = build_firmware(board)
    flash, ram = image.regions["FLASH"], image.regions["RAM"]
    assert (flash.size, ram.size) == (1024 * 1024, 320 * 1024)
    assert 0 < flash.used <= flash.size and 0 < ram.used <= ram.size
    assert _section_addr(image.elf, ".vectors") == 0x08000000  # linked for the STM32's flash
    assert image.bin.stat().st_size <= flash.size


def test_every_board_file_loads() -> None:
    names = board_names()
    assert {"mps2_an500", *HARDWARE} <= set(names)
    for n in names:
        b = load_board(n)
        assert b.memory.ram_size == 320 * 1024 and b.memory.flash_size == 1024 * 1024


def test_invoke_build_prints_the_linkers_own_figures() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "invoke", "build", "--board", "nucleo_f746zg"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    image = build_firmware(load_board("nucleo_f746zg"))
    for region in ("FLASH", "RAM"):
        use = image.regions[region]
        assert f"{use.used:>9,} of {use.size:>9,} bytes" in r.stdout, r.stdout


def test_an_image_over_the_ram_limit_is_refused_with_the_overflow() -> None:
    board = load_board("mps2_an500")
    small = dataclasses.replace(
        board, name="mps2_an500_tiny_ram", memory=dataclasses.replace(board.memory, ram_size=16 * 1024)
    )
    with pytest.raises(ToolError, match=r"does not fit mps2_an500_tiny_ram: RAM overflowed by [\d,]+ bytes"):
        build_firmware(small)


def test_an_image_that_links_malloc_is_refused(tmp_path) -> None:
    src = tmp_path / "m.c"
    src.write_text("#include <stdlib.h>\nint main(void) { return malloc(4) != 0; }\n")
    elf = tmp_path / "m.elf"
    subprocess.run(
        [
            "arm-none-eabi-gcc",
            "-mcpu=cortex-m7",
            "-mthumb",
            "--specs=nano.specs",
            "--specs=nosys.specs",
            str(src),
            "-o",
            str(elf),
        ],
        check=True,
        capture_output=True,
    )
    with pytest.raises(ToolError, match="must not allocate at run time"):
        _check_forbidden(elf, ["malloc", "free"])


def test_an_unknown_board_names_the_known_ones() -> None:
    with pytest.raises(ToolError, match=r"unknown board 'nucleo_f999'; known boards: .*nucleo_f746zg"):
        load_board("nucleo_f999")
