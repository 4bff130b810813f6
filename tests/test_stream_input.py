"""A streamed input (scheme option stream_input; pytools/model/lowering/stream.py): the first
patch stage reads the model's input a band of rows at a time, INPUT_ROWS operators bring the
rows in, and the input itself has no bytes in the arena.

Oracles: the same scheme without stream_input on the host twin (streaming must not change a
single bit of the forward pass or of training), a simulation of the band's rows for the band
schedule (every read finds exactly its rows; every input byte fetched once, in order), the
runtime's own plan checks for doctored plans.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.errors import ToolError
from pytools.model.host_twin import HostTwin
from pytools.model.ir import Graph, ModelError, Op, Tensor
from pytools.model.kernels import params_layout
from pytools.model.lowering.patch import Patching, patch_graph
from pytools.model.lowering.stream import band_schedule, stream_input
from pytools.model.plan import NO_TENSOR, STORAGE_ARENA, STORAGE_STREAM, pack
from pytools.model.tflite_import import import_tflite, load_tflite
from pytools.paths import ROOT
from pytools.pretrain.mobilenet_v2 import mobilenet_v2_path
from pytools.pretrain.zoo import zoo_model
from pytools.train.compile_train import compile_training, report
from pytools.train.scheme import load_scheme
from pytools.train.trainer import Trainer

BOARD = load_board("mps2_an500")
TINY = "bias=6,-1=1,-2=0.5,-3=0.25,-5=0.125,patch=0-2x3+3-7x2"


def compiled(scheme: str, name: str = "mobilenet_tiny"):
    return compile_training(import_tflite(zoo_model(name), name), load_scheme(scheme), BOARD, name, False)


def samples(ct, n: int, seed: int) -> list[tuple[np.ndarray, int]]:
    g = ct.train.graph
    rng = np.random.default_rng(seed)
    shape = g.tensor(g.inputs[0]).shape
    return [(rng.integers(-128, 128, shape, dtype=np.int8), int(rng.integers(10))) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny():
    return compiled(TINY), compiled(TINY + ",stream_input=true")


# ---- the band schedule ---------------------------------------------------------------------


def simulate(reads: list[tuple[int, int]], height: int) -> int:
    """Runs the schedule on a band of row numbers, as INPUT_ROWS and its caller do; checks
    every read finds its rows and every row is fetched once, in increasing order. Returns C."""
    s = band_schedule(reads, height)
    band = np.full(s.rows, -1)
    moves = {m.before: m for m in s.moves}
    fetched: list[int] = []
    for k, (a, b) in enumerate(reads):
        if k in moves:
            m = moves[k]
            keep = m.keep_end - m.new_lo
            band[:keep] = band[m.new_lo - m.lo : m.new_lo - m.lo + keep].copy()  # the memmove
            rows = list(range(m.fetch_from, m.new_hi))
            band[keep : keep + len(rows)] = rows  # the caller's fetch
            fetched += rows
            assert m.new_hi - m.new_lo <= s.rows
        lo = s.band_lo[k]
        assert list(band[a - lo : b - lo]) == list(range(a, b)), (k, a, b, lo, band)
    assert fetched == sorted(set(fetched)), "a row fetched twice or out of order"
    return s.rows


def test_the_band_of_a_patch_grid_in_row_order() -> None:
    # three rows of patches, three patches per row, overlapping by two rows
    reads = [(0, 12)] * 3 + [(9, 24)] * 3 + [(21, 32)] * 3
    s = band_schedule(reads, 32)
    assert s.rows == 15
    assert [(m.before, m.new_lo, m.new_hi, m.keep_end, m.fetch_from) for m in s.moves] == [
        (0, 0, 15, 0, 0),
        (3, 9, 24, 15, 15),
        (6, 21, 32, 24, 24),
    ]
    simulate(reads, 32)


@pytest.mark.parametrize(
    "reads",
    [
        [(20, 32), (10, 22), (0, 12)],  # bottom up: row 0 is read last, the band holds everything
        [(0, 4), (28, 32), (4, 8)],  # a jump ahead, then back: rows 4.. must stay
        [(5, 6), (5, 6), (0, 1), (31, 32)],  # a row read twice, then an earlier one
        [(3, 9), (0, 2), (10, 12), (9, 30), (30, 32)],
        [(0, 32)],
    ],
    ids=["bottom-up", "jump", "repeat", "mixed", "whole"],
)
def test_the_band_holds_every_read_in_unusual_orders(reads) -> None:
    rows = simulate(reads, 32)
    # C is the fewest rows any band fetching each row once, in order, can hold: before read k,
    # rows [m_k, b_k) are all needed now or later and already fetched or being fetched.
    need = max(b - min(a for a, _ in reads[k:]) for k, (_, b) in enumerate(reads))
    assert rows == need


@pytest.mark.parametrize("seed", range(30))
def test_the_band_holds_every_read_in_random_orders(seed: int) -> None:
    rng = np.random.default_rng(seed)
    height = int(rng.integers(1, 40))
    reads = []
    for _ in range(int(rng.integers(1, 12))):
        a = int(rng.integers(0, height))
        reads.append((a, int(rng.integers(a + 1, height + 1))))
    simulate(reads, height)


def test_a_read_outside_the_input_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        band_schedule([(0, 33)], 32)


# ---- the compiled step -----------------------------------------------------------------------


def test_the_streamed_input_has_no_arena_bytes(tiny) -> None:
    plain, st = tiny
    sm = st.streamed
    assert sm is not None and plain.streamed is None
    plan = st.compiled.plan
    x = plan.tensors[plan.inputs[0]]
    assert (x.storage, x.offset, x.size) == (STORAGE_STREAM, 0, 32 * 32 * 3)
    assert x.shape == plain.compiled.plan.tensors[plain.compiled.plan.inputs[0]].shape
    assert (x.scale, x.zero_point) == (
        plain.compiled.plan.tensors[plain.compiled.plan.inputs[0]].scale,
        plain.compiled.plan.tensors[plain.compiled.plan.inputs[0]].zero_point,
    )
    band = plan.tensors[st.compiled.plan_ids[sm.band]]
    assert band.storage == STORAGE_ARENA and band.size == sm.band_bytes < sm.input_bytes
    assert st.train.n_forward == plain.train.n_forward + sm.added
    assert st.train.loss_end == plain.train.loss_end + sm.added
    kinds = [op.kind for op in plan.ops]
    assert kinds.count("INPUT_ROWS") == sm.added >= 2
    # the fetches cover the input once, in order
    g = st.train.graph
    spans = [(op.options["fetch_offset"], op.options["fetch_len"]) for op in g.ops if op.kind == "INPUT_ROWS"]
    assert spans[0][0] == 0
    for (o1, n1), (o2, _) in itertools.pairwise(spans):
        assert o2 == o1 + n1
    assert sum(n for _, n in spans) == sm.input_bytes
    assert "input streamed in bands of" in report(st) and f"{sm.input_bytes:,} B" in report(st)


def test_streaming_changes_no_bit_of_the_forward_pass_or_training(tiny) -> None:
    """12 steps with and without streaming: every loss, prediction, trained weight and logit."""
    plain, st = tiny
    data = samples(plain, 12, seed=4)
    a, b = Trainer(plain), Trainer(st)
    for x, _ in data[:3]:  # forward only, before training
        a._invoke(x, 0, end=a.n_forward)
        b._invoke(x, 0, end=b.n_forward)
        np.testing.assert_array_equal(a._tensor(a.logits), b._tensor(b.logits))
        assert a.predict(x) == b.predict(x)
    steps = [a.step(x, y) for x, y in data]
    assert steps == [b.step(x, y) for x, y in data]
    assert len({loss for loss, _ in steps}) > 1
    sa, sb = a.state(), b.state()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].tobytes() == sb[k].tobytes(), k
    assert any(not np.array_equal(Trainer(plain).state()[k], sa[k]) for k in sa if "trained" in k)
    for x, y in data[:3]:
        assert a.evaluate(x, y) == b.evaluate(x, y)


def test_a_range_that_stops_anywhere_gets_its_rows(tiny) -> None:
    """[first, end) ranges (the twin's, as the board's INVOKE) split at, right after and
    between INPUT_ROWS operators give the whole step's result."""
    _, st = tiny
    x, y = samples(st, 1, seed=9)[0]
    lab = np.array([y], np.int32)
    whole = HostTwin(st.compiled.blob)
    want = whole.invoke([x, lab], 0, st.train.n_forward)
    rows_at = [i for i, op in enumerate(st.compiled.plan.ops) if op.kind == "INPUT_ROWS"]
    for cut in sorted({rows_at[1], rows_at[1] + 1, rows_at[-1] + 2}):
        twin = HostTwin(st.compiled.blob)
        twin.invoke([x, lab], 0, cut)
        got = twin.invoke([x, lab], cut, st.train.n_forward)
        for w, g in zip(want, got, strict=True):
            np.testing.assert_array_equal(w, g)


