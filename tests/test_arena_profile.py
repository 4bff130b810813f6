"""compile_train.arena_profile counts the bytes the plan puts in the arena at each step: a byte
two live buffers share (an output in place over its input, over its operator's scratch, an
alias) counts once, so each step's total is the number of distinct arena bytes in use there,
measured here independently by marking every live buffer's bytes, and never above the arena."""

from __future__ import annotations

import numpy as np

from pytools.boards import load_board
from pytools.model.plan import NO_TENSOR, STORAGE_ARENA, STORAGE_STATE
from pytools.model.planner import align_up
from pytools.train.compile_train import arena_profile, compile_training, lifetimes
from pytools.train.scheme import load_scheme
from tests.kernels.conv.support import depthwise_chain


def _bytes_in_use(ct) -> list[int]:
    """Per step, the arena bytes some live tensor or the step's scratch occupies (a mask)."""
    plan, ids, g = ct.compiled.plan, ct.compiled.plan_ids, ct.train.graph
    live = lifetimes(ct)
    out = []
    for step in range(len(g.ops) + 1):
        used = np.zeros(plan.arena_size, bool)
        for t, (a, b) in live.items():
            pt = plan.tensors[ids[t]] if t in ids else None
            if a <= step <= b and pt is not None and pt.storage in (STORAGE_ARENA, STORAGE_STATE):
                used[pt.offset : pt.offset + align_up(g.tensor(t).nbytes)] = True
        if step < len(plan.ops) and plan.ops[step].scratch != NO_TENSOR:
            s = plan.tensors[plan.ops[step].scratch]
            used[s.offset : s.offset + align_up(s.size)] = True
        out.append(int(used.sum()))
    return out


def test_shared_bytes_count_once() -> None:
    s1 = (3, 1, "SAME", "RELU6", 6.0)
    g = depthwise_chain(16, 16, 48, [s1, s1, s1, (3, 2, "SAME", "RELU6", 6.0), (8, 1, "VALID", "NONE", 3.0)])
    ct = compile_training(g, load_scheme("bias=4"), load_board("mps2_an500"), "chain", link=False)
    assert ct.compiled.ties, "the step shares no bytes: nothing to test"
    profile = [sum(cats.values()) for cats in arena_profile(ct)]
    assert profile == _bytes_in_use(ct)
    assert max(profile) <= ct.compiled.arena
