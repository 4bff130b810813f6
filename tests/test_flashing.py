"""Flashing a real board: every tool is fed our image, the tool and build id are printed, and
HELLO's build id is checked afterwards. No board or probe here: the tools' command lines are
checked, and subprocess/link are replaced by fakes that record what they were given."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from pytools import flashing
from pytools.boards import load_board
from pytools.build.builder import FirmwareImage
from pytools.errors import ToolError

NUCLEO_F7, NUCLEO_F4 = load_board("nucleo_f746zg"), load_board("nucleo_f446re")


def _image(
    tmp_path: Path, board: str = "nucleo_f746zg", build_id: str = "0123456789ab-deadbeef"
) -> FirmwareImage:
    elf, bin_ = tmp_path / "firmware.elf", tmp_path / "firmware.bin"
    elf.write_bytes(b"\x7fELF")
    bin_.write_bytes(b"\0" * 16)
    return FirmwareImage(board, elf, bin_, tmp_path / "firmware.map", build_id, {})


@pytest.mark.parametrize("tool", flashing.TOOLS)
@pytest.mark.parametrize("board", [NUCLEO_F7, NUCLEO_F4], ids=lambda b: b.name)
def test_every_tool_writes_our_image(tool: str, board, tmp_path: Path) -> None:
    image = _image(tmp_path, board.name)
    cmd = flashing.flash_command(board, image, tool)
    assert str(image.elf) in " ".join(cmd) or str(image.bin) in cmd, "our image, not a build of its own"
    assert "run" not in cmd, "never `pio run -t upload` (PlatformIO's own build)"
    if tool == "pyocd":
        assert cmd[cmd.index("--target") + 1] == board.raw["probe"]["pyocd_target"]
    if "openocd" in tool:
        assert board.raw["probe"]["openocd_target"] in cmd
        assert f"program {image.elf} verify reset exit" in cmd
    if "st-flash" in tool:
        assert cmd[-2:] == [str(image.bin), "0x08000000"]
    if tool.startswith("pio-"):
        assert cmd[1:4] == ["pkg", "exec", "--package"]


def test_the_probe_targets_name_each_chip() -> None:
    assert NUCLEO_F7.raw["probe"] == {
        "pyocd_target": "stm32f746zgtx",
        "openocd_target": "target/stm32f7x.cfg",
    }
    assert NUCLEO_F4.raw["probe"] == {
        "pyocd_target": "stm32f446retx",
        "openocd_target": "target/stm32f4x.cfg",
    }


def test_flash_prints_the_tool_and_build_id_and_fails_loudly(tmp_path: Path, monkeypatch, capsys) -> None:
    image = _image(tmp_path)
    ran: list[list[str]] = []
    rc = [0]
    monkeypatch.setattr(
        flashing, "which", lambda t: f"/usr/bin/{t}" if t in ("openocd", "st-flash") else None
    )
    monkeypatch.setattr(
        subprocess, "run", lambda cmd, **kw: ran.append(cmd) or subprocess.CompletedProcess(cmd, rc[0])
    )
    done = flashing.flash_image(NUCLEO_F7, image)
    assert done.tool == "openocd", "pyOCD is not installed here: the next in line"
    assert ran == [flashing.flash_command(NUCLEO_F7, image, "openocd")]
    out = capsys.readouterr().out
    assert "with openocd" in out and image.build_id in out
    rc[0] = 1
    with pytest.raises(ToolError, match="flashing nucleo_f746zg with st-flash failed"):
        flashing.flash_image(NUCLEO_F7, image, "st-flash")
    with pytest.raises(ToolError, match=r"'pyocd' is not installed.*pip install pyocd"):
        flashing.flash_image(NUCLEO_F7, image, "pyocd")
    with pytest.raises(ToolError, match="unknown flash tool 'jlink'"):
        flashing.flash_image(NUCLEO_F7, image, "jlink")


def test_no_tool_at_all_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(flashing, "which", lambda t: None)
    with pytest.raises(ToolError, match=r"pip install pyocd.*openocd.*stlink-tools"):
        flashing.flash_image(NUCLEO_F7, _image(tmp_path))


class _FakeLink:
    def __init__(self, build_id: str) -> None:
        self.board = {"build_id": build_id}


def test_hello_must_name_the_flashed_build(tmp_path: Path, monkeypatch) -> None:
    image = _image(tmp_path)
    answers = {"id": image.build_id}

    @contextlib.contextmanager
    def fake_open(board, port=None, **kw):
        yield _FakeLink(answers["id"])

    monkeypatch.setattr("pytools.connect.open_link", fake_open)
    assert flashing.check_running(NUCLEO_F7, image, "/dev/ttyACM0") == image.build_id
    answers["id"] = "0123456789ab-00000000"
    with pytest.raises(ToolError, match="runs build 0123456789ab-00000000, not the image's"):
        flashing.check_running(NUCLEO_F7, image, "/dev/ttyACM0")


def test_an_emulated_board_is_not_flashed(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="emulated"):
        flashing.flash_image(load_board("mps2_an386"), _image(tmp_path, "mps2_an386"))
