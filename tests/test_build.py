"""Firmware images for every board: built from the one manifest, linked within the board's limits."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib

import pytest

from pytools.boards import board_names, load_board
from pytools.build import toml
from pytools.build.builder import _check_forbidden, build_firmware
from pytools.build.manifest import memory_ld, persist_region, target_spec
from pytools.errors import ToolError
from pytools.paths import BOARDS, FIRMWARE, ROOT

# Each real board's limits (flash, RAM), and the emulated board that mirrors them.
HARDWARE = {
    "nucleo_f746zg": (1024 * 1024, 320 * 1024),
    "disco_f746ng": (1024 * 1024, 320 * 1024),
    "nucleo_f446re": (512 * 1024, 128 * 1024),
}
EMULATED_TWIN = {"mps2_an500": "nucleo_f746zg", "mps2_an386": "nucleo_f446re"}


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
    assert (flash.size, ram.size) == HARDWARE[name]
    assert 0 < flash.used <= flash.size and 0 < ram.used <= ram.size
    assert _section_addr(image.elf, ".vectors") == 0x08000000  # linked for the STM32's flash
    assert image.bin.stat().st_size <= flash.size


def test_every_board_file_loads() -> None:
    names = board_names()
    assert {*EMULATED_TWIN, *HARDWARE} <= set(names)
    for n in names:
        b = load_board(n)
        limits = HARDWARE[EMULATED_TWIN.get(n, n)]
        assert (b.memory.flash_size, b.memory.ram_size) == limits, f"{n} has its real board's limits"
        twin = load_board(EMULATED_TWIN[n]) if n in EMULATED_TWIN else None
        if twin:  # a plan whose state persists on the emulated board persists on the real one
            assert b.raw["persist"]["slot_size"] == twin.raw["persist"]["slot_size"]
            assert target_spec(b).cflags == target_spec(twin).cflags, "same core, same flags"


def test_the_cortex_m4_boards_build_for_the_m4_with_the_dsp_kernels() -> None:
    for name in ("mps2_an386", "nucleo_f446re"):
        spec = target_spec(load_board(name))
        assert {"-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-DKERNELS_DSP=1"} <= set(
            spec.cflags
        )
        attrs = subprocess.run(
            ["arm-none-eabi-readelf", "-A", str(build_firmware(load_board(name)).elf)],
            capture_output=True,
            text=True,
        ).stdout
        assert "Tag_CPU_arch: v7E-M" in attrs and "Tag_FP_arch: VFPv4-D16" in attrs, attrs


def test_a_cpu_without_flags_is_named() -> None:
    board = load_board("nucleo_f446re")
    with pytest.raises(ToolError, match=r"cpu 'cortex-m33' has no \[cpu.cortex-m33\] flags.*cortex-m4"):
        target_spec(dataclasses.replace(board, cpu="cortex-m33"))


@pytest.mark.parametrize(
    ("name", "sectors"),
    [
        ("nucleo_f746zg", ((1, 3), (4, 1))),
        ("disco_f746ng", ((1, 3), (4, 1))),
        ("nucleo_f446re", ((1, 3), (4, 1))),
    ],
)
def test_each_slot_erases_whole_sectors_of_its_own(name: str, sectors) -> None:
    """The sector map in the board file gives the sectors each slot's erase takes; memory.ld
    hands them to bsp/stm32/flash.c."""
    board = load_board(name)
    region = persist_region(board)
    assert region.in_flash and region.sectors == sectors
    ld = memory_ld(board)
    for slot, (first, count) in enumerate(sectors):
        assert f"__persist_slot{slot}_sector = {first};" in ld
        assert f"__persist_slot{slot}_sectors = {count};" in ld


def test_a_slot_off_a_sector_start_or_erasing_past_the_region_is_refused() -> None:
    board = load_board("nucleo_f446re")

    def with_persist(**kw):
        raw = {**board.raw, "persist": {**board.raw["persist"], **kw}}
        return dataclasses.replace(board, raw=raw)

    with pytest.raises(ToolError, match="does not start a flash sector"):
        persist_region(with_persist(slot0=0x08004400, slot_size=16_384))
    with pytest.raises(ToolError, match="past the region"):  # the slot's sector ends past it
        persist_region(with_persist(region_size=16_384 * 3 + 4096, slot1=0x08010000, slot_size=4096))
    with pytest.raises(ToolError, match="sector_sizes"):
        persist_region(dataclasses.replace(board, raw={k: v for k, v in board.raw.items() if k != "flash"}))


@pytest.mark.parametrize("name", ["nucleo_f446re", "nucleo_f746zg"])
def test_flash_busy_code_runs_from_ram_and_calls_nothing_in_flash(name: str) -> None:
    """During an erase the flash cannot be read: the erase/program loops, the USART interrupt
    and its dispatch are in .ramfunc (ITCM on the F7) and branch nowhere outside it."""
    image = build_firmware(load_board(name))
    dis = subprocess.run(
        ["arm-none-eabi-objdump", "-d", "-j", ".ramfunc", str(image.elf)], capture_output=True, text=True
    ).stdout
    funcs = set(re.findall(r"^[0-9a-f]+ <(\w+)>:", dis, re.M))
    assert {"erase_sectors", "program_words", "usart_irq", "bsp_irq_handler", "device_irq_dispatch"} <= funcs
    start = _section_addr(image.elf, ".ramfunc")
    targets = [int(t, 16) for t in re.findall(r"\bb(?:l|lx|\.w|\.n|eq|ne)?(?:\.w|\.n)?\s+([0-9a-f]+) <", dis)]
    assert targets and all(start <= t < start + 0x1000 for t in targets), "a branch leaves RAM"
    if name == "nucleo_f746zg":
        assert start == 0x00000000, "ITCM RAM: DTCM cannot feed instruction fetches"
    else:
        assert 0x20000000 <= start < 0x20000000 + 128 * 1024


def test_the_minimal_toml_reader_reads_the_projects_files_as_tomllib_does() -> None:
    """PlatformIO under Python < 3.11 has no tomllib: pytools.build.toml falls back to tomli or
    its own reader, which must agree with tomllib on every TOML file of the project."""
    files = [*BOARDS.glob("*.toml"), FIRMWARE / "build.toml", *(ROOT / "schemes").glob("*.toml")]
    for f in files:
        assert toml.minimal_loads(f.read_text()) == tomllib.loads(f.read_text()), f
    with pytest.raises(toml.TOMLDecodeError, match="line 2"):
        toml.minimal_loads("a = 1\nb = what\n")


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
        board, name="mps2_an500_tiny_ram", memory=dataclasses.replace(board.memory, ram_size=8 * 1024)
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


def _symbols(elf) -> set[str]:
    nm = subprocess.run(["arm-none-eabi-nm", "-j", str(elf)], capture_output=True, text=True)
    return set(nm.stdout.split())


def test_an_image_links_only_the_kernels_its_plan_runs() -> None:
    """The plan's own dispatch table (builder.kernel_table_asm) replaces the runtime's full one,
    so the kernels the plan does not run are not in flash; without a plan every kernel is."""
    from pytools.model.compiler import compile_graph
    from pytools.model.kernels import op_defs
    from pytools.model.plan import op_codes
    from tests.test_plan import small_graph

    board = load_board("mps2_an500")
    compiled = compile_graph(small_graph(), board, "small")
    assert op_codes(compiled.blob) == {op_defs()["CONV_2D"].code, op_defs()["RESHAPE"].code}
    with_plan = _symbols(build_firmware(board, compiled.blob, compiled.arena).elf)
    without = _symbols(build_firmware(board).elf)
    assert {"conv2d_s8_run", "reshape_run"} <= with_plan
    assert {"max_pool_s8_run", "depthwise_conv2d_s8_run", "softmax_xent_s32_run"} <= without
    assert not {"max_pool_s8_run", "depthwise_conv2d_s8_run", "softmax_xent_s32_run"} & with_plan
