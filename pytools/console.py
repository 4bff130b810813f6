"""Human-readable views of what the board says: board summary, logs, frames, faults, and a
training session followed live from its folder."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
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
        f"{info['rx_duplicates']} retransmitted, {info['rx_timeouts']} timed out, "
        f"{info['rx_resyncs']} HELLO resyncs), tx {info['tx_frames']:,}",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- a training session, live


class SessionTail:
    """Follows a session folder that `invoke train` is writing (the training process owns the
    serial port, so the monitor reads what it appends): steps.jsonl, epochs.jsonl, board.log.

    poll() returns the new lines to show: the firmware's log lines, one status line when steps
    arrived (epoch, step, loss, running accuracy of the epoch, samples per second, stack
    high-water and the peak SRAM it implies), and each epoch's held-out result.
    """

    WINDOW = 50  # steps over which loss and speed are averaged

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.offsets: dict[str, int] = {}
        self.partial: dict[str, str] = {}
        self.steps: list[dict[str, Any]] = []
        self.config: dict[str, Any] = {}
        self.sram_base: int | None = None  # linker RAM minus the reserved thread stack

    def _new_lines(self, name: str) -> list[str]:
        path = self.folder / name
        try:
            with open(path, "rb") as f:
                f.seek(self.offsets.get(name, 0))
                data = f.read()
        except FileNotFoundError:
            return []
        self.offsets[name] = self.offsets.get(name, 0) + len(data)
        text = self.partial.pop(name, "") + data.decode("utf-8", "replace")
        lines = text.split("\n")
        if lines[-1]:
            self.partial[name] = lines[-1]  # written in part so far: wait for its end
        return [line for line in lines[:-1] if line.strip()]

    def _load_config(self) -> None:
        if self.config:
            return
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            self.config = json.loads((self.folder / "config.json").read_text())
            from pytools.boards import load_board

            with contextlib.suppress(Exception):
                stack = load_board(self.config["board"]["name"]).memory.stack_size
                self.sram_base = self.config["plan"]["sram_used"] - stack

    def status_line(self) -> str:
        s = self.steps[-1]
        # What the session resolved ("epochs"; none given: its default), else what was asked.
        epochs = self.config.get("epochs") or self.config.get("arguments", {}).get("epochs") or "?"
        per_epoch = self.config.get("dataset", {}).get("finetune_used", "?")
        mine = [r for r in self.steps if r["epoch"] == s["epoch"]]
        acc = sum(r["prediction"] == r["label"] for r in mine) / len(mine)
        recent = self.steps[-self.WINDOW :]
        mean = sum(r["loss"] for r in recent if r["loss"] is not None) / len(recent)
        timed = [r["time"] for r in recent if r.get("time") is not None and not r.get("replayed")]
        rate = (len(timed) - 1) / (timed[-1] - timed[0]) if len(timed) > 1 and timed[-1] > timed[0] else 0.0
        hw = max(r.get("stack_high_water", 0) for r in self.steps)
        memory = f"stack high-water {hw:,} B"
        if self.sram_base is not None and hw:
            memory += f" (peak SRAM {self.sram_base + hw:,} B)"
        loss = "nan" if s["loss"] is None else f"{s['loss']:.3f}"
        # An autoencoder's mse (config.json "loss") has no accuracy: its loss is the metric.
        classifies = self.config.get("loss", {}).get("loss") != "mse"
        accuracy = f", epoch accuracy {acc:.3f}" if classifies else ""
        lr = self.config.get("arguments", {}).get("lr")
        lr_now = f", lr {lr * s['lr_scale']:.3g}" if lr is not None and s.get("lr_scale") is not None else ""
        return (
            f"{stamp()} epoch {s['epoch']}/{epochs} step {s['step']}/{per_epoch}: loss {loss} "
            f"(mean of last {len(recent)} {mean:.3f}){lr_now}{accuracy}, "
            f"{rate:.1f} samples/s, {memory}; board trained {s.get('samples_trained', '?')}"
        )

    def poll(self) -> list[str]:
        self._load_config()
        out = list(self._new_lines("board.log"))
        rows = []
        for line in self._new_lines("steps.jsonl"):
            with contextlib.suppress(json.JSONDecodeError):
                rows.append(json.loads(line))
        self.steps += rows
        if rows:
            out.append(self.status_line())
        for line in self._new_lines("epochs.jsonl"):
            with contextlib.suppress(json.JSONDecodeError):
                e = json.loads(line)
                extra = "" if e["train_loss"] is None else f"; mean training loss {e['train_loss']:.3f}"
                if e["held_out_accuracy"] is None:  # mse: the reconstruction error (and AUC)
                    auc = e.get("held_out_auc")
                    held = f"held-out mse {e['held_out_loss']:.4g}" + (f", ROC AUC {auc:.3f}" if auc else "")
                else:
                    held = (
                        f"held-out accuracy {e['held_out_accuracy']:.3f} "
                        f"({e['held_out_correct']}/{e['held_out_samples']})"
                    )
                out.append(f"{stamp()} epoch {e['epoch']} done: {held}{extra}")
        return out

    def finished(self) -> bool:
        return (self.folder / "summary.txt").exists()


def follow_session(
    folder: Path, seconds: float = 0, interval: float = 0.5, out: Callable[[str], None] = print
) -> None:
    """Shows a session live until it ends (its summary.txt appears), or for `seconds`."""
    tail = SessionTail(folder)
    deadline = time.monotonic() + seconds if seconds else float("inf")
    out(f"following the session in {folder} (Ctrl-C to stop)")
    while True:
        done = tail.finished()  # before the last read, so nothing written before it is missed
        for line in tail.poll():
            out(line)
        if done:
            summary = (folder / "summary.txt").read_text().splitlines()
            out(f"session ended: {summary[1] if len(summary) > 1 else ''}")
            return
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)
