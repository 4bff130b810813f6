"""Moving a whole trained state between the host and a board (or the host twin).

The state is the plan's storage-2 tensors in plan order: the bytes a SAVE keeps and TRAIN_STATUS's
CRC-32 covers. A client reads it back after training (ARENA_READ, Trainer.state) and loads the
fleet's global state with STATE_LOAD (docs/protocol.md, "Loading a trained state"): each chunk
names the plan CRC, the size and the whole state's CRC-32, and the board refuses a state for
another plan, or one whose bytes do not match their CRC, with STATE_MISMATCH. The host twin
(--board host) applies the same checks here, so a twin fleet refuses what a board would.
"""

from __future__ import annotations

import zlib

import numpy as np

from pytools.errors import ToolError
from pytools.fleet.aggregate import SliceTensor
from pytools.link.client import BoardRefused, Link
from pytools.link.protocol import Msg, layout
from pytools.session import TwinTraining

HEADER = layout("STATE_LOAD").size  # plan_crc, state_size, state_crc, offset


class StateRefused(ToolError):
    """The board (or the twin) refused a state: another plan's, or corrupted."""


def state_blob(plan: list[SliceTensor], state: dict[str, np.ndarray]) -> bytes:
    """The state as the board holds it: every state tensor of the plan, in plan order."""
    parts = []
    for t in plan:
        if t.name not in state:
            raise StateRefused(f"the state has no tensor {t.name!r}: it is not this plan's state")
        a = np.ascontiguousarray(state[t.name])
        if a.shape != t.shape or a.dtype != np.dtype(t.dtype):
            raise StateRefused(
                f"{t.name!r} is {a.dtype}{list(a.shape)}, the plan's is {t.dtype}{list(t.shape)}"
            )
        parts.append(a.tobytes())
    return b"".join(parts)


def merge(plan: list[SliceTensor], global_slice: dict[str, np.ndarray], own: dict[str, np.ndarray]) -> dict:
    """The state a client loads: the global slice, and its own local tensors (its RNG)."""
    return {t.name: (own[t.name] if t.kind == "local" else global_slice[t.name]) for t in plan}


def load_to_board(link: Link, plan_crc: int, blob: bytes, claimed_crc: int | None = None) -> None:
    """STATE_LOAD in chunks. claimed_crc (default: the blob's own) is what the board checks the
    loaded bytes against; a refusal raises StateRefused with the board's words."""
    crc = zlib.crc32(blob) if claimed_crc is None else claimed_crc
    room = int(link.board.get("max_payload") or 256) - HEADER
    head = layout("STATE_LOAD")
    try:
        for off in range(0, max(len(blob), 1), room):
            fields = {"plan_crc": plan_crc, "state_size": len(blob), "state_crc": crc, "offset": off}
            link.request(Msg.STATE_LOAD, head.pack(**fields) + blob[off : off + room])
    except BoardRefused as e:
        raise StateRefused(str(e)) from e


def load_to_twin(
    twin: TwinTraining, plan: list[SliceTensor], plan_crc: int, blob: bytes, claimed_crc: int | None = None
) -> None:
    """The board's STATE_LOAD checks, on the host twin: another plan's or another size's state is
    refused before anything is written; bytes that do not match the claimed CRC-32 are refused
    (and, unlike the board, nothing was written: the twin checks before it writes)."""
    crc = zlib.crc32(blob) if claimed_crc is None else claimed_crc
    ours, size = twin.config["plan_crc"], twin.config["state_size"]
    if plan_crc != ours or len(blob) != size:
        raise StateRefused(
            f"board refused STATE_LOAD: state for plan 0x{plan_crc:08x} ({len(blob)} B); this board "
            f"runs plan 0x{ours:08x} ({size} B): nothing written [STATE_MISMATCH]"
        )
    if zlib.crc32(blob) != crc:
        raise StateRefused(
            f"board refused STATE_LOAD: the loaded state's CRC-32 is 0x{zlib.crc32(blob):08x}, the load "
            f"claimed 0x{crc:08x} [STATE_MISMATCH]"
        )
    at = 0
    for t in plan:
        tid = twin.trainer.state_ids[t.name]
        n = t.nbytes
        twin.twin.set_tensor(tid, np.frombuffer(blob[at : at + n], dtype=t.dtype).reshape(t.shape))
        at += n
