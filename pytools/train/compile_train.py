"""A training step compiled for a board, and what its memory goes to.

The arena holds every tensor of the step, planned by lifetime. The report breaks the
arena down at its busiest step (where the peak is decided) into saved activations, masks,
gradients, trainable state (weight slices, biases, RNG), scratch and forward activations.
The firmware's own RAM (stacks, link buffers) comes from the linker; the peak the board
measures adds the stack it really used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pytools.boards import Board
from pytools.build.builder import FirmwareImage, build_firmware
from pytools.errors import ToolError
from pytools.model.compiler import Compiled, compile_graph
from pytools.model.inplace import in_place_where_it_helps
from pytools.model.ir import Graph, ModelError
from pytools.model.lowering.fold import Folded, fold_pads
from pytools.model.lowering.patch import Patched, Patching, choose, patch_stages
from pytools.model.lowering.stream import Streamed, stream_input
from pytools.model.plan import NO_TENSOR, STORAGE_ARENA, STORAGE_CONSTANT, STORAGE_STATE
from pytools.model.planner import align_up
from pytools.train.arena_budget import meet
from pytools.train.autodiff import TrainGraph, build_training_graph
from pytools.train.mean_grad_broadcast import fold_mean_grad_broadcast
from pytools.train.scheme import Scheme

CATEGORIES = ("saved activations", "masks", "gradients", "trainable state", "scratch", "activations")


@dataclass
class CompiledTraining:
    name: str
    board: Board
    scheme: Scheme
    train: TrainGraph
    compiled: Compiled
    peak_step: int = 0
    breakdown: dict[str, int] = field(default_factory=dict)  # arena bytes at the peak step
    base: FirmwareImage | None = None
    image: FirmwareImage | None = None
    link_error: str = ""
    patching: list[Patching] = field(default_factory=list)  # stages run in patches
    patched: Patched | None = None
    folded: Folded | None = None  # the model's PADs folded into their convolutions
    patch_note: str = ""  # what patch=auto chose and why
    streamed: Streamed | None = None  # the input streamed into the first stage (stream_input)
    budget_note: str = ""  # what arena_budget chose (pytools/train/arena_budget.py)


def category(tb: TrainGraph, graph_tensor: int | None, name: str) -> str:
    if graph_tensor is None:
        return "scratch"
    if graph_tensor in tb.state:
        return "trainable state"
    if graph_tensor in tb.masks:
        return "masks"
    if graph_tensor in tb.saved:
        return "saved activations"
    if name.startswith("grad/"):
        return "gradients"
    return "activations"


def compile_training(
    graph: Graph,
    scheme: Scheme,
    board: Board,
    name: str,
    link: bool = True,
    lr: float = 0.05,
    loss: str = "auto",
    saturated_loss: bool = False,
    fold: bool = True,
    overlap: bool = True,
) -> CompiledTraining:
    """loss: auto | ce | bce | mse (pytools/train/losses.py); ct.train.head says what was
    picked and why. saturated_loss: the control of tests/test_no_stuck_runs.py (autodiff).
    The model's PAD -> convolution pairs are folded first (lowering/fold.py); a scheme's patch
    stages still number the model's own operators and are translated. fold=False keeps every
    PAD a copy (the comparison the tests and benchmarks make). overlap=False skips the planner's
    exact overlaps (compile_graph): an arena at least as large, found ~10x faster, for searches
    that price many schemes (pytools/plan/search.py)."""
    folded = fold_pads(graph) if fold else Folded(graph, {op.index: op.index for op in graph.ops}, [])
    graph = folded.graph
    tb = build_training_graph(
        graph, scheme, lr=lr, float_grads=scheme.float_gradients, loss=loss, saturated_loss=saturated_loss
    )
    fold_mean_grad_broadcast(tb.graph)  # a MEAN's gradient as one row per image where its readers take it
    patching = [_renumbered(p, folded) for p in scheme.patch]
    patched: Patched | None = None
    note = ""
    if scheme.patch_auto:
        # Searched without the planner's exact overlaps (a trial plan each, times every
        # candidate); the best few are then planned with them.
        baseline = compile_graph(tb.graph, board, name, n_forward=tb.n_forward).arena

        def arena_of(p: Patched, overlap: bool = True) -> int:
            # Priced as it will run: with the input streamed when the scheme streams it
            # (every candidate's first stage starts at operator #0).
            g, added = p.graph, p.added
            if scheme.stream_input:
                s = stream_input(g, True)
                g, added = s.graph, added + s.added
            return compile_graph(g, board, name, n_forward=tb.n_forward + added, overlap=overlap).arena

        auto = choose(
            tb.graph,
            lambda p: arena_of(p, overlap=False),
            baseline,
            scheme.patch_budget,
            refine=arena_of,
        )
        patching, patched, note = auto.stages, auto.patched, auto.note
    elif patching:
        # The scheme numbers the model's operators; the step keeps them for its frozen
        # start (no CLAMP_MASK precedes the first trained layer). Check rather than assume.
        for i in range(max(p.until for p in patching) + 1):
            if i >= len(graph.ops) or tb.graph.ops[i].outputs != graph.ops[i].outputs:
                raise ModelError(f"patch: operator #{i} of the step is not the model's #{i}")
        patched = patch_stages(tb.graph, patching)
    if patched is not None:
        tb.graph, tb.n_forward = patched.graph, tb.n_forward + patched.added
        tb.loss_end += patched.added  # the patches' operators come before the loss
    streamed: Streamed | None = None
    if scheme.stream_input:
        streamed = stream_input(tb.graph, patched is not None and any(p.start == 0 for p in patching))
        tb.graph, tb.n_forward = streamed.graph, tb.n_forward + streamed.added
        tb.loss_end += streamed.added  # every INPUT_ROWS is in the first stage
    budget_note = ""
    if scheme.arena_budget is not None:
        # The exact memory savers chosen to meet the budget at the least recomputation.
        compiled, budget_note = meet(
            tb.graph,
            scheme.arena_budget,
            partial(compile_graph, tb.graph, board, name, n_forward=tb.n_forward),
            overlap,
        )
    else:
        compiled = _two_pass_where_it_helps(tb, board, name, overlap, conv=scheme.conv_two_pass)
        step = partial(compile_graph, tb.graph, board, name, n_forward=tb.n_forward, overlap=overlap)
        if overlap and in_place_where_it_helps(tb.graph, step, compiled) is not compiled:
            # Depthwise layers in place (an exact overlap: none without them) lowered the forward
            # peak: a one-pass depthwise input gradient may now decide the arena.
            compiled = _two_pass_where_it_helps(tb, board, name, overlap, conv=scheme.conv_two_pass)
    ct = CompiledTraining(
        name, board, scheme, tb, compiled, patching=patching, patched=patched, folded=folded
    )
    ct.patch_note, ct.streamed, ct.budget_note = note, streamed, budget_note
    _attribute(ct)
    if link:
        ct.base = build_firmware(board)
        try:
            ct.image = build_firmware(board, compiled.blob, compiled.arena)
        except ToolError as e:
            ct.link_error = str(e)
    return ct


def _renumbered(p: Patching, folded: Folded) -> Patching:
    """A stage of the model's operators in the folded graph's numbers (a folded PAD is its
    convolution: a stage may start or end at either)."""
    n = len(folded.index_map)
    if not 0 <= p.start <= p.until < n:
        raise ModelError(f"patch: {p.describe()} is not a range of the model's {n} operators")
    return Patching(folded.index_map[p.start], folded.index_map[p.until], p.patches)


def _two_pass_where_it_helps(
    tb: TrainGraph, board: Board, name: str, overlap: bool = True, conv: bool = False
) -> Compiled:
    """The step compiled; each depthwise input gradient whose whole-input int32 scratch
    decides the arena runs as DEPTHWISE_CONV_2D_GRAD_INPUT_2PASS instead (bit-identical, one
    channel's scratch, twice the work), and with conv (the scheme's conv_two_pass) each 1x1
    stride-1 conv input gradient as CONV_2D_GRAD_INPUT_2PASS (bit-identical, the accumulators
    of its first `keep` pixels, the rest computed twice: widest_keep below), kept only where
    the planned arena shrinks.
    Passes repeat until one keeps none: a layer whose switch alone did not shrink the arena
    (another one-pass layer held it as large) is tried again once that one has switched."""
    import math

    from pytools.model.ir import Op
    from pytools.model.lowering.training_conv import conv_two_pass_takes

    def plan() -> Compiled:
        return compile_graph(tb.graph, board, name, n_forward=tb.n_forward, overlap=overlap)

    def widest_keep(op: Op, compiled: Compiled) -> Compiled:
        """The largest keep of a CONV_2D_GRAD_INPUT_2PASS (pixels whose accumulators its
        scratch holds; the others are computed twice) whose arena is still compiled's
        (bisection: the scratch grows with keep), so only what memory needs is computed
        twice; the step so compiled."""
        lo, hi = op.options["keep"], math.prod(tb.graph.tensor(op.outputs[0]).shape[:-1])
        while lo < hi:
            op.options["keep"] = mid = (lo + hi + 1) // 2
            trial = plan()
            if trial.arena <= compiled.arena:
                lo, compiled = mid, trial
            else:
                hi = mid - 1
        op.options["keep"] = lo
        return compiled

    compiled = plan()
    one_pass = {"DEPTHWISE_CONV_2D_GRAD_INPUT", "CONV_2D_GRAD_INPUT"}
    candidates = [
        op
        for op in tb.graph.ops
        if op.kind == "DEPTHWISE_CONV_2D_GRAD_INPUT"
        or (conv and op.kind == "CONV_2D_GRAD_INPUT" and conv_two_pass_takes(tb.graph, op))
    ]
    scratch = {pt.name: pt.size for pt in compiled.plan.tensors if pt.name.startswith("scratch")}
    candidates.sort(key=lambda o: -scratch.get(f"scratch{o.index}", 0))
    kept = True
    while kept:
        kept = False
        for op in [o for o in candidates if o.kind in one_pass]:
            kind = op.kind
            op.kind = kind + "_2PASS"
            if kind == "CONV_2D_GRAD_INPUT":
                op.options["keep"] = 0  # at first none (widest_keep)
            trial = plan()
            if trial.arena < compiled.arena:
                compiled = trial
                kept = True
            else:
                op.kind = kind
                op.options.pop("keep", None)
    # Every switch decided, each conv keeps as many pixels as that arena allows: one at a time,
    # none can grow it.
    for op in candidates:
        if op.kind == "CONV_2D_GRAD_INPUT_2PASS":
            compiled = widest_keep(op, compiled)
    return compiled


def lifetimes(ct: CompiledTraining) -> dict[int, tuple[int, int]]:
    """Graph tensor -> (first, last) operator at which it is alive in the arena."""
    g, calls = ct.train.graph, ct.compiled.calls
    n = len(g.ops)
    live: dict[int, tuple[int, int]] = {}
    for i, call in enumerate(calls):
        for o in call.operands:
            if o.tensor is None or g.tensor(o.tensor).is_constant:
                continue
            a, b = live.get(o.tensor, (i, i))
            live[o.tensor] = (min(a, i), max(b, i))
    streamed = {ct.streamed.input} if ct.streamed is not None else set()
    for t in [*(t for t in g.inputs if t not in streamed), *ct.train.state]:
        live[t] = (0, live.get(t, (0, n))[1])
    for t in [*g.outputs, *ct.train.state]:
        live[t] = (live.get(t, (0, n))[0], n)
    return live


def arena_profile(ct: CompiledTraining) -> list[dict[str, int]]:
    """Arena bytes alive at each operator of the step (and after the last), by category. Bytes
    are counted where the plan puts them: a tensor written over another (in place, over its
    operator's scratch, an alias, a patched stage's output over its consumed input) shares their
    bytes, which count once, for the one placed first (the lower offset; at the same offset, the
    tensor before the scratch)."""
    g, plan, ids = ct.train.graph, ct.compiled.plan, ct.compiled.plan_ids
    in_arena = (STORAGE_ARENA, STORAGE_STATE)
    # (first, last, offset, bytes, category) of every arena buffer, scratch last
    regions = []
    for t, (a, b) in lifetimes(ct).items():
        pt = plan.tensors[ids[t]] if t in ids else None
        if pt is not None and pt.storage in in_arena:
            cat = category(ct.train, t, g.tensor(t).name)
            regions.append((a, b, pt.offset, align_up(g.tensor(t).nbytes), cat))
    for step, op in enumerate(plan.ops):
        if op.scratch != NO_TENSOR:
            pt = plan.tensors[op.scratch]
            regions.append((step, step, pt.offset, align_up(pt.size), "scratch"))
    profile = []
    for step in range(len(g.ops) + 1):
        cats = dict.fromkeys(CATEGORIES, 0)
        covered = 0  # the end of the bytes counted so far (regions in offset order)
        alive = sorted((r for r in regions if r[0] <= step <= r[1]), key=lambda r: (r[2], r[4] == "scratch"))
        for _, _, offset, size, cat in alive:
            cats[cat] += max(0, offset + size - max(offset, covered))
            covered = max(covered, offset + size)
        profile.append(cats)
    return profile


def _attribute(ct: CompiledTraining) -> None:
    """The arena by category at its busiest operator (tensors alone decide which that is)."""
    profile = arena_profile(ct)
    tensors_only = [sum(c.values()) - c["scratch"] for c in profile]
    ct.peak_step = tensors_only.index(max(tensors_only))
    ct.breakdown = dict(profile[ct.peak_step])
    plan = ct.compiled.plan
    ct.breakdown["flash weights"] = sum(pt.size for pt in plan.tensors if pt.storage == STORAGE_CONSTANT)
    ct.breakdown["state total"] = sum(pt.size for pt in plan.tensors if pt.storage == STORAGE_STATE)


def report(ct: CompiledTraining) -> str:
    m = ct.board.memory
    c = ct.compiled
    lines = [
        f"model     {ct.name}; scheme: {ct.scheme.describe()}",
        *([f"loss      {ct.train.head.describe()}"] if ct.train.head else []),
        f"step      {len(c.plan.ops)} operators ({ct.train.n_forward} forward, "
        f"{len(c.plan.ops) - ct.train.n_forward} loss/backward/update)",
    ]
    if ct.folded is not None and ct.folded.folded:
        lines.append(f"folded    {ct.folded.describe()}")
    if ct.patch_note:
        lines.append(ct.patch_note)
    if ct.patched is not None and ct.patching:
        done, once = ct.patched.patched_macs, ct.patched.stage_macs
        lines.append(
            f"patches   {', '.join(p.describe() for p in ct.patching)}: {done:,} MACs for the stages' "
            f"{once:,} (+{100 * (done - once) / max(1, once):.1f} % recomputed)"
        )
    if ct.streamed is not None:
        lines.append(f"stream    {ct.streamed.describe()}")
    if ct.budget_note:
        lines.append(ct.budget_note)
    lines += [
        f"board     {ct.board.name}: {m.flash_size // 1024} KiB flash, {m.ram_size // 1024} KiB SRAM",
        f"arena     {c.arena:,} B planned (at its busiest operator, #{ct.peak_step}):",
    ]
    for cat in CATEGORIES:
        lines.append(f"  {cat:<20}{ct.breakdown[cat]:>10,} B")
    if ct.base is not None:
        fw_ram = ct.base.regions["RAM"].used
        lines.append(f"firmware  {fw_ram:,} B RAM: stacks (reserved), link buffers, runtime (linker)")
        total = ct.image.regions["RAM"].used if ct.image else fw_ram + c.arena
        flash = ct.image.regions["FLASH"].used if ct.image else ct.base.regions["FLASH"].used + len(c.blob)
        how = "linker" if ct.image else "sum; the link failed"
        lines.append(f"SRAM      {total:,} B of {m.ram_size:,} ({100 * total / m.ram_size:.1f} %, {how})")
        lines.append(f"flash     {flash:,} B of {m.flash_size:,} ({100 * flash / m.flash_size:.1f} %, {how})")
    from pytools.persist import fit_note  # does the trained state fit a persistence slot?

    lines.append(fit_note(ct.board, ct.breakdown["state total"]))
    return "\n".join(lines)


def check_fits(ct: CompiledTraining) -> None:
    if ct.base is not None and ct.image is None:
        raise ToolError(f"the training step does not fit {ct.board.name}:\n{report(ct)}\n{ct.link_error}")


def load_and_compile(
    model: Path, scheme: Scheme, board: Board, lr: float = 0.05, loss: str = "auto", new_head: int = 0
) -> CompiledTraining:
    """new_head: replace the output layer by a new_head-class one first (pytools/train/new_head.py)."""
    from pytools.model.tflite_import import load_tflite

    if not model.is_file():
        raise ToolError(f"no model at {model}")
    graph = load_tflite(model)
    if new_head:
        from pytools.train.new_head import replace_head

        graph, note = replace_head(graph, new_head)
        print(note)
    return compile_training(graph, scheme, board, model.stem, lr=lr, loss=loss)
