"""A streamed input: the first patch stage reads the model's input a band of rows at a time.

A patched first stage (patch.py) reads its input only through WINDOW_COPY operators, one
window per patch, and a row of the input that no later window reads is dead. So the input
need not be in the arena at all: a band tensor [1, C, W, channels] holds the rows the next
windows read, and INPUT_ROWS operators (kernels/input_rows.h) move the rows the next band
keeps to its start, after which the runtime's caller writes the band's new rows from
wherever the input is (the host over the link on a board; the whole sample in the host
twin: runtime.h, rt_invoke_to_fetch). The input itself becomes a plan tensor with stream
storage: its shape and quantization, no bytes (compiler.py).

The band schedule (`band_schedule`) works for any order of window reads: the k-th read
takes rows [a_k, b_k); m_k = min(a_j, j >= k) is the lowest row still to be read, and the
band holds C = max_k (b_k - m_k) rows. Walking the reads with the band on rows [lo, hi), a
read outside it is preceded by an INPUT_ROWS moving the band to [m_k, min(H, m_k + C)): it
keeps the rows both bands hold and fetches the rest, [max(hi, m_k), hi'). m_k never
decreases, so the input is fetched in increasing offsets and no byte twice. Every window
read is rewritten to the band's rows (its src_y less the band's lo).
"""

from __future__ import annotations

from dataclasses import dataclass

from pytools.model.ir import Graph, ModelError, Op, Tensor
from pytools.model.kernels import KernelCall, Operand, op_defs
from pytools.model.lowering import lowers

WHAT_TO_DO = "drop stream_input from the scheme"


@dataclass(frozen=True)
class BandMove:
    """An INPUT_ROWS before read `before`: the band goes from rows [lo, hi) to [new_lo, new_hi),
    keeping rows [new_lo, keep_end) (moved to its start) and fetching rows [fetch_from, new_hi)."""

    before: int
    lo: int
    hi: int
    new_lo: int
    new_hi: int

    @property
    def keep_end(self) -> int:
        return max(self.new_lo, min(self.hi, self.new_hi))

    @property
    def fetch_from(self) -> int:
        return max(self.hi, self.new_lo)


@dataclass
class Schedule:
    rows: int  # C: the band's rows
    moves: list[BandMove]  # in read order
    band_lo: list[int]  # the band's first row at each read (its src_y offset)


def band_schedule(reads: list[tuple[int, int]], height: int) -> Schedule:
    """The band for window reads of rows [a_k, b_k) of an input `height` rows high, in the
    order the reads run (module docstring)."""
    if not reads:
        raise ValueError("no reads to schedule")
    for a, b in reads:
        if not 0 <= a < b <= height:
            raise ValueError(f"read of rows [{a}, {b}) is outside the input's {height} rows")
    suffix_min = [0] * len(reads)
    low = height
    for k in range(len(reads) - 1, -1, -1):
        low = min(low, reads[k][0])
        suffix_min[k] = low
    rows = max(b - m for (_, b), m in zip(reads, suffix_min, strict=True))
    moves: list[BandMove] = []
    band_lo: list[int] = []
    lo = hi = 0
    for k, (a, b) in enumerate(reads):
        if not (k > 0 and lo <= a and b <= hi):
            new_lo = suffix_min[k]
            new_hi = min(height, new_lo + rows)
            moves.append(BandMove(k, lo, hi, new_lo, new_hi))
            lo, hi = new_lo, new_hi
        band_lo.append(lo)
    return Schedule(rows, moves, band_lo)


@dataclass
class Streamed:
    graph: Graph
    added: int  # INPUT_ROWS operators inserted (all before the loss)
    input: int  # the graph input streamed (tensor id)
    band: int  # the band tensor
    rows: int  # the band's rows
    band_bytes: int
    input_bytes: int

    def describe(self) -> str:
        return (
            f"input streamed in bands of {self.rows} rows ({self.band_bytes:,} B) instead of the "
            f"whole {self.input_bytes:,} B; {self.added} INPUT_ROWS operators"
        )


def _fail(msg: str) -> ModelError:
    return ModelError(f"stream_input: {msg}; {WHAT_TO_DO}")