def test_a_host_session_with_a_streamed_scheme_trains_as_without(tmp_path) -> None:
    from pytools.session import run_training_session
    from tests.conftest import jsonl

    kw = {"epochs": 1, "limit": 12, "held_out": 10, "seed": 3, "lr": 0.02, "save": False}
    scheme = "bias=2,-1=1,-2=0.5,patch=0-1x2"
    plain = run_training_session("host", scheme=scheme, out_dir=tmp_path / "plain", **kw)
    st = run_training_session("host", scheme=scheme + ",stream_input=true", out_dir=tmp_path / "st", **kw)
    keys = ("sample_id", "label", "prediction", "loss")
    p_steps, s_steps = jsonl(plain / "steps.jsonl"), jsonl(st / "steps.jsonl")
    assert len(p_steps) == 12
    assert [[s[k] for k in keys] for s in p_steps] == [[s[k] for k in keys] for s in s_steps]
    p_state, s_state = np.load(plain / "trained_state.npz"), np.load(st / "trained_state.npz")
    assert sorted(p_state.files) == sorted(s_state.files) and p_state.files
    for name in p_state.files:
        assert p_state[name].tobytes() == s_state[name].tobytes(), name


def test_mobilenet_v2_sparse_streams_its_input_bit_exactly_in_a_smaller_arena() -> None:
    """The committed scheme (streamed, stages to #12, an arena budget: the compiler's exact
    savers) trains as its trained layers do with the input resident (the suite's comparison
    row), bit for bit, in a smaller arena within its budget."""
    from pytools.bench.suite import mbv2_resident

    path = mobilenet_v2_path()
    scheme = load_scheme(str(ROOT / "schemes" / "mbv2_sparse.toml"))
    assert scheme.stream_input and scheme.arena_budget
    plain = compile_training(load_tflite(path), load_scheme(mbv2_resident()), BOARD, path.stem, link=False)
    st = compile_training(load_tflite(path), scheme, BOARD, path.stem, link=False)
    print(f"MobileNetV2 mbv2_sparse arena {plain.compiled.arena:,} B resident -> {st.compiled.arena:,} B")
    print(st.streamed.describe())
    assert plain.streamed is None
    assert st.compiled.arena <= scheme.arena_budget < plain.compiled.arena
    assert st.streamed.band_bytes < st.streamed.input_bytes == 128 * 128 * 3
    data = samples(plain, 3, seed=2)
    a, b = Trainer(plain), Trainer(st)
    assert [a.step(x, y) for x, y in data] == [b.step(x, y) for x, y in data]
    sa, sb = a.state(), b.state()
    for k in sa:
        assert sa[k].tobytes() == sb[k].tobytes(), k


