"""The board's persistence of trained state, from the host: SAVE, PERSIST_INFO, PERSIST_ERASE,
RESET and the power-loss diagnostic (firmware/app/persist_cmd.c; slot logic in
firmware/app/persist.c; docs/protocol.md, "Persistence")."""

from __future__ import annotations

import re
import time
from typing import Any

from pytools.boards import Board
from pytools.build.manifest import persist_region
from pytools.link import frame as fr
from pytools.link.client import BoardRefused, Link, LinkError
from pytools.link.protocol import Msg, layout
from pytools.paths import FIRMWARE


def _slot_statuses() -> dict[int, tuple[str, str]]:
    """code -> (short name, what failed), from firmware/app/persist_status.def (the C enum's source)."""
    text = (FIRMWARE / "app" / "persist_status.def").read_text()
    rows = re.findall(r'^SLOT_STATUS\((\w+),\s*(\d+),\s*"([^"]*)",\s*"([^"]*)"\)', text, re.M)
    return {int(code): (short, doc) for _, code, short, doc in rows}


STATUSES = _slot_statuses()
SLOT_STATUS = tuple(STATUSES[k][0] for k in range(len(STATUSES)))  # by code: "valid", "erased", ...
VALID = 0
NO_SLOT = 255


def status_text(code: int) -> str:
    """A slot status in words: its name and the check that failed ("bad data: the data's CRC-32
    does not match the header's: ...")."""
    short, doc = STATUSES.get(code, (f"status {code}", "unknown to this version of the tools"))
    return f"{short} ({doc})"


SAVE_TIMEOUT = 20.0  # seconds: erasing a 128 KB STM32F746 sector takes up to 2 s (RM0385)


def save(link: Link) -> dict[str, Any]:
    """Persists the board's trained state now: slot, sequence, length, cost."""
    r = link.request(Msg.SAVE, timeout=SAVE_TIMEOUT)
    if r.type != Msg.SAVE_RSP:
        raise LinkError(f"SAVE answered with 0x{r.type:02x}")
    return layout("SAVE_RSP").unpack(r.payload)


def info(link: Link) -> dict[str, Any]:
    """Both slots (status, sequence, length), the plan's state size, what boot restored."""
    r = link.request(Msg.PERSIST_INFO)
    if r.type != Msg.PERSIST_INFO_RSP:
        raise LinkError(f"PERSIST_INFO answered with 0x{r.type:02x}")
    d = layout("PERSIST_INFO_RSP").unpack(r.payload)
    for k in (0, 1):
        code = d[f"slot{k}_status"]
        d[f"slot{k}_status_name"] = STATUSES.get(code, (f"status {code}", ""))[0]
    return d


def erase(link: Link) -> None:
    """Erases both slots: a diagnostic build's request (build_firmware(diag=True)); the others
    refuse it."""
    link.request(Msg.PERSIST_ERASE, timeout=SAVE_TIMEOUT)


def _send_and_await_boot(link: Link, type_: int, payload: bytes, timeout: float) -> list[str]:
    """Sends a request the board answers by resetting, waits for the new boot's log, says HELLO
    again; returns the new boot's log lines."""
    seen = len(link.logs)
    seq = link._next_seq()
    refused: list[fr.Frame] = []
    shown = link.on_frame

    def watch(direction: str, item: Any) -> None:  # a refusal is the one reply this request gets
        if isinstance(item, fr.Frame) and item.seq == seq and item.type == Msg.ERROR:
            refused.append(item)
        if shown:
            shown(direction, item)

    link.port.write(fr.encode(type_, seq, payload))
    deadline = time.monotonic() + timeout
    link.on_frame = watch
    try:
        while time.monotonic() < deadline and not refused:
            link.poll(0.05)
            lines = [e["text"] for e in link.logs[seen:]]
            if any(t.startswith("boot:") for t in lines):
                break
    finally:
        link.on_frame = shown
    if refused:
        e = layout("ERROR").unpack(refused[0].payload)
        raise BoardRefused(e["code"], e["request_type"], e["message"])
    while time.monotonic() < deadline:
        link.poll(0.05)
        lines = [e["text"] for e in link.logs[seen:]]
        boot = [i for i, t in enumerate(lines) if t.startswith("boot:")]
        if boot:
            # HELLO waits in the UART until the boot is done, so its answer comes after the
            # boot's logs (model, persist).
            link.hello()
            return [e["text"] for e in link.logs[seen + boot[-1] :]]
    raise LinkError(f"the board did not boot again within {timeout:.0f} s of the reset")


def reset(link: Link, timeout: float = 10.0) -> list[str]:
    """Resets the board (AIRCR.SYSRESETREQ) and reconnects; the new boot's log lines."""
    return _send_and_await_boot(link, Msg.RESET, b"", timeout)


def save_aborted(link: Link, n_bytes: int, timeout: float = SAVE_TIMEOUT) -> list[str]:
    """Power loss mid-save: the board programs n_bytes of the new slot (data, then header, then
    the commit word), then resets itself. Reconnects; the new boot's log lines."""
    return _send_and_await_boot(
        link, Msg.DIAG_SAVE_ABORT, layout("DIAG_SAVE_ABORT").pack(bytes=n_bytes), timeout
    )


def slot_capacity(board: Board) -> int:
    """Bytes of trained state one persistence slot of this board holds."""
    return persist_region(board).capacity


def fit_note(board: Board, state_size: int) -> str:
    """One report line: does this state fit the board's persistence slot?"""
    cap = slot_capacity(board)
    if state_size <= cap:
        return f"persist   {state_size:,} B of state per save; a slot holds {cap:,} B"
    return (
        f"WARNING   the trained state ({state_size:,} B) does not fit a persistence slot of "
        f"{board.name} ({cap:,} B): it trains, but SAVE will refuse and nothing survives a reset"
    )
