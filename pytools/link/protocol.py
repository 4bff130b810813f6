"""Message types, error codes and payload layouts, parsed from the firmware's .def files.

firmware/link/{messages,errors,payloads}.def are the single definition; the C side
expands them as X-macros (firmware/link/protocol.h) and this module reads the same lines,
so the two cannot disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from functools import cache

from pytools.cdefs import Layout, parse_layouts, strip_comments
from pytools.paths import FIRMWARE

LINK_DIR = FIRMWARE / "link"


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
    text = strip_comments((LINK_DIR / "messages.def").read_text())
    return [
        MsgDef(m[1], int(m[2], 0), m[3], m[4])
        for m in re.finditer(r'MSG\((\w+),\s*(0x[0-9A-Fa-f]+|\d+),\s*(\w+),\s*"([^"]*)"\)', text)
    ]


def _parse_errs() -> list[tuple[str, int, str]]:
    text = strip_comments((LINK_DIR / "errors.def").read_text())
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


LAYOUTS: dict[str, Layout] = parse_layouts(LINK_DIR / "payloads.def", "PAYLOAD")


def layout(name: str) -> Layout:
    return LAYOUTS[name]