# ---- refusals --------------------------------------------------------------------------------


def test_a_scheme_without_a_first_patch_stage_cannot_stream() -> None:
    for scheme in ("bias=6,-1=1,stream_input=true", "bias=6,-1=1,patch=3-7x2,stream_input=true"):
        with pytest.raises(ModelError, match=r"stream_input: .*starts at operator #0.*drop stream_input"):
            compiled(scheme)


def test_an_input_read_by_anything_but_the_first_stage_is_refused(tiny) -> None:
    plain, _ = tiny
    g = plain.train.graph
    x = g.inputs[0]
    # a later operator that reads the input too (as a trained first layer's backward would)
    ops = list(g.ops)
    k = next(i for i, op in enumerate(ops) if op.kind == "ADD" and i > 40)
    ops[k] = Op(k, "ADD", [x, ops[k].inputs[1]], list(ops[k].outputs), dict(ops[k].options))
    doctored = Graph(g.tensors, ops, g.inputs, g.outputs, g.name)
    with pytest.raises(ModelError, match=rf"read by operator #{k}.*only the first patch stage"):
        stream_input(doctored, True)


def test_a_stage_that_never_reads_the_first_rows_is_refused(tiny) -> None:
    # The board starts a streamed sample at byte 0 (train.c refuses a plan whose first window
    # does not), so the compiler must refuse such a schedule with its reason.
    plain, _ = tiny
    g = plain.train.graph
    x = g.inputs[0]
    ops = []
    for op in g.ops:
        o = dict(op.options)
        if op.kind == "WINDOW_COPY" and op.inputs == [x] and int(o["src_y"]) == 0:
            o["src_y"], o["copy_h"], o["dst_y"] = 1, int(o["copy_h"]) - 1, int(o["dst_y"]) + 1
        ops.append(Op(op.index, op.kind, list(op.inputs), list(op.outputs), o))
    doctored = Graph(g.tensors, ops, g.inputs, g.outputs, g.name)
    with pytest.raises(ModelError, match=r"never reads rows 0-0 of input .*starts at its first byte"):
        stream_input(doctored, True)


def test_a_float_input_cannot_stream() -> None:
    graph = import_tflite(zoo_model("mobilenet_tiny"), "m")
    patched = patch_graph(graph, Patching(0, 2, 2)).graph
    x = patched.tensor(patched.inputs[0])
    tensors = list(patched.tensors)
    tensors[x.index] = Tensor(x.index, x.name, x.shape, "float32")
    g = Graph(tensors, patched.ops, patched.inputs, patched.outputs)
    with pytest.raises(ModelError, match=r"float32.*only an int8 NHWC input"):
        stream_input(g, True)


