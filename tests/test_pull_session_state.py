"""`invoke pull --session` exports only the session's final state (issue 16, finding 3).

A short session on the emulated board checkpoints after epoch 1 (slot 0, sequence 1) and saves
its final state after epoch 2 (slot 1, sequence 2); its folder keeps the board's flash. Damaging
that copy of the flash as a failing chip would, then pulling: the newest slot damaged must be
refused (naming slot 1 and the check it fails) unless --allow-older asks for the checkpoint,
and both slots damaged (the board boots with the untrained weights) must always be refused.
"""

from __future__ import annotations

import pytest

from pytools import export, persist
from pytools.boards import load_board
from pytools.build.manifest import PERSIST_HEADER_SIZE, persist_region
from pytools.errors import ToolError
from pytools.session import BOARD_FLASH, run_training_session
from tests.conftest import jsonl

BOARD = load_board("mps2_an500")


def flip(flash: bytes, slot: int, offset: int) -> bytes:
    r = persist_region(BOARD)
    at = r.slots[slot] - r.region_origin + offset
    b = bytearray(flash)
    b[at] ^= 0x10
    return bytes(b)


@pytest.mark.emulator
def test_pull_refuses_a_damaged_final_save_and_never_exports_the_untrained_model(run_dir, tmp_path) -> None:
    folder = run_training_session(BOARD.name, epochs=2, limit=10, held_out=20, out_dir=tmp_path / "s")
    saved = [c for c in jsonl(folder / "checkpoints.jsonl") if c["status"] == "saved"]
    assert [(c["slot"], c["sequence"], c["samples_trained"]) for c in saved] == [(0, 1, 10), (1, 2, 20)]
    good = (folder / BOARD_FLASH).read_bytes()
    out = tmp_path / "trained.tflite"

    lines = export.pull(None, str(out), session=str(folder), check=0)
    assert "state     the session's final state: 20 samples trained" in "\n".join(lines)
    out.unlink()

    # The newest slot's data damaged: the board restores the epoch-1 checkpoint.
    (folder / BOARD_FLASH).write_bytes(flip(good, 1, PERSIST_HEADER_SIZE + 7))
    with pytest.raises(ToolError) as e:
        export.pull(None, str(out), session=str(folder), check=0)
    msg = str(e.value)
    assert "checkpoint after 10 of its 20 steps" in msg, msg
    assert "to slot 1, sequence 2, and slot 1 now fails its check: " + persist.status_text(5) in msg, msg
    assert "restored at boot: slot 0 (sequence 1)" in msg and "--allow-older" in msg
    assert "were not saved" not in msg and not out.exists()
    lines = export.pull(None, str(out), session=str(folder), check=5, allow_older=True)
    assert any(x.startswith("note      exported the session's checkpoint after 10 of its 20") for x in lines)
    assert out.is_file()
    out.unlink()

    # Both slots damaged (slot 0's header, slot 1's data): the plan's initial weights. Never exported.
    (folder / BOARD_FLASH).write_bytes(flip(flip(good, 1, PERSIST_HEADER_SIZE + 7), 0, 9))
    for allow in (False, True):
        with pytest.raises(ToolError) as e:
            export.pull(None, str(out), session=str(folder), check=0, allow_older=allow)
        msg = str(e.value)
        assert "holds the plan's initial (untrained) weights" in msg and "restored at boot: nothing" in msg, (
            msg
        )
        assert (
            "slot 0: bad header" in msg
            and "slot 1: sequence 2, where the session saved 20 steps, bad data" in msg
        )
        assert not out.exists()
