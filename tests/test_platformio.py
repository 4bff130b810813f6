"""PlatformIO support: platformio.ini names the boards; pio_build.py maps the one BuildSpec.

No test here needs PlatformIO or its registry except the last, which runs `pio project config`
when `pio` is installed and is skipped (with the reason) when it is not.
"""

from __future__ import annotations

import configparser
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import pio_build
from pytools.boards import load_board
from pytools.build.manifest import BuildSpec, target_spec
from pytools.paths import BOARDS, FIRMWARE, ROOT

INI = ROOT / "platformio.ini"
# Every board file with a [pio] table is a PlatformIO environment of the same name.
TOMLS = {p.stem: tomllib.loads(p.read_text()) for p in sorted(BOARDS.glob("*.toml"))}
PIO_BOARDS = sorted(name for name, t in TOMLS.items() if "pio" in t)


def read_ini() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(INI.read_text())
    return cp


def env_options(cp: configparser.ConfigParser, name: str) -> dict[str, str]:
    """An environment's options as PlatformIO sees them: [env] first, [env:<name>] on top."""
    return {**dict(cp["env"]), **dict(cp[f"env:{name}"])}


@pytest.fixture(scope="module", params=PIO_BOARDS)
def spec(request: pytest.FixtureRequest) -> BuildSpec:
    return target_spec(load_board(request.param))


# --- (1) platformio.ini ------------------------------------------------------------------


def test_hardware_boards_are_the_two_f746_boards():
    assert set(PIO_BOARDS) >= {"nucleo_f746zg", "disco_f746ng"}
    assert all(TOMLS[n]["kind"] == "hardware" for n in PIO_BOARDS)


def test_ini_has_one_environment_per_pio_board():
    cp = read_ini()
    envs = sorted(s.removeprefix("env:") for s in cp.sections() if s.startswith("env:"))
    assert envs == PIO_BOARDS
    assert cp["platformio"]["src_dir"] == "firmware"
    assert cp["platformio"]["default_envs"].split() == ["nucleo_f746zg"]


@pytest.mark.parametrize("name", PIO_BOARDS)
def test_ini_environment_matches_its_board_file(name: str):
    toml = TOMLS[name]
    opts = env_options(read_ini(), name)
    assert opts["platform"].split("@")[0] in ("ststm32", "platformio/ststm32")
    assert opts["board"] == toml["pio"]["board"]
    assert opts["upload_protocol"] == toml["pio"]["upload_protocol"] == "stlink"
    assert int(opts["monitor_speed"]) == toml["serial"]["baud"]
    assert opts["extra_scripts"].split() == ["pre:pio_build.py"]
    assert "framework" not in opts, "bare metal: our own startup code and linker script"
    # The same check pio_build.py makes before it builds.
    assert pio_build.ini_problems(load_board(name), opts) == []


def test_ini_lists_no_sources_or_flags():
    forbidden = {"build_src_filter", "src_filter", "build_flags", "build_src_flags", "build_unflags"}
    forbidden |= {"board_build.ldscript", "framework"}
    cp = read_ini()
    for section in cp.sections():
        assert not forbidden & set(cp[section]), f"[{section}] lists sources or flags"


def test_ini_check_catches_drift():
    board = load_board("nucleo_f746zg")
    good = env_options(read_ini(), "nucleo_f746zg")
    assert pio_build.ini_problems(board, good) == []
    for key, value in [
        ("board", "disco_f746ng"),
        ("monitor_speed", "9600"),
        ("upload_protocol", "mbed"),
        ("build_src_filter", "+<*>"),
        ("build_flags", "-O0"),
        ("framework", "cmsis"),
    ]:
        assert pio_build.ini_problems(board, {**good, key: value}), key
    assert pio_build.ini_problems(load_board("mps2_an500"), good), "a board without [pio]"


# --- (2) the mapping from BuildSpec to SCons --------------------------------------------


