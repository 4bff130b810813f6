"""Patch-based execution of a model's first stage (MCUNetV2; method.md section 7).

At 128x128 the first layers of a MobileNet hold the largest activations (MobileNetV2-w0.35:
a 64x64x48 tensor, 196,608 B), yet a sparse update trains nothing there, so they keep
nothing for backward and their order is free. `patch_graph` rewrites operators [0, end] of
a graph (the stage) so that the stage's output is computed in P x P spatial patches, one
after the other: for each patch,

  1. the receptive field of the patch is traced back through the stage, layer by layer,
     clipped to each tensor's bounds;
  2. WINDOW_COPY cuts that window of the stage's input into a small patch buffer;
  3. each layer runs its own kernel on patch buffers. Its padding is the part of the
     receptive field outside the tensor, which the kernel treats as the input's zero point,
     exactly as TFLite's SAME padding does at the tensor's edge, so every value is the full
     layer's value (bit-exact); where a patch buffer is larger than what a consumer needs
     (a residual ADD beside a 3x3 depthwise), WINDOW_COPY crops it first;
  4. WINDOW_COPY writes the patch's output into the full stage output.

Only the patch buffers of one patch are alive at a time, so the stage needs its input, its
output and one patch's buffers instead of its largest pair of layers. The overlap of the
receptive fields is recomputed (`overhead` counts the MACs). No kernel changes: the layers
are lowered by their own lowering with an explicit padding (option "patch_pad").

`search` compiles candidate stages and patch counts and returns the planner's arena for
each, so a scheme can name the best (schemes/*.toml, [patch]).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from pytools.model.ir import Graph, ModelError, Op, Tensor
from pytools.model.kernels import KernelCall, Operand, op_defs
from pytools.model.lowering import lower, lowers

# Operators a stage may hold: spatial layers whose receptive field is a window, and ADD.
WINDOWED = ("CONV_2D", "DEPTHWISE_CONV_2D")
STAGE_OPS = (*WINDOWED, "ADD")

Box = tuple[int, int, int, int]  # rows [y0, y1), columns [x0, x1), in a tensor's coordinates


@dataclass(frozen=True)
class Patching:
    start: int  # the stage is operators [start, until] of the graph
    until: int
    patches: int  # its output is split into patches x patches spatial patches

    def describe(self) -> str:
        return f"operators #{self.start}-#{self.until} in {self.patches}x{self.patches} patches"


@dataclass
class Patched:
    graph: Graph
    added: int  # operators added (the stage's operators replaced by more)
    stage_macs: int  # MACs of the stage, computed once per output value
    patched_macs: int  # MACs of its patches, overlap recomputed


def _fail(msg: str) -> ModelError:
    return ModelError(f"patch-based execution: {msg}")


@lowers("WINDOW_COPY")
def lower_window_copy(graph: Graph, op: Op) -> KernelCall:
    src, dst = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    o = op.options
    for t in (src, dst):
        if len(t.shape) != 4 or t.shape[0] != 1 or t.dtype != "int8":
            raise ModelError(f"{op.where()}: '{t.name}' must be an int8 NHWC tensor of batch 1")
    if src.shape[3] != dst.shape[3]:
        raise ModelError(f"{op.where()}: '{src.name}' and '{dst.name}' differ in channels")
    h, w = int(o["copy_h"]), int(o["copy_w"])
    sy, sx, dy, dx = (int(o[k]) for k in ("src_y", "src_x", "dst_y", "dst_x"))
    if min(h, w, sy, sx, dy, dx) < 0 or sy + h > src.shape[1] or sx + w > src.shape[2]:
        raise ModelError(f"{op.where()}: the window lies outside '{src.name}' {src.shape}")
    if dy + h > dst.shape[1] or dx + w > dst.shape[2]:
        raise ModelError(f"{op.where()}: the window lies outside '{dst.name}' {dst.shape}")
    params = {
        "src_h": src.shape[1],
        "src_w": src.shape[2],
        "dst_h": dst.shape[1],
        "dst_w": dst.shape[2],
        "depth": src.shape[3],
        "src_y": sy,
        "src_x": sx,
        "dst_y": dy,
        "dst_x": dx,
        "copy_h": h,
        "copy_w": w,
    }
    return KernelCall(
        op_defs()["WINDOW_COPY"].kernel,
        params,
        [Operand(tensor=src.index), Operand(tensor=dst.index, is_output=True)],
    )


def _span(
    o0: int, o1: int, stride: int, pad: int, filt: int, dilation: int, size: int
) -> tuple[int, int, int]:
    """Input rows [a, b) that output rows [o0, o1) read, clipped to [0, size), and the rows
    of padding before a (the receptive field's part above the tensor)."""
    start = o0 * stride - pad
    end = (o1 - 1) * stride - pad + (filt - 1) * dilation + 1
    a, b = max(0, start), min(size, end)
    return a, b, a - start


def _union(a: Box | None, b: Box) -> Box:
    if a is None:
        return b
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def _splits(n: int, parts: int) -> list[tuple[int, int]]:
    edges = [round(i * n / parts) for i in range(parts + 1)]
    return [(edges[i], edges[i + 1]) for i in range(parts)]


def _check_stage(graph: Graph, start: int, until: int) -> tuple[int, int]:
    """(stage input, stage output) tensors, or why operators [start, until] cannot be patched."""
    if not 0 <= start <= until < len(graph.ops):
        raise _fail(f"operators #{start}-#{until} are not a range of the graph's {len(graph.ops)}")
    stage = graph.ops[start : until + 1]
    produced = {t for op in stage for t in op.outputs}
    outside: set[int] = set()
    for op in stage:
        if op.kind not in STAGE_OPS:
            raise _fail(f"{op.where()} cannot run in patches (only {', '.join(STAGE_OPS)})")
        if op.options.get("trained_filter", -1) >= 0 or op.options.get("trained_bias", -1) >= 0:
            raise _fail(f"{op.where()} is trained; only frozen layers run in patches")
        if len(op.outputs) != 1:
            raise _fail(f"{op.where()} has {len(op.outputs)} outputs")
        data_inputs = op.inputs[:1] if op.kind in WINDOWED else op.inputs
        for t in data_inputs:
            if t not in produced:
                outside.add(t)
        for t in [*data_inputs, *op.outputs]:
            shape = graph.tensor(t).shape
            if len(shape) != 4 or shape[0] != 1 or graph.tensor(t).dtype != "int8":
                raise _fail(f"{op.where()}: '{graph.tensor(t).name}' is not an int8 NHWC tensor of batch 1")
    if len(outside) != 1:
        raise _fail(
            f"operators #{start}-#{until} read {len(outside)} activations from outside; one is needed"
        )
    out = stage[-1].outputs[0]
    later = {t for op in [*graph.ops[:start], *graph.ops[until + 1 :]] for t in op.inputs} | set(
        graph.outputs
    )
    for t in produced - {out}:
        if t in later:
            raise _fail(
                f"'{graph.tensor(t).name}' is used after operator #{until}; the stage must end in one tensor"
            )
    return outside.pop(), out


def patch_graph(graph: Graph, patching: Patching) -> Patched:
    """The graph with operators [start, until] run patch by patch (module docstring)."""
    start, until, parts = patching.start, patching.until, patching.patches
    stage_in, stage_out = _check_stage(graph, start, until)
    stage = graph.ops[start : until + 1]
    out_t = graph.tensor(stage_out)
    if not 1 <= parts <= min(out_t.shape[1], out_t.shape[2]):
        raise _fail(f"{parts}x{parts} patches do not fit the {out_t.shape[1]}x{out_t.shape[2]} stage output")
    geometry = {op.index: lower(graph, op).params for op in stage if op.kind in WINDOWED}
    tensors = list(graph.tensors)
    ops = [
        Op(op.index, op.kind, list(op.inputs), list(op.outputs), dict(op.options)) for op in graph.ops[:start]
    ]

    def buffer(t: int, box: Box, label: str) -> int:
        src = graph.tensor(t)
        shape = (1, box[1] - box[0], box[3] - box[2], src.shape[3])
        tensors.append(Tensor(len(tensors), f"{label}/{src.name}", shape, src.dtype, src.quant))
        return len(tensors) - 1

    def emit(kind: str, inputs: list[int], outputs: list[int], **options: object) -> None:
        ops.append(Op(len(ops), kind, inputs, outputs, dict(options)))

    def copy(src: int, dst: int, sy: int, sx: int, dy: int, dx: int, h: int, w: int) -> None:
        emit("WINDOW_COPY", [src], [dst], src_y=sy, src_x=sx, dst_y=dy, dst_x=dx, copy_h=h, copy_w=w)

    stage_macs = sum(_macs(graph, op, out_shape=graph.tensor(op.outputs[0]).shape) for op in stage)
    patched_macs = 0
    rows, cols = _splits(out_t.shape[1], parts), _splits(out_t.shape[2], parts)
    for py, (y0, y1) in enumerate(rows):
        for px, (x0, x1) in enumerate(cols):
            label = f"patch{py}_{px}"
            # Backwards: the box of every tensor this patch needs, and each consumer's share.
            box: dict[int, Box] = {stage_out: (y0, y1, x0, x1)}
            need: dict[tuple[int, int], tuple[Box, tuple[int, int]]] = {}  # (op, input) -> box, padding
            for op in reversed(stage):
                if op.outputs[0] not in box:
                    continue  # nothing downstream in this patch reads it
                oy0, oy1, ox0, ox1 = box[op.outputs[0]]
                if op.kind in WINDOWED:
                    g = geometry[op.index]
                    a, b, pad_h = _span(
                        oy0, oy1, g["stride_h"], g["pad_h"], g["filter_h"], g["dilation_h"], g["input_h"]
                    )
                    c, d, pad_w = _span(
                        ox0, ox1, g["stride_w"], g["pad_w"], g["filter_w"], g["dilation_w"], g["input_w"]
                    )
                    reads = [(op.inputs[0], (a, b, c, d), (pad_h, pad_w))]
                else:
                    reads = [(t, (oy0, oy1, ox0, ox1), (0, 0)) for t in op.inputs]
                for t, bx, pad in reads:
                    need[(op.index, t)] = (bx, pad)
                    box[t] = _union(box.get(t), bx)
            # Forwards: cut the input, run each layer on patch buffers, write the output.
            held: dict[int, int] = {}  # stage tensor -> its patch buffer
            ib = box[stage_in]
            held[stage_in] = buffer(stage_in, ib, label)
            copy(stage_in, held[stage_in], ib[0], ib[2], 0, 0, ib[1] - ib[0], ib[3] - ib[2])
            for op in stage:
                if op.outputs[0] not in box:
                    continue
                inputs = list(op.inputs)
                pad = (0, 0)
                for j, t in enumerate(op.inputs[:1] if op.kind in WINDOWED else op.inputs):
                    bx, pad = need[(op.index, t)]
                    have = box[t]
                    if bx != have:  # a crop of a larger buffer
                        crop = buffer(t, bx, f"{label}/crop{op.index}")
                        copy(
                            held[t],
                            crop,
                            bx[0] - have[0],
                            bx[2] - have[2],
                            0,
                            0,
                            bx[1] - bx[0],
                            bx[3] - bx[2],
                        )
                        inputs[j] = crop
                    else:
                        inputs[j] = held[t]
                ob = box[op.outputs[0]]
                out = buffer(op.outputs[0], ob, label)
                held[op.outputs[0]] = out
                options = dict(op.options)
                if op.kind in WINDOWED:
                    options["patch_pad"] = pad
                emit(op.kind, inputs, [out], **options)
                patched_macs += _macs(graph, op, out_shape=tensors[out].shape)
            copy(held[stage_out], stage_out, 0, 0, y0, x0, y1 - y0, x1 - x0)

    added = len(ops) - start - len(stage)
    for op in graph.ops[until + 1 :]:
        options = dict(op.options)
        if "forward" in options and options["forward"] > until:  # a training op's forward operator
            options["forward"] = int(options["forward"]) + added
        ops.append(Op(len(ops), op.kind, list(op.inputs), list(op.outputs), options))
    patched = Graph(tensors, ops, list(graph.inputs), list(graph.outputs), graph.name, graph.description)
    return Patched(patched, added, stage_macs, patched_macs)


def _macs(graph: Graph, op: Op, out_shape: tuple[int, ...]) -> int:
    if op.kind not in WINDOWED:
        return 0
    filt = graph.tensor(op.inputs[1]).shape
    positions = out_shape[0] * out_shape[1] * out_shape[2]
    if op.kind == "CONV_2D":
        return positions * filt[0] * filt[1] * filt[2] * filt[3]
    return positions * filt[1] * filt[2] * filt[3]


def candidates(graph: Graph, start: int = 0) -> list[int]:
    """Operators at which a stage from operator #start may end (its output a single tensor)."""
    out = []
    for until in range(start, len(graph.ops)):
        try:
            _check_stage(graph, start, until)
        except ModelError:
            if graph.ops[until].kind not in STAGE_OPS:
                break  # every longer stage holds this operator too
            continue
        out.append(until)
    return out


def patch_stages(graph: Graph, stages: list[Patching]) -> Patched:
    """Several stages, each in its own patches (their ranges in the original graph's operator
    numbers, disjoint). The last is rewritten first, so the earlier ones' numbers still hold."""
    ordered = sorted(stages, key=lambda p: p.start)
    for a, b in itertools.pairwise(ordered):
        if b.start <= a.until:
            raise _fail(f"stages {a.describe()} and {b.describe()} overlap")
    result = Patched(graph, 0, 0, 0)
    for p in reversed(ordered):
        step = patch_graph(result.graph, p)
        result = Patched(
            step.graph,
            result.added + step.added,
            result.stage_macs + step.stage_macs,
            result.patched_macs + step.patched_macs,
        )
    return result


def _best(
    results: list[tuple[list[Patching], int, Patched]], slack: int
) -> list[tuple[list[Patching], int, Patched]]:
    """Smallest arena first; among plans within `slack` bytes of the smallest, the fewest
    recomputed MACs, then the smaller arena (recomputing a stage several times over to save
    a few hundred bytes is a bad trade)."""
    low = min(r[1] for r in results)

    def key(r: tuple[list[Patching], int, Patched]) -> tuple[int, int, int]:
        extra = r[2].patched_macs - r[2].stage_macs
        return (0, extra, r[1]) if r[1] <= low + slack else (1, r[1], extra)

    return sorted(results, key=key)


def search(
    graph: Graph,
    arena_of: Callable[[Patched], int],
    patch_counts: tuple[int, ...] = (2, 3, 4, 6, 8),
    slack: int = 1024,
) -> list[tuple[list[Patching], int, Patched]]:
    """Patchings of the graph's first operators with the arena `arena_of` plans for each,
    best first (`_best`): one stage [0, u] for every valid end u and patch count, then two
    stages [0, u1] + [u1 + 1, u2] with ends up to the best single stage's end (a cheaper first
    stage where the resolution is highest, a second one where the receptive field would
    otherwise grow) and 2-4 patches each."""
    results: list[tuple[list[Patching], int, Patched]] = []

    def attempt(stages: list[Patching]) -> None:
        patched = patch_stages(graph, stages)
        results.append((stages, arena_of(patched), patched))

    ends = candidates(graph)
    for until in ends:
        side = min(graph.tensor(graph.ops[until].outputs[0]).shape[1:3])
        for p in patch_counts:
            if p <= side:
                attempt([Patching(0, until, p)])
    if not results:
        return results
    limit = _best(results, slack)[0][0][0].until
    for u1 in (u for u in ends if u < limit):
        for u2 in candidates(graph, u1 + 1):
            if u2 > limit:
                break
            for p1 in (2, 3, 4):
                for p2 in (2, 3, 4):
                    sides = [min(graph.tensor(graph.ops[u].outputs[0]).shape[1:3]) for u in (u1, u2)]
                    if p1 <= sides[0] and p2 <= sides[1]:
                        attempt([Patching(0, u1, p1), Patching(u1 + 1, u2, p2)])
    return _best(results, slack)


@dataclass
class AutoChoice:
    """What `patch = "auto"` chose, and why, in words the compile report prints."""

    stages: list[Patching]
    patched: Patched | None
    arena: int  # the planned arena with the choice (the unpatched one when nothing is chosen)
    note: str


def choose(
    graph: Graph,
    arena_of: Callable[[Patched], int],
    baseline: int,
    budget: float,
    slack: int = 1024,
    refine: Callable[[Patched], int] | None = None,
    refine_top: int = 8,
) -> AutoChoice:
    """The memory-minimal patching of the graph's first stages whose recomputed MACs stay
    within `budget` times the stages' own MACs (1.0: each stage may be computed up to twice),
    or none when no candidate plans a smaller arena than the unpatched `baseline` by more than
    `slack` bytes (the peak is then elsewhere, typically in the backward pass, and a patching
    would only cost MACs). Among candidates within `slack` of the smallest arena, the fewest
    recomputed MACs (`_best`). refine: the arena of a candidate planned in full, for the
    `refine_top` smallest by `arena_of` within the budget (arena_of may be a cheaper estimate)."""
    found = search(graph, arena_of, slack=slack)
    if not found:
        return AutoChoice(
            [], None, baseline, "patch=auto: no stage of the first operators can run in patches"
        )

    def extra(r: tuple[list[Patching], int, Patched]) -> float:
        return (r[2].patched_macs - r[2].stage_macs) / max(1, r[2].stage_macs)

    within = [r for r in found if extra(r) <= budget]
    if refine is not None:
        # The search ranks by a cheaper arena (the compiler without its exact overlaps, which
        # cost a trial plan each); the smallest few within the budget are planned in full.
        top = sorted(within, key=lambda r: r[1])[:refine_top]
        within = [(r[0], refine(r[2]), r[2]) for r in top]
    smallest = min(found, key=lambda r: r[1])
    tried = f"{len(found)} candidates tried"
    if not within:
        return AutoChoice(
            [],
            None,
            baseline,
            f"patch=auto: none chosen: every one of {len(found)} candidates recomputes more than "
            f"{budget:.0%} of its stages' MACs (budget)",
        )
    best = _best(within, slack)[0]
    if best[1] >= baseline - slack:
        return AutoChoice(
            [],
            None,
            baseline,
            f"patch=auto: none chosen: the best within the {budget:.0%} recompute budget "
            f"({', '.join(p.describe() for p in best[0])}) plans {best[1]:,} B against {baseline:,} B "
            f"unpatched; the arena's peak is not in the first stages ({tried}; the smallest at any "
            f"recompute, {smallest[1]:,} B)",
        )
    return AutoChoice(
        best[0],
        best[2],
        best[1],
        f"patch=auto: {', '.join(p.describe() for p in best[0])}: arena {baseline:,} -> {best[1]:,} B "
        f"({baseline - best[1]:,} B less), {extra(best):+.1%} MACs recomputed in its stages "
        f"(budget {budget:.0%}; {tried}, the smallest arena within {slack:,} B of the best with the "
        "fewest recomputed MACs)",
    )
