"""Reliable request/reply client for the board's serial link (host side).

One request is outstanding at a time. It is retransmitted, with the same sequence number,
on NACK, on a damaged reply and on time-out; the board executes a sequence number once
and answers a repeat from its reply cache, so every request runs exactly once. LOG and
FAULT frames (sequence 0) arrive interleaved and go to callbacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pytools.errors import ToolError
from pytools.link import frame as fr
from pytools.link.protocol import ERROR_DOCS, Err, Msg, layout, msg_name, protocol_version
from pytools.link.transport import Disconnected, open_port


class LinkError(ToolError):
    """The link failed: no answer, or a frame the board cannot take."""


class BoardRefused(ToolError):
    """The board understood the request and refused it (an ERROR reply)."""

    def __init__(self, code: int, request: int, message: str) -> None:
        self.code = code
        self.request = request
        name = Err(code).name if code in Err._value2member_map_ else str(code)
        super().__init__(f"board refused {msg_name(request)}: {message} [{name}]")


class BoardFaulted(ToolError):
    """The board reported a CPU fault and halted."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report
        super().__init__(f"board faulted: {report['text']}")


class Port(Protocol):
    """What the client needs of a pyserial port (or of a test double)."""

    in_waiting: int

    def write(self, data: bytes) -> int | None: ...
    def read(self, size: int = 1) -> bytes: ...
    def close(self) -> None: ...


@dataclass
class LinkStats:
    requests: int = 0
    retransmits: int = 0
    nacks: int = 0
    timeouts: int = 0
    damaged_rx: int = 0
    stale_rx: int = 0


LogCallback = Callable[[fr.Frame, dict[str, Any]], None]

# What the retry timer allows an emulated board's socket per byte. QEMU feeds its UART at
# 9-19 kB/s on an idle machine but at 2-5 kB/s on one loaded by parallel builds; timed for
# 115200 baud, a 4 KB request was retransmitted while the board was still receiving it, the
# copies queued behind the next requests, and under load the queue grew until a request
# went unanswered 21 times (seen on main's firmware too: 30 4 KB requests, 81 retransmits).
EMULATOR_BYTES_PER_SECOND = 2_000.0


