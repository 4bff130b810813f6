"""Static memory planning: buffers with lifetimes packed into one arena.

Each buffer is a rectangle (lifetime x bytes). Greedy by size, largest first, each placed
at the lowest offset where it overlaps no already-placed buffer that is alive at the same
time (TFLite Micro's GreedyMemoryPlanner does the same). Separately tested
(tests/test_planner.py) and used for every plan.
"""

from __future__ import annotations

from dataclasses import dataclass

ALIGN = 16


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int  # bytes
    first: int  # first step that uses it (inclusive)
    last: int  # last step that uses it (inclusive)

    def overlaps_in_time(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last


def align_up(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


def plan_arena(buffers: list[Buffer], align: int = ALIGN) -> tuple[dict[str, int], int]:
    """Offsets for every buffer (by name) and the arena size they need."""
    for b in buffers:
        if b.size < 0 or b.first > b.last:
            raise ValueError(f"buffer {b.name}: bad size or lifetime")
    order = sorted(buffers, key=lambda b: (-align_up(b.size, align), b.first, b.name))
    placed: list[tuple[int, int, Buffer]] = []  # (offset, end, buffer)
    offsets: dict[str, int] = {}
    for b in order:
        size = align_up(b.size, align)
        busy = sorted((off, end) for off, end, other in placed if other.overlaps_in_time(b))
        offset = 0
        for off, end in busy:
            if offset + size <= off:
                break
            offset = max(offset, align_up(end, align))
        offsets[b.name] = offset
        placed.append((offset, offset + size, b))
    arena = max((end for _, end, _ in placed), default=0)
    return offsets, arena


def peak_live_bytes(buffers: list[Buffer], align: int = ALIGN) -> int:
    """The lower bound any plan needs: the most bytes alive at one step."""
    steps = {s for b in buffers for s in (b.first, b.last)}
    return max(
        (sum(align_up(b.size, align) for b in buffers if b.first <= s <= b.last) for s in steps), default=0
    )
