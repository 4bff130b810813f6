"""Human-readable views of what the board says: board summary, logs, frames, faults."""

from __future__ import annotations

import time
from typing import Any

from pytools.boards import Board
from pytools.link import frame as fr
from pytools.link.protocol import Msg, layout, msg_name

LEVELS = {0: "debug", 1: "info", 2: "WARN", 3: "ERROR"}


def kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB" if n % 1024 else f"{n // 1024:,} KiB"


def stamp() -> str:
    t = time.time()
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def log_line(entry: dict[str, Any]) -> str:
    level = LEVELS.get(entry["level"], str(entry["level"]))
    return f"{stamp()} [board {entry['uptime_ms']:>8} ms] {level:<5} {entry['text']}"


def fault_line(report: dict[str, Any]) -> str:
    return f"{stamp()} FAULT {report['text']}"


def frame_line(direction: str, item: fr.Frame | fr.Damaged) -> str:
    if isinstance(item, fr.Damaged):
        return f"{stamp()} {direction} damaged frame ({item.reason}) seq={item.seq}"
    name = msg_name(item.type)
    if item.type == Msg.LOG:
        return log_line(layout("LOG").unpack(item.payload))
    if item.type == Msg.FAULT:
        return fault_line(layout("FAULT").unpack(item.payload))
    return f"{stamp()} {direction} {name:<20} seq={item.seq:<3} {len(item.payload)} bytes"


def board_summary(board: Board, hello: dict[str, Any], info: dict[str, Any]) -> str:
    unit = "instructions" if info["counter_unit"] == 1 else "cycles"
    lines = [
        f"board      {hello['board']} ({board.description})",
        f"firmware   build {hello['build_id']}, protocol v{hello['protocol_version']}",
        f"flash      {info['flash_used']:,} of {info['flash_size']:,} bytes used "
        f"({kib(info['flash_size'])} at 0x{info['flash_origin']:08X})",
        f"ram        {info['ram_static']:,} of {info['ram_size']:,} bytes reserved at link time "
        f"({kib(info['ram_size'])} at 0x{info['ram_origin']:08X})",
        f"stack      {info['stack_high_water']:,} of {info['stack_size']:,} bytes used (high-water mark)",
        f"uptime     {info['uptime_ms']:,} ms; counter {info['counter']:,} {unit}",
        f"timing     {board.timing_note}",
        f"link       max payload {hello['max_payload']:,} bytes; rx {info['rx_frames']:,} frames "
        f"({info['rx_bad_header']} bad header, {info['rx_bad_crc']} bad CRC, "
        f"{info['rx_duplicates']} retransmitted), tx {info['tx_frames']:,}",
    ]
    return "\n".join(lines)
