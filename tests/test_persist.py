"""Trained weights saved to flash and restored at boot, on the emulated board.

The board trains, SAVEs, trains on, and is reset (by the chip's own SYSRESETREQ, and by
restarting QEMU): it must boot with exactly the saved state, read back bit for bit and equal
to the host twin's after the same steps. Then power is cut in the middle of a save (the board
programs part of the new slot and resets itself): it must boot with the last good copy.
"""

from __future__ import annotations

import dataclasses
import os
import re
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from pytools import emulator, persist
from pytools.boards import load_board
from pytools.build.builder import build_firmware
from pytools.build.manifest import PERSIST_HEADER_SIZE, persist_region
from pytools.errors import ToolError
from pytools.link.client import BoardRefused, Link
from pytools.model.board_runner import BoardModel
from pytools.model.host_twin import io_tensors, tensor_table
from pytools.model.tflite_import import import_tflite
from pytools.paths import FIRMWARE
from pytools.pretrain.zoo import zoo_model
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme
from pytools.train.trainer import Trainer

BOARD = load_board("mps2_an500")
SCHEME = "bias=4,-1=1,-2=0.5,-3=0.25"


def compiled(lr: float = 0.05):
    return compile_training(
        import_tflite(zoo_model("mobilenet_tiny"), "m"), load_scheme(SCHEME), BOARD, "m", False, lr
    )


def samples(ct, n: int, seed: int) -> list[tuple[np.ndarray, int]]:
    g = ct.train.graph
    x = g.tensor(g.inputs[0])
    rng = np.random.default_rng(seed)
    classes = g.tensor(ct.train.logits).shape[-1]
    return [(rng.integers(-128, 128, x.shape, dtype=np.int8), int(rng.integers(classes))) for _ in range(n)]


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def ct():
    return compiled()


@pytest.fixture(scope="module")
def elf(ct):
    """The diagnostic build: the power-loss save (DIAG_SAVE_ABORT) and PERSIST_ERASE need it."""
    return build_firmware(BOARD, ct.compiled.blob, ct.compiled.arena, diag=True).elf


@pytest.fixture
def name() -> Iterator[str]:
    n = f"test-persist-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    yield n
    emulator.stop(n)
    emulator.erase_flash(n)
    for suffix in (".log", ".json"):
        (emulator.RUN / f"{n}{suffix}").unlink(missing_ok=True)


def board_trainer(ct, link: Link) -> Trainer:
    ins, outs = io_tensors(ct.compiled.blob)
    return Trainer(ct, BoardModel(link, tensor_table(ct.compiled.blob), ins, outs))


def test_python_knows_the_firmwares_slot_header_size() -> None:
    text = (FIRMWARE / "app" / "persist.h").read_text()
    assert int(re.search(r"#define PERSIST_HEADER_SIZE (\d+)u", text)[1]) == PERSIST_HEADER_SIZE


def test_board_files_keep_the_slots_out_of_the_image() -> None:
    for b in ("nucleo_f746zg", "disco_f746ng"):
        board = load_board(b)
        r = persist_region(board)
        assert r.in_flash and r.capacity >= 64 * 1024
        image = build_firmware(board)
        # the linker's own section table: nothing loaded into the region
        import subprocess

        out = subprocess.run(
            ["arm-none-eabi-objdump", "-h", str(image.elf)], capture_output=True, text=True
        ).stdout
        for m in re.finditer(r"^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", out, re.M):
            size, lma = int(m[2], 16), int(m[4], 16)
            if size and 0x08000000 <= lma < 0x08100000:
                assert lma + size <= r.region_origin or lma >= r.region_origin + r.region_size, m[1]
    assert not persist_region(BOARD).in_flash  # the emulator's slots are in its PSRAM


def test_a_state_larger_than_a_slot_is_reported_and_a_bad_region_refused() -> None:
    board = load_board("nucleo_f746zg")
    cap = persist_region(board).capacity
    assert cap == 96 * 1024 - PERSIST_HEADER_SIZE
    assert persist.fit_note(board, cap).startswith("persist ")
    assert persist.fit_note(board, cap + 1).startswith("WARNING") and "SAVE will refuse" in persist.fit_note(
        board, cap + 1
    )
    # A region that would put the slots in the middle of the image, or over the vector table, or
    # half in flash: refused before anything links.
    for change in ({"region_origin": 0x08000000, "slot0": 0x08000000}, {"region_size": 0x100000}):
        raw = {**board.raw, "persist": {**board.raw["persist"], **change}}
        with pytest.raises(ToolError, match=r"\[persist\]"):
            persist_region(dataclasses.replace(board, raw=raw))