def stream_input(graph: Graph, first_stage: bool) -> Streamed:
    """The graph with its first input streamed into its patch stage that starts at operator
    #0 (first_stage: the graph has one; refused otherwise, as is an input that anything but
    that stage's window copies reads: a second stage reads the first one's output)."""
    if not first_stage:
        raise _fail(
            "the input can only be streamed into a patch stage that starts at operator #0 "
            '([[patch]] start = 0, or patch = "auto" choosing one), and the step has none'
        )
    if not graph.inputs:
        raise _fail("the graph has no input")
    x = graph.inputs[0]
    t = graph.tensor(x)
    if t.dtype != "int8" or len(t.shape) != 4 or t.shape[0] != 1:
        raise _fail(f"input '{t.name}' is {t.dtype} {t.shape}; only an int8 NHWC input of batch 1 streams")
    if x in graph.outputs:
        raise _fail(f"input '{t.name}' is also an output of the step")
    reads: list[int] = []
    for op in graph.ops:
        if x not in op.inputs:
            continue
        if op.kind != "WINDOW_COPY" or op.inputs != [x]:
            raise _fail(
                f"input '{t.name}' is read by {op.where()}; only the first patch stage's window "
                "copies may read a streamed input (a layer trained at the input keeps it for its "
                "backward pass)"
            )
        reads.append(op.index)
    if not reads:
        raise _fail(f"input '{t.name}' is not read by the first patch stage's window copies")
    height, width, depth = t.shape[1], t.shape[2], t.shape[3]
    spans = []
    for i in reads:
        o = graph.ops[i].options
        spans.append((int(o["src_y"]), int(o["src_y"]) + int(o["copy_h"])))
    sched = band_schedule(spans, height)
    if sched.moves and sched.moves[0].fetch_from != 0:
        # The board starts a streamed sample with its SAMPLE at offset 0 (docs/protocol.md), so
        # the first fetch must begin there; a stage that never reads the input's first rows
        # would leave a window the board refuses.
        raise _fail(
            f"the first patch stage never reads rows 0-{sched.moves[0].fetch_from - 1} of input "
            f"'{t.name}', and a streamed sample starts at its first byte"
        )
    row_bytes = width * depth  # int8
    tensors = list(graph.tensors)
    band = Tensor(len(tensors), f"band/{t.name}", (1, sched.rows, width, depth), t.dtype, t.quant)
    tensors.append(band)
    moves = {reads[m.before]: m for m in sched.moves}
    lo_of = dict(zip(reads, sched.band_lo, strict=True))
    new_index: dict[int, int] = {}
    ops: list[Op] = []
    for op in graph.ops:
        if op.index in moves:
            m = moves[op.index]
            keep_len = (m.keep_end - m.new_lo) * row_bytes
            options = {
                "input": 0,
                "keep_from": (m.new_lo - m.lo) * row_bytes if keep_len else 0,
                "keep_len": keep_len,
                "fetch_offset": m.fetch_from * row_bytes,
                "fetch_len": (m.new_hi - m.fetch_from) * row_bytes,
                "rows": (m.new_lo, m.new_hi),
            }
            ops.append(Op(len(ops), "INPUT_ROWS", [x, band.index], [band.index], options))
        new_index[op.index] = len(ops)
        options = dict(op.options)
        inputs = list(op.inputs)
        if op.index in lo_of:
            inputs = [band.index]
            options["src_y"] = int(options["src_y"]) - lo_of[op.index]
        ops.append(Op(len(ops), op.kind, inputs, list(op.outputs), options))
    for op in ops:
        if "forward" in op.options and op.kind != "INPUT_ROWS":  # a training op's forward operator
            op.options["forward"] = new_index[int(op.options["forward"])]
    out = Graph(tensors, ops, list(graph.inputs), list(graph.outputs), graph.name, graph.description)
    return Streamed(out, len(sched.moves), x, band.index, sched.rows, band.nbytes, t.nbytes)


@lowers("INPUT_ROWS")
def lower_input_rows(graph: Graph, op: Op) -> KernelCall:
    """Operands: the band (read and written). The streamed input is named by its index
    among the graph's inputs; the compiler gives it stream storage (no arena bytes)."""
    if len(op.inputs) != 2 or op.outputs != [op.inputs[1]]:
        raise ModelError(
            f"{op.where()}: INPUT_ROWS takes the streamed input and its band, and writes the band"
        )
    src, band = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1])
    if src.index not in graph.inputs:
        raise ModelError(f"{op.where()}: '{src.name}' is not an input of the graph")
    if (
        band.dtype != src.dtype
        or len(band.shape) != 4
        or len(src.shape) != 4
        or band.shape[2:] != src.shape[2:]
        or band.shape[1] > src.shape[1]
    ):
        raise ModelError(
            f"{op.where()}: band '{band.name}' {band.shape} is not rows of '{src.name}' {src.shape}"
        )
    o = op.options
    params = {k: int(o[k]) for k in ("keep_from", "keep_len", "fetch_offset", "fetch_len")}
    params["input"] = graph.inputs.index(src.index)
    if (
        min(params.values()) < 0
        or params["keep_from"] + params["keep_len"] > band.nbytes
        or params["keep_len"] + params["fetch_len"] > band.nbytes
        or params["fetch_offset"] + params["fetch_len"] > src.nbytes
    ):
        raise ModelError(f"{op.where()}: its rows do not fit band '{band.name}' or input '{src.name}'")
    return KernelCall(op_defs()["INPUT_ROWS"].kernel, params, [Operand(tensor=band.index, is_output=True)])
