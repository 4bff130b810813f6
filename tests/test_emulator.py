"""The firmware running on the emulated boards (QEMU mps2-an500, Cortex-M7; the tests that must
hold on every core also on mps2-an386, Cortex-M4), driven over its serial link."""

from __future__ import annotations

import random
import re
import socket
import struct
import time
import zlib

import pytest

from pytools.link import frame as fr
from pytools.link.client import BoardFaulted, BoardRefused, Link, LinkError
from pytools.link.protocol import Err, Msg, layout
from pytools.link.transport import SocketPort
from tests.conftest import CorruptingPort

pytestmark = pytest.mark.emulator


def test_boots_and_reports_the_boards_real_memory_limits(any_link: Link, any_board) -> None:
    link, m = any_link, any_board.memory
    hello = link.board
    assert hello["board"] == any_board.name
    real = {"mps2_an500": (1024 * 1024, 320 * 1024), "mps2_an386": (512 * 1024, 128 * 1024)}
    assert (hello["flash_size"], hello["ram_size"]) == real[any_board.name]
    info = link.info()
    assert (info["flash_origin"], info["flash_size"]) == (m.flash_origin, m.flash_size)
    assert (info["ram_origin"], info["ram_size"]) == (m.ram_origin, m.ram_size)
    assert 0 < info["flash_used"] < m.flash_size
    assert m.stack_size + m.handler_stack_size < info["ram_static"] < m.ram_size
    assert info["stack_size"] == m.stack_size
    assert 0 < info["stack_high_water"] < info["stack_size"]
    assert info["counter_unit"] == 1  # instructions, not cycles
    assert any(e["text"].startswith(f"boot: board {any_board.name}") for e in link.logs)
    # The banner says what answered: on an emulator, the core QEMU models and no chip id.
    core, part = {"mps2_an500": ("Cortex-M7", "c27"), "mps2_an386": ("Cortex-M4", "c24")}[any_board.name]
    (chip,) = [e["text"] for e in link.logs if e["text"].startswith("chip ")]
    assert re.match(rf"chip emulated {core} cpuid 0x41[0-9a-f]f{part}[0-9a-f]: no idcode", chip), chip
    assert not [e for e in link.logs if e["text"].startswith("bring-up:")], "nothing fell back"


def test_counter_is_deterministic_instruction_count(link: Link) -> None:
    """Under -icount shift=0 the same work costs the same count: two INFOs a fixed amount apart."""
    a = link.info()["counter"]
    b = link.info()["counter"]
    assert b > a