def test_sources_are_exactly_the_spec_sources(spec: BuildSpec, tmp_path: Path):
    flt = pio_build.scons_vars(spec, tmp_path, FIRMWARE)["SRC_FILTER"]
    items = re.findall(r"([+-])<([^>]+)>", flt)
    assert re.sub(r"[+-]<[^>]+>", "", flt).strip() == "", flt
    assert all(sign == "+" for sign, _ in items)
    resolved = [p for _, pattern in items for p in sorted(FIRMWARE.glob(pattern))]
    assert resolved == spec.sources
    assert not any("tests" in p.relative_to(FIRMWARE).parts for p in resolved)


def test_sources_as_platformio_matches_them(spec: BuildSpec, tmp_path: Path):
    fs = pytest.importorskip("platformio.fs", reason="the platformio package is not importable here")
    flt = pio_build.scons_vars(spec, tmp_path, FIRMWARE)["SRC_FILTER"]
    exts = ["c", "cc", "cpp", "cxx", "c++", "S", "spp", "SPP", "sx", "s", "asm", "ASM"]
    got = fs.match_src_files(str(FIRMWARE), flt, exts)
    assert sorted(got) == sorted(str(p.relative_to(FIRMWARE)) for p in spec.sources)


def test_compile_flags_are_the_spec_flags(spec: BuildSpec, tmp_path: Path):
    v = pio_build.scons_vars(spec, tmp_path, FIRMWARE)
    c_only, common = v["CFLAGS"], v["CCFLAGS"]
    assert sorted(c_only + common) == sorted(spec.cflags)
    assert [f for f in spec.cflags if f in c_only] == c_only, "CFLAGS keeps the manifest's order"
    assert [f for f in spec.cflags if f not in c_only] == common, "CCFLAGS keeps the manifest's order"
    assert "-std=c11" in c_only
    # SCons puts CFLAGS before CCFLAGS: the split must not change which flag wins.
    assert pio_build.flag_conflicts(c_only + common, spec.cflags) == []
    assert v["CPPPATH"] == [str(p) for p in spec.include_dirs]


