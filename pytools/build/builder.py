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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pytools.boards import Board
from pytools.build.manifest import BuildSpec, host_spec, host_test_sources, target_spec
from pytools.errors import ToolError
from pytools.paths import BUILD, FIRMWARE

CROSS = "arm-none-eabi-"


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


def _compile_all(cc: str, spec: BuildSpec, sources: list[Path], obj_dir: Path) -> list[Path]:
    flags = spec.compile_flags()
    stamp = obj_dir / "flags.json"
    obj_dir.mkdir(parents=True, exist_ok=True)
    if not stamp.exists() or json.loads(stamp.read_text()) != [cc, *flags]:
        shutil.rmtree(obj_dir)
        obj_dir.mkdir(parents=True)
        stamp.write_text(json.dumps([cc, *flags]))

    def obj_for(src: Path) -> Path:
        rel = src.relative_to(FIRMWARE).with_suffix(".o")
        return obj_dir / str(rel).replace(os.sep, "__")

    def one(src: Path) -> Path:
        obj = obj_for(src)
        if _stale(obj, src):
            _run([cc, *flags, "-MMD", "-c", str(src), "-o", str(obj)], f"compiling {src.relative_to(FIRMWARE)}")
        return obj

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(one, sources))


_REGION = re.compile(r"^\s*(\w+):\s+(\d+)\s*(B|KB|MB|GB)\s+(\d+)\s*(B|KB|MB|GB)\s+[\d.]+%", re.M)
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


def parse_memory_usage(linker_output: str) -> dict[str, RegionUse]:
    """Reads GNU ld's --print-memory-usage table."""
    return {
        m[1]: RegionUse(m[1], int(m[2]) * _UNITS[m[3]], int(m[4]) * _UNITS[m[5]])
        for m in _REGION.finditer(linker_output)
    }


def build_firmware(board: Board) -> FirmwareImage:
    """Compiles and links the firmware for a board; refuses an image over its limits."""
    cc = _tool(CROSS + "gcc")
    spec = target_spec(board)
    out = BUILD / board.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.ld").write_text(spec.memory_ld)
    objs = _compile_all(cc, spec, spec.sources, out / "obj")
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
    _run([_tool(CROSS + "objcopy"), "-O", "binary", str(elf), str(bin_file)], "objcopy")
    return FirmwareImage(
        board=board.name,
        elf=elf,
        bin=bin_file,
        map=map_file,
        build_id=spec.defines["BUILD_ID"].strip('"'),
        regions=parse_memory_usage(text),
    )


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
        _run([_tool("gcc"), "-shared", *map(str, objs), "-o", str(lib)], "linking the host library")
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
        _run([_tool("gcc"), *map(str, all_objs), "-o", str(exe)], "linking the C unit tests")
    return exe


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