@pytest.mark.emulator
def test_saved_weights_survive_a_reset_and_a_restart_bit_identical(ct, elf, name) -> None:
    data = samples(ct, 12, seed=5)
    twin = Trainer(ct)
    for x, y in data[:8]:
        twin.step(x, y)
    twin_saved = twin.state()

    emu = emulator.start(BOARD, elf, name=name)
    with Link.open(emu.url) as link:
        info = persist.info(link)
        assert (info["slot0_status_name"], info["slot1_status_name"]) == ("erased", "erased")
        assert info["restored_slot"] == persist.NO_SLOT
        assert info["state_size"] == sum(pt.size for pt in ct.compiled.plan.tensors if pt.storage == 2)
        board = board_trainer(ct, link)
        initial = board.state()
        for x, y in data[:8]:
            board.step(x, y)
        saved = board.state()
        assert same(saved, twin_saved)  # the board trained exactly as the host twin
        assert not same(saved, initial)
        s = persist.save(link)
        assert (s["slot"], s["sequence"], s["length"]) == (0, 1, info["state_size"])
        for x, y in data[8:]:
            board.step(x, y)
        assert not same(board.state(), saved)  # trained on after the save

        log = persist.reset(link)  # the chip's own reset (AIRCR.SYSRESETREQ)
        assert any(
            f"restored {info['state_size']} bytes of trained state from slot 0, sequence 1" in t for t in log
        ), log
        assert same(board.state(), saved)
        after = persist.info(link)
        assert (after["restored_slot"], after["restored_sequence"], after["newest_slot"]) == (0, 1, 0)
        assert after["slot0_status_name"] == "valid"
    emulator.stop(name)

    emu = emulator.start(BOARD, elf, name=name)  # a new QEMU process: the flash file remains
    with Link.open(emu.url) as link:
        assert any("from slot 0, sequence 1" in e["text"] for e in link.logs), link.logs
        board = board_trainer(ct, link)
        assert same(board.state(), saved)
        # training resumes exactly where the saved state left off (the RNG is state too)
        twin_losses = [twin.step(x, y) for x, y in data[8:]]
        assert [board.step(x, y) for x, y in data[8:]] == twin_losses


@pytest.mark.emulator
def test_a_reset_in_the_middle_of_a_save_keeps_the_last_good_copy(ct, elf, name) -> None:
    data = samples(ct, 6, seed=9)
    emu = emulator.start(BOARD, elf, name=name)
    with Link.open(emu.url) as link:
        board = board_trainer(ct, link)
        size = persist.info(link)["state_size"]
        padded = (size + 3) // 4 * 4
        for x, y in data[:3]:
            board.step(x, y)
        good = board.state()
        assert persist.save(link)["slot"] == 0
        for x, y in data[3:]:
            board.step(x, y)
        newer = board.state()
        assert not same(newer, good)

        # Power lost after half the data, after all the data, after data + header (no commit
        # word): each time the board comes back with the copy of slot 0.
        for cut, status in (
            (padded // 2 // 4 * 4, "erased"),
            (padded, "erased"),
            (padded + 32, "uncommitted (torn save)"),
        ):
            log = persist.save_aborted(link, cut)
            assert any("restored" in t and "slot 0, sequence 1" in t for t in log), (cut, log)
            assert same(board.state(), good), cut
            i = persist.info(link)
            assert (i["newest_slot"], i["slot1_status_name"]) == (0, status), (cut, i)

        # A complete save goes to slot 1 (sequence 2); cutting the next one, which overwrites
        # the older slot 0, keeps slot 1's.
        for x, y in data[3:]:
            board.step(x, y)
        newest = board.state()
        assert persist.save(link)["slot"] == 1
        log = persist.save_aborted(link, padded + 16)
        assert any("slot 1, sequence 2" in t for t in log), log
        assert same(board.state(), newest)
        i = persist.info(link)
        assert (i["slot0_status_name"], i["slot1_status_name"], i["newest_slot"]) == (
            "uncommitted (torn save)",
            "valid",
            1,
        )

        # Both slots gone: the board boots with the plan's own initial weights.
        persist.erase(link)
        persist.reset(link)
        assert same(board.state(), Trainer(ct).state())


@pytest.mark.emulator
def test_state_saved_by_another_plan_is_never_restored(ct, elf, name) -> None:
    emu = emulator.start(BOARD, elf, name=name)
    with Link.open(emu.url) as link:
        board = board_trainer(ct, link)
        x, y = samples(ct, 1, seed=1)[0]
        board.step(x, y)
        persist.save(link)
    emulator.stop(name)
    other = compiled(lr=0.01)  # same model and scheme, another plan (its CRC differs)
    assert other.compiled.blob != ct.compiled.blob
    emu = emulator.start(
        BOARD, build_firmware(BOARD, other.compiled.blob, other.compiled.arena).elf, name=name
    )
    with Link.open(emu.url) as link:
        assert any("no saved state for this plan (slot 0 other plan" in e["text"] for e in link.logs), (
            link.logs
        )
        assert same(board_trainer(other, link).state(), Trainer(other).state())
        assert persist.info(link)["restored_slot"] == persist.NO_SLOT


@pytest.mark.emulator
def test_a_board_without_a_trained_plan_refuses_save(name) -> None:
    emu = emulator.start(BOARD, build_firmware(BOARD).elf, name=name)
    with Link.open(emu.url) as link:
        with pytest.raises(BoardRefused, match="no plan is loaded"):
            persist.save(link)
        info = persist.info(link)
        assert info["slot_size"] == persist_region(BOARD).slot_size and info["state_size"] == 0
