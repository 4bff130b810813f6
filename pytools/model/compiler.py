"""Graph -> plan: lower every operator, give every tensor a home, plan the arena, pack.

Activations and scratch live in one arena planned by lifetime (planner.py); weights,
biases and derived constants (per-channel multipliers and shifts) stay in the plan's data
section, i.e. in flash. RESHAPE of an arena tensor costs nothing: its output aliases its
input and the operator is marked as a no-op. A forward graph's PAD -> convolution pairs
are folded into the convolution first (lowering/fold.py: exact, and the PAD's copy is gone).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from pytools.boards import Board
from pytools.model.ir import Graph, ModelError, Tensor
from pytools.model.kernels import KERNELS_DIR, KernelCall, op_code, scratch_size
from pytools.model.lowering import lower
from pytools.model.lowering.fold import fold_pads
from pytools.model.plan import (
    ALIGN,
    NO_TENSOR,
    OP_FLAG_NOOP,
    STORAGE_ARENA,
    STORAGE_CONSTANT,
    STORAGE_STATE,
    STORAGE_STREAM,
    Plan,
    PlanOp,
    PlanTensor,
    pack,
)
from pytools.model.planner import ALIGN as PLAN_ALIGN
from pytools.model.planner import Buffer, Tie, align_up, peak_live_bytes, plan_arena


@dataclass
class Compiled:
    plan: Plan
    blob: bytes
    calls: list[KernelCall]
    activation_bytes: int  # arena bytes holding activations (planned)
    scratch_bytes: int  # largest single scratch buffer
    peak_live: int  # the lower bound: most bytes alive at once
    plan_ids: dict[int, int]  # graph tensor -> plan tensor
    graph: Graph | None = None  # the graph compiled (a forward graph's PADs folded)
    # What the arena was planned from (plan_arena): the buffers, the exact overlaps that were
    # candidates and those kept. A caller that varies only scratch sizes re-plans from these.
    buffers: list[Buffer] = field(default_factory=list)
    tie_candidates: list[tuple[int, Tie]] = field(default_factory=list)  # (step, tie)
    ties: list[Tie] = field(default_factory=list)

    @property
    def arena(self) -> int:
        return self.plan.arena_size

    @property
    def weights(self) -> int:
        return len(self.plan.data)

    @property
    def tables(self) -> int:
        return len(self.blob) - len(self.plan.data)


# The operators whose output is their input's bytes unchanged (the reshape kernel).
ALIASING_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")


def _quant_of(t: Tensor) -> tuple[float, int]:
    if t.quant is None or t.quant.per_channel:
        return 0.0, 0
    return float(t.quant.scale[0]), int(t.quant.zero_point[0])


def plan_shape(t: Tensor, model_io: bool) -> tuple[int, ...]:
    """The shape a plan records: at most 4 dimensions. The kernels take their shapes from
    their parameters, so an intermediate tensor of rank 5 or 6 (between a RESHAPE and a
    TRANSPOSE, as in ShuffleNet's channel shuffle) is recorded with its leading dimensions
    merged: the same bytes. The model's inputs and outputs keep their shapes for the host."""
    if len(t.shape) <= 4:
        return t.shape
    if model_io:
        raise ModelError(
            f"model input or output '{t.name}' has {len(t.shape)} dimensions; at most 4 are supported"
        )
    return (math.prod(t.shape[:-3]), *t.shape[-3:])


# Kernels whose int8 output may start where their scratch starts: they accumulate the whole
# result in int32 at the scratch's start and write output element i only after reading
# accumulator i, in ascending order (grad_requantize_s32 and its DSP twin), so byte i of the
# output overwrites only accumulators already read. Named by the kernel's header enum (the
# operand), held by tests/test_scratch_planning.py on every variant.
OUTPUT_OVER_SCRATCH = {
    "conv2d_s8_grad_input": "GRAD_INPUT",
    "depthwise_conv2d_s8_grad_input": "GRAD_INPUT",
    "conv2d_s8_grad_input_2pass": "GRAD_INPUT",  # its kept accumulators (its header)
}


@cache
def output_over_scratch_operand(kernel: str) -> int | None:
    """The operand of `kernel` that may overlap its scratch (OUTPUT_OVER_SCRATCH), from the
    kernel's header enum, or None."""
    if kernel not in OUTPUT_OVER_SCRATCH:
        return None
    name = f"{kernel.upper()}_{OUTPUT_OVER_SCRATCH[kernel]}"
    m = re.search(rf"\b{name}\s*=\s*(\d+)", (KERNELS_DIR / f"{kernel}.h").read_text())
    if m is None:
        raise ValueError(f"firmware/kernels/{kernel}.h has no operand {name}")
    return int(m[1])


def _touched_bytes(call: KernelCall, k: int, nbytes: int) -> tuple[int, int]:
    """Bytes [first, end) of operand k an operator reads or writes: a WINDOW_COPY's window
    (its first to its last byte, rows apart included), else the whole tensor."""
    if call.kernel != "window_copy_s8":
        return 0, nbytes
    p = call.params
    side = "src" if k == 0 else "dst"
    w, d = int(p[f"{side}_w"]), int(p["depth"])
    y, x, h, cw = int(p[f"{side}_y"]), int(p[f"{side}_x"]), int(p["copy_h"]), int(p["copy_w"])
    if h <= 0 or cw <= 0:
        return 0, 0
    return (y * w + x) * d, ((y + h - 1) * w + x + cw) * d


def overlap_ties(
    calls: list[KernelCall],
    root: Callable[[int], int],
    first: dict[int, int],
    last: dict[int, int],
    nbytes: Callable[[int], int],
    eligible: Callable[[int], bool],
) -> list[tuple[int, int, int]]:
    """(x, y, s): tensor y may start s bytes after tensor x (s <= 0) although both are alive,
    exactly. y is being written while x is still read (a patched stage's output and input:
    each patch reads a window of x and writes a window of y, in row order, so x's early rows
    are spent before y's later rows are written). For every operator i that writes bytes
    [w0, w1) of y while x is alive, every read of x at i or later must start at or past
    w1 + s: then no write lands on a byte of x that is still to be read, whatever the
    windows, and the planner may overlap the two by |y| + s bytes. x must not be written
    once y is (it was produced before). Roots of alias families only; eligible(t): an arena
    activation the compiler may place freely (not state, not a graph output)."""
    windowed: set[int] = set()  # tensors every writer writes a window of
    whole: set[int] = set()
    reads: dict[int, list[tuple[int, int]]] = {}  # tensor -> (step, first byte read)
    writes: dict[int, list[tuple[int, int]]] = {}  # tensor -> (step, end of the bytes written)
    for i, call in enumerate(calls):
        for k, o in enumerate(call.operands):
            if o.tensor is None:
                continue
            t = root(o.tensor)
            if not eligible(t):
                continue
            a, b = _touched_bytes(call, k, nbytes(t))
            if o.is_output:
                writes.setdefault(t, []).append((i, b))
                (windowed if call.kernel == "window_copy_s8" else whole).add(t)
            else:
                reads.setdefault(t, []).append((i, a))
    windowed -= whole
    ties: list[tuple[int, int, int]] = []
    leaders: set[int] = set()
    followers: set[int] = set()
    for y in sorted(writes, key=lambda t: -nbytes(t)):
        if y not in windowed:
            continue  # written whole by some operator: nothing to gain in row order
        fy = first.get(y, 0)
        best: tuple[int, int] | None = None  # (gain, s) of the best x
        for x in reads:
            if x == y or x in leaders or not first.get(x, 0) < fy <= last.get(x, 0):
                continue
            if any(fy <= i for i, _ in writes.get(x, [])):
                continue  # x changes while y is alive
            lx = last[x]
            later_reads = sorted(reads[x])
            s = 0
            for i, w1 in writes[y]:
                if i > lx:
                    continue
                starts = [a for j, a in later_reads if j >= i]
                if starts:
                    s = min(s, min(starts) - w1)
            s = -align_up(-s, PLAN_ALIGN)  # down to the planner's alignment
            gain = min(nbytes(x), s + nbytes(y)) - max(0, s)
            if gain > 0 and (best is None or gain > best[0]):
                best = (gain, s)
                best_x = x
        if best is not None and y not in followers:
            ties.append((best_x, y, best[1]))
            leaders.add(best_x)
            followers.add(y)
    return ties


def streamed_inputs(graph: Graph) -> set[int]:
    """The graph's inputs that only INPUT_ROWS operators read (lowering/stream.py): each is a
    plan tensor of stream storage (its whole shape, size and quantization, offset 0) with no
    bytes in the arena; its band is an ordinary arena tensor."""
    readers: dict[int, set[str]] = {}
    for op in graph.ops:
        for t in op.inputs:
            readers.setdefault(t, set()).add(op.kind)
    return {t for t in graph.inputs if readers.get(t) == {"INPUT_ROWS"}}


# Kernels that may write their output over their input (the whole tensor, offset 0): operand
# indices (input, output), from the kernel's header enum (held by tests/kernels/conv/
# test_dw_inplace.py). The kernel is exact with the two apart as well, so the tie is optional.
IN_PLACE = {"depthwise_conv2d_s8_inplace": (0, 7)}


def in_place_ties(
    calls: list[KernelCall],
    root: Callable[[int], int],
    first: dict[int, int],
    last: dict[int, int],
    nbytes: Callable[[int], int],
    eligible: Callable[[int], bool],
    inputs: set[int],
) -> list[tuple[int, int, int]]:
    """(step, x, y): operator `step` (an IN_PLACE kernel) may write its output y over its
    input x: x is read last there (no later operator, saved activation or graph output reads
    it), y is first written there, both the same size, eligible (arena activations the
    compiler places freely) and x not a graph input (the caller's bytes)."""
    ties = []
    for i, call in enumerate(calls):
        if call.kernel not in IN_PLACE:
            continue
        k_in, k_out = IN_PLACE[call.kernel]
        if call.operands[k_in].tensor is None or call.operands[k_out].tensor is None:
            continue
        x, y = root(call.operands[k_in].tensor), root(call.operands[k_out].tensor)
        if (
            x != y
            and eligible(x)
            and eligible(y)
            and x not in inputs
            and last.get(x) == i
            and first.get(y) == i
            and nbytes(x) == nbytes(y)
        ):
            ties.append((i, x, y))
    return ties


def lower_all(graph: Graph) -> list[KernelCall]:
    """Every operator's KernelCall; operators the kernels cannot run (a quantization, shape or
    option outside what they do) are all named in one ModelError, not only the first."""
    calls, errors = [], []
    for op in graph.ops:
        try:
            calls.append(lower(graph, op))
        except ModelError as e:
            errors.append(str(e))
    if len(errors) == 1:
        raise ModelError(errors[0])
    if errors:
        raise ModelError(f"{len(errors)} operators cannot run here:\n" + "\n".join(f"  {e}" for e in errors))
    return calls


def choose_ties(
    buffers: list[Buffer], candidates: list[tuple[int, Tie]], n: int, overlap: bool = True, enough: int = -1
) -> tuple[list[Tie], dict[str, int], int]:
    """The exact overlaps kept among candidates ((step, tie): the step where the tie lets two
    live buffers share bytes) and the arena so planned (ties, offsets, size) over n steps.
    Each tie is kept only where it does not make the arena larger: it also constrains the
    greedy placement, which can cost more than the overlap saves. Two passes, the smaller
    arena kept: the ties in the order found, each kept where the arena shrinks; and at the
    busiest steps first, each kept unless the arena grows (one that changes nothing yet
    may pay once a tie at another step has lowered that step's peak). overlap=False: none.
    enough: stop at the first plan of at most that many bytes (each pass only shrinks its
    arena, so the full search's is no larger), the busiest-first pass first: a caller asking
    "is it within a budget?" (the arena found is the same, the plan may differ)."""
    load = np.zeros(n + 2, np.int64)
    for b in buffers:
        load[b.first] += align_up(b.size)
        load[b.last + 1] -= align_up(b.size)
    load = np.cumsum(load)
    busiest = sorted(candidates, key=lambda c: -int(load[c[0]]))
    ties: list[Tie] = []
    offsets, arena = plan_arena(buffers)
    best = (ties, offsets, arena)
    passes = [(candidates, False), (busiest, True)] if overlap and candidates else []
    if enough >= 0:
        passes.reverse()  # the busiest steps' ties first: the likelier to reach `enough` early
    for order, keep_equal in passes:
        if best[2] <= enough:
            break
        ties, offsets, arena = [], *plan_arena(buffers)
        for _, tie in order:
            trial_offsets, trial_arena = plan_arena(buffers, ties=[*ties, tie])
            if trial_arena < arena or (keep_equal and trial_arena == arena):
                ties, offsets, arena = [*ties, tie], trial_offsets, trial_arena
                if arena <= enough:
                    break
        if arena < best[2]:
            best = (ties, offsets, arena)
    return best


def compile_graph(
    graph: Graph, board: Board, name: str, n_forward: int = 0, fold: bool = True, overlap: bool = True
) -> Compiled:
    """n_forward: a training step's forward operators (0: the graph is a forward graph, whose
    PADs are folded here unless fold is False; a training step's were folded before autodiff,
    pytools/train/compile_train.py). overlap: try the exact overlaps (overlap_ties, an output
    over its own scratch); each costs a trial plan, so a search over many candidate graphs
    may rank them without."""
    if n_forward == 0 and fold:
        graph = fold_pads(graph).graph
    calls = lower_all(graph)
    n = len(graph.ops)

    # RESHAPE (and SQUEEZE, EXPAND_DIMS) of an activation: the output is the input's bytes
    # under another shape.
    alias: dict[int, int] = {}
    noop: set[int] = set()
    for i, op in enumerate(graph.ops):
        src = graph.tensor(op.inputs[0])
        if op.kind in ALIASING_OPS and src.data is None and not src.persistent:
            alias[op.outputs[0]] = alias.get(src.index, src.index)
            noop.add(i)

    def root(t: int) -> int:
        return alias.get(t, t)

    # Lifetimes of arena tensors, in operator steps (model inputs from 0, outputs to the end).
    first: dict[int, int] = {root(t): 0 for t in graph.inputs}
    last: dict[int, int] = {root(t): n for t in graph.outputs}
    for i, call in enumerate(calls):
        for o in call.operands:
            if o.tensor is None or graph.tensor(o.tensor).data is not None:
                continue  # constants live in flash; state lives for the whole step (below)
            r = root(o.tensor)
            first[r] = min(first.get(r, i), i)
            last[r] = max(last.get(r, i), i)

    streamed = streamed_inputs(graph)
    tensors: list[PlanTensor] = []
    plan_id: dict[int, int] = {}  # graph tensor -> plan tensor
    data = bytearray()
    const_at: dict[bytes, int] = {}  # digest of constant bytes -> data offset (dedup)
    # One table entry per distinct constant: a patched stage's operators (and a layer's
    # forward, input gradient and update) share their weights, biases and multipliers, and
    # each entry costs flash (PLAN_TENSOR, 40 B; MCUNet-5FPS's patches repeated 588 of 786).
    const_entry: dict[tuple, int] = {}
    buffers: list[Buffer] = []

    def add_constant(
        arr: np.ndarray, dtype: str, shape: tuple[int, ...], t: Tensor | None, shared: bool = True
    ) -> int:
        """shared=False: a fresh entry of its own (state, whose entry the caller turns into
        an arena tensor)."""
        raw = np.ascontiguousarray(arr, dtype=dtype).tobytes()
        key = hashlib.sha256(raw + dtype.encode()).digest()
        if key not in const_at:
            data.extend(b"\0" * (-len(data) % ALIGN))
            const_at[key] = len(data)
            data.extend(raw)
        scale, zp = _quant_of(t) if t is not None else (0.0, 0)
        entry = (dtype, tuple(shape), const_at[key], len(raw), scale, zp)
        if shared and entry in const_entry:
            return const_entry[entry]
        tensors.append(PlanTensor(STORAGE_CONSTANT, dtype, shape, const_at[key], len(raw), scale, zp))
        if shared:
            const_entry[entry] = len(tensors) - 1
        return len(tensors) - 1

    def graph_tensor(t_index: int) -> int:
        if t_index in plan_id:
            return plan_id[t_index]
        t = graph.tensor(t_index)
        shape = plan_shape(t, t_index in graph.inputs or t_index in graph.outputs)
        if t.persistent:
            init = add_constant(t.data, t.dtype, shape, t, shared=False)
            tensors[init].storage, tensors[init].init_offset, tensors[init].offset = (
                STORAGE_STATE,
                tensors[init].offset,
                -1,
            )
            tensors[init].name = t.name
            plan_id[t_index] = init
            first[t_index], last[t_index] = 0, n  # alive for the whole step: never overwritten
        elif t.data is not None:
            plan_id[t_index] = add_constant(t.data, t.dtype, shape, t)
        else:
            scale, zp = _quant_of(t)
            storage, offset = (STORAGE_STREAM, 0) if t_index in streamed else (STORAGE_ARENA, -1)
            tensors.append(PlanTensor(storage, t.dtype, shape, offset, t.nbytes, scale, zp, t.name))
            plan_id[t_index] = len(tensors) - 1
        return plan_id[t_index]

    plan_ops: list[PlanOp] = []
    scratch_sizes = [0]
    for i, (op, call) in enumerate(zip(graph.ops, calls, strict=True)):
        operand_ids = []
        for o in call.operands:
            if o.tensor is not None:
                operand_ids.append(graph_tensor(o.tensor))
            else:
                arr = np.asarray(o.data)
                operand_ids.append(add_constant(arr, str(arr.dtype), arr.shape[:4] or (arr.size,), None))
        scratch = NO_TENSOR
        need = scratch_size(call) if i not in noop else 0
        if need:
            tensors.append(PlanTensor(STORAGE_ARENA, "int8", (need,), -1, need, name=f"scratch{i}"))
            scratch = len(tensors) - 1
            buffers.append(Buffer(f"s{scratch}", need, i, i))
            scratch_sizes.append(need)
        plan_ops.append(
            PlanOp(
                code=op_code(op.kind, call.kernel),
                operands=operand_ids,
                params=call.packed_params(),
                scratch=scratch,
                flags=OP_FLAG_NOOP if i in noop else 0,
                kind=op.kind,
            )
        )
    for t in [*graph.inputs, *graph.outputs]:
        graph_tensor(t)

    # One buffer per arena tensor family (a tensor and its aliases share one).
    in_arena = (STORAGE_ARENA, STORAGE_STATE)
    for g, pid in plan_id.items():
        if tensors[pid].storage in in_arena and root(g) == g:
            buffers.append(Buffer(f"t{pid}", tensors[pid].size, first.get(g, 0), last.get(g, n)))

    def eligible(t: int) -> bool:
        gt = graph.tensor(t)
        return gt.data is None and not gt.persistent and t not in graph.outputs and t in plan_id

    # Exact overlaps (ties), each with the step where it lets two live buffers share bytes:
    # a patched stage's output over the part of its input the patches have consumed ...
    candidates: list[tuple[int, Tie]] = [
        (first[y], Tie(f"t{plan_id[x]}", f"t{plan_id[y]}", s))
        for x, y, s in overlap_ties(calls, root, first, last, lambda t: graph.tensor(t).nbytes, eligible)
    ]
    # ... and an output written over its own operator's scratch (OUTPUT_OVER_SCRATCH).
    for i, (call, op) in enumerate(zip(calls, plan_ops, strict=True)):
        k = output_over_scratch_operand(call.kernel)
        if k is None or op.scratch == NO_TENSOR or call.operands[k].tensor is None:
            continue
        out = root(call.operands[k].tensor)
        if (
            eligible(out)
            and first.get(out) == i
            and out not in {root(o.tensor) for o in call.operands[:k] if o.tensor is not None}
        ):
            candidates.append((i, Tie(f"s{op.scratch}", f"t{plan_id[out]}", 0)))
    # ... and an output over its own input (IN_PLACE kernels, which the compiler picks only
    # where that pays: pytools/model/inplace.py).
    ins = {root(t) for t in graph.inputs}
    for i, x, y in in_place_ties(calls, root, first, last, lambda t: graph.tensor(t).nbytes, eligible, ins):
        candidates.append((i, Tie(f"t{plan_id[x]}", f"t{plan_id[y]}", 0)))
    ties, offsets, arena = choose_ties(buffers, candidates, n, overlap)
    for g, pid in plan_id.items():
        if tensors[pid].storage in in_arena:
            tensors[pid].offset = offsets[f"t{plan_id[root(g)]}"]
    for op in plan_ops:
        if op.scratch != NO_TENSOR:
            tensors[op.scratch].offset = offsets[f"s{op.scratch}"]

    plan = Plan(
        tensors=tensors,
        ops=plan_ops,
        inputs=[plan_id[t] for t in graph.inputs],
        outputs=[plan_id[t] for t in graph.outputs],
        data=bytes(data),
        arena_size=align_up(arena),
        ram_limit=board.memory.ram_size,
        flash_limit=board.memory.flash_size,
        board=board.name,
        model=name,
        n_forward=n_forward,
        state_size=sum(t.size for t in tensors if t.storage == STORAGE_STATE),
    )
    activations = [b for b in buffers if b.name.startswith("t")]
    names = {b.name for b in activations}
    _, act_arena = plan_arena(activations, ties=[t for t in ties if {t.leader, t.follower} <= names])
    return Compiled(
        plan,
        pack(plan),
        calls,
        act_arena,
        max(scratch_sizes),
        peak_live_bytes(buffers),
        plan_id,
        graph,
        buffers,
        candidates,
        ties,
    )
