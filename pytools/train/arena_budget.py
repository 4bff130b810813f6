"""A scheme's arena_budget: the exact memory savers chosen to meet it at the least recomputation.

The savers change no bit of the step, only where its bytes live and how often values are
computed:
- a stride-1 depthwise layer in place (pytools/model/inplace.py; ~500 instructions a layer);
- a depthwise input gradient in two passes (DEPTHWISE_CONV_2D_GRAD_INPUT_2PASS), and a 1x1
  stride-1 conv input gradient in two passes (CONV_2D_GRAD_INPUT_2PASS) that keeps the int32
  accumulators of its first `keep` pixels: what is not kept is computed twice.

The policy starts from every saver at its maximum (the floor: every candidate in place, every
input gradient in two passes keeping nothing). A floor above the budget is refused, naming the
step that holds it and its largest buffers. Otherwise the savers are given back, the most
expensive first (estimated recomputed MACs), each whole where the arena stays within the
budget, else its `keep` widened by bisection to the largest the budget allows.

Each trial is answered exactly as the compiler would plan it (compile_graph's arena within the
budget or not), but cheaply (Budgeted.within): the plan without the exact overlaps answers yes
where it fits, since the compiler's overlap search keeps it unless it finds smaller; a lower
bound that no choice of the overlaps beats answers no; only between the two does the
compiler's own overlap search run (compiler.choose_ties), stopped at the first plan within the
budget. A trial that changes only keeps re-plans the last compile's buffers with the kept
operators' scratch re-sized (planner.plan_arena, the compiler's own), without lowering the
graph again. So the step finally compiled is within the budget by construction.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pytools.model.compiler import Compiled, choose_ties
from pytools.model.inplace import band_rows, in_place_candidates
from pytools.model.ir import Graph, ModelError, Op
from pytools.model.kernels import scratch_size
from pytools.model.lowering import lower
from pytools.model.lowering.conv import IN_PLACE_OPTION
from pytools.model.lowering.training_conv import conv_two_pass_takes
from pytools.model.plan import NO_TENSOR
from pytools.model.planner import Buffer, Tie, align_up, plan_arena


@dataclass(frozen=True)
class Keepable:
    """A two-pass kind whose `keep` option says how many units keep their accumulators
    between the passes (the others are computed twice)."""

    one_pass: str  # the one-pass kind it replaces
    units: Callable[[Graph, Op], int]  # how many units the operator has
    macs_per_unit: Callable[[Graph, Op], int]  # MACs computed again per unit not kept


def _pixels(g: Graph, op: Op) -> int:
    return math.prod(g.tensor(op.outputs[0]).shape[:-1])


def _conv_macs_per_pixel(g: Graph, op: Op) -> int:
    return g.tensor(op.inputs[0]).shape[-1] * g.tensor(op.outputs[0]).shape[-1]


def _channels(g: Graph, op: Op) -> int:
    return g.tensor(op.outputs[0]).shape[-1]


def _dw_macs_per_channel(g: Graph, op: Op) -> int:
    filt = g.tensor(g.ops[op.options["forward"]].inputs[1])
    return math.prod(g.tensor(op.inputs[0]).shape[1:-1]) * filt.shape[1] * filt.shape[2]


# kind -> its keep: conv input gradients keep pixels, depthwise ones channels (where the
# lowering takes the option: keep_takes).
KEEPABLE = {
    "CONV_2D_GRAD_INPUT_2PASS": Keepable("CONV_2D_GRAD_INPUT", _pixels, _conv_macs_per_pixel),
    "DEPTHWISE_CONV_2D_GRAD_INPUT_2PASS": Keepable(
        "DEPTHWISE_CONV_2D_GRAD_INPUT", _channels, _dw_macs_per_channel
    ),
}


def keep_takes(g: Graph, op: Op, two_pass: str) -> bool:
    """Whether the lowering of `two_pass` takes op's keep: keeping every unit plans more
    scratch than keeping none (a kernel without the option plans the same)."""

    def scratch(keep: int) -> int:
        probe = dataclasses.replace(op, kind=two_pass, options={**op.options, "keep": keep})
        return scratch_size(lower(g, probe))

    return scratch(KEEPABLE[two_pass].units(g, op)) > scratch(0)


@dataclass
class Saver:
    """One exact memory saver: operator graph.ops[index], in place or in two passes."""

    index: int
    kind: str  # "in place" or the two-pass kind
    units: int = 1  # keep ranges over [0, units); a saver without keep has one unit
    macs_per_unit: int = 0
    keeps: bool = False  # whether op.options["keep"] is set
    on: bool = True  # at its maximum: in place, or two-pass
    keep: int = 0

    @property
    def recompute(self) -> int:
        """MACs computed again as it stands (estimated)."""
        return (self.units - self.keep) * self.macs_per_unit if self.on and self.kind != "in place" else 0

    @property
    def most(self) -> int:
        return self.units * self.macs_per_unit


def savers(graph: Graph, overlap: bool, conv: bool = True) -> list[Saver]:
    """The step's exact memory savers, at their maximum. conv: 1x1 conv input gradients too.
    In-place layers are an exact overlap, so only with overlap."""
    out = [Saver(i, "in place") for i in (in_place_candidates(graph) if overlap else [])]
    for i, op in enumerate(graph.ops):
        two_pass = op.kind + "_2PASS"
        if op.kind == "DEPTHWISE_CONV_2D_GRAD_INPUT" or (
            conv and op.kind == "CONV_2D_GRAD_INPUT" and conv_two_pass_takes(graph, op)
        ):
            k = KEEPABLE[two_pass]
            if keep_takes(graph, op, two_pass):
                out.append(Saver(i, two_pass, k.units(graph, op), k.macs_per_unit(graph, op), True))
            else:  # one unit: the whole operator
                out.append(Saver(i, two_pass, 1, k.units(graph, op) * k.macs_per_unit(graph, op)))
    return out


class Budgeted:
    """The savers applied to a graph (its operators replaced or re-kinded in place), the plan
    compiled in full, or a trial priced against the budget."""

    def __init__(
        self, graph: Graph, found: list[Saver], compile_step: Callable[..., Compiled], overlap: bool
    ) -> None:
        self.graph, self.savers, self.compile_step, self.overlap = graph, found, compile_step, overlap
        self.plain = {s.index: graph.ops[s.index] for s in found if s.kind == "in place"}
        self.in_place = {
            i: dataclasses.replace(op, options={**op.options, IN_PLACE_OPTION: band_rows(graph, op)})
            for i, op in self.plain.items()
        }
        self.trials = self.searches = 0
        self.base: Compiled | None = None  # the last compile without the overlap search
        self.base_on: tuple[bool, ...] = ()  # which savers were on for it

    def apply(self) -> None:
        for s in self.savers:
            if s.kind == "in place":
                self.graph.ops[s.index] = self.in_place[s.index] if s.on else self.plain[s.index]
                continue
            op = self.graph.ops[s.index]
            op.kind = s.kind if s.on else KEEPABLE[s.kind].one_pass
            if s.on and (s.keeps or s.kind == "CONV_2D_GRAD_INPUT_2PASS"):
                op.options["keep"] = s.keep
            else:
                op.options.pop("keep", None)

    def compile(self) -> Compiled:
        """The graph as the savers stand, compiled in full (the plan)."""
        self.apply()
        return self.compile_step(overlap=self.overlap)

    def _planned(self) -> tuple[list[Buffer], list[tuple[int, Tie]], int]:
        """The planner's buffers and overlap candidates for the graph as the savers stand, and
        its steps. Where only keeps changed since the last compile, that compile's with the
        kept operators' scratch re-sized (a keep changes nothing else: the same operators,
        tensors and overlaps); else the graph compiled anew without the overlap search."""
        self.apply()
        on = tuple(s.on for s in self.savers)
        base = self.base
        if base is not None and on == self.base_on:
            sizes: dict[str, int] = {}
            for s in self.savers:
                if s.on and s.keeps:
                    scratch = base.plan.ops[s.index].scratch
                    size = scratch_size(lower(self.graph, self.graph.ops[s.index]))
                    if scratch == NO_TENSOR or not size:
                        break
                    sizes[f"s{scratch}"] = size
            else:
                buffers = [dataclasses.replace(b, size=sizes.get(b.name, b.size)) for b in base.buffers]
                return buffers, base.tie_candidates, len(base.plan.ops)
        self.base, self.base_on = self.compile_step(overlap=False), on
        return self.base.buffers, self.base.tie_candidates, len(self.base.plan.ops)

    def bounds(self) -> tuple[int, int]:
        """(above, below): the arena compile_step would plan for the graph as the savers stand
        is at most `above` (its plan without the exact overlaps, which the compiler's overlap
        search keeps unless it finds smaller) and at least `below` (no choice of the overlaps
        needs fewer bytes at its busiest step: lower_bound)."""
        buffers, candidates, _ = self._planned()
        if not self.overlap:
            arena = align_up(plan_arena(buffers)[1])
            return arena, arena
        return align_up(plan_arena(buffers)[1]), lower_bound(buffers, [t for _, t in candidates])

    def within(self, budget: int) -> bool:
        """Whether the graph as the savers stand compiles to an arena of at most budget bytes,
        exactly as compile_step would plan it, at a fraction of its cost: the bounds answer
        where they can, and only between them runs the compiler's overlap search
        (compiler.choose_ties), stopped at the first plan within the budget."""
        self.trials += 1
        above, below = self.bounds()
        if above <= budget or below > budget:
            return above <= budget
        self.searches += 1
        buffers, candidates, n = self._planned()
        _, _, arena = choose_ties(buffers, candidates, n, enough=budget)
        return align_up(arena) <= budget


def _largest(lo: int, hi: int, fits: Callable[[int], bool]) -> int:
    """The largest k in [lo, hi] that fits, fits(lo) known true (bisection: fits is taken as
    monotone)."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def meet(
    graph: Graph, budget: int, compile_step: Callable[..., Compiled], overlap: bool = True, conv: bool = True
) -> tuple[Compiled, str]:
    """graph's savers chosen so that its arena is at most budget bytes at the least estimated
    recomputation, and the step so compiled (compile_step(overlap=...) compiles graph as it
    stands); a note saying what was chosen. Raises ModelError where even the floor exceeds
    the budget."""
    found = savers(graph, overlap, conv)
    b = Budgeted(graph, found, compile_step, overlap)
    floor = b.compile()
    if floor.arena > budget:
        raise ModelError(floor_message(graph, floor, budget, found))
    for s in sorted(found, key=lambda s: (-s.most, s.kind == "in place", s.index)):
        s.on = False  # given back whole
        if b.within(budget):
            continue
        s.on = True
        if s.keeps:  # the most units kept that the budget allows (bisection)

            def at(keep: int, test: Callable[[], bool], s: Saver = s) -> bool:
                s.keep = keep
                return test()

            # The bounds first (a re-plan each): keeps whose plan without overlaps fits are in,
            # keeps that no overlap brings within are out; the compiler's search decides between.
            fits_above = _largest(s.keep, s.units - 1, lambda k: at(k, lambda: b.bounds()[0] <= budget))
            fits_below = _largest(fits_above, s.units - 1, lambda k: at(k, lambda: b.bounds()[1] <= budget))
            s.keep = _largest(fits_above, fits_below, lambda k: at(k, lambda: b.within(budget)))
    compiled = b.compile()
    # Every change was kept only where the compiler's plan is within the budget (within()).
    assert compiled.arena <= budget, (compiled.arena, budget)
    return compiled, _note(budget, compiled, floor, found, b)


