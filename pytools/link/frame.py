"""Frame codec, the same wire format as firmware/link/frame.c (see docs/protocol.md):

A5 5A | len u16 | type u8 | seq u8 | hcrc u8 | payload | crc32 u32   (little-endian)
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SYNC = b"\xa5\x5a"
HEADER_SIZE = 7
OVERHEAD = 11


def crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def encode(type_: int, seq: int, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the 65535-byte frame limit")
    head = struct.pack("<HBB", len(payload), type_, seq)
    head += bytes([crc8(head)])
    return SYNC + head + payload + struct.pack("<I", zlib.crc32(head + payload))


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


@dataclass(frozen=True)
class Damaged:
    """A frame that arrived damaged: header (type/seq unknown) or CRC (type/seq known)."""

    reason: str  # "header" or "crc"
    type: int | None = None
    seq: int | None = None


class Decoder:
    """Incremental decoder: feed bytes, get frames and damage reports, in order."""

    def __init__(self, max_payload: int = 0xFFFF) -> None:
        self.max_payload = max_payload
        self.buf = bytearray()
        self.noise = 0  # bytes discarded while hunting for sync

    def feed(self, data: bytes) -> list[Frame | Damaged]:
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
            if crc8(head) != self.buf[6]:
                out.append(Damaged("header"))
                del self.buf[:1]  # resume the hunt one byte on
                continue
            length, type_, seq = struct.unpack("<HBB", head)
            if length > self.max_payload:
                out.append(Damaged("too_long", type_, seq))
                del self.buf[:1]
                continue
            total = HEADER_SIZE + length + 4
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
