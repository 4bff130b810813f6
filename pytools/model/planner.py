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

import numpy as np

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


def _lowest_base(
    group: list[tuple[Buffer, int]], busy: list[tuple[np.ndarray, np.ndarray]], align: int
) -> int:
    """The lowest offset for the group's start at which no member meets a placed buffer
    alive at the same time (busy: per member, those buffers' offsets and ends, by offset;
    ends are aligned)."""
    if len(group) == 1:  # one buffer: the first gap it fits, scanning up from 0
        size = align_up(group[0][0].size, align)
        offs, ends = busy[0]
        if len(offs) == 0:
            return 0
        below = np.concatenate(([0], np.maximum.accumulate(ends)[:-1]))  # highest end so far
        fits = np.flatnonzero(below + size <= offs)
        return int(below[fits[0]]) if len(fits) else int(max(below[-1], ends[-1], ends.max()))
    # Candidates: 0 and every busy end less a member's offset; the largest one always fits.
    starts = sorted(
        {0}
        | {max(0, int(end) - rel) for (_, rel), (_, ends) in zip(group, busy, strict=True) for end in ends}
    )
    for base in starts:
        if all(
            not np.any((offs < base + rel + align_up(b.size, align)) & (base + rel < ends))
            for (b, rel), (offs, ends) in zip(group, busy, strict=True)
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
    best: tuple[dict[str, int], int] | None = None
    for key in _ORDERS:
        offsets, arena = _place(sorted(groups, key=lambda g, k=key: k(g, align)), align)
        if best is None or arena < best[1]:
            best = (offsets, arena)
    assert best is not None
    return best


def _size_first(g: list[tuple[Buffer, int]], align: int) -> tuple[int, int, str]:
    """TFLite Micro's order: the largest first."""
    return (-max(align_up(b.size, align) for b, _ in g), min(b.first for b, _ in g), g[0][0].name)


def _longest_first(g: list[tuple[Buffer, int]], align: int) -> tuple[int, int, str]:
    """The longest-lived first (whole-step state, then saved activations), then the largest."""
    span = max(b.last for b, _ in g) - min(b.first for b, _ in g)
    return (-span, -max(align_up(b.size, align) for b, _ in g), g[0][0].name)


# plan_arena places the buffers in each order and keeps the smaller arena.
_ORDERS = (_size_first, _longest_first)


def _place(order: list[list[tuple[Buffer, int]]], align: int) -> tuple[dict[str, int], int]:
    """Each group in turn at the lowest base where it fits (_lowest_base). The placed buffers
    are kept in arrays, so finding those alive at the same time is one vector comparison."""
    n = sum(len(g) for g in order)
    p_first, p_last = np.empty(n, np.int64), np.empty(n, np.int64)
    p_off, p_end = np.empty(n, np.int64), np.empty(n, np.int64)
    k = 0
    offsets: dict[str, int] = {}
    for group in order:
        busy = []
        for b, _ in group:
            alive = (p_first[:k] <= b.last) & (b.first <= p_last[:k])
            idx = np.flatnonzero(alive)
            o = np.argsort(p_off[idx], kind="stable")
            busy.append((p_off[idx][o], p_end[idx][o]))
        base = _lowest_base(group, busy, align)
        for b, rel in group:
            offsets[b.name] = base + rel
            p_first[k], p_last[k] = b.first, b.last
            p_off[k], p_end[k] = base + rel, base + rel + align_up(b.size, align)
            k += 1
    return offsets, int(p_end[:k].max()) if k else 0


def peak_live_bytes(buffers: list[Buffer], align: int = ALIGN) -> int:
    """The lower bound any plan needs: the most bytes alive at one step."""
    steps = {s for b in buffers for s in (b.first, b.last)}
    return max(
        (sum(align_up(b.size, align) for b in buffers if b.first <= s <= b.last) for s in steps), default=0
    )