def _note(budget: int, compiled: Compiled, floor: Compiled, found: list[Saver], b: Budgeted) -> str:
    two = [s for s in found if s.on and s.kind != "in place"]
    partial = [s for s in two if s.keeps and s.keep]
    in_place = sum(s.on for s in found if s.kind == "in place")
    recompute = sum(s.recompute for s in found)
    return (
        f"budget    arena_budget {budget:,} B: arena {compiled.arena:,} B (floor {floor.arena:,} B); "
        f"{in_place} depthwise layers in place, {len(two)} input gradients in two passes"
        + (f" ({len(partial)} keeping part)" if partial else "")
        + f", ~{recompute:,} MACs computed twice ({b.trials} trials, {b.searches} overlap searches)"
    )


def floor_message(graph: Graph, floor: Compiled, budget: int, found: list[Saver]) -> str:
    """Why the budget cannot be met: the floor, the step that holds it (the most bytes it needs
    with every exact overlap taken, so no saver lowers it), its largest buffers, the next such
    step, and what to do."""
    plan = floor.plan
    need = least_bytes(floor.buffers, [t for _, t in floor.tie_candidates])[: len(graph.ops)]
    busiest = sorted(range(len(need)), key=lambda i: (-int(need[i]), i))
    step = busiest[0]
    alive = [b for b in floor.buffers if b.first <= step <= b.last]

    def label(b: Buffer) -> str:
        name = plan.tensors[int(b.name[1:])].name.split(";")[0]
        return f"{name or 'its scratch'} ({b.size:,} B)"

    def what(i: int) -> str:
        op = graph.ops[i]
        fwd = op.options.get("forward")
        return f"#{i} {op.kind}" + (f" of #{fwd} {graph.ops[fwd].kind}" if fwd is not None else "")

    # The next busiest step elsewhere (not a neighbour of the first): what decides the arena next.
    later = next((i for i in busiest if abs(i - step) > 2), None)
    then = f"; next, step {what(later)} ({int(need[later]):,} B)" if later is not None else ""
    n_in_place = sum(s.kind == "in place" for s in found)
    largest = ", ".join(label(b) for b in sorted(alive, key=lambda b: -b.size)[:4])
    return (
        f"arena_budget {budget:,} B is below what the exact memory savers reach: with all of them "
        f"at their maximum ({n_in_place} depthwise layers in place, {len(found) - n_in_place} input "
        f"gradients in two passes keeping nothing) the arena is {floor.arena:,} B. Step {what(step)} "
        f"holds it: it needs {int(need[step]):,} B with every exact overlap taken; its largest buffers: "
        f"{largest}{then}. Give arena_budget = {floor.arena} or more, or lower that step's peak: patch "
        f"the first stages (patch=...), stream the input (stream_input=true), or train fewer or "
        f"narrower layers."
    )


