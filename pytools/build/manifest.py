"""Resolves firmware/build.toml + boards/<board>.toml into one build description.

This is the single source of sources and flags: the offline builder (builder.py),
PlatformIO (pio_build.py at the repository root) and the host build all call it, so
there is no second list to drift.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from pytools.boards import Board
from pytools.build import toml
from pytools.errors import ToolError
from pytools.paths import FIRMWARE

HOST = "host"


@dataclass
class BuildSpec:
    target: str  # a board name, or "host"
    sources: list[Path]
    include_dirs: list[Path]
    cflags: list[str]
    defines: dict[str, str]
    ldflags: list[str] = field(default_factory=list)
    linker_script: Path | None = None
    memory_ld: str = ""  # generated MEMORY block for the board (empty for the host)
    forbidden_symbols: list[str] = field(default_factory=list)

    def define_flags(self) -> list[str]:
        return [f"-D{k}={v}" for k, v in sorted(self.defines.items())]

    def compile_flags(self) -> list[str]:
        return [*self.cflags, *self.define_flags(), *(f"-I{p}" for p in self.include_dirs)]


def _manifest() -> dict:
    return toml.loads((FIRMWARE / "build.toml").read_text())


def _glob(patterns: list[str]) -> list[Path]:
    out: list[Path] = []
    for pat in patterns:
        hits = sorted(FIRMWARE.glob(pat))
        if not hits:
            raise FileNotFoundError(f"firmware/build.toml: '{pat}' matches no file")
        out.extend(h for h in hits if h not in out)
    return out


@dataclass(frozen=True)
class PersistRegion:
    """boards/<board>.toml [persist]: where trained state is kept across resets.

    region: the whole range the slots' erases touch (whole flash sectors), kept free of the
    image; slots: the two slot addresses; slot_size: bytes per slot, header included.
    """

    region_origin: int
    region_size: int
    slots: tuple[int, int]
    slot_size: int
    in_flash: bool  # inside the board's flash range: the linker reserves it (real boards)
    # (first sector, sector count) each slot's erase touches (in_flash only; else (0, 0))
    sectors: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))

    @property
    def capacity(self) -> int:
        """Bytes of state one slot holds (the slot minus its header, app/persist.h)."""
        return self.slot_size - PERSIST_HEADER_SIZE


PERSIST_HEADER_SIZE = 64  # PERSIST_HEADER_SIZE in firmware/app/persist.h (checked by a test)


def persist_region(board: Board) -> PersistRegion:
    """The board's persistence region, checked: slots inside it, apart, word-aligned, and
    either inside the flash (reserved from the image) or clear of both flash and RAM."""
    p = board.raw.get("persist")
    if p is None:
        raise ToolError(f"boards/{board.name}.toml has no [persist] section (where trained state is kept)")
    try:
        r = PersistRegion(
            int(p["region_origin"]),
            int(p["region_size"]),
            (int(p["slot0"]), int(p["slot1"])),
            int(p["slot_size"]),
            False,
        )
    except KeyError as e:
        raise ToolError(f"boards/{board.name}.toml [persist]: missing key {e}") from e
    m = board.memory
    end = r.region_origin + r.region_size
    flash_end = m.flash_origin + m.flash_size
    a, b = sorted(r.slots)
    bad = []
    if any(s % 4 for s in (*r.slots, r.slot_size, r.region_origin, r.region_size)):
        bad.append("addresses and sizes must be multiples of 4")
    if r.slot_size <= PERSIST_HEADER_SIZE:
        bad.append(f"slot_size must exceed the {PERSIST_HEADER_SIZE}-byte slot header")
    if a < r.region_origin or b + r.slot_size > end or a + r.slot_size > b:
        bad.append("the two slots must lie inside the region without overlapping")
    in_flash = m.flash_origin <= r.region_origin and end <= flash_end
    overlaps = r.region_origin < flash_end and end > m.flash_origin
    overlaps_ram = r.region_origin < m.ram_origin + m.ram_size and end > m.ram_origin
    if (overlaps and not in_flash) or overlaps_ram:
        bad.append("the region must lie wholly inside the flash, or clear of both flash and RAM")
    if in_flash and r.region_origin == m.flash_origin:
        bad.append("the region cannot start the flash: the vector table is there")
    sectors = ((0, 0), (0, 0))
    if in_flash and not bad:
        try:
            sectors = _slot_sectors(board, r)
        except ToolError as e:
            bad.append(str(e))
    if bad:
        raise ToolError(f"boards/{board.name}.toml [persist]: " + "; ".join(bad))
    return PersistRegion(r.region_origin, r.region_size, r.slots, r.slot_size, in_flash, sectors)


def flash_sectors(board: Board) -> list[tuple[int, int]]:
    """(start address, size) of each flash sector, from boards/<board>.toml [flash] sector_sizes."""
    sizes = board.raw.get("flash", {}).get("sector_sizes")
    if not sizes:
        raise ToolError("slots in flash need [flash] sector_sizes (the chip's sector map, in bytes)")
    if sum(sizes) != board.memory.flash_size:
        raise ToolError(f"[flash] sector_sizes add up to {sum(sizes):,} B, not the flash size")
    out, addr = [], board.memory.flash_origin
    for size in sizes:
        out.append((addr, int(size)))
        addr += int(size)
    return out


def _slot_sectors(board: Board, r: PersistRegion) -> tuple[tuple[int, int], tuple[int, int]]:
    """The sectors each slot's erase touches: the slot must start a sector and its sectors must
    lie in the region. Two slots that each start a sector and do not overlap never share one,
    so each is erased on its own."""
    sectors = flash_sectors(board)
    out = []
    for slot in r.slots:
        hit = [i for i, (a, n) in enumerate(sectors) if a < slot + r.slot_size and a + n > slot]
        first, last = hit[0], hit[-1]
        if sectors[first][0] != slot:
            raise ToolError(f"slot 0x{slot:08X} does not start a flash sector")
        end = sectors[last][0] + sectors[last][1]
        if end > r.region_origin + r.region_size:
            raise ToolError(f"erasing slot 0x{slot:08X} touches flash up to 0x{end:08X}, past the region")
        out.append((first, last - first + 1))
    return out[0], out[1]


def memory_ld(board: Board) -> str:
    """The linker MEMORY block, stack sizes and persistence slots, written from the board file."""
    m = board.memory
    p = persist_region(board)
    code_ram = board.raw["memory"].get("code_ram_origin"), board.raw["memory"].get("code_ram_size")
    if code_ram[0] is not None and code_ram[1]:
        code_region = f"    CODE_RAM (rwx) : ORIGIN = 0x{int(code_ram[0]):08X}, LENGTH = {int(code_ram[1])}\n"
        code_alias = ""
    else:  # RAM-resident code (RAMFUNC) goes to the RAM itself
        code_region, code_alias = "", 'REGION_ALIAS("CODE_RAM", RAM);\n'
    (s0, n0), (s1, n1) = p.sectors
    return (
        f"/* Generated from boards/{board.name}.toml by pytools.build.manifest; do not edit. */\n"
        "MEMORY\n{\n"
        f"    FLASH (rx)  : ORIGIN = 0x{m.flash_origin:08X}, LENGTH = {m.flash_size}\n"
        f"    RAM   (rwx) : ORIGIN = 0x{m.ram_origin:08X}, LENGTH = {m.ram_size}\n"
        f"{code_region}"
        "}\n"
        f"{code_alias}"
        f"__board_stack_size = {m.stack_size};\n"
        f"__board_handler_stack_size = {m.handler_stack_size};\n"
        "/* Persistence slots (app/persist.c); sections.ld keeps the image out of the region. */\n"
        f"__persist_region_origin = 0x{p.region_origin:08X};\n"
        f"__persist_region_size = {p.region_size};\n"
        f"__persist_in_flash = {int(p.in_flash)};\n"
        f"__persist_slot0 = 0x{p.slots[0]:08X};\n"
        f"__persist_slot1 = 0x{p.slots[1]:08X};\n"
        f"__persist_slot_size = {p.slot_size};\n"
        "/* Flash sectors each slot's erase takes (first, count), from [flash] sector_sizes. */\n"
        f"__persist_slot0_sector = {s0};\n"
        f"__persist_slot0_sectors = {n0};\n"
        f"__persist_slot1_sector = {s1};\n"
        f"__persist_slot1_sectors = {n1};\n"
    )


def source_digest(extra: list[str]) -> str:
    """Content hash of every firmware and board file plus the flags: the build id.

    Same sources and flags give the same id on any machine and in either build system.
    """
    h = hashlib.sha256()
    roots = [FIRMWARE, FIRMWARE.parent / "boards"]
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.suffix in {".c", ".h", ".def", ".ld", ".toml", ".S"}:
                h.update(str(p.relative_to(root.parent)).encode())
                h.update(p.read_bytes())
    for x in extra:
        h.update(x.encode())
    return h.hexdigest()[:12]


def board_defines(board: Board) -> dict[str, str]:
    return {
        "BOARD_NAME": f'"{board.name}"',
        "BOARD_CLOCK_HZ": f"{board.clock_hz}u",
        "BOARD_BAUD": f"{board.baud}u",
        "LINK_MAX_PAYLOAD": f"{board.max_payload}u",
        "LINK_RX_GAP_MS": f"{board.rx_gap_ms}u",
        "BOARD_HSE_HZ": f"{int(board.raw.get('hse_hz', 0))}u",
        "BOARD_HSE_BYPASS": "1" if board.raw.get("hse_bypass") else "0",
        # Emulated boards: how long a slot erase takes (simulated; 0 = instant), in microseconds.
        "BOARD_PERSIST_ERASE_US": f"{int(board.raw.get('persist', {}).get('simulated_erase_us', 0))}u",
        f"BOARD_BSP_{board.bsp.upper()}": "1",
        f"BOARD_{board.name.upper()}": "1",
        # e.g. BOARD_UART_USART3: the BSP maps the UART to its pins and clock.
        f"BOARD_UART_{board.raw['serial']['uart'].split()[0].upper()}": "1",
    }


def target_spec(board: Board, diag: bool = False) -> BuildSpec:
    """The firmware build for a board. diag: the diagnostic build (`invoke build --diag`), the
    only one that carries out the link self-tests, fault injection, the power-loss save and the
    erase of the saved state (FIRMWARE_DIAG=1; app/commands.c); the others refuse them."""
    mf = _manifest()
    common, target = mf["common"], mf["target"]
    if board.cpu not in mf["cpu"]:
        raise ToolError(
            f"boards/{board.name}.toml: cpu '{board.cpu}' has no [cpu.{board.cpu}] flags in "
            f"firmware/build.toml (supported: {', '.join(sorted(mf['cpu']))})"
        )
    if board.bsp not in mf["bsp"]:
        raise ToolError(
            f"boards/{board.name}.toml: bsp '{board.bsp}' has no [bsp.{board.bsp}] sources in "
            f"firmware/build.toml (known: {', '.join(sorted(mf['bsp']))})"
        )
    cpu = mf["cpu"][board.cpu]
    bsp = mf["bsp"][board.bsp]
    cflags = [*common["cflags"], *target["cflags"], *cpu["cflags"]]
    ldflags = [*cpu["cflags"], *target["ldflags"]]
    defines = {**board_defines(board), "FIRMWARE_DIAG": "1" if diag else "0"}
    spec = BuildSpec(
        target=board.name + ("-diag" if diag else ""),
        sources=_glob([*common["sources"], *target["sources"], *bsp["sources"]]),
        include_dirs=[FIRMWARE / d for d in [*common["include"], "bsp/cortex_m", *bsp.get("include", [])]],
        cflags=cflags,
        defines=defines,
        ldflags=ldflags,
        linker_script=FIRMWARE / target["linker_script"],
        memory_ld=memory_ld(board),
        forbidden_symbols=list(target["forbidden_symbols"]),
    )
    spec.defines["BUILD_ID"] = f'"{source_digest([*cflags, *ldflags, *spec.define_flags()])}"'
    return spec


def host_spec() -> BuildSpec:
    mf = _manifest()
    common, host = mf["common"], mf["host"]
    cflags = [*common["cflags"], *host["cflags"]]
    return BuildSpec(
        target=HOST,
        sources=_glob(common["sources"]),
        include_dirs=[FIRMWARE / d for d in common["include"]],
        cflags=cflags,
        defines={},
    )


def host_test_sources() -> list[Path]:
    return _glob(_manifest()["host"]["tests"])