def _raw_socket(url: str) -> socket.socket:
    host, port = url.removeprefix("socket://").split(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    return s


def _read_frames(s: socket.socket, want: int, timeout: float = 5.0) -> list[fr.Frame | fr.Damaged]:
    dec, out = fr.Decoder(), []
    deadline = time.monotonic() + timeout
    s.settimeout(0.2)
    while time.monotonic() < deadline and len([i for i in out if getattr(i, "seq", 0)]) < want:
        try:
            out += dec.feed(s.recv(4096))
        except TimeoutError:
            pass
    return out


def test_a_corrupted_crc_is_nacked_then_the_retransmission_is_answered(emu) -> None:
    s = _raw_socket(emu.url)
    good = fr.encode(Msg.PING, 42, b"payload")
    bad = bytearray(good)
    bad[fr.HEADER_SIZE + 2] ^= 0x04  # one payload bit
    s.sendall(bytes(bad))
    nack = [f for f in _read_frames(s, 1) if isinstance(f, fr.Frame) and f.seq == 42]
    assert [(f.type, layout("NACK").unpack(f.payload)["reason"]) for f in nack] == [(Msg.NACK, Err.BAD_CRC)]
    s.sendall(good)
    pong = [f for f in _read_frames(s, 1) if isinstance(f, fr.Frame) and f.seq == 42]
    assert [(f.type, f.payload) for f in pong] == [(Msg.PONG, b"payload")]
    s.close()


def test_the_client_retransmits_after_a_nack(emu) -> None:
    port = SocketPort.from_url(emu.url)
    corrupt = CorruptingPort(port, rate=1.0, seed=0, tx=True, rx=False)
    with Link(corrupt) as link:
        corrupt.rate = 0.0
        link.hello()
        corrupt.rate = 1.0
        corrupt.rng.random = lambda: 0.0 if corrupt.injected_tx == 0 else 1.0  # damage the first write only
        assert link.ping(b"x" * 40) >= 0
        assert link.stats.retransmits >= 1
        corrupt.rate = 0.0
        info = link.info()
    assert info["rx_bad_crc"] + info["rx_bad_header"] >= 1


def test_1000_frames_with_2_percent_corruption_arrive_exactly_once_in_order(emu) -> None:
    port = SocketPort.from_url(emu.url)
    corrupt = CorruptingPort(port, rate=0.0, seed=2026)
    rng = random.Random(7)
    with Link(corrupt) as link:
        link.hello()
        link.request(Msg.DIAG_SINK_RESET)
        corrupt.rate = 0.02  # both directions, from here on
        chain = 0
        for i in range(1000):
            payload = struct.pack("<I", i) + rng.randbytes(rng.randrange(0, 60))
            chain = zlib.crc32(payload, chain)
            link.request(Msg.DIAG_SINK, payload)
        corrupt.rate = 0.0
        stats = layout("DIAG_SINK_STATS_RSP").unpack(link.request(Msg.DIAG_SINK_STATS).payload)
        info = link.info()
    assert stats == {"received": 1000, "next_index": 1000, "out_of_order": 0, "chain_crc": chain}
    # The test is only meaningful if damage really happened, both ways.
    # Reads are damaged per 64 bytes read (tests/conftest.py), so fewer of them than writes.
    assert corrupt.injected_tx >= 8 and corrupt.injected_rx >= 3, (corrupt.injected_tx, corrupt.injected_rx)
    assert link.stats.retransmits >= corrupt.injected_tx
    assert info["rx_duplicates"] >= 1  # some damaged replies made the host repeat an executed request


def test_the_host_reconnects_to_a_running_board_without_a_reset(emu) -> None:
    with Link.open(emu.url) as first:
        first.request(Msg.DIAG_SINK_RESET)
        for i in range(50):
            first.request(Msg.DIAG_SINK, struct.pack("<I", i))
        before = first.info()
    with Link.open(emu.url) as second:  # a new host session on the same running board
        assert not any(e["text"].startswith("boot:") for e in second.logs), "the board rebooted"
        after = second.info()
        assert after["counter"] > before["counter"]
        for i in range(50, 100):
            second.request(Msg.DIAG_SINK, struct.pack("<I", i))
        stats = layout("DIAG_SINK_STATS_RSP").unpack(second.request(Msg.DIAG_SINK_STATS).payload)
    assert (stats["received"], stats["next_index"], stats["out_of_order"]) == (100, 100, 0)


def test_a_link_cut_mid_frame_does_not_wedge_the_board(emu) -> None:
    s = _raw_socket(emu.url)
    frame = fr.encode(Msg.PING, 9, b"z" * 200)
    s.sendall(frame[:100])  # cable pulled mid-frame
    s.close()
    with Link.open(emu.url) as link:  # HELLO may first be eaten as the rest of the old frame
        assert link.ping(b"still here") >= 0


def test_unknown_types_and_bad_lengths_get_clear_errors(link: Link) -> None:
    with pytest.raises(BoardRefused, match="unknown message type 0x42") as e:
        link.request(0x42)
    assert e.value.code == Err.UNKNOWN_TYPE
    with pytest.raises(BoardRefused, match="DIAG_SINK payload must be at least 4 bytes, got 2"):
        link.request(Msg.DIAG_SINK, b"\x01\x02")
    with pytest.raises(BoardRefused, match="INFO payload must be 0 bytes"):
        link.request(Msg.INFO, b"\x00")
    assert link.info()["rx_frames"] >= 4  # and the board carries on


def test_a_frame_longer_than_the_board_accepts_is_refused(link: Link) -> None:
    too_long = b"\x00" * (link.board["max_payload"] + 1)
    with pytest.raises(LinkError, match="accepts at most 4096"):
        link.request(Msg.PING, too_long)  # refused before sending
    link.board["max_payload"] = None  # pretend not to know: the board says NACK TOO_LONG
    with pytest.raises(LinkError, match="TOO_LONG"):
        link.request(Msg.PING, too_long)
    assert link.ping(b"ok") >= 0


def _fault(link: Link, kind: int, address: int = 0) -> dict:
    with pytest.raises(BoardFaulted) as e:
        link.request(Msg.DIAG_FAULT, layout("DIAG_FAULT").pack(kind=kind, address=address))
    return e.value.report


@pytest.mark.parametrize("kind", [0, 1], ids=["write", "read"])
def test_access_past_the_ram_limit_faults_with_its_address(
    any_emu, any_link: Link, any_board, kind: int
) -> None:
    emu, link = any_emu, any_link
    limit = any_board.memory.ram_origin + any_board.memory.ram_size
    report = _fault(link, kind, limit + 8)
    assert report["kind"] == 4 and report["address_valid"] == 1  # MemManage
    assert report["address"] == limit + 8
    assert f"MemManage fault at 0x{limit + 8:08x}" in report["text"]
    assert emu.wait(5) == 0x84  # QEMU exits with the firmware's fault code
    assert f"FAULT: MemManage fault at 0x{limit + 8:08x}" in emu.log_text()


def test_the_last_word_inside_the_limit_does_not_fault(link: Link, emu_board) -> None:
    limit = emu_board.memory.ram_origin + emu_board.memory.ram_size
    with pytest.raises(BoardRefused, match="the access did not fault"):
        link.request(Msg.DIAG_FAULT, layout("DIAG_FAULT").pack(kind=0, address=limit - 4))


def test_a_thread_stack_overflow_hits_the_guard_and_is_reported(any_emu, any_link: Link) -> None:
    emu, link = any_emu, any_link
    report = _fault(link, 2)
    assert report["kind"] == 4
    assert "stack overflow" in report["text"]
    assert emu.wait(5) == 0x84


def test_an_undefined_instruction_is_a_usage_fault(emu, link: Link) -> None:
    report = _fault(link, 3)
    assert report["kind"] == 6 and "undefined instruction" in report["text"]
    assert emu.wait(5) == 0x86