def lower_bound(buffers: list[Buffer], candidates: list[Tie]) -> int:
    """A bound no plan of these buffers reaches below, whichever of the candidate overlaps it
    keeps (least_bytes' largest)."""
    return int(least_bytes(buffers, candidates).max())


def least_bytes(buffers: list[Buffer], candidates: list[Tie]) -> np.ndarray:
    """The bytes each step needs at least, whichever of the candidate overlaps a plan keeps:
    the buffers alive, those tied together (every candidate kept: buffers apart can only take
    more) counted once where they share bytes."""
    at: dict[str, tuple[str, int]] = {b.name: (b.name, 0) for b in buffers}  # -> (group, offset)

    def find(n: str) -> tuple[str, int]:
        r, off = at[n]
        if r == n:
            return n, 0
        rr, roff = find(r)
        at[n] = (rr, off + roff)
        return at[n]

    for t in candidates:
        (ra, oa), (rb, ob) = find(t.leader), find(t.follower)
        if ra != rb:
            at[rb] = (ra, oa + t.offset - ob)
    n = max((b.last for b in buffers), default=0) + 2
    load = np.zeros(n, np.int64)
    groups: dict[str, list[tuple[Buffer, int]]] = {}
    for b in buffers:
        r, off = find(b.name)
        groups.setdefault(r, []).append((b, off))
    for members in groups.values():
        if len(members) == 1:
            b = members[0][0]
            load[b.first] += align_up(b.size)
            load[b.last + 1] -= align_up(b.size)
            continue
        for step in sorted({s for b, _ in members for s in range(b.first, b.last + 1)}):
            spans = sorted((o, o + align_up(b.size)) for b, o in members if b.first <= step <= b.last)
            total, end = 0, spans[0][0]
            for a, z in spans:
                total, end = total + max(0, z - max(a, end)), max(end, z)
            load[step] += total
            load[step + 1] -= total
    return np.cumsum(load)[:-1]
