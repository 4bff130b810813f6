"""Message types, error codes and payload layouts, parsed from the firmware's .def files.

firmware/link/{messages,errors,payloads}.def are the single definition; the C side
expands them as X-macros (firmware/link/protocol.h) and this module reads the same lines,
so the two cannot disagree.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from typing import Any

from pytools.paths import FIRMWARE

LINK_DIR = FIRMWARE / "link"
_TYPES = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "i32": "i"}


def _strip_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


@cache
def protocol_version() -> int:
    m = re.search(r"#define LINK_PROTOCOL_VERSION (\d+)u", (LINK_DIR / "protocol.h").read_text())
    assert m, "LINK_PROTOCOL_VERSION not found in protocol.h"
    return int(m.group(1))


@dataclass(frozen=True)
class MsgDef:
    name: str
    code: int
    direction: str
    doc: str


def _parse_msgs() -> list[MsgDef]:
    text = _strip_comments((LINK_DIR / "messages.def").read_text())
    return [
        MsgDef(m[1], int(m[2], 0), m[3], m[4])
        for m in re.finditer(r'MSG\((\w+),\s*(0x[0-9A-Fa-f]+|\d+),\s*(\w+),\s*"([^"]*)"\)', text)
    ]


def _parse_errs() -> list[tuple[str, int, str]]:
    text = _strip_comments((LINK_DIR / "errors.def").read_text())
    return [(m[1], int(m[2], 0), m[3]) for m in re.finditer(r'ERR\((\w+),\s*(\w+),\s*"([^"]*)"\)', text)]


MESSAGES: list[MsgDef] = _parse_msgs()
Msg = IntEnum("Msg", {m.name: m.code for m in MESSAGES})  # type: ignore[misc]
Err = IntEnum("Err", {name: code for name, code, _ in _parse_errs()})  # type: ignore[misc]
ERROR_DOCS: dict[int, str] = {code: doc for _, code, doc in _parse_errs()}


def msg_name(code: int) -> str:
    try:
        return Msg(code).name
    except ValueError:
        return f"0x{code:02x}"


@dataclass(frozen=True)
class Layout:
    """One payload layout: fixed little-endian fields, optionally a text tail."""

    name: str
    fields: list[tuple[str, str]]  # (field name, struct code)
    tail: str | None  # name of the variable-length text tail

    @property
    def fmt(self) -> str:
        return "<" + "".join(code for _, code in self.fields)

    @property
    def size(self) -> int:
        return struct.calcsize(self.fmt)

    def pack(self, tail: str | bytes = b"", **values: Any) -> bytes:
        vals = []
        for fname, code in self.fields:
            v = values.get(fname, b"" if code.endswith("s") else 0)
            vals.append(v.encode() if isinstance(v, str) else v)
        extra = tail.encode() if isinstance(tail, str) else tail
        return struct.pack(self.fmt, *vals) + extra

    def unpack(self, payload: bytes) -> dict[str, Any]:
        if len(payload) < self.size or (self.tail is None and len(payload) != self.size):
            raise ValueError(f"{self.name} payload is {len(payload)} bytes, layout needs {self.size}")
        out: dict[str, Any] = {}
        for (fname, code), v in zip(self.fields, struct.unpack_from(self.fmt, payload), strict=True):
            out[fname] = v.rstrip(b"\0").decode(errors="replace") if code.endswith("s") else v
        if self.tail is not None:
            out[self.tail] = payload[self.size :].decode(errors="replace")
        return out


def _parse_layouts() -> dict[str, Layout]:
    text = _strip_comments((LINK_DIR / "payloads.def").read_text())
    layouts: dict[str, Layout] = {}
    for block in re.finditer(r"PAYLOAD_BEGIN\((\w+)\)(.*?)PAYLOAD_END\(\1\)", text, flags=re.S):
        fields: list[tuple[str, str]] = []
        tail = None
        for line in block[2].splitlines():
            line = line.strip()
            if m := re.fullmatch(r"FIELD\((\w+),\s*(\w+)\)", line):
                fields.append((m[2], _TYPES[m[1]]))
            elif m := re.fullmatch(r"ARRAY\(char,\s*(\w+),\s*(\d+)\)", line):
                fields.append((m[1], f"{m[2]}s"))
            elif m := re.fullmatch(r"TAIL_TEXT\((\w+)\)", line):
                tail = m[1]
            elif line:
                raise ValueError(f"payloads.def: cannot parse '{line}'")
        layouts[block[1]] = Layout(block[1], fields, tail)
    return layouts


LAYOUTS: dict[str, Layout] = _parse_layouts()


def layout(name: str) -> Layout:
    return LAYOUTS[name]
