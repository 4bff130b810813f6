"""Static memory planning: buffers with lifetimes packed into one arena.

Each buffer is a rectangle (lifetime x bytes). Greedy by size, largest first, each placed
at the lowest offset where it overlaps no already-placed buffer that is alive at the same
time (TFLite Micro's GreedyMemoryPlanner does the same). Separately tested
(tests/test_planner.py) and used for every plan.

A `Tie` places one buffer at a fixed offset from another, even where both are alive: the
compiler ties a tensor written window by window in row order (a patched stage's output) to
the tensor those windows are computed from (the stage's input) where it has proved that no
write reaches a byte a later operator still reads (compiler.overlap_ties). Tied buffers move
as one group; every other pair still never shares a byte while both are alive.
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


@dataclass(frozen=True)
class Tie:
    """Buffer `follower` starts `offset` bytes after buffer `leader` (offset may be negative,
    a multiple of the alignment); the two may share bytes while both are alive."""

    leader: str
    follower: str
    offset: int


def _groups(buffers: list[Buffer], ties: list[Tie], align: int) -> list[list[tuple[Buffer, int]]]:
    """The buffers in groups of (buffer, offset from the group's start) that move together:
    one per buffer, merged along the ties (a chain X -> Y -> Z is one group)."""
    by_name = {b.name: b for b in buffers}
    rel: dict[str, tuple[str, int]] = {b.name: (b.name, 0) for b in buffers}  # -> (root, offset)

    def find(n: str) -> tuple[str, int]:
        r, off = rel[n]
        if r == n:
            return n, 0
        rr, roff = find(r)
        rel[n] = (rr, off + roff)
        return rel[n]

    for t in ties:
        if t.offset % align:
            raise ValueError(f"tie {t.leader} -> {t.follower}: offset {t.offset} is not aligned to {align}")
        (ra, oa), (rb, ob) = find(t.leader), find(t.follower)
        if ra == rb:
            if ob - oa != t.offset:
                raise ValueError(f"tie {t.leader} -> {t.follower} contradicts the other ties")
            continue
        rel[rb] = (ra, oa + t.offset - ob)  # follower's root, relative to the leader's root
    members: dict[str, list[tuple[Buffer, int]]] = {}
    for b in buffers:
        r, off = find(b.name)
        members.setdefault(r, []).append((by_name[b.name], off))
    groups = []
    for m in members.values():
        low = min(off for _, off in m)
        groups.append([(b, off - low) for b, off in m])
    return groups


def _lowest_base(group: list[tuple[Buffer, int]], busy: list[list[tuple[int, int]]], align: int) -> int:
    """The lowest offset for the group's start at which no member meets a placed buffer
    alive at the same time (busy: per member, those buffers' sorted spans)."""
    if len(group) == 1:  # one buffer: the first gap it fits, in one pass
        size, offset = align_up(group[0][0].size, align), 0
        for off, end in busy[0]:
            if offset + size <= off:
                break
            offset = max(offset, align_up(end, align))
        return offset
    # Candidates: 0 and every busy end less a member's offset; the largest one always fits.
    starts = sorted(
        {0}
        | {
            max(0, align_up(end - rel, align))
            for (_, rel), spans in zip(group, busy, strict=True)
            for _, end in spans
        }
    )
    for base in starts:
        if all(
            base + rel + align_up(b.size, align) <= off or end <= base + rel
            for (b, rel), spans in zip(group, busy, strict=True)
            for off, end in spans
        ):
            return base
    raise AssertionError("unreachable: past every busy span the group fits")


def plan_arena(
    buffers: list[Buffer], align: int = ALIGN, ties: list[Tie] | None = None
) -> tuple[dict[str, int], int]:
    """Offsets for every buffer (by name) and the arena size they need. ties: buffers placed
    at a fixed offset from another (Tie); without them, every buffer on its own."""
    for b in buffers:
        if b.size < 0 or b.first > b.last:
            raise ValueError(f"buffer {b.name}: bad size or lifetime")
    groups = _groups(buffers, ties or [], align)
    order = sorted(
        groups,
        key=lambda g: (-max(align_up(b.size, align) for b, _ in g), min(b.first for b, _ in g), g[0][0].name),
    )
    placed: list[tuple[int, int, Buffer]] = []  # (offset, end, buffer)
    offsets: dict[str, int] = {}
    for group in order:
        busy = [
            sorted((off, end) for off, end, other in placed if other.overlaps_in_time(b)) for b, _ in group
        ]
        base = _lowest_base(group, busy, align)
        for b, rel in group:
            offsets[b.name] = base + rel
            placed.append((base + rel, base + rel + align_up(b.size, align), b))
    arena = max((end for _, end, _ in placed), default=0)
    return offsets, arena


def peak_live_bytes(buffers: list[Buffer], align: int = ALIGN) -> int:
    """The lower bound any plan needs: the most bytes alive at one step."""
    steps = {s for b in buffers for s in (b.first, b.last)}
    return max(
        (sum(align_up(b.size, align) for b in buffers if b.first <= s <= b.last) for s in steps), default=0
    )
