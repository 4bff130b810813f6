"""Bringing up the board a session trains on: an emulated board reused or started, a real one
checked to run this plan's firmware (connect), or the board a session ran on found again to
resume it (reconnect)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytools import emulator
from pytools.boards import Board
from pytools.build.builder import FirmwareImage
from pytools.connect import open_link, port_url
from pytools.errors import ToolError
from pytools.link.client import Link
from pytools.link.protocol import Msg, layout
from pytools.model.board_runner import BoardModel
from pytools.model.host_twin import io_tensors, tensor_table
from pytools.model.plan import read_header
from pytools.session.folder import BOARD_FLASH
from pytools.train.compile_train import CompiledTraining
from pytools.train.trainer import Trainer


@dataclass
class Connection:
    link: Link | None  # None: the host twin (--board host), no board and no link
    url: str
    emulator_name: str | None = None  # the emulator this session started (and must stop)
    emulator_pid: int | None = None
    reused: str | None = None  # name of a running emulated board reused as it was
    fresh_state: bool = True


def model_info(link: Link) -> dict[str, Any]:
    return layout("MODEL_INFO_RSP").unpack(link.request(Msg.MODEL_INFO).payload)


def plan_mismatches(hello: dict[str, Any], info: dict[str, Any], ct: CompiledTraining) -> list[str]:
    """How the board's firmware differs from the one built for this plan (empty: it matches)."""
    assert ct.image is not None
    want = ct.image.build_id
    out = []
    if hello.get("board") != ct.board.name:
        out.append(f"it is a {hello.get('board')!r} board, the plan is for {ct.board.name}")
    if hello.get("build_id") != want:
        out.append(f"it runs firmware build {hello.get('build_id')}, this plan's firmware is build {want}")
    if info["status"] != 0:
        out.append(f"it has no usable model ({info['message'].strip() or 'none embedded'})")
        return out
    h = read_header(ct.compiled.blob)
    theirs = (info["model"], info["plan_size"], info["arena_size"], info["n_ops"], info["n_tensors"])
    ours = (h["model"], len(ct.compiled.blob), h["arena_size"], h["n_ops"], h["n_tensors"])
    if theirs != ours:
        out.append(
            "it embeds another plan: model {!r}, {:,} B plan, {:,} B arena, {} operators, {} tensors; "
            "this one is {!r}, {:,} B, {:,} B, {}, {}".format(*theirs, *ours)
        )
    return out


def state_is_initial(trainer: Trainer, initial: dict[str, np.ndarray]) -> bool:
    now = trainer.state()
    return all(np.array_equal(now[k], v) for k, v in initial.items())


def flash_instructions(board: Board, image: FirmwareImage) -> str:
    from pytools.flashing import flash_command

    st = " ".join(flash_command(board, image, "st-flash"))
    ocd = flash_command(board, image, "openocd")
    ocd_text = " ".join(f'"{a}"' if " " in a else a for a in ocd)
    return (
        f"flash the firmware built for this plan ({image.elf}), then run the session again:\n"
        f"  {st}\n"
        f"or\n  {ocd_text}\n"
        f"or `invoke flash --board {board.name}` with this session's --model, --scheme and --lr "
        "(it builds and flashes this training firmware and checks the build id the board reports)"
    )


def probe(url: str, board: Board, ct: CompiledTraining, initial: dict[str, np.ndarray]) -> list[str]:
    """Why the emulated board at url cannot be reused for this plan (empty: it can)."""
    try:
        with Link.open(url, baudrate=board.baud, retries=2) as link:
            problems = plan_mismatches(link.board, model_info(link), ct)
            if not problems:
                ins, outs = io_tensors(ct.compiled.blob)
                board_model = BoardModel(link, tensor_table(ct.compiled.blob), ins, outs)
                if not state_is_initial(Trainer(ct, board_model), initial):
                    problems.append("its trained state is no longer the plan's initial state")
            return problems
    except (ToolError, OSError) as e:
        return [f"it did not answer ({e})"]