def test_compiler_sees_the_offline_builders_flags(spec: BuildSpec, tmp_path: Path):
    """The command line SCons hands to the shell gives the compiler the offline build's argv."""
    v = pio_build.scons_vars(spec, tmp_path, FIRMWARE)
    words = [
        *v["CFLAGS"],
        *v["CCFLAGS"],
        *(f"-D{k}={val}" for k, val in v["CPPDEFINES"]),
        *(f"-I{p}" for p in v["CPPPATH"]),
    ]
    assert not any(c.isspace() for w in words for c in w), "SCons would quote these words"
    # SCons (POSIX) joins the words with spaces and runs `sh -c` on the result.
    argv = subprocess.run(
        ["sh", "-c", "printf '%s\\n' " + " ".join(words)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert sorted(argv) == sorted(spec.compile_flags())
    assert f'-DBOARD_NAME="{spec.target}"' in argv
    assert f"-DBUILD_ID={spec.defines['BUILD_ID']}" in argv
    assert [k for k, _ in v["CPPDEFINES"]] == sorted(spec.defines)


def test_link_is_the_offline_builders_link(spec: BuildSpec, tmp_path: Path):
    v = pio_build.scons_vars(spec, tmp_path, FIRMWARE)
    assert v["LINKFLAGS"] == [*spec.ldflags, f"-Wl,-Map={tmp_path / 'firmware.map'}"]
    assert v["LDSCRIPT_PATH"] == str(spec.linker_script)
    assert v["LIBPATH"] == [str(tmp_path)], "memory.ld is written there"
    assert "INCLUDE memory.ld" in spec.linker_script.read_text()
    assert "MEMORY" in spec.memory_ld


def test_unflags_remove_only_platformios_flags(spec: BuildSpec, tmp_path: Path):
    unflags = pio_build.scons_vars(spec, tmp_path, FIRMWARE)["BUILD_UNFLAGS"]
    assert not set(unflags) & {*spec.cflags, *spec.ldflags}
    assert "-Os" in unflags, "ststm32's -Os would override our -O2"
    assert {"-O0", "-O3", "-Og", "-Oz"} <= set(unflags), "any platform version's level goes"
    # What PlatformIO's compile line looks like after BUILD_UNFLAGS: ours still win.
    cpu = next(f for f in spec.cflags if f.startswith("-mcpu="))
    pio_adds = [f for f in [*PIO_ADDS_TODAY, cpu] if f not in unflags]
    assert pio_build.flag_conflicts([*spec.cflags, *pio_adds], spec.cflags) == []


def test_configure_applies_the_mapping(spec: BuildSpec, tmp_path: Path):
    """configure() (the SCons side) puts every mapped variable into the environment."""
    env = FakeEnv(spec.target, tmp_path, env_options(read_ini(), spec.target))
    pio_build.configure(env)
    v = pio_build.scons_vars(spec, tmp_path, FIRMWARE)
    for key in ("SRC_FILTER", "LDSCRIPT_PATH", "CPPPATH", "CFLAGS", "CCFLAGS", "CPPDEFINES", "LINKFLAGS"):
        assert env[key] == v[key], key
    assert env["LIBPATH"][0] == str(tmp_path)
    assert env["BUILD_UNFLAGS"] == v["BUILD_UNFLAGS"]
    assert (tmp_path / "memory.ld").read_text() == spec.memory_ld
    assert [t for t, _ in env.post_actions] == ["checkprogsize"]
    (verify,) = env.middlewares
    # PlatformIO's platform then appends its flags; BUILD_UNFLAGS removes the conflicting ones.
    env["CCFLAGS"] += [f for f in PIO_ADDS_TODAY if f not in v["BUILD_UNFLAGS"]]
    env["CPPDEFINES"] += [("F_CPU", "216000000L"), ("PLATFORMIO", 60119), "STM32F746xx"]
    node = object()
    assert verify(env, node) is node


def test_configure_stops_a_build_whose_flags_were_overridden(spec: BuildSpec, tmp_path: Path):
    other_fpu = "-mfpu=fpv5-d16" if "-mfpu=fpv4-sp-d16" in spec.cflags else "-mfpu=fpv4-sp-d16"
    for key, extra in [
        ("CCFLAGS", other_fpu),
        ("CCFLAGS", "-O0"),
        ("LINKFLAGS", "-mfloat-abi=soft"),
    ]:
        env = FakeEnv(spec.target, tmp_path, env_options(read_ini(), spec.target))
        pio_build.configure(env)
        env[key] = [*env[key], extra]
        with pytest.raises(SystemExit):
            env.middlewares[0](env, object())
    env = FakeEnv(spec.target, tmp_path, env_options(read_ini(), spec.target))
    pio_build.configure(env)
    env["CPPDEFINES"] = [*env["CPPDEFINES"], ("BOARD_BAUD", "9600")]
    with pytest.raises(SystemExit):
        env.middlewares[0](env, object())


def test_configure_refuses_an_ini_that_disagrees(tmp_path: Path):
    opts = {**env_options(read_ini(), "nucleo_f746zg"), "board": "disco_f746ng"}
    with pytest.raises(SystemExit):
        pio_build.configure(FakeEnv("nucleo_f746zg", tmp_path, opts))
    with pytest.raises(SystemExit):
        pio_build.configure(FakeEnv("mps2_an500", tmp_path, opts))


# --- the helpers, including that they can say no --------------------------------------------


def test_flag_conflicts():
    ours = ["-O2", "-mcpu=cortex-m7", "-mfpu=fpv5-sp-d16", "-fno-common", "-Wshadow", "-mthumb"]
    assert pio_build.flag_conflicts([*ours, "-Wall", "-mthumb", "-mcpu=cortex-m7"], ours) == []
    assert pio_build.flag_conflicts(["-Os", *ours], ours) == [], "an earlier flag loses"
    assert pio_build.flag_conflicts([*ours, "-Os"], ours) == ["-Os overrides -O2"]
    assert pio_build.flag_conflicts([*ours, "-fcommon"], ours) == ["-fcommon overrides -fno-common"]
    assert pio_build.flag_conflicts([*ours, "-Wno-shadow"], ours) == ["-Wno-shadow overrides -Wshadow"]
    assert pio_build.flag_conflicts([*ours, "-marm"], ours) == ["-marm overrides -mthumb"]
    assert pio_build.flag_conflicts(ours[1:], ours) == ["-O2 is missing"]
    assert pio_build.flag_conflicts([*ours[1:], "-Og"], ours, exempt=["-O"]) == []


def test_define_values_survive_the_shell():
    assert pio_build.scons_define_value('"nucleo_f746zg"') == '\\"nucleo_f746zg\\"'
    assert pio_build.scons_define_value("216000000u") == "216000000u"
    for bad in ['"two words"', "$(rm)", "a;b", "x`y`"]:
        with pytest.raises(ValueError):
            pio_build.scons_define_value(bad)


def test_define_conflicts():
    ours = [("A", "1"), ("S", '\\"x\\"')]
    assert pio_build.define_conflicts([("A", "1"), "B", "C=2", {"S": '\\"x\\"'}], ours) == []
    assert pio_build.define_conflicts([("A", "1"), ("S", '\\"x\\"'), "A=2"], ours)
    assert pio_build.define_conflicts([("A", "1")], ours)


def test_src_filter_refuses_what_platformio_would_drop(tmp_path: Path):
    assert pio_build.src_filter([FIRMWARE / "app" / "main.c"], FIRMWARE) == "+<app/main.c>"
    with pytest.raises(ValueError):
        pio_build.src_filter([FIRMWARE / "link" / "errors.def"], FIRMWARE)
    with pytest.raises(ValueError):
        pio_build.src_filter([tmp_path / "elsewhere.c"], FIRMWARE)


def test_forbidden_linked():
    nm = "08000100 T main\n08000200 T malloc\n         U _sbrk\n20000000 B buf\n"
    assert pio_build.forbidden_linked(nm, ["malloc", "free", "_sbrk"]) == ["_sbrk", "malloc"]
    assert pio_build.forbidden_linked("08000100 T main\n", ["malloc"]) == []


# --- (3) PlatformIO itself, if installed -------------------------------------------------


def test_pio_reads_the_project_offline():
    beside = Path(sys.executable).parent / "pio"  # the project's .venv, not necessarily on PATH
    pio = str(beside) if beside.exists() else shutil.which("pio") or shutil.which("platformio")
    if not pio:
        pytest.skip("PlatformIO is not installed (pip install platformio); `pio project config` not run")
    env = {**os.environ, "PLATFORMIO_SETTING_ENABLE_TELEMETRY": "No"}
    r = subprocess.run(
        [pio, "project", "config", "-d", str(ROOT), "--json-output"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    line = next(x for x in reversed(r.stdout.splitlines()) if x.startswith("[["))  # after any banner
    config = {section: dict(options) for section, options in json.loads(line)}
    assert Path(config["platformio"]["src_dir"]) == FIRMWARE
    assert config["platformio"]["default_envs"] == ["nucleo_f746zg"]
    envs = sorted(s.removeprefix("env:") for s in config if s.startswith("env:"))
    assert envs == PIO_BOARDS
    for name in envs:
        opts = config[f"env:{name}"]
        assert opts["board"] == TOMLS[name]["pio"]["board"]
        assert int(opts["monitor_speed"]) == TOMLS[name]["serial"]["baud"]
        assert opts["extra_scripts"] == ["pre:pio_build.py"]


# What ststm32's bare-metal builder appends today (builder/frameworks/_bare.py): only used
# here, to show that BUILD_UNFLAGS and the flag check cope with it.
PIO_ADDS_TODAY = ("-Os", "-ffunction-sections", "-fdata-sections", "-Wall", "-mthumb")


@pytest.fixture(autouse=True)
def _no_plan_compile(request, monkeypatch):
    """configure() selects the training plan with the .venv (a compile per call): tests that do
    not check the plan itself get a small fixed one (a real plan: plan.S carries its kernel
    table, read from the plan's operators)."""
    if request.node.name != "test_pio_builds_the_same_firmware_and_plan_as_invoke_flash":
        monkeypatch.setattr(pio_build, "selected_plan", lambda board, project: (_small_plan(), 64))


@functools.cache
def _small_plan() -> bytes:
    from pytools.model.compiler import compile_graph
    from tests.test_plan import small_graph

    return compile_graph(small_graph(), load_board("mps2_an500"), "small").blob


class FakeEnv(dict):
    """Just enough of PlatformIO's SCons environment for pio_build.configure()."""

    def __init__(self, pioenv: str, build_dir: Path, options: dict[str, Any]) -> None:
        super().__init__(PIOENV=pioenv, BUILD_TYPE="release", ENV={"PATH": os.environ.get("PATH", "")})
        self.paths = {
            "$PROJECT_DIR": str(ROOT),
            "$PROJECT_SRC_DIR": str(FIRMWARE),
            "$BUILD_DIR": str(build_dir),
        }
        self.options = options
        self.middlewares: list[Any] = []
        self.post_actions: list[tuple[str, Any]] = []

    def subst(self, text: str) -> str:
        return self.paths[text]

    def GetProjectOptions(self, as_dict: bool = False) -> dict[str, Any]:
        return dict(self.options)

    def Replace(self, **kw: Any) -> None:
        self.update(kw)

    def Append(self, **kw: Any) -> None:
        for k, v in kw.items():
            self[k] = [*self.get(k, []), *v]

    def Prepend(self, **kw: Any) -> None:
        for k, v in kw.items():
            self[k] = [*v, *self.get(k, [])]

    def AddBuildMiddleware(self, callback: Any) -> None:
        self.middlewares.append(callback)

    def AddPostAction(self, target: str, action: Any) -> None:
        self.post_actions.append((target, action))

    def VerboseAction(self, action: Any, text: str) -> Any:
        return action

    def Exit(self, code: int) -> None:
        raise SystemExit(code)

    def BuildSources(self, variant_dir: str, src_dir: str, src_filter: str) -> None:
        self.setdefault("built_sources", []).append((variant_dir, src_dir, src_filter))


# --- the training plan: PlatformIO builds what `invoke flash` flashes --------------------------


def test_pio_builds_the_same_firmware_and_plan_as_invoke_flash(tmp_path: Path):
    """PlatformIO cannot download its platform here, so the two builds are compared where they
    can be: the plan pio_build.py selects (through the .venv, as in a real `pio run`) is the
    one `invoke flash` embeds, its plan.S is the offline builder's, and the defines (BUILD_ID
    included) are the same; the firmware id plus the plan's CRC is the build id HELLO says."""
    from pytools.build.builder import image_build_id
    from pytools.flashing import training_image
    from pytools.model.plan import read_header

    board = load_board("nucleo_f746zg")
    image = training_image(board)
    plan, arena = pio_build.selected_plan(board.name, ROOT)
    offline_plan = (image.elf.parent / "plan.bin").read_bytes()
    assert plan == offline_plan
    asm = pio_build.plan_asm(plan, arena, tmp_path / "plan")
    offline_asm = (image.elf.parent / "plan.S").read_text()
    moved = offline_asm.replace(str(image.elf.parent / "plan.bin"), str(tmp_path / "plan" / "plan.bin"))
    assert asm.read_text() == moved
    env = FakeEnv(board.name, tmp_path, env_options(read_ini(), board.name))
    pio_build.configure(env)
    spec = target_spec(board)
    firmware_id = dict(pio_build.define_items(env["CPPDEFINES"]))["BUILD_ID"].strip('\\"')
    assert image_build_id(firmware_id, plan) == image.build_id
    assert image.build_id.endswith(f"-{read_header(plan)['crc32']:08x}")
    assert spec.defines["BUILD_ID"].strip('"') == firmware_id
    assert env["built_sources"] == [(str(tmp_path / "plan_obj"), str(asm.parent), "+<plan.S>")]


def test_pio_refuses_to_build_without_a_plan(tmp_path: Path, monkeypatch):
    def no_plan(board, project):
        raise ValueError("no training plan selected for nucleo_f746zg: run `invoke flash`")

    monkeypatch.setattr(pio_build, "selected_plan", no_plan)
    with pytest.raises(SystemExit):
        pio_build.configure(FakeEnv("nucleo_f746zg", tmp_path, env_options(read_ini(), "nucleo_f746zg")))


def test_the_platform_is_pinned():
    assert re.fullmatch(r"(platformio/)?ststm32@\d+\.\d+\.\d+", read_ini()["env"]["platform"])