@dataclass
class Link:
    port: Port
    timeout: float = 0.5  # seconds to wait for a reply before retransmitting (plus transfer time)
    retries: int = 20
    bytes_per_second: float = 11_520.0  # 115200 baud 8N1; see EMULATOR_BYTES_PER_SECOND
    on_log: LogCallback | None = None
    on_frame: Callable[[str, fr.Frame | fr.Damaged], None] | None = None  # every frame, for monitors
    stats: LinkStats = field(default_factory=LinkStats)
    board: dict[str, Any] = field(default_factory=dict)  # HELLO_RSP fields after hello()
    logs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._dec = fr.Decoder()
        self._seq = 0

    # --- connection ------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, baudrate: int = 115_200, **kw: Any) -> Link:
        """Opens any pyserial URL (/dev/ttyACM0, COM3, socket://127.0.0.1:PORT) and says HELLO."""
        port = open_port(url, baudrate)
        bps = EMULATOR_BYTES_PER_SECOND if url.startswith("socket://") else baudrate / 10
        link = cls(port, bytes_per_second=bps, **kw)
        try:
            link.hello()
        except BaseException:
            port.close()
            raise
        return link

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests --------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = self._seq % 255 + 1  # 1..255; 0 is for unsolicited frames
        return self._seq

    def request(self, type_: int, payload: bytes = b"", *, timeout: float | None = None) -> fr.Frame:
        """Sends one request and returns its reply; raises on ERROR, FAULT or no answer."""
        max_payload = self.board.get("max_payload")
        if max_payload is not None and len(payload) > max_payload:
            raise LinkError(
                f"{msg_name(type_)} payload is {len(payload)} bytes; the board accepts at most {max_payload}"
            )
        seq = self._next_seq()
        data = fr.encode(type_, seq, payload)
        wait = (self.timeout if timeout is None else timeout) + 2 * len(data) / self.bytes_per_second
        self.stats.requests += 1
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retransmits += 1
            self._write(data)
            reply = self._await(seq, wait)
            if reply is not None:
                return self._check(type_, reply)
        raise LinkError(
            f"no answer to {msg_name(type_)} after {self.retries + 1} attempts: is the board running, "
            "flashed with this project's firmware, and on this port?"
        )

    def _write(self, data: bytes) -> None:
        self.port.write(data)

    def _read_some(self) -> bytes:
        """Whatever has arrived; waits at most the port's short timeout for the first byte.

        (A plain read(4096) would wait out the whole timeout unless 4096 bytes came.)
        """
        try:
            data = self.port.read(1)
            if data:
                waiting = self.port.in_waiting
                if waiting:
                    data += self.port.read(waiting)
        except Disconnected:
            raise
        except OSError as e:  # pyserial's SerialException is an OSError (e.g. USB unplugged)
            raise Disconnected(f"lost the serial port: {e}") from e
        return data

    def _receive(self) -> list[fr.Frame | fr.Damaged]:
        """Frames (and damage reports) from whatever arrived; a quiet line may time one out."""
        data = self._read_some()
        return self._dec.feed(data) if data else self._dec.idle()

    def _await(self, seq: int, wait: float) -> fr.Frame | None:
        """The reply to seq, or None when it is time to retransmit.

        A damage report or NACK means "ask again now", but only once what arrived with it
        is read: the reply may be right behind it.
        """
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            again = False
            for item in self._receive():
                if self.on_frame:
                    self.on_frame("rx", item)
                if isinstance(item, fr.Damaged):
                    self.stats.damaged_rx += 1
                    if item.reason == "old_protocol":
                        raise LinkError(
                            f"the board speaks an older link protocol (frames of v3 or before), these "
                            f"tools v{protocol_version()}: flash this project's firmware (invoke flash)"
                        )
                    if item.reason == "header" or item.seq == seq:
                        again = True  # our reply may be the damaged one
                    continue
                if item.seq == 0 and item.type == Msg.NACK:
                    # The board got a frame whose header was damaged, so it cannot say whose: it
                    # can only be ours (one request is outstanding). Ask again now, not after the
                    # time-out; if it was not ours, the board answers the repeat from its cache.
                    self.stats.nacks += 1
                    again = True
                elif item.seq == 0:
                    self._unsolicited(item)
                elif item.seq != seq:
                    self.stats.stale_rx += 1  # a late copy of an earlier reply
                elif item.type == Msg.NACK:
                    self.stats.nacks += 1
                    reason = layout("NACK").unpack(item.payload)["reason"]
                    if reason == Err.TOO_LONG:
                        raise LinkError("the board cannot take a frame this long (NACK TOO_LONG)")
                    again = True
                else:
                    return item
            if again:
                return None
        self.stats.timeouts += 1
        return None

    def _check(self, type_: int, reply: fr.Frame) -> fr.Frame:
        if reply.type == Msg.ERROR:
            e = layout("ERROR").unpack(reply.payload)
            raise BoardRefused(e["code"], e["request_type"], e["message"] or ERROR_DOCS.get(e["code"], ""))
        return reply

    def _unsolicited(self, f: fr.Frame) -> None:
        if f.type == Msg.LOG:
            entry = layout("LOG").unpack(f.payload)
            self.logs.append(entry)
            if self.on_log:
                self.on_log(f, entry)
        elif f.type == Msg.FAULT:
            raise BoardFaulted(layout("FAULT").unpack(f.payload))

    def poll(self, duration: float) -> None:
        """Reads for a while without a request (logs, faults)."""
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            for item in self._receive():
                if self.on_frame:
                    self.on_frame("rx", item)
                if isinstance(item, fr.Frame) and item.seq == 0:
                    self._unsolicited(item)

    # --- messages --------------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        r = self.request(Msg.HELLO)
        # The version first, from the payload's first two bytes: another version's HELLO_RSP
        # may have another layout.
        version = int.from_bytes(r.payload[:2], "little")
        if r.type != Msg.HELLO_RSP or version != protocol_version():
            raise LinkError(
                f"board speaks protocol v{version}, "
                f"these tools v{protocol_version()}: flash this project's firmware (invoke flash)"
            )
        self.board = layout("HELLO_RSP").unpack(r.payload)
        # Replies are bounded by what the board announced, not by the 65,535 a length can say.
        self._dec.max_payload = self.board["max_reply"]
        return self.board

    def ping(self, data: bytes = b"") -> float:
        t0 = time.monotonic()
        r = self.request(Msg.PING, data)
        if r.type != Msg.PONG or r.payload != data:
            raise LinkError(f"PING answered with {msg_name(r.type)} carrying different data")
        return time.monotonic() - t0

    def info(self) -> dict[str, Any]:
        r = self.request(Msg.INFO)
        if r.type != Msg.INFO_RSP:
            raise LinkError(f"INFO answered with {msg_name(r.type)}")
        return layout("INFO_RSP").unpack(r.payload)