def connect(
    board: Board,
    ct: CompiledTraining,
    port: str | None,
    initial: dict[str, np.ndarray],
    on_log: Callable[[Any, dict[str, Any]], None],
    own: list[str],
) -> Connection:
    """A link to a board that runs this plan: reused, started, or checked (real boards)."""
    assert ct.image is not None
    if board.is_emulated and not port:
        running = emulator.find(board.name)
        if running is not None:
            problems = probe(running.url, board, ct, initial)
            if not problems:
                print(
                    f"reusing the running emulated board {board.name} (pid {running.pid}): it runs this plan"
                )
                link = open_link(board, running.url, on_log=on_log)
                return Connection(link, running.url, reused=running.name)
            print(f"not reusing the running emulated board {board.name}: {'; '.join(problems)}")
        name = f"session-{board.name}-{os.getpid()}"
        own.append(name)  # before the start, so that an interrupted start is cleaned up too
        emu = emulator.start(board, ct.image.elf, name=name)
        print(f"started emulated board {board.name} as '{name}': pid {emu.pid}, serial {emu.url}")
        link = open_link(board, emu.url, on_log=on_log)
        return Connection(link, emu.url, emulator_name=name, emulator_pid=emu.pid)

    url = port_url(board, port)
    link = open_link(board, url, on_log=on_log)
    try:
        problems = plan_mismatches(link.board, model_info(link), ct)
        if problems:
            what = (
                f"leave out the port and the session starts an emulated board with this plan's "
                f"firmware ({ct.image.elf})"
                if board.is_emulated
                else flash_instructions(board, ct.image)
            )
            raise ToolError(
                f"the board on {url} does not run the firmware for this training plan: "
                f"{'; '.join(problems)}.\n{what}"
            )
    except BaseException:
        link.close()
        raise
    return Connection(link, url)


class Terminated(SystemExit):
    """SIGTERM arrived: the session ends like on Ctrl-C, through its finally blocks."""


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM ends the session through its finally blocks (the emulator is stopped)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def power_on(board: Board, ct: CompiledTraining, name: str, folder: Path) -> emulator.Emulator | None:
    """Starts the session's emulated board again (a power cycle) with the flash it had: its
    own file if it is still there (the board or the host was killed), else the copy the
    session kept in its folder when it ended. None: no flash is left."""
    assert ct.image is not None
    kept = folder / BOARD_FLASH
    if not emulator.flash_file(name).exists():
        if not kept.is_file():
            return None
        emulator.import_flash(board, name, kept)
    emu = emulator.start(board, ct.image.elf, name=name)
    print(
        f"started   the emulated board '{name}' again (it was not running), with its flash: "
        f"pid {emu.pid}, serial {emu.url}"
    )
    return emu


def reconnect(
    board: Board,
    ct: CompiledTraining,
    port: str | None,
    cfg: dict[str, Any],
    on_log: Any,
    own: list[str],
    folder: Path,
) -> Connection:
    """A link to the board a session ran on, to resume it: its emulator (started again from
    its flash if it stopped) or its port. The board must still run the session's firmware and
    plan."""
    assert ct.image is not None
    emu = cfg["board"]["emulator"]
    name = emu["name"] or emu["reused"]
    pid = emu["pid"]
    if board.is_emulated and not port:
        running = emulator.find(name) if name else None
        if running is None and name:
            if emu["name"]:
                own.append(name)  # before the start: an interrupted start is cleaned up too
            running = power_on(board, ct, name, folder)
            if running is not None:
                pid = running.pid
        if running is None:
            raise ToolError(
                f"the emulated board this session ran on ('{name}') is not running any more, and "
                f"neither its flash file nor a copy in the session folder ({BOARD_FLASH}) is left: "
                "its trained state went with it. Start a new session"
            )
        url = running.url
    else:
        url = port_url(board, port or cfg["board"]["serial"])
    link = open_link(board, url, on_log=on_log)
    try:
        problems = plan_mismatches(link.board, model_info(link), ct)
        if link.board["build_id"] != cfg["firmware"]["build_id"]:
            problems.append(
                f"it runs build {link.board['build_id']}, the session ran {cfg['firmware']['build_id']}"
            )
        if problems:
            raise ToolError(f"cannot resume the session on {url}: {'; '.join(problems)}")
    except BaseException:
        link.close()
        raise
    if emu["name"] and board.is_emulated and not port:
        if emu["name"] not in own:
            own.append(emu["name"])  # the session started it: this process stops it at the end
        return Connection(link, url, emulator_name=emu["name"], emulator_pid=pid)
    return Connection(link, url, reused=emu["reused"])
