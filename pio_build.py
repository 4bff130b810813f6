"""PlatformIO pre: script: builds the firmware from the same BuildSpec as the offline build.

platformio.ini names the boards only. This script resolves firmware/build.toml and
boards/<env name>.toml through pytools.build.manifest.target_spec() -- the function the
offline build (pytools/build/builder.py) uses -- and puts the result into PlatformIO's SCons
environment: the sources (as build_src_filter), include dirs, C flags, defines, link flags,
the generated memory.ld (written to $BUILD_DIR, which is on the linker's search path, so
sections.ld's `INCLUDE memory.ld` finds it) and sections.ld as the linker script.

The training plan: the image `invoke flash` puts on a board carries the compiled training
plan (its build id is <firmware>-<plan CRC>). configure() runs `python -m pytools.flashing
select-plan --board <env>` with the project's .venv Python (the same function `invoke flash`
uses), which leaves the plan in build/<board>/selected-plan/; the plan.S written from it
(pytools.build.builder.plan_asm_text, as the offline build) is compiled in. Without the .venv it
uses the plan `invoke flash` last selected, and without that it stops with what to run.

What PlatformIO adds on its own (platformio-core 6.1, platform ststm32 without a framework),
and what happens to it:
  * CCFLAGS  an optimisation level (-Os today) and flags that repeat ours, appended AFTER ours
    (pre: scripts run before the platform's builder). BUILD_UNFLAGS removes every
    optimisation level other than ours, whatever the platform version adds (see unflags());
    the flag check below catches anything else that would override ours.
  * LINKFLAGS -Os -Wl,--gc-sections,--relax -mthumb -mcpu=<board cpu>: harmless (no LTO).
    LIBS c gcc m stdc++: nano.specs turns -lc into -lc_nano and -lstdc++ into -lstdc++_nano.
    The firmware is C, so -lstdc++ is removed (BUILD_UNFLAGS) unless a C++ source appears:
    Debian's arm-none-eabi toolchain has no libstdc++_nano, and nothing would link from it.
  * CPPDEFINES PLATFORMIO=60119, F_CPU=216000000L and the board's extra_flags
    (-DSTM32F746xx): extra macros, none of them ours. Do not #define STM32F746xx in the BSP.
  * CPPPATH: firmware/ itself (the src_dir) in front of ours. It holds no headers.
  * The link: -T <LDSCRIPT_PATH> (ours), -L$BUILD_DIR, the platform's ldscripts dir.
  * `pio debug` (build_type = debug) strips our -O2/-g3 and builds with -Og -g2 -ggdb2.
Before the first object is compiled, a build middleware checks the flags PlatformIO ended
up with: each of ours is present and wins over any flag of the same kind (-O*, -mcpu=,
-mfpu=, -std=, -f[no-]x, -W[no-]x ...), and no define of ours has another value. A
conflict stops the build with a message instead of building different firmware.

The mapping is scons_vars() and friends: plain functions of a BuildSpec, tested without
SCons in tests/test_platformio.py. configure() is the thin part that touches SCons.
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytools.boards import Board
    from pytools.build.manifest import BuildSpec

# File types PlatformIO compiles (platformio/builder/tools/piobuild.py: SRC_BUILD_EXT).
# It silently skips anything else, so a source of another kind must be an error here.
_CXX_SUFFIXES = {".cc", ".cpp", ".cxx", ".c++"}
PIO_SOURCE_SUFFIXES = {".c", *_CXX_SUFFIXES, ".S", ".spp", ".SPP", ".sx", ".s", ".asm", ".ASM"}

# Every optimisation level GCC takes: all but ours go to BUILD_UNFLAGS, so no platform
# version's own choice (ststm32 appends -Os) can override ours.
OPTIMISATION_LEVELS = ("-O", "-O0", "-O1", "-O2", "-O3", "-Os", "-Oz", "-Og", "-Ofast")

# Flags that only mean something to the C compiler: they go to CFLAGS (C only) rather than
# CCFLAGS (C, C++ and preprocessed assembly).
_C_ONLY = re.compile(
    r"-std=.*|-W(no-)?(strict-prototypes|missing-prototypes|old-style-definition|nested-externs"
    r"|implicit-function-declaration|implicit-int|bad-function-cast|declaration-after-statement"
    r"|jump-misses-init|c\+\+-compat|pointer-sign|missing-parameter-type)"
)

# Define values that reach the compiler unchanged through the shell SCons runs commands
# with (and through Windows' argument parsing): no spaces, quotes become \".
_DEFINE_VALUE = re.compile(r'[A-Za-z0-9_.+\-"]*')

# platformio.ini options that would put a second list of sources or flags next to build.toml.
FORBIDDEN_INI_OPTIONS = (
    "build_src_filter",
    "src_filter",
    "build_flags",
    "build_src_flags",
    "build_unflags",
    "board_build.ldscript",
)


def flag_key(flag: str) -> str | None:
    """What a flag sets, for flags where a later one overrides an earlier one; else None."""
    if re.fullmatch(r"-O([0-3sgz]|fast)?", flag):
        return "-O"
    if re.fullmatch(r"-g(gdb)?[0-3]?", flag):
        return "-g"
    if flag in ("-mthumb", "-marm"):
        return "-mthumb/-marm"
    m = re.fullmatch(r"-(std|m[\w-]+)=.*", flag)
    if m:
        return f"-{m[1]}="
    m = re.fullmatch(r"-([fW])(no-)?([\w+-]+?)(=.*)?", flag)
    if m:
        return f"-{m[1]}{m[3]}"
    return None


def flag_conflicts(effective: list[str], ours: list[str], exempt: Iterable[str] = ()) -> list[str]:
    """Why `effective` (a compiler command line's flags, in order) does not do what `ours` asks.

    Empty when every flag of ours is there and, for each kind of flag we set, the last one
    of that kind (the one the compiler obeys) is ours. Keys in `exempt` are not checked.
    """
    skip = set(exempt)
    problems = [f"{f} is missing" for f in ours if f not in effective and flag_key(f) not in skip]
    last_ours = {k: f for f in ours if (k := flag_key(f)) and k not in skip}
    last_eff = {k: f for f in effective if (k := flag_key(f)) in last_ours}
    problems += [f"{last_eff[k]} overrides {f}" for k, f in last_ours.items() if last_eff.get(k, f) != f]
    return problems


def unflags(spec: BuildSpec) -> list[str]:
    """What BUILD_UNFLAGS removes from PlatformIO's own additions.

    Every optimisation level but ours (whichever one the platform adds), and the C++ library
    for C firmware. Removing a flag nobody added does nothing.
    """
    ours = [f for f in spec.cflags if flag_key(f) == "-O"]
    out = [f for f in OPTIMISATION_LEVELS if ours and f not in ours]
    if not any(s.suffix in _CXX_SUFFIXES for s in spec.sources):
        out.append("-lstdc++")
    return out


def scons_define_value(value: str) -> str:
    """A define's value as SCons must pass it: '"nucleo_f746zg"' becomes '\\"nucleo_f746zg\\"'.

    SCons hands the command line to a shell, which would eat bare quotes and turn the
    string BOARD_NAME="nucleo_f746zg" into the identifier nucleo_f746zg.
    (PlatformIO escapes a build_flags -D value the same way.)
    """
    if not _DEFINE_VALUE.fullmatch(value):
        raise ValueError(f"define value {value!r} needs quoting that pio_build.py does not do")
    return value.replace('"', '\\"')


def define_items(cppdefines: Iterable[Any]) -> list[tuple[str, str | None]]:
    """SCons CPPDEFINES (strings, 'A=B', (name, value) pairs, dicts) as (name, value) pairs."""
    out: list[tuple[str, str | None]] = []
    for d in cppdefines:
        if isinstance(d, Mapping):
            out += [(str(k), None if v is None else str(v)) for k, v in d.items()]
        elif isinstance(d, str):
            name, eq, value = d.partition("=")
            out.append((name, value if eq else None))
        else:
            seq = list(d)
            out.append((str(seq[0]), str(seq[1]) if len(seq) > 1 and seq[1] is not None else None))
    return out


def define_conflicts(effective: Iterable[Any], ours: list[tuple[str, str]]) -> list[str]:
    """Defines of ours that are missing from, or given other values in, SCons CPPDEFINES."""
    seen: dict[str, set[str | None]] = {}
    for name, value in define_items(effective):
        seen.setdefault(name, set()).add(value)
    return [
        f"{name}: expected {value}, found {sorted(map(str, seen.get(name, set())))}"
        for name, value in ours
        if seen.get(name) != {value}
    ]


def src_filter(sources: list[Path], src_dir: Path) -> str:
    """build_src_filter naming exactly these files (paths relative to src_dir, glob-escaped)."""
    items = []
    for s in sources:
        if s.suffix not in PIO_SOURCE_SUFFIXES:
            raise ValueError(f"{s}: PlatformIO does not compile {s.suffix} files")
        rel = s.relative_to(src_dir).as_posix()
        if any(c in rel for c in " <>$"):
            raise ValueError(f"{rel}: cannot be named in a PlatformIO source filter")
        items.append(f"+<{glob.escape(rel)}>")
    return " ".join(items)


def scons_vars(spec: BuildSpec, build_dir: Path, src_dir: Path) -> dict[str, Any]:
    """The SCons construction variables that build `spec` in PlatformIO.

    Everything comes from the spec; the only additions are the ones the offline builder
    makes at link time too (-L<build dir> so memory.ld is found, the linker script, a map
    file) and BUILD_UNFLAGS against PlatformIO's own conflicting flags.
    """
    if spec.linker_script is None or not spec.memory_ld:
        raise ValueError(f"{spec.target}: not a firmware target (no linker script)")
    return {
        "SRC_FILTER": src_filter(spec.sources, src_dir),
        "CPPPATH": [str(p) for p in spec.include_dirs],
        "CFLAGS": [f for f in spec.cflags if _C_ONLY.fullmatch(f)],
        "CCFLAGS": [f for f in spec.cflags if not _C_ONLY.fullmatch(f)],
        "CPPDEFINES": [(k, scons_define_value(v)) for k, v in sorted(spec.defines.items())],
        "LINKFLAGS": [*spec.ldflags, f"-Wl,-Map={build_dir / 'firmware.map'}"],
        "LIBPATH": [str(build_dir)],
        "LDSCRIPT_PATH": str(spec.linker_script),
        "BUILD_UNFLAGS": unflags(spec),
    }


def ini_problems(board: Board, options: Mapping[str, Any]) -> list[str]:
    """Where an [env:<board>] section of platformio.ini disagrees with boards/<board>.toml."""
    where = f"boards/{board.name}.toml"
    if not board.pio:
        return [f"{where} has no [pio] table: not a PlatformIO board"]
    want = {
        "board": board.pio.get("board"),
        "upload_protocol": board.pio.get("upload_protocol"),
        "monitor_speed": board.baud,
    }
    problems = [
        f"{key} = {options.get(key)} in platformio.ini, but {value} in {where}"
        for key, value in want.items()
        if value is None or str(options.get(key)) != str(value)
    ]
    problems += [
        f"{o} is set in platformio.ini: sources and flags come from firmware/build.toml"
        for o in FORBIDDEN_INI_OPTIONS
        if options.get(o)
    ]
    if options.get("framework"):
        problems.append("framework is set in platformio.ini: the firmware is bare metal")
    return problems


def selected_plan(board_name: str, project_dir: Path, python: Path | None = None) -> tuple[bytes, int]:
    """The training plan `invoke flash` puts in this board's firmware: (plan, arena bytes).

    With the project's .venv Python, the plan is selected afresh the way `invoke flash` does
    (python -m pytools.flashing select-plan); otherwise the one it selected last is used.
    """
    from pytools.flashing import selected_plan_files

    venv = python or project_dir / ".venv" / "bin" / "python"
    if venv.exists():
        p = subprocess.run(
            [str(venv), "-m", "pytools.flashing", "select-plan", "--board", board_name],
            cwd=project_dir,
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            raise ValueError(f"selecting the training plan failed: {(p.stdout + p.stderr).strip()}")
    plan, meta = selected_plan_files(board_name)
    if not plan.is_file() or not meta.is_file():
        raise ValueError(
            f"no training plan selected for {board_name}: run `invoke flash --board {board_name}` "
            "once (or ./setup.sh, so that the project's .venv exists)"
        )
    import json

    return plan.read_bytes(), int(json.loads(meta.read_text())["arena"])


def plan_asm(plan: bytes, arena: int, build_dir: Path) -> Path:
    """Writes the plan and plan.S (the offline builder's plan_asm_text: the blob, its arena and
    the plan's kernel table) into build_dir; plan.S's path."""
    from pytools.build.builder import plan_asm_text

    build_dir.mkdir(parents=True, exist_ok=True)
    blob = build_dir / "plan.bin"
    blob.write_bytes(plan)
    asm = build_dir / "plan.S"
    text = plan_asm_text(plan, arena, blob)
    if not asm.is_file() or asm.read_text() != text:
        asm.write_text(text)
    return asm


def forbidden_linked(nm_output: str, forbidden: Iterable[str]) -> list[str]:
    """Forbidden symbols in `nm` output (the last word of each line is a symbol name)."""
    names = {line.split()[-1] for line in nm_output.splitlines() if line.strip()}
    return sorted(names & set(forbidden))


# --- the SCons side ---------------------------------------------------------------------


def _flatten(flags: Iterable[Any]) -> list[str]:
    out: list[str] = []
    for f in flags:
        out += [str(x) for x in f] if isinstance(f, (tuple, list)) else [str(f)]
    return out


def _fail(env: Any, message: str) -> None:
    sys.stderr.write(f"Error: pio_build.py ({env['PIOENV']}): {message}\n")
    env.Exit(1)


def configure(env: Any) -> None:
    """Applies target_spec(<env name>) to PlatformIO's SCons environment."""
    project_dir = env.subst("$PROJECT_DIR")
    if project_dir not in sys.path:
        sys.path.insert(0, project_dir)
    # Imported here: pytools is importable only once the project dir is on sys.path.
    from pytools.boards import load_board
    from pytools.build.manifest import target_spec
    from pytools.errors import ToolError
    from pytools.paths import FIRMWARE

    try:
        board = load_board(env["PIOENV"])
        spec = target_spec(board)
    except (ToolError, OSError, KeyError, ValueError) as e:
        _fail(env, f"cannot resolve firmware/build.toml for this board: {e}")
        return
    problems = ini_problems(board, env.GetProjectOptions(as_dict=True))
    src_dir = Path(env.subst("$PROJECT_SRC_DIR")).resolve()
    if src_dir != FIRMWARE.resolve():
        problems.append(f"[platformio] src_dir is {src_dir}, not {FIRMWARE}")
    if problems:
        _fail(env, "; ".join(problems))
        return

    build_dir = Path(env.subst("$BUILD_DIR"))
    v = scons_vars(spec, build_dir, FIRMWARE)
    build_dir.mkdir(parents=True, exist_ok=True)
    memory = build_dir / "memory.ld"
    if not memory.is_file() or memory.read_text() != spec.memory_ld:
        memory.write_text(spec.memory_ld)

    try:
        plan, arena = selected_plan(board.name, Path(project_dir))
    except (ValueError, OSError) as e:
        _fail(env, str(e))
        return
    asm = plan_asm(plan, arena, build_dir / "plan")

    env.Replace(SRC_FILTER=v["SRC_FILTER"], LDSCRIPT_PATH=v["LDSCRIPT_PATH"])
    # PlatformIO's documented way for a pre: script to add sources outside src_dir.
    env.BuildSources(str(build_dir / "plan_obj"), str(asm.parent), "+<plan.S>")
    appended = ("CPPPATH", "CFLAGS", "CCFLAGS", "CPPDEFINES", "LINKFLAGS", "BUILD_UNFLAGS")
    env.Append(**{k: v[k] for k in appended})
    env.Prepend(LIBPATH=v["LIBPATH"])
    print(
        f"pio_build.py: {board.name} from firmware/build.toml, BUILD_ID {spec.defines['BUILD_ID']}, "
        f"training plan {len(plan):,} B (arena {arena:,} B) from build/{board.name}/selected-plan"
    )

    checked: list[bool] = []

    def verify_flags(node_env: Any, node: Any) -> Any:
        """Build middleware: runs once all of PlatformIO's flags are in, before compiling."""
        if not checked:
            checked.append(True)
            exempt = ("-O", "-g") if "debug" in node_env["BUILD_TYPE"] else ()
            compile_flags = _flatten(node_env.get("CFLAGS", [])) + _flatten(node_env.get("CCFLAGS", []))
            problems = [
                *flag_conflicts(compile_flags, spec.cflags, exempt),
                *flag_conflicts(_flatten(node_env.get("LINKFLAGS", [])), spec.ldflags),
                *define_conflicts(node_env.get("CPPDEFINES", []), v["CPPDEFINES"]),
            ]
            if problems:
                _fail(node_env, "flags differ from firmware/build.toml: " + "; ".join(problems))
        return node

    def check_forbidden(target: list[Any], source: list[Any], env: Any) -> int:
        """Post action of the size check: source[0] is the linked ELF."""
        nm = shutil.which("arm-none-eabi-nm", path=env["ENV"].get("PATH"))
        if not nm:
            sys.stderr.write("Error: arm-none-eabi-nm not found\n")
            return 1
        elf = str(source[0])
        bad = forbidden_linked(
            subprocess.run([nm, elf], capture_output=True, text=True, check=True).stdout,
            spec.forbidden_symbols,
        )
        if bad:
            sys.stderr.write(
                f"Error: {elf} links {', '.join(bad)}: the firmware must not allocate at run time\n"
            )
            return 1
        return 0

    env.AddBuildMiddleware(verify_flags)
    # On "checkprogsize", the alias PlatformIO runs after every link and before every upload.
    # Not on the ELF itself: PlatformIO attaches a pre: script's action to a file that already
    # exists at once, and the Program builder created later drops it (works on clean builds only).
    env.AddPostAction("checkprogsize", env.VerboseAction(check_forbidden, "Checking for forbidden symbols"))


if "Import" in globals():  # run by PlatformIO (SCons) as `extra_scripts = pre:pio_build.py`
    globals()["Import"]("env")
    try:
        configure(globals()["env"])
    except ImportError as e:  # e.g. a package pytools needs is missing from PlatformIO's Python
        sys.stderr.write(
            f"Error: pio_build.py cannot import the project's build code ({e}); "
            "run PlatformIO from the project's .venv (./setup.sh)\n"
        )
        globals()["env"].Exit(1)
