"""Packed little-endian struct layouts parsed from the firmware's .def files.

The firmware's .def files are X-macro lists (FIELD(u32, name), ARRAY(char, name, n),
TAIL_TEXT(name), or `#include "shared.def"` for a run of fields several layouts share) between
<KIND>_BEGIN(NAME) and <KIND>_END(NAME). C expands them into packed
structs; this module reads the same lines, so Python and C share one definition.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TYPES = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "i8": "b", "i16": "h", "i32": "i", "f32": "f"}


def strip_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


@dataclass(frozen=True)
class Layout:
    """One struct layout: fixed little-endian fields, optionally a text tail."""

    name: str
    fields: list[tuple[str, str]]  # (field name, struct code)
    tail: str | None  # name of the variable-length text tail

    @property
    def fmt(self) -> str:
        return "<" + "".join(code for _, code in self.fields)

    @property
    def size(self) -> int:
        return struct.calcsize(self.fmt)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.fields]

    def pack(self, tail: str | bytes = b"", **values: Any) -> bytes:
        unknown = set(values) - set(self.names)
        if unknown:
            raise KeyError(f"{self.name} has no field(s) {sorted(unknown)}")
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


def parse_layouts(path: Path, kind: str) -> dict[str, Layout]:
    """Every <kind>_BEGIN(NAME) ... <kind>_END(NAME) block of a .def file.

    A block may hold `#include "other.def"` lines: a shared run of fields (the convolution
    geometry, firmware/kernels/conv2d_geometry.def) that C expands in place, so its fields are
    read from that file, next to this one, at that point of the layout.
    """
    text = strip_comments(path.read_text())
    layouts: dict[str, Layout] = {}
    for block in re.finditer(rf"{kind}_BEGIN\((\w+)\)(.*?){kind}_END\(\1\)", text, flags=re.S):
        fields: list[tuple[str, str]] = []
        tail = _parse_fields(path, block[2], fields, (path.resolve(),))
        layouts[block[1]] = Layout(block[1], fields, tail)
    return layouts


def _parse_fields(path: Path, body: str, fields: list[tuple[str, str]], seen: tuple[Path, ...]) -> str | None:
    """Appends the fields of a block's body (following its #include lines) to `fields`;
    returns the name of its text tail, if any."""
    tail = None
    for line in body.splitlines():
        line = line.strip()
        if m := re.fullmatch(r"FIELD\((\w+),\s*(\w+)\)", line):
            fields.append((m[2], TYPES[m[1]]))
        elif m := re.fullmatch(r"ARRAY\(char,\s*(\w+),\s*(\d+)\)", line):
            fields.append((m[1], f"{m[2]}s"))
        elif m := re.fullmatch(r"TAIL_TEXT\((\w+)\)", line):
            tail = m[1]
        elif m := re.fullmatch(r'#include\s+"([\w.]+\.def)"', line):
            inc = (path.parent / m[1]).resolve()
            if inc in seen:
                raise ValueError(f"{path.name}: {m[1]} includes itself")
            if not inc.is_file():
                raise ValueError(f"{path.name}: included {m[1]} is not in {path.parent}")
            if _parse_fields(inc, strip_comments(inc.read_text()), fields, (*seen, inc)) is not None:
                raise ValueError(f"{m[1]}: an included block cannot have a text tail")
        elif line:
            raise ValueError(f"{path.name}: cannot parse '{line}'")
    return tail