def test_the_scheme_option_syntax() -> None:
    assert load_scheme("bias=2,stream_input=true").stream_input
    assert load_scheme("bias=2,stream_input=1").stream_input
    assert not load_scheme("bias=2,stream_input=false").stream_input
    assert not load_scheme("bias=2").stream_input
    assert "stream_input=true" in load_scheme("bias=2,stream_input=1").inline()
    with pytest.raises(ToolError, match="stream_input must be true or false"):
        load_scheme("bias=2,stream_input=maybe")


def test_the_scheme_file_option(tmp_path) -> None:
    f = tmp_path / "s.toml"
    f.write_text("bias_layers = 2\nstream_input = true\n")
    assert load_scheme(str(f)).stream_input
    f.write_text("bias_layers = 2\nstream_input = 1\n")
    with pytest.raises(ToolError, match="stream_input must be true or false"):
        load_scheme(str(f))


# ---- the runtime refuses doctored plans ------------------------------------------------------


def _doctored(st, change) -> bytes:
    plan = dataclasses.replace(st.compiled.plan)
    plan.ops = [dataclasses.replace(op, operands=list(op.operands)) for op in plan.ops]
    change(plan)
    return pack(plan)


def _rows_op(plan, which: int = 1):
    return [op for op in plan.ops if op.kind == "INPUT_ROWS"][which]


def _set_params(op, **changes) -> None:
    lay = params_layout("input_rows")
    p = lay.unpack(op.params)
    p.update(changes)
    op.params = lay.pack(**p)


def test_the_runtime_refuses_input_rows_beyond_its_band_or_input(tiny) -> None:
    _, st = tiny
    HostTwin(st.compiled.blob)  # the plan as compiled loads
    band = st.streamed.band_bytes
    for changes in (
        {"fetch_len": band + 16},  # more than the band holds
        {"keep_from": band - 8, "keep_len": 16},  # kept rows past the band's end
        {"fetch_offset": st.streamed.input_bytes - 8},  # past the input's end
        {"input": 1},  # the label: not a streamed input
    ):
        blob = _doctored(st, lambda plan, c=changes: _set_params(_rows_op(plan), **c))
        with pytest.raises(ModelError, match=r"INPUT_ROWS.*do not fit"):
            HostTwin(blob)


def test_the_runtime_refuses_an_operator_reading_the_stream_directly(tiny) -> None:
    _, st = tiny
    stream_id = st.compiled.plan.inputs[0]

    def read_stream(plan) -> None:
        copy = next(op for op in plan.ops if op.kind == "WINDOW_COPY")
        copy.operands[0] = stream_id

    with pytest.raises(ModelError, match="reads a streamed input directly"):
        HostTwin(_doctored(st, read_stream))


def test_the_runtime_refuses_a_stream_that_is_no_input(tiny) -> None:
    """Only an input streams: an output or a scratch of stream storage would have no bytes."""
    _, st = tiny
    first_arena = next(
        i for i, t in enumerate(st.compiled.plan.tensors) if t.storage == STORAGE_ARENA and t.name
    )

    def stream(tid: int):
        def change(plan) -> None:
            plan.tensors = [dataclasses.replace(t) for t in plan.tensors]
            plan.tensors[tid].storage, plan.tensors[tid].offset = STORAGE_STREAM, 0

        return change

    def scratch_on_stream(plan) -> None:
        op = next(op for op in plan.ops if op.scratch != NO_TENSOR)
        op.scratch = plan.inputs[0]

    for change, said in (
        (stream(st.compiled.plan.outputs[0]), "output 0"),
        (stream(first_arena), "is streamed but is no input of the plan"),
        (scratch_on_stream, "scratch names no arena tensor"),
    ):
        with pytest.raises(ModelError, match="refused the plan") as e:
            HostTwin(_doctored(st, change))
        assert said in str(e.value)


def test_auto_patching_prices_its_candidates_streamed() -> None:
    """patch=auto with stream_input: every candidate is planned with its input streamed, so
    the choice is never worse than the unstreamed choice, then streamed."""
    scheme = "bias=4,-1=1,-2=0.25,patch=auto"
    plain, st = compiled(scheme), compiled(scheme + ",stream_input=true")
    assert st.streamed is not None and st.patching and st.patching[0].start == 0
    assert st.compiled.arena <= plain.compiled.arena
    assert f"-> {st.compiled.arena:,} B" in st.patch_note  # the note's arena is the streamed one
