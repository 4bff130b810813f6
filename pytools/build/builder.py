"""Offline build: firmware images with Debian's arm-none-eabi-gcc, and the host twin.

Incremental: an object is rebuilt when its source, a header it includes (from gcc's
-MMD dependency file) or the flags changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pytools.boards import Board
from pytools.build.manifest import BuildSpec, host_spec, host_test_sources, target_spec
from pytools.errors import ToolError
from pytools.paths import BUILD, FIRMWARE

CROSS = "arm-none-eabi-"
PROGRESS_SECONDS = 5.0  # a long build says how far it got at least this often


@dataclass
class RegionUse:
    name: str
    used: int
    size: int

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.size if self.size else 0.0


@dataclass
class FirmwareImage:
    board: str
    elf: Path
    bin: Path
    map: Path
    build_id: str
    regions: dict[str, RegionUse]  # from the linker's own --print-memory-usage


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ToolError(f"'{name}' not found: run ./setup.sh (installs gcc-arm-none-eabi and friends)")
    return path


def _run(cmd: list[str], what: str) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise ToolError(f"{what} failed:\n{p.stdout}{p.stderr}".rstrip())
    return p.stdout + p.stderr


def _deps_of(dep_file: Path) -> list[Path]:
    if not dep_file.exists():
        return []
    text = dep_file.read_text().replace("\\\n", " ")
    _, _, deps = text.partition(":")
    return [Path(d) for d in deps.split()]


def _stale(obj: Path, src: Path) -> bool:
    if not obj.exists():
        return True
    t = obj.stat().st_mtime
    deps = [src, *_deps_of(obj.with_suffix(".d"))]
    return any(not d.exists() or d.stat().st_mtime > t for d in deps)


def _obj_name(src: Path) -> str:
    base = src.relative_to(FIRMWARE) if src.is_relative_to(FIRMWARE) else Path("gen") / src.name
    return str(base.with_suffix(".o")).replace(os.sep, "__")


def _compile_all(cc: str, spec: BuildSpec, sources: list[Path], obj_dir: Path) -> list[Path]:
    flags = spec.compile_flags()
    stamp = obj_dir / "flags.json"
    obj_dir.mkdir(parents=True, exist_ok=True)
    if not stamp.exists() or json.loads(stamp.read_text()) != [cc, *flags]:
        shutil.rmtree(obj_dir)
        obj_dir.mkdir(parents=True)
        stamp.write_text(json.dumps([cc, *flags]))

    stale = [src for src in sources if _stale(obj_dir / _obj_name(src), src)]
    # A first build for a board takes tens of seconds: say so, and how far it got, rather than
    # sit silent (a build with nothing to compile says nothing).
    lines = StaleProgress(len(stale), f"{spec.target}: compiling {len(stale)} of {len(sources)} C files")

    def one(src: Path) -> Path:
        obj = obj_dir / _obj_name(src)
        if src in stale:
            _run([cc, *flags, "-MMD", "-c", str(src), "-o", str(obj)], f"compiling {src.name}")
            lines.done()
        return obj

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        out = list(pool.map(one, sources))
    lines.close()
    return out


class StaleProgress:
    """Lines saying what a long build compiles: one when it starts, one every PROGRESS_SECONDS,
    one at the end with the time taken. A build of a few files (a plan's) says nothing."""

    QUIET_BELOW = 5  # files: fewer take a second or two

    def __init__(self, total: int, what: str) -> None:
        self.total, self.what, self.n = total, what, 0
        self.t0 = self.last = time.monotonic()
        self.lock = threading.Lock()
        self.loud = total >= self.QUIET_BELOW
        if self.loud:
            print(f"build     {what} (a first build takes a while; later ones reuse it)", file=sys.stderr)

    def done(self) -> None:
        with self.lock:
            self.n += 1
            now = time.monotonic()
            if self.loud and now - self.last >= PROGRESS_SECONDS and self.n < self.total:
                self.last = now
                print(f"build     {self.n}/{self.total} compiled, {now - self.t0:.0f} s", file=sys.stderr)

    def close(self) -> None:
        if self.loud:
            print(f"build     {self.what}: done in {time.monotonic() - self.t0:.1f} s", file=sys.stderr)


_REGION = re.compile(r"^\s*(\w+):\s+(\d+)\s*(B|KB|MB|GB)\s+(\d+)\s*(B|KB|MB|GB)\s+[\d.]+%", re.M)
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


def parse_memory_usage(linker_output: str) -> dict[str, RegionUse]:
    """Reads GNU ld's --print-memory-usage table."""
    return {
        m[1]: RegionUse(m[1], int(m[2]) * _UNITS[m[3]], int(m[4]) * _UNITS[m[5]])
        for m in _REGION.finditer(linker_output)
    }


PLAN_ASM = """/* Generated by pytools/build/builder.py: the model plan this image runs, and its arena. */
    .section .rodata.plan, "a"
    .balign 16
    .global plan_blob
plan_blob:
{incbin}
    .global plan_blob_end
plan_blob_end:

    .section .bss.plan_arena, "aw", %nobits
    .balign 16
    .global plan_arena
plan_arena:
    .space {arena}
    .global plan_arena_end
plan_arena_end:
{kernels}"""

# The dispatch table of an image with a linked plan: only that plan's kernels (the runtime's
# weak full table, runtime/kernel_table.c, is then unreferenced and --gc-sections drops every
# other kernel). Layout: rt_kernel_table_t (runtime/kernel_table.h, whose _Static_assert holds
# the two words' offsets).
KERNEL_TABLE_ASM = """
    .section .rodata.rt_kernels, "a"
    .balign 4
    .global rt_kernels
    .type rt_kernels, %object
    .size rt_kernels, 8
rt_kernels:
    .word rt_kernel_run
    .word {count}
    .balign 4
rt_kernel_run:
{entries}
"""


def kernel_table_asm(plan: bytes) -> str:
    """plan.S's dispatch table for this plan: run[code] for each code it uses, 0 elsewhere."""
    from pytools.model.kernels import op_defs
    from pytools.model.plan import op_codes

    by_code = {d.code: d.kernel for d in op_defs().values()}
    used = op_codes(plan)
    unknown = sorted(used - set(by_code))
    if unknown:
        raise ToolError(f"the plan has operator codes {unknown} that kernels/ops.def does not define")
    count = max(used, default=-1) + 1
    entries = "\n".join(f"    .word {by_code[c]}_run" if c in used else "    .word 0" for c in range(count))
    return KERNEL_TABLE_ASM.format(count=count, entries=entries)


def plan_asm_text(plan: bytes | None, arena: int, blob_path: Path | None) -> str:
    """The generated plan.S of an image (this builder's and PlatformIO's, pio_build.py): the
    plan blob (included from blob_path), its arena and, with a plan, the plan's own kernel
    table."""
    incbin = f'    .incbin "{blob_path}"' if plan else ""
    kernels = kernel_table_asm(plan) if plan else ""
    return PLAN_ASM.format(incbin=incbin, arena=arena, kernels=kernels)


def _write_if_changed(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def build_firmware(
    board: Board, plan: bytes | None = None, arena: int = 0, diag: bool = False
) -> FirmwareImage:
    """Compiles and links the firmware for a board, with a model plan embedded if given.

    The plan goes to flash as-is; its arena is reserved in .bss at exactly `arena` bytes, so
    the linker itself refuses a model that does not fit the board's RAM. diag: the diagnostic
    build (manifest.target_spec), in a build folder of its own (build/<board>-diag).
    """
    cc = _tool(CROSS + "gcc")
    # (Only the diagnostic build passes diag: a reference-kernel build swaps in a target_spec
    # of one argument, bench.py's and the DSP tests'.)
    spec = target_spec(board, diag=True) if diag else target_spec(board)
    base = BUILD / spec.target
    out = base / "models" / hashlib.sha256(plan).hexdigest()[:12] if plan else base
    out.mkdir(parents=True, exist_ok=True)
    _write_if_changed(out / "memory.ld", spec.memory_ld.encode())
    if plan:
        _write_if_changed(out / "plan.bin", plan)
    asm = out / "plan.S"
    _write_if_changed(asm, plan_asm_text(plan, arena, out / "plan.bin").encode())
    objs = _compile_all(cc, spec, spec.sources, base / "obj")
    objs += _compile_all(cc, spec, [asm], out / "plan_obj")
    elf, map_file, bin_file = out / "firmware.elf", out / "firmware.map", out / "firmware.bin"
    cmd = [
        cc,
        *spec.ldflags,
        f"-L{out}",
        f"-T{spec.linker_script}",
        f"-Wl,-Map={map_file}",
        *map(str, objs),
        "-o",
        str(elf),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True)
    text = p.stdout + p.stderr
    if p.returncode != 0:
        over = _OVERFLOW.findall(text)
        if over:
            m = board.memory
            limits = {"FLASH": m.flash_size, "RAM": m.ram_size}
            detail = "; ".join(
                f"{r} overflowed by {int(n):,} bytes (limit {limits.get(r, 0):,} bytes)" for r, n in over
            )
            raise ToolError(
                f"the firmware does not fit {board.name}: {detail}. "
                f"Limits come from boards/{board.name}.toml."
            )
        raise ToolError(f"linking for {board.name} failed:\n{text}")
    _check_forbidden(elf, spec.forbidden_symbols)
    # Gaps (the persistence region on real boards) as erased flash: flashing the .bin leaves
    # the slots erased, never half-written.
    _run([_tool(CROSS + "objcopy"), "-O", "binary", "--gap-fill", "0xff", str(elf), str(bin_file)], "objcopy")
    return FirmwareImage(
        board=board.name,
        elf=elf,
        bin=bin_file,
        map=map_file,
        build_id=image_build_id(spec.defines["BUILD_ID"].strip('"'), plan),
        regions=parse_memory_usage(text),
    )


def image_build_id(firmware_id: str, plan: bytes | None) -> str:
    """What the board says in HELLO: the firmware's id, plus the embedded plan's CRC-32 (its
    header's) when it carries one (app/commands.c builds the same string)."""
    if not plan:
        return firmware_id
    from pytools.model.plan import read_header

    return f"{firmware_id}-{read_header(plan)['crc32']:08x}"


def _check_forbidden(elf: Path, forbidden: list[str]) -> None:
    syms = set(_run([_tool(CROSS + "nm"), "-j", str(elf)], "nm").split())
    bad = sorted(syms & set(forbidden))
    if bad:
        raise ToolError(
            f"{elf.name} links {', '.join(bad)}: the firmware must not allocate at run time; "
            f"see {elf.with_suffix('.map')} for who pulls them in"
        )


def _host_objs(spec: BuildSpec) -> list[Path]:
    return _compile_all(_tool("gcc"), spec, spec.sources, BUILD / "host" / "obj")


def build_host_lib() -> Path:
    """The portable C as a shared library for Python (the host twin)."""
    spec = host_spec()
    objs = _host_objs(spec)
    lib = BUILD / "host" / "libfirmware_host.so"
    if not lib.exists() or any(o.stat().st_mtime > lib.stat().st_mtime for o in objs):
        _run([_tool("gcc"), "-shared", *map(str, objs), "-o", str(lib), "-lm"], "linking the host library")
    return lib


def build_host_tests() -> Path:
    """The C unit tests (firmware/tests/*.c) linked against the portable C."""
    spec = host_spec()
    objs = _host_objs(spec)
    test_spec = BuildSpec(
        target="host-tests",
        sources=host_test_sources(),
        include_dirs=[*spec.include_dirs, FIRMWARE / "tests"],
        cflags=spec.cflags,
        defines={},
    )
    test_objs = _compile_all(_tool("gcc"), test_spec, test_spec.sources, BUILD / "host" / "test_obj")
    exe = BUILD / "host" / "unit_tests"
    all_objs = [*objs, *test_objs]
    if not exe.exists() or any(o.stat().st_mtime > exe.stat().st_mtime for o in all_objs):
        _run([_tool("gcc"), *map(str, all_objs), "-o", str(exe), "-lm"], "linking the C unit tests")
    return exe


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
