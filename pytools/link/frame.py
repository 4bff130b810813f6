"""Frame codec, the same wire format as firmware/link/frame.c (see docs/protocol.md):

A5 5A | len u16 | type u8 | seq u8 | hcrc u32 | payload | crc32 u32   (little-endian)

hcrc is the CRC-32 of len, type and seq; crc32 covers everything after the sync bytes.
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass

SYNC = b"\xa5\x5a"
HEADER_SIZE = 10
TRAILER_SIZE = 4
OVERHEAD = HEADER_SIZE + TRAILER_SIZE
# Until HELLO_RSP announces the board's max_reply, replies are bounded by this: the largest
# reply any firmware of this protocol sends (its reply buffer; HELLO_RSP itself is 80 bytes).
DEFAULT_MAX_REPLY = 1024
# Inter-byte timeout of the host's decoder: a frame whose bytes stop coming for this long
# while the host is reading is dropped, and the hunt for the next frame resumes inside it.
# Generous (the emulator can be descheduled mid-frame on a loaded machine); a false drop
# costs one retransmission, a frame that never ends would cost every reply after it.
RX_GAP_S = 0.2


def encode(type_: int, seq: int, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the 65535-byte frame limit")
    head = struct.pack("<HBB", len(payload), type_, seq)
    head += struct.pack("<I", zlib.crc32(head))
    return SYNC + head + payload + struct.pack("<I", zlib.crc32(head + payload))


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


@dataclass(frozen=True)
class Damaged:
    """A frame that arrived damaged.

    reason: "header" (type/seq unknown), "crc" (type/seq known), "too_long" (a valid header
    announcing more than the peer's max), "timeout" (its bytes stopped coming), or
    "old_protocol" (a whole frame of link protocol v3 or older: the board needs re-flashing).
    """

    reason: str
    type: int | None = None
    seq: int | None = None


def _crc8(data: bytes) -> int:
    """Protocol v3's header check, only to recognise an old board's frames."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _old_frame_size(buf: bytearray) -> int:
    """Size of a whole v1-v3 frame (7-byte header, CRC-8) at the start of buf, else 0."""
    if len(buf) < 7 or _crc8(bytes(buf[2:6])) != buf[6]:
        return 0
    total = 7 + int.from_bytes(buf[2:4], "little") + 4
    if len(buf) < total:
        return 0
    (crc,) = struct.unpack_from("<I", buf, total - 4)
    return total if crc == zlib.crc32(bytes(buf[2 : total - 4])) else 0


class Decoder:
    """Incremental decoder: feed bytes, get frames and damage reports, in order.

    max_payload bounds the length a header may announce (the board's max_reply once HELLO
    has told it); a longer one is reported and hunted through, never waited for. Call
    idle() when a read returned nothing: a frame silent for gap seconds is dropped.
    """

    def __init__(self, max_payload: int = DEFAULT_MAX_REPLY, gap: float = RX_GAP_S) -> None:
        self.max_payload = max_payload
        self.gap = gap
        self.buf = bytearray()
        self.noise = 0  # bytes discarded while hunting for sync
        self._quiet_since: float | None = None

    def feed(self, data: bytes) -> list[Frame | Damaged]:
        if data:
            self._quiet_since = None
        self.buf += data
        out: list[Frame | Damaged] = []
        while True:
            i = self.buf.find(SYNC)
            if i < 0:
                keep = 1 if self.buf.endswith(SYNC[:1]) else 0
                self.noise += len(self.buf) - keep
                del self.buf[: len(self.buf) - keep]
                return out
            self.noise += i
            del self.buf[:i]
            if len(self.buf) < HEADER_SIZE:
                return out
            head = bytes(self.buf[2:6])
            if zlib.crc32(head) != int.from_bytes(self.buf[6:10], "little"):
                old = _old_frame_size(self.buf)
                if old:
                    out.append(Damaged("old_protocol"))
                    del self.buf[:old]
                    continue
                out.append(Damaged("header"))
                del self.buf[:1]  # resume the hunt one byte on
                continue
            length, type_, seq = struct.unpack("<HBB", head)
            if length > self.max_payload:
                out.append(Damaged("too_long", type_, seq))
                del self.buf[:1]  # hunt through it: never wait for a length the peer cannot send
                continue
            total = HEADER_SIZE + length + TRAILER_SIZE
            if len(self.buf) < total:
                return out
            payload = bytes(self.buf[HEADER_SIZE : HEADER_SIZE + length])
            (crc,) = struct.unpack_from("<I", self.buf, HEADER_SIZE + length)
            if crc == zlib.crc32(bytes(self.buf[2:HEADER_SIZE]) + payload):
                out.append(Frame(type_, seq, payload))
                del self.buf[:total]
            else:
                out.append(Damaged("crc", type_, seq))
                del self.buf[:1]

    def idle(self, now: float | None = None) -> list[Frame | Damaged]:
        """A read found nothing: drops a partial frame once the line has been quiet for gap.

        Quiet time counts from the first empty read, so time the host spent not reading
        (between requests) never makes a frame look dead.
        """
        now = time.monotonic() if now is None else now
        if len(self.buf) < 2:  # at most a lone first sync byte: nothing is waiting
            self._quiet_since = None
            return []
        if self._quiet_since is None:
            self._quiet_since = now
            return []
        if now - self._quiet_since < self.gap:
            return []
        self._quiet_since = None
        head = bytes(self.buf[2:6]) if len(self.buf) >= HEADER_SIZE else b""
        seq = head[3] if head else None
        type_ = head[2] if head else None
        del self.buf[:1]  # the frame is dead; hunt inside what it left
        return [Damaged("timeout", type_, seq), *self.feed(b"")]
