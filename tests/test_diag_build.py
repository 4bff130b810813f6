"""Diagnostic and destructive requests only in a diagnostic build (issue 16, finding 6).

A firmware built without --diag refuses every DIAG_* request and PERSIST_ERASE with an error
that says so, and changes nothing. The diagnostic build still refuses a DIAG_FAULT write into
the firmware's own RAM (the arena and the trained state live there: a later SAVE would persist
the damage), and when an access does not fault its answer says what it did.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from pytools import emulator, persist
from pytools.boards import load_board
from pytools.build.builder import build_firmware
from pytools.build.manifest import persist_region
from pytools.link.client import BoardRefused, Link
from pytools.link.protocol import Err, Msg, layout
from pytools.model.board_runner import BoardTraining
from pytools.model.tflite_import import import_tflite
from pytools.pretrain.zoo import zoo_model
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme

pytestmark = pytest.mark.emulator

BOARD = load_board("mps2_an500")
SCHEME = "bias=4,-1=1,-2=0.5,-3=0.25"  # as tests/test_persist.py: its firmware builds are shared


@pytest.fixture(scope="module")
def ct():
    return compile_training(
        import_tflite(zoo_model("mobilenet_tiny"), "m"), load_scheme(SCHEME), BOARD, "m", False, 0.05
    )


@pytest.fixture
def name() -> Iterator[str]:
    n = f"test-diag-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    yield n
    emulator.stop(n)
    emulator.erase_flash(n)
    for suffix in (".log", ".json"):
        (emulator.RUN / f"{n}{suffix}").unlink(missing_ok=True)


def fault(kind: int, address: int = 0) -> bytes:
    return layout("DIAG_FAULT").pack(kind=kind, address=address)


def test_a_build_without_diag_refuses_every_diagnostic_and_destructive_request(ct, name) -> None:
    elf = build_firmware(BOARD, ct.compiled.blob, ct.compiled.arena).elf  # the session's build
    emu = emulator.start(BOARD, elf, name=name)
    with Link.open(emu.url) as link:
        training = BoardTraining(link)
        saved = persist.save(link)  # a saved state that PERSIST_ERASE must not wipe
        crc = training.status()["state_crc"]
        ram = link.info()["ram_static"] + BOARD.memory.ram_origin
        requests = [
            (Msg.DIAG_SINK, b"\0\0\0\0"),
            (Msg.DIAG_SINK_STATS, b""),
            (Msg.DIAG_SINK_RESET, b""),
            (Msg.DIAG_FAULT, fault(0, ram - 64)),  # into the firmware's RAM
            (Msg.DIAG_FAULT, fault(2)),  # stack overflow
            (Msg.PERSIST_ERASE, b""),
        ]
        for type_, payload in requests:
            with pytest.raises(BoardRefused, match="not built with --diag") as e:
                link.request(type_, payload)
            assert e.value.code == Err.BAD_STATE
        with pytest.raises(BoardRefused, match="not built with --diag"):
            persist.save_aborted(link, 64)  # the power-loss test: no reset, a clear refusal
        info = persist.info(link)
        assert (info["newest_slot"], info["slot0_status_name"]) == (saved["slot"], "valid")
        assert training.status()["state_crc"] == crc and link.ping(b"alive") >= 0
    assert emu.alive()


def test_the_diag_build_refuses_a_fault_write_into_the_trained_state(ct, name) -> None:
    image = build_firmware(BOARD, ct.compiled.blob, ct.compiled.arena, diag=True)
    nm = subprocess.run(["arm-none-eabi-nm", str(image.elf)], capture_output=True, text=True, check=True)
    arena = next(int(line.split()[0], 16) for line in nm.stdout.splitlines() if line.endswith(" plan_arena"))
    emu = emulator.start(BOARD, image.elf, name=name)
    with Link.open(emu.url) as link:
        training = BoardTraining(link)
        crc = training.status()["state_crc"]
        offsets = [t.offset for t in ct.compiled.plan.tensors if t.storage == 2]
        for address in (arena + min(offsets), arena + max(offsets), BOARD.memory.ram_origin + 0x100):
            with pytest.raises(
                BoardRefused, match=f"refused: a write to 0x{address:08x} would change the firmware's RAM"
            ):
                link.request(Msg.DIAG_FAULT, fault(0, address))
        slot1 = persist_region(BOARD).slots[1] + 8  # a saved state's header
        with pytest.raises(BoardRefused, match=f"a write to 0x{slot1:08x} would change a persistence slot"):
            link.request(Msg.DIAG_FAULT, fault(0, slot1))
        assert training.status()["state_crc"] == crc  # nothing written
        # A read does not change anything: it is carried out, and the answer says so.
        with pytest.raises(BoardRefused, match=r"did not fault: 0x[0-9a-f]{8} read, nothing changed"):
            link.request(Msg.DIAG_FAULT, fault(1, arena))
        # The last word below the RAM limit is unused: the write is done and reported as such.
        top = BOARD.memory.ram_origin + BOARD.memory.ram_size - 4
        with pytest.raises(
            BoardRefused, match=f"0xDEADBEEF written to 0x{top:08x}, outside the firmware's RAM"
        ):
            link.request(Msg.DIAG_FAULT, fault(0, top))
        assert training.status()["state_crc"] == crc


def test_invoke_build_diag_builds_the_diagnostic_firmware_apart(capsys) -> None:
    from invoke import Context

    import tasks
    from pytools.build.manifest import target_spec
    from pytools.paths import BUILD

    tasks.build.body(Context(), board=BOARD.name, diag=True)
    out = capsys.readouterr().out
    assert (
        f"built {BOARD.name} diagnostic (--diag) firmware" in out and str(BUILD / f"{BOARD.name}-diag") in out
    )
    assert target_spec(BOARD, diag=True).defines["FIRMWARE_DIAG"] == "1"
    assert target_spec(BOARD).defines["FIRMWARE_DIAG"] == "0"
    assert target_spec(BOARD, diag=True).defines["BUILD_ID"] != target_spec(BOARD).defines["BUILD_ID"]
