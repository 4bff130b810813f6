"""How a training session meets a board that refuses: a SAVE the board refuses mid-session
(the session goes on and tries the final save), and a board that went back to its checkpoint
while the host ran (said in those words, with the command that recovers). The Run parts are
driven with a stand-in board (no emulator): what is checked is the session's own handling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytools import persist
from pytools.errors import ToolError
from pytools.link.client import BoardRefused
from pytools.link.protocol import Err, Msg
from pytools.session import CHECKPOINTS, Run


class _Board:
    """TRAIN_STATUS of a board that has trained `count` samples."""

    def __init__(self, count: int) -> None:
        self.count = count

    def status(self) -> dict[str, Any]:
        return {"samples_trained": self.count, "state_crc": 0x1234 + self.count}


def _run(folder: Path, board: _Board, first_id: int = 0) -> Run:
    run = Run.__new__(Run)  # only the parts checkpoint() and _explain_reset() use
    run.folder, run.first_id, run.link = folder, first_id, None
    run.checkpoints, run.checkpoint_error = [], None
    run.steps_file = open(folder / "steps.jsonl", "a")
    run.epochs_file = open(folder / "epochs.jsonl", "a")
    run.status = board.status  # type: ignore[method-assign]
    return run


def test_a_refused_save_mid_session_is_recorded_and_the_final_save_is_still_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    board = _Board(30)
    answers: list[Exception | dict[str, Any]] = [
        BoardRefused(Err.FLASH_FAILED, Msg.SAVE, "programming slot 1 failed at word 12"),
        {"slot": 0, "sequence": 4, "length": 4652, "cost": 1000},
    ]

    def save(link: object) -> dict[str, Any]:
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    monkeypatch.setattr(persist, "save", save)
    run = _run(tmp_path, board)
    try:
        assert run.checkpoint(1) is None  # refused: the session goes on (no exception)
        board.count = 45
        assert run.checkpoint(2) is None  # after a failure the periodic ones are skipped
        done = run.checkpoint(3, final=True)  # but the final save is tried again
    finally:
        run.steps_file.close()
        run.epochs_file.close()
    assert done is not None and done["samples_trained"] == 45 and done["sequence"] == 4
    rows = [json.loads(line) for line in (tmp_path / CHECKPOINTS).read_text().splitlines()]
    assert [(r["status"], r["samples_trained"]) for r in rows] == [
        ("saving", 30),
        ("failed", 30),
        ("saving", 45),
        ("saved", 45),
    ]
    assert "FLASH_FAILED" in rows[1]["error"]


def test_a_board_that_went_back_while_the_host_ran_is_explained(tmp_path: Path) -> None:
    refused = BoardRefused(Err.OUT_OF_ORDER, Msg.TRAIN, "TRAIN 57 skips ahead: the board has trained 30")
    run = _run(tmp_path, _Board(30))
    try:
        with pytest.raises(ToolError, match=r"went back to 30 trained samples.*step 57.*--resume --out") as e:
            run._explain_reset(57, refused)
        assert e.value.__cause__ is refused
        # A refusal with the board where the session is: left as the board worded it.
        run._explain_reset(30, refused)
    finally:
        run.steps_file.close()
        run.epochs_file.close()


def test_many_saves_on_a_real_board_get_a_note_on_their_cost() -> None:
    from pytools.boards import load_board
    from pytools.session import flash_wear_note

    nucleo, emulated = load_board("nucleo_f746zg"), load_board("mps2_an500")
    note = flash_wear_note(nucleo, 5, 1143)
    assert "--save-every 5: 229 SAVEs" in note and "115 erases per slot" in note and "10,000" in note
    assert flash_wear_note(nucleo, 500, 1143) == ""  # 3 SAVEs
    assert (
        flash_wear_note(nucleo, None, 1143) == flash_wear_note(nucleo, 0, 1143) == ""
    )  # epoch ends; final only
    assert flash_wear_note(emulated, 1, 1143) == ""  # a file, not a sector


def _pull_case(tmp_path: Path, final_slot_status: int, board: tuple[int, int], restored: int):
    """A session of 40 steps from sample 5 that checkpointed at 20 steps (slot 0, sequence 1) and
    saved its final state at 40 (slot 1, sequence 2); the board's PERSIST_INFO and TRAIN_STATUS."""
    import json

    (tmp_path / "steps.jsonl").write_text("{}\n" * 40)
    rows = [
        {"samples_trained": 25, "state_crc": 0x25, "status": "saved", "slot": 0, "sequence": 1},
        {"samples_trained": 45, "state_crc": 0x45, "status": "saved", "slot": 1, "sequence": 2},
    ]
    (tmp_path / "checkpoints.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"first_sample_id": 5, "first_state_crc": 0x05}
    info = {
        "slot0_status": 0,
        "slot0_sequence": 1,
        "slot1_status": final_slot_status,
        "slot1_sequence": 2,
        "restored_slot": restored,
        "restored_sequence": 1 if restored == 0 else 0,
    }
    return cfg, info, {"samples_trained": board[0], "state_crc": board[1]}


def test_pull_exports_the_sessions_final_state(tmp_path: Path) -> None:
    from pytools.export import session_state

    cfg, info, st = _pull_case(tmp_path, 0, (45, 0x45), 1)
    assert session_state(tmp_path, cfg, info, st, False).startswith(
        "state     the session's final state: 40 samples trained (CRC-32 0x00000045)"
    )


def test_pull_refuses_an_older_checkpoint_unless_asked_and_says_which_slot_failed(tmp_path: Path) -> None:
    """Issue 16, finding 3: the newest slot damaged, the board restored the older checkpoint."""
    from pytools.export import session_state

    cfg, info, st = _pull_case(tmp_path, 5, (25, 0x25), 0)  # slot 1: bad data
    with pytest.raises(ToolError) as e:
        session_state(tmp_path, cfg, info, st, False)
    msg = str(e.value)
    assert "checkpoint after 20 of its 40 steps" in msg and "lose the last 20 steps" in msg
    assert (
        "saved its final state (40 steps) to slot 1, sequence 2, and slot 1 now fails its check: bad data"
        in msg
    )
    assert "slot 0: sequence 1, the session's checkpoint at 20 steps, valid" in msg
    assert "--allow-older" in msg and "were not saved" not in msg
    note = session_state(tmp_path, cfg, info, st, True)
    assert note.startswith("note      exported the session's checkpoint after 20 of its 40 steps")
    assert "as --allow-older asked: the last 20 steps are not in it, because" in note


def test_pull_never_exports_the_untrained_state(tmp_path: Path) -> None:
    """Both slots damaged: the board booted with the plan's initial weights."""
    from pytools.export import session_state

    cfg, info, st = _pull_case(tmp_path, 3, (5, 0x05), 255)
    info["slot0_status"], info["slot1_sequence"] = 5, 0  # a bad header's sequence is not read
    for allow in (False, True):
        with pytest.raises(ToolError) as e:
            session_state(tmp_path, cfg, info, st, allow)
        msg = str(e.value)
        assert "holds the plan's initial (untrained) weights" in msg and "restored at boot: nothing" in msg
        assert "slot 0: sequence 1, where the session saved 20 steps, bad data" in msg
        assert "slot 1: bad header (the header's CRC-32" in msg
