"""The Python side of the link against the C side: same frames, same payload layouts."""

from __future__ import annotations

import ctypes
import random
import re
import subprocess
import zlib

import pytest

from pytools.build.builder import build_host_lib
from pytools.link import frame as fr
from pytools.link.protocol import LAYOUTS, MESSAGES, Err, Msg, layout
from pytools.paths import FIRMWARE


@pytest.fixture(scope="module")
def clib() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(build_host_lib()))
    lib.frame_encode.restype = ctypes.c_size_t
    lib.frame_encode.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint8,
        ctypes.c_uint8,
        ctypes.c_char_p,
        ctypes.c_uint16,
    ]
    lib.crc32_update.restype = ctypes.c_uint32
    lib.crc32_update.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
    return lib


def c_encode(lib: ctypes.CDLL, type_: int, seq: int, payload: bytes) -> bytes:
    out = ctypes.create_string_buffer(len(payload) + fr.OVERHEAD)
    n = lib.frame_encode(out, len(out), type_, seq, payload, len(payload))
    return out.raw[:n]


def test_python_and_c_encode_identical_frames(clib: ctypes.CDLL) -> None:
    rng = random.Random(1)
    for _ in range(300):
        payload = rng.randbytes(rng.randrange(0, 600))
        t, s = rng.randrange(256), rng.randrange(256)
        assert fr.encode(t, s, payload) == c_encode(clib, t, s, payload)


def test_c_crc32_is_zlib_crc32(clib: ctypes.CDLL) -> None:
    data = random.Random(2).randbytes(5000)
    assert clib.crc32_update(0, data, len(data)) == zlib.crc32(data)


def test_python_decoder_reads_c_frames_and_flags_damage(clib: ctypes.CDLL) -> None:
    good = c_encode(clib, 0x83, 7, b"abcdef")
    bad = bytearray(good)
    bad[fr.HEADER_SIZE + 2] ^= 0x10  # a payload byte
    items = fr.Decoder().feed(b"\x00\xa5noise" + good + bytes(bad) + good)
    frames = [i for i in items if isinstance(i, fr.Frame)]
    damaged = [i for i in items if isinstance(i, fr.Damaged)]
    assert [(f.type, f.seq, f.payload) for f in frames] == [(0x83, 7, b"abcdef")] * 2
    assert any(d.reason == "crc" and d.seq == 7 for d in damaged)


def test_payload_layouts_match_c_struct_sizes(tmp_path) -> None:
    """Compiles the C structs from payloads.def and compares every sizeof with Python's layout."""
    src = tmp_path / "sizes.c"
    src.write_text(
        '#include <stdio.h>\n#include "protocol.h"\nint main(void) {\n'
        + "".join(f'    printf("{n} %zu\\n", sizeof(struct payload_{n}));\n' for n in LAYOUTS)
        + "    return 0;\n}\n"
    )
    exe = tmp_path / "sizes"
    subprocess.run(
        ["gcc", "-std=c11", f"-I{FIRMWARE / 'link'}", f"-I{FIRMWARE / 'common'}", str(src), "-o", str(exe)],
        check=True,
    )
    sizes = dict(
        line.split() for line in subprocess.run([exe], capture_output=True, text=True).stdout.splitlines()
    )
    assert {n: int(v) for n, v in sizes.items()} == {n: lay.size for n, lay in LAYOUTS.items()}


def test_definitions_are_consistent() -> None:
    codes = [m.code for m in MESSAGES]
    assert len(codes) == len(set(codes)), "duplicate message codes in messages.def"
    assert all(m.direction in ("H2B", "B2H") for m in MESSAGES)
    assert Msg.HELLO == 0x01 and Err.BAD_CRC == 2
    # Every response-like payload named in payloads.def is a message (or a request payload).
    names = {m.name for m in MESSAGES}
    assert set(LAYOUTS) <= names


def test_layout_round_trips_text_and_tail() -> None:
    lay = layout("ERROR")
    raw = lay.pack(code=5, request_type=0x10, tail="too short")
    assert lay.unpack(raw) == {"code": 5, "request_type": 0x10, "message": "too short"}
    with pytest.raises(ValueError):
        layout("INFO_RSP").unpack(b"\x00" * 3)


def test_protocol_doc_lists_every_message_and_error_as_defined() -> None:
    doc = (FIRMWARE.parent / "docs" / "protocol.md").read_text()
    sections = {part.split("\n", 1)[0]: part for part in doc.split("\n## ")}
    msg_row = r"\| `(\w+)` \| `(0x[0-9A-F]+)` \| (\w+) \|"
    msgs = {m[1]: (int(m[2], 16), m[3]) for m in re.finditer(msg_row, sections["Message types"])}
    assert msgs == {m.name: (m.code, m.direction) for m in MESSAGES}
    errs = {
        m[1]: int(m[2])
        for m in re.finditer(r"\| `(\w+)` \| (\d+) \|", sections["Error and NACK reason codes"])
    }
    assert errs == {e.name: e.value for e in Err}
    sizes = {
        m[1]: int(m[2]) for m in re.finditer(r"\| `(\w+)` \| (\d+)(?: \+ text)? \| ", sections["Payloads"])
    }
    assert sizes == {n: LAYOUTS[n].size for n in sizes} and len(sizes) >= 6
