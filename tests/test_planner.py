"""The arena planner on its own: valid packings, real reuse, never below the lower bound."""

from __future__ import annotations

import random

import pytest

from pytools.model.planner import ALIGN, Buffer, align_up, peak_live_bytes, plan_arena


def check_valid(buffers: list[Buffer], offsets: dict[str, int], arena: int) -> None:
    for b in buffers:
        assert offsets[b.name] % ALIGN == 0
        assert offsets[b.name] + b.size <= arena
    for i, a in enumerate(buffers):
        for b in buffers[i + 1 :]:
            if a.overlaps_in_time(b):
                a0, b0 = offsets[a.name], offsets[b.name]
                assert a0 + align_up(a.size) <= b0 or b0 + align_up(b.size) <= a0, (a, b, a0, b0)


def test_buffers_alive_at_different_times_share_memory() -> None:
    chain = [Buffer(f"b{i}", 1000, i, i + 1) for i in range(6)]  # a layer-by-layer chain
    offsets, arena = plan_arena(chain)
    check_valid(chain, offsets, arena)
    assert arena == 2 * align_up(1000)  # only neighbours are alive together


def test_buffers_alive_together_are_stacked() -> None:
    bufs = [Buffer("a", 100, 0, 5), Buffer("b", 200, 0, 5), Buffer("c", 50, 0, 5)]
    offsets, arena = plan_arena(bufs)
    check_valid(bufs, offsets, arena)
    assert arena == sum(align_up(b.size) for b in bufs)


def test_a_residual_branch_keeps_its_input_alive() -> None:
    # x(0..3) feeds conv1(1) and the add at step 3; y1 = conv1(x), y2 = conv2(y1), out = add(x, y2)
    bufs = [
        Buffer("x", 4096, 0, 3),
        Buffer("y1", 4096, 1, 2),
        Buffer("y2", 4096, 2, 3),
        Buffer("out", 4096, 3, 4),
    ]
    offsets, arena = plan_arena(bufs)
    check_valid(bufs, offsets, arena)
    assert arena == peak_live_bytes(bufs) == 3 * 4096


@pytest.mark.parametrize("seed", range(30))
def test_random_plans_are_valid_and_not_below_the_bound(seed: int) -> None:
    rng = random.Random(seed)
    bufs = []
    for i in range(rng.randrange(1, 40)):
        first = rng.randrange(0, 30)
        bufs.append(Buffer(f"b{i}", rng.randrange(1, 5000), first, first + rng.randrange(0, 6)))
    offsets, arena = plan_arena(bufs)
    check_valid(bufs, offsets, arena)
    assert arena >= peak_live_bytes(bufs)
    assert arena <= sum(align_up(b.size) for b in bufs)


def test_bad_buffers_are_refused() -> None:
    with pytest.raises(ValueError):
        plan_arena([Buffer("x", 10, 3, 2)])
