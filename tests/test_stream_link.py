"""A streamed input over the serial link (docs/protocol.md, "Streamed inputs") on the emulated
board: the board holds a band of the input's rows at a time, stops at each INPUT_ROWS operator
and answers NEED_INPUT; the host sends exactly the bytes it names and repeats the request.

The plans here are built by hand with pytools.model.plan, following the band schedule of the
session design (a read of rows [a, b) not in the band gets an INPUT_ROWS before it that keeps the
rows still needed and fetches the next ones, in increasing offsets), so the link is tested
before and apart from the compiler's lowering:

- a copy plan: the streamed input's bands copied (WINDOW_COPY) into an output, which must equal
  the input, through BoardModel.invoke (TENSOR_WRITE + INVOKE);
- a loss plan, the smallest training step the board takes: the same copy, then a softmax
  cross-entropy loss head on it. Its oracle is the host twin running the very same operators on
  the input held whole (no INPUT_ROWS): loss and prediction bit-identical.

And every refusal: a chunk past the window, a write to a streamed input outside it, a read of
it, SAMPLE at offset 0 dropping a stopped step, a lost NEED_INPUT answered again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pytools import emulator
from pytools.boards import load_board
from pytools.build.builder import build_firmware
from pytools.link.client import BoardRefused, Link, LinkError
from pytools.link.protocol import Err, Msg, layout
from pytools.model.board_runner import BoardModel, BoardTraining, need_input
from pytools.model.host_twin import HostTwin, io_tensors, tensor_table
from pytools.model.kernels import op_code, params_layout
from pytools.model.plan import STORAGE_ARENA, STORAGE_STREAM, Plan, PlanOp, PlanTensor, pack, read_header

pytestmark = pytest.mark.emulator

BOARD = load_board("mps2_an500")
H, W, C = 12, 40, 3  # the input: 12 rows of 120 bytes
ROW = W * C
READS = [(0, 4), (3, 7), (6, 10), (9, 12), (10, 12)]  # the rows each WINDOW_COPY reads, in order
SCALE = 0.05


def band_schedule(reads: list[tuple[int, int]], h: int) -> tuple[int, list[tuple[dict | None, int, int]]]:
    """The band's rows and, per read, the INPUT_ROWS before it (None if the band holds its rows)
    and the read's rows in the band: the session design's schedule, written out independently."""
    mins = [min(a for a, _ in reads[k:]) for k in range(len(reads))]
    rows = max(b - m for (_, b), m in zip(reads, mins, strict=True))
    lo = hi = 0
    steps: list[tuple[dict | None, int, int]] = []
    first = True
    for (a, b), m in zip(reads, mins, strict=True):
        fetch = None
        if first or not (lo <= a and b <= hi):
            lo2, hi2 = m, min(h, m + rows)
            keep = max(0, min(hi, hi2) - lo2)
            start = max(hi, lo2)
            fetch = {
                "input": 0,
                "keep_from": (lo2 - lo) * ROW if keep else 0,
                "keep_len": keep * ROW,
                "fetch_offset": start * ROW,
                "fetch_len": (hi2 - start) * ROW,
            }
            lo, hi, first = lo2, hi2, False
        steps.append((fetch, a - lo, b - a))
    return rows, steps


def window_copy(src_h: int, src_y: int, dst_y: int, copy_h: int) -> bytes:
    return params_layout("window_copy_s8").pack(
        src_h=src_h,
        src_w=W,
        dst_h=H,
        dst_w=W,
        depth=C,
        src_y=src_y,
        src_x=0,
        dst_y=dst_y,
        dst_x=0,
        copy_h=copy_h,
        copy_w=W,
    )


def build_plan(streamed: bool, loss: bool) -> bytes:
    """The copy plan (loss False: input -> output), or the loss plan (inputs sample, label;
    outputs loss, prediction). streamed False: the same operators reading the input held whole
    in the arena (the oracle's plan)."""
    size = H * W * C
    rows, steps = band_schedule(READS, H)
    tensors: list[PlanTensor] = []

    def add(storage: int, dtype: str, shape: tuple[int, ...], offset: int, nbytes: int) -> int:
        tensors.append(
            PlanTensor(storage, dtype, shape, offset, nbytes, scale=SCALE if dtype == "int8" else 0.0)
        )
        return len(tensors) - 1

    arena = 0

    def alloc(nbytes: int) -> int:
        nonlocal arena
        at = arena
        arena += -(-nbytes // 16) * 16
        return at

    x_in = add(
        STORAGE_STREAM if streamed else STORAGE_ARENA,
        "int8",
        (1, H, W, C),
        0 if streamed else alloc(size),
        size,
    )
    copy_at = alloc(size)
    copy = add(STORAGE_ARENA, "int8", (1, H, W, C), copy_at, size)
    band = add(STORAGE_ARENA, "int8", (1, rows, W, C), alloc(rows * ROW), rows * ROW) if streamed else x_in
    ops: list[PlanOp] = []
    for (fetch, y, n), (a, _) in zip(steps, READS, strict=True):
        if streamed and fetch:
            ops.append(
                PlanOp(op_code("INPUT_ROWS", "input_rows"), [band], params_layout("input_rows").pack(**fetch))
            )
        src_h, src_y = (rows, y) if streamed else (H, a)
        ops.append(
            PlanOp(op_code("WINDOW_COPY", "window_copy_s8"), [band, copy], window_copy(src_h, src_y, a, n))
        )
    inputs, outputs = [x_in], [copy]
    n_forward = len(ops)
    if loss:
        label = add(STORAGE_ARENA, "int32", (1,), alloc(4), 4)
        loss_t = add(STORAGE_ARENA, "float32", (1,), alloc(4), 4)
        pred = add(STORAGE_ARENA, "int32", (1,), alloc(4), 4)
        logits = add(STORAGE_ARENA, "int8", (1, size), copy_at, size)  # the copy, seen as [1, classes]
        grad = add(STORAGE_ARENA, "int8", (1, size), alloc(size), size)
        gscale = add(STORAGE_ARENA, "float32", (1,), alloc(4), 4)
        scratch = add(STORAGE_ARENA, "int8", (4 * size,), alloc(4 * size), 4 * size)
        xent = params_layout("softmax_xent_s8").pack(
            batches=1, classes=size, input_scale=SCALE, label_smoothing=0.0
        )
        ops.append(
            PlanOp(
                op_code("SOFTMAX_XENT", "softmax_xent_s8"),
                [logits, label, loss_t, pred, grad, gscale],
                xent,
                scratch=scratch,
            )
        )
        inputs, outputs = [x_in, label], [loss_t, pred]
    plan = Plan(
        tensors=tensors,
        ops=ops,
        inputs=inputs,
        outputs=outputs,
        data=b"",
        arena_size=arena,
        ram_limit=BOARD.memory.ram_size,
        flash_limit=BOARD.memory.flash_size,
        board=BOARD.name,
        model="stream_loss" if loss else "stream_copy",
        n_forward=n_forward,
    )
    return pack(plan)


STEP_PLAN = build_plan(True, True)
N_FETCH = sum(1 for f, _, _ in band_schedule(READS, H)[1] if f)
FIRST_WINDOW = band_schedule(READS, H)[1][0][0]["fetch_len"]  # type: ignore[index]


@pytest.fixture(scope="module")
def run_dir_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Emulators in a temporary run directory (a board the user runs is never touched)."""
    with pytest.MonkeyPatch.context() as mp:
        d = tmp_path_factory.mktemp("run")
        mp.setattr(emulator, "RUN", d)
        yield d


def start(plan: bytes, name: str) -> emulator.Emulator:
    """An emulated board whose firmware embeds the plan (its arena reserved at the plan's size)."""
    arena = int(read_header(plan)["arena_size"])
    return emulator.start(BOARD, build_firmware(BOARD, plan, arena).elf, name=name)


@pytest.fixture(scope="module")
def copy_board(run_dir_module: Path) -> Iterator[str]:
    e = start(build_plan(True, False), "stream-copy")
    try:
        yield e.url
    finally:
        emulator.stop("stream-copy")


@pytest.fixture(scope="module")
def step_board(run_dir_module: Path) -> Iterator[str]:
    e = start(STEP_PLAN, "stream-step")
    try:
        yield e.url
    finally:
        emulator.stop("stream-step")


def sample(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, size=(1, H, W, C), dtype=np.int8)


def board_model(link: Link, plan: bytes) -> BoardModel:
    ins, outs = io_tensors(plan)
    return BoardModel(link, tensor_table(plan), ins, outs)


def twin_step(x: np.ndarray, label: int) -> tuple[float, int]:
    """The oracle: the host twin on the same operators with the input held whole."""
    twin = HostTwin(build_plan(False, True))
    loss, pred = twin.invoke([x, np.array([label], dtype=np.int32)])
    return float(loss[0]), int(pred[0])


def request_raw(link: Link, type_: int, payload: bytes) -> tuple[int, bytes]:
    """A request answered with any reply type (NEED_INPUT included), as (type, payload)."""
    r = link.request(type_, payload)
    return r.type, r.payload


def sample_chunk(sample_id: int, offset: int, data: bytes, label: int = 0) -> bytes:
    return layout("SAMPLE").pack(sample_id=sample_id, offset=offset, label=label) + data


# --- the generic INVOKE -------------------------------------------------------------------------


def test_invoke_streams_the_input_band_by_band(copy_board: str) -> None:
    """The output (every band copied out) equals the input; the run took one INVOKE per fetch
    short of the end plus one; run operator by operator, the parts add up to the whole once the
    extra INVOKEs' dispatch overhead is taken off (as the bench's parts check counts it)."""
    plan = build_plan(True, False)
    with Link.open(copy_board) as link:
        m = board_model(link, plan)
        x = sample(1)
        (out,), report = m.invoke([x])
        assert out.tobytes() == x.tobytes()
        assert report["invokes"] == N_FETCH + 1  # a stop at each fetch (the first is op 0), then the end
        n = m.info["n_ops"]
        data = {0: x.tobytes()}
        empty = [m.run(data, first=0, end=0)["cost"] for _ in range(8)]
        overhead = sum(empty) / len(empty)
        whole = m.run(data)
        parts = [m.run(data, first=i, end=i + 1) for i in range(n)]
        assert sum(p["invokes"] for p in parts) == n  # an INPUT_ROWS alone stops at its range's end
        (out2,), _ = m.invoke([sample(2)], first=0, end=n)
        assert out2.tobytes() == sample(2).tobytes()
        extra = n - whole["invokes"]
        residual = sum(p["cost"] for p in parts) - extra * overhead - whole["cost"]
        assert abs(residual) <= (n + whole["invokes"]) * 40, (residual, whole, parts, overhead)


def test_streamed_input_refusals(copy_board: str) -> None:
    plan = build_plan(True, False)
    with Link.open(copy_board) as link:
        n = board_model(link, plan).info["n_ops"]
        read = layout("TENSOR_READ").pack(io=0, index=0, offset=0, length=16)
        with pytest.raises(BoardRefused, match=r"streamed.*never the whole input") as e:
            link.request(Msg.TENSOR_READ, read)
        assert e.value.code == Err.BAD_ARGUMENT

        def write(offset: int, nbytes: int) -> None:
            link.request(
                Msg.TENSOR_WRITE, layout("TENSOR_WRITE").pack(io=0, index=0, offset=offset) + b"\1" * nbytes
            )

        link.request(Msg.INVOKE, layout("INVOKE").pack(first=0, end=0))  # no fetch pending now
        # An empty range right after an INPUT_ROWS runs nothing, so it asks for nothing.
        assert link.request(Msg.INVOKE, layout("INVOKE").pack(first=1, end=1)).type == Msg.INVOKE_RSP
        with pytest.raises(BoardRefused, match="not waiting") as e:
            write(0, 10)
        assert e.value.code == Err.NOT_ASKED
        rng = layout("INVOKE").pack(first=0, end=n)
        t, p = request_raw(link, Msg.INVOKE, rng)
        need = need_input(p)
        assert t == Msg.NEED_INPUT and (need["offset"], need["length"], need["received"]) == (
            0,
            FIRST_WINDOW,
            0,
        )
        assert need["next_op"] == 1 and need["kind"] == 3 and need["sample_id"] == 0xFFFFFFFF
        with pytest.raises(BoardRefused, match=rf"takes bytes \[0, {FIRST_WINDOW}\)") as e:
            write(FIRST_WINDOW, 10)  # outside the window
        assert e.value.code == Err.NOT_ASKED
        with pytest.raises(BoardRefused, match=rf"takes bytes \[0, {FIRST_WINDOW}\)"):
            write(0, FIRST_WINDOW + 1)  # past it
        write(0, 100)
        with pytest.raises(BoardRefused, match=rf"takes bytes \[100, {FIRST_WINDOW}\)"):
            write(101, 10)  # a gap
        # Resumed before the window is whole: asked again, nothing run.
        t, p = request_raw(link, Msg.INVOKE, layout("INVOKE").pack(first=1, end=n))
        again = need_input(p)
        assert t == Msg.NEED_INPUT and again["received"] == 100 and again["cost"] == 0
        write(100, FIRST_WINDOW - 100)
        t, p = request_raw(link, Msg.INVOKE, layout("INVOKE").pack(first=1, end=n))
        assert t == Msg.NEED_INPUT and need_input(p)["offset"] == FIRST_WINDOW and need_input(p)["cost"] > 0


def test_a_lost_need_input_is_answered_again_from_the_reply_cache(copy_board: str) -> None:
    """The same frame again (the host never saw the reply): the board answers from its reply
    cache, byte for byte, and runs nothing more (its duplicate counter says so)."""
    from pytools.link import frame as fr

    plan = build_plan(True, False)
    with Link.open(copy_board) as link:
        n = board_model(link, plan).info["n_ops"]
        before = link.info()["rx_duplicates"]
        seq = link._next_seq()
        data = fr.encode(Msg.INVOKE, seq, layout("INVOKE").pack(first=0, end=n))
        replies = []
        for _ in range(2):
            link._write(data)
            r = link._await(seq, 10.0)
            assert r is not None
            replies.append(r)
        assert replies[0].type == Msg.NEED_INPUT and replies[0] == replies[1]
        assert link.info()["rx_duplicates"] == before + 1


# --- training steps -----------------------------------------------------------------------------


def test_streamed_steps_match_the_host_twin(step_board: str) -> None:
    """TRAIN, EVAL and PREDICT of streamed samples through BoardTraining: loss and prediction
    bit-identical with the host twin holding the input whole; each sample's bytes sent once,
    exactly the ones the board asked for; a TRAIN replayed from the kept result."""
    with Link.open(step_board) as link:
        bt = BoardTraining(link)
        assert bt.config["first_window"] == FIRST_WINDOW < bt.config["sample_size"] == H * W * C
        sent: list[tuple[int, int]] = []
        request = link.request

        def spy(type_: int, payload: bytes = b"", **kw: object) -> object:
            if type_ == Msg.SAMPLE:
                s = layout("SAMPLE").unpack(payload[: layout("SAMPLE").size])
                sent.append((s["offset"], len(payload) - layout("SAMPLE").size))
            return request(type_, payload, **kw)  # type: ignore[arg-type]

        link.request = spy  # type: ignore[method-assign]
        start_id = bt.status()["samples_trained"]
        for k in range(3):
            x, label = sample(10 + k), (37 * k) % (H * W * C)
            sent.clear()
            r = bt.train(start_id + k, x, label)
            assert (r.loss, r.prediction) == twin_step(x, label)
            assert r.samples_trained == start_id + k + 1 and not r.replayed and r.cost > 0
            assert sum(n for _, n in sent) == H * W * C  # every byte once
            assert [o for o, _ in sent] == sorted(o for o, _ in sent)
        x = sample(20)
        ev = bt.evaluate(1000, x, 5)
        assert (ev.kind, ev.loss, ev.prediction) == ("eval", *twin_step(x, 5))
        pr = bt.predict(1001, x)
        assert pr.kind == "predict" and pr.prediction == twin_step(x, 5)[1] and np.isnan(pr.loss)
        again = bt.replay(start_id + 1)
        assert again.replayed and (again.loss, again.prediction) == twin_step(sample(11), 37)
        assert bt.status()["samples_trained"] == start_id + 3


def test_a_stopped_step_repeats_need_input_and_starts_over_at_offset_0(step_board: str) -> None:
    with Link.open(step_board) as link:
        bt = BoardTraining(link)
        t = bt.status()["samples_trained"]
        x, x2 = sample(30).tobytes(), sample(31).tobytes()
        with pytest.raises(BoardRefused, match=rf"takes bytes \[0, {FIRST_WINDOW}\)") as e:
            link.request(Msg.SAMPLE, sample_chunk(t, 0, x[: FIRST_WINDOW + 1], 3))
        assert e.value.code == Err.NOT_ASKED
        link.request(Msg.SAMPLE, sample_chunk(t, 0, x[:FIRST_WINDOW], 3))
        with pytest.raises(BoardRefused, match="has all of bytes"):
            link.request(Msg.SAMPLE, sample_chunk(t, FIRST_WINDOW, x[FIRST_WINDOW : FIRST_WINDOW + 10], 3))
        train = layout("TRAIN").pack(sample_id=t, epoch=0, lr_scale=1.0)
        typ, p = request_raw(link, Msg.TRAIN, train)
        need = need_input(p)
        assert typ == Msg.NEED_INPUT and (need["sample_id"], need["kind"], need["offset"]) == (
            t,
            0,
            FIRST_WINDOW,
        )
        assert need["received"] == 0 and need["cost"] > 0 and need["step_cost"] > need["cost"]
        typ, p = request_raw(link, Msg.TRAIN, train)  # repeated: the same question, nothing run
        assert typ == Msg.NEED_INPUT and need_input(p) == {**need, "cost": 0, "stack_high_water": ANY_INT}
        status = bt.status()
        assert status["samples_trained"] == t and status["loaded_bytes"] == FIRST_WINDOW
        link.request(Msg.SAMPLE, sample_chunk(t, FIRST_WINDOW, x[FIRST_WINDOW : FIRST_WINDOW + 100], 3))
        end = need["offset"] + need["length"]
        with pytest.raises(BoardRefused, match=rf"takes bytes \[{FIRST_WINDOW + 100}, {end}\)"):
            link.request(Msg.SAMPLE, sample_chunk(t, FIRST_WINDOW + 100, x[FIRST_WINDOW + 100 : end + 1], 3))
        with pytest.raises(BoardRefused, match="label 4, but its first chunk said 3"):
            link.request(Msg.SAMPLE, sample_chunk(t, FIRST_WINDOW + 100, x[FIRST_WINDOW + 100 : end], 4))
        # Offset 0 starts the sample over: the stopped step is dropped (it trained nothing).
        link.request(Msg.SAMPLE, sample_chunk(t, 0, x2[:FIRST_WINDOW], 7))
        assert bt.status()["loaded_bytes"] == FIRST_WINDOW
        # Resumed by another kind of request for the same id (EVAL), then finished by TRAIN.
        typ, p = request_raw(link, Msg.EVAL, layout("EVAL").pack(sample_id=t))
        assert typ == Msg.NEED_INPUT and need_input(p)["kind"] == 1 and need_input(p)["received"] == 0
        bt.loaded = (t, x2, 7)
        r = bt.replay(t)
        assert not r.replayed and r.kind == "train" and (r.loss, r.prediction) == twin_step(sample(31), 7)
        assert r.samples_trained == t + 1 and r.cost > need["step_cost"]  # every segment summed
        # A generic TENSOR_WRITE drops a stopped step: its TRAIN then has no sample.
        bt.load(t + 1, sample(32), 1)
        link.request(Msg.TENSOR_WRITE, layout("TENSOR_WRITE").pack(io=0, index=1, offset=0) + bytes(4))
        with pytest.raises(BoardRefused, match="no sample is loaded") as e:
            bt.replay(t + 1)
        assert e.value.code == Err.NO_SAMPLE


def test_streamed_steps_through_corrupted_frames_and_a_dropped_host(step_board: str) -> None:
    """5 % of frames damaged both ways: every NEED_INPUT, SAMPLE and repeated request is
    retransmitted as needed (answered from the reply cache, never run twice), and the steps
    still give the twin's results, each id trained once. Then a host that dies in the middle of
    a step: a new one starts the sample over (SAMPLE at offset 0) and trains it, once."""
    from pytools.link.transport import SocketPort
    from tests.conftest import CorruptingPort

    port = CorruptingPort(SocketPort.from_url(step_board), rate=0.0, seed=7)
    link = Link(port, timeout=0.1, bytes_per_second=BOARD.baud / 10)
    try:
        link.hello()
        port.rate = 0.05
        bt = BoardTraining(link)
        t = bt.status()["samples_trained"]
        for k in range(4):
            x, label = sample(50 + k), 11 * k
            r = bt.train(t + k, x, label)
            assert not r.replayed and (r.loss, r.prediction) == twin_step(x, label)
        assert port.injected_tx + port.injected_rx > 0 and link.stats.retransmits > 0
        port.rate = 0.0
        assert bt.status()["samples_trained"] == t + 4
    finally:
        link.close()
    x = sample(60)
    with Link.open(step_board) as link:  # a host that dies after the board asked for rows
        bt = BoardTraining(link)
        bt.load(t + 4, x, 2)
        typ, _ = request_raw(link, Msg.TRAIN, layout("TRAIN").pack(sample_id=t + 4, epoch=0, lr_scale=1.0))
        assert typ == Msg.NEED_INPUT
    with Link.open(step_board) as link:  # the next one knows nothing of the stopped step
        bt = BoardTraining(link)
        status = bt.status()
        assert status["samples_trained"] == t + 4 and status["loaded_id"] == t + 4
        r = bt.train(t + 4, x, 2)
        assert not r.replayed and (r.loss, r.prediction) == twin_step(x, 2) and r.samples_trained == t + 5


class _Any:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, int)


ANY_INT = _Any()


# --- the host client refuses what the board should not ask ----------------------------------


@dataclasses.dataclass
class FakeLink:
    """A board that answers TRAIN with a NEED_INPUT of its choosing (a buggy or another host's)."""

    need: dict
    board: dict = dataclasses.field(default_factory=lambda: {"max_payload": 4096})
    timeout: float = 0.5
    sent: list = dataclasses.field(default_factory=list)

    class stats:
        retransmits = 0

    def request(self, type_: int, payload: bytes = b"", **kw: object) -> object:
        from pytools.link.frame import Frame

        self.sent.append((type_, payload))
        if type_ == Msg.TRAIN_CONFIG:
            cfg = {f: 0 for f in layout("TRAIN_CONFIG_RSP").names}
            cfg.update(
                sample_size=1440,
                sample_dtype=0,
                sample_ndim=4,
                dim0=1,
                dim1=H,
                dim2=W,
                dim3=C,
                chunk_max=1000,
                first_window=FIRST_WINDOW,
                classes=10,
            )
            return Frame(Msg.TRAIN_CONFIG_RSP, 1, layout("TRAIN_CONFIG_RSP").pack(**cfg))
        if type_ == Msg.TRAIN:
            return Frame(Msg.NEED_INPUT, 1, layout("NEED_INPUT").pack(**self.need))
        return Frame(Msg.ACK, 1, b"")


def fake_need(**kw: int) -> dict:
    need = {f: 0 for f in layout("NEED_INPUT").names}
    need.update(sample_id=5, offset=FIRST_WINDOW, length=100)
    need.update(kw)
    return need


@pytest.mark.parametrize(
    ("need", "match"),
    [
        (fake_need(sample_id=6), "answered NEED_INPUT for sample 6; this host sent sample 5"),
        (fake_need(offset=1400, length=100), r"bytes \[1400, 1500\) of sample 5 .* which is 1440 bytes"),
    ],
)
def test_the_client_sends_no_byte_the_board_did_not_ask_for(need: dict, match: str) -> None:
    link = FakeLink(need)
    bt = BoardTraining(link)  # type: ignore[arg-type]
    bt.load(5, sample(40), 1)
    first = [p for t, p in link.sent if t == Msg.SAMPLE]
    assert sum(len(p) - layout("SAMPLE").size for p in first) == FIRST_WINDOW
    with pytest.raises(LinkError, match=match):
        bt.replay(5)
    assert [t for t, _ in link.sent].count(Msg.SAMPLE) == len(first)  # nothing more was sent


# --- end to end: a model compiled with stream_input (pytools/model/lowering/stream.py) ----------

TINY = "bias=6,-1=1,-2=0.5,-3=0.25,-5=0.125,patch=0-2x3+3-7x2,stream_input=true"


@pytest.fixture(scope="module")
def tiny_streamed():
    from pytools.model.tflite_import import import_tflite
    from pytools.pretrain.zoo import zoo_model
    from pytools.train.compile_train import compile_training
    from pytools.train.scheme import load_scheme

    g = import_tflite(zoo_model("mobilenet_tiny"), "mobilenet_tiny")
    return compile_training(g, load_scheme(TINY), BOARD, "mobilenet_tiny", True, 0.05)


def tiny_samples(ct, n: int, seed: int) -> list[tuple[np.ndarray, int]]:
    g = ct.train.graph
    rng = np.random.default_rng(seed)
    shape = g.tensor(g.inputs[0]).shape
    return [(rng.integers(-128, 128, shape, dtype=np.int8), int(rng.integers(10))) for _ in range(n)]


@pytest.mark.slow
def test_a_streamed_model_trains_over_the_link_bit_identical_with_the_twin(
    run_dir_module, tiny_streamed
) -> None:
    """mobilenet_tiny with its input streamed: TRAIN steps over the link (lr schedule factors
    included) give the host twin's losses and predictions, and the board's trained state its
    CRC-32; EVAL and PREDICT too; the generic INVOKE of the forward pass gives its logits."""
    import zlib

    from pytools.train.trainer import Trainer

    ct = tiny_streamed
    blob = ct.compiled.blob
    assert any(t["storage"] == STORAGE_STREAM for t in tensor_table(blob))
    e = emulator.start(BOARD, ct.image.elf, name="stream-tiny")
    try:
        with Link.open(e.url) as link:
            bt = BoardTraining(link)
            size = bt.config["sample_size"]
            assert 0 < bt.config["first_window"] < size
            twin = Trainer(ct)
            data = tiny_samples(ct, 5, seed=3)
            steps = []
            for k, (x, y) in enumerate(data):
                r = bt.train(k, x, y, lr_scale=1.0 - 0.15 * k)
                steps.append((r.loss, r.prediction))
                assert (r.loss, r.prediction) == twin.step(x, y, 1.0 - 0.15 * k), k
                assert r.samples_trained == k + 1 and r.cost > 0
            assert len({loss for loss, _ in steps}) > 1
            crc = 0
            for _, tid in sorted(twin.state_ids.items(), key=lambda kv: kv[1]):
                crc = zlib.crc32(twin._tensor(tid).tobytes(), crc)
            assert bt.status()["state_crc"] == crc
            for x, y in tiny_samples(ct, 2, seed=8):
                ev = bt.evaluate(100, x, y)
                assert (ev.loss, ev.prediction) == twin.evaluate(x, y)
                assert bt.predict(101, x).prediction == twin.predict(x)
            # The generic INVOKE of the forward pass, answering NEED_INPUT with TENSOR_WRITEs.
            x, _ = data[0]
            ins, outs = io_tensors(blob)
            bm = BoardModel(link, tensor_table(blob), ins, outs)
            logits = tensor_table(blob)[ct.compiled.plan_ids[ct.train.logits]]
            report = bm.run(
                {0: x.tobytes(), 1: np.zeros(1, np.int32).tobytes()}, first=0, end=ct.train.n_forward
            )
            assert report["invokes"] > 1  # it stopped for rows
            board_logits = bm.arena_bytes(logits["offset"], logits["size"])
            twin._invoke(x, 0, end=twin.n_forward)
            assert board_logits == twin._tensor(ct.compiled.plan_ids[ct.train.logits]).tobytes()
    finally:
        emulator.stop("stream-tiny")


@pytest.mark.slow
def test_the_bench_measures_a_streamed_step_whole_and_in_parts(run_dir_module) -> None:
    """invoke bench on the streamed step: the whole step is several INVOKEs (one per fetch short
    of the end), and the parts (forward + backward; one operator at a time) minus the extra
    INVOKEs' dispatch overhead are the whole step within a timer tick per INVOKE."""
    from pytools import bench
    from pytools.pretrain.zoo import zoo_model, zoo_path

    zoo_model("mobilenet_tiny")
    res = bench.run_bench(zoo_path("mobilenet_tiny"), TINY, "mps2_an500", None, steps=2, lr=0.01)
    cost = res["cost"]
    assert cost["same_step_mismatches"] == []
    whole = cost["invokes"]["steps"]
    assert all(w > 1 for w in whole)  # the board stopped for rows
    assert all(abs(r) <= cost["split_tolerance"] for r in cost["split_residuals"]), cost["split_residuals"]
    pc = cost["parts_check"]
    n = res["operators"]["step"]
    assert pc["invokes"] == n and pc["extra_invokes"] == n - whole[-1]
    assert abs(pc["residual"]) <= pc["tolerance"] == (n + whole[-1]) * cost["granularity"]


@pytest.mark.slow
def test_a_board_session_with_a_streamed_scheme_trains_as_the_host_session(run_dir_module, tmp_path) -> None:
    """invoke train on the emulated board with stream_input (the session, its BoardTraining and
    evaluation unchanged above the link): every step and the trained state as the host twin's
    session of the same scheme."""
    from pytools.session import run_training_session
    from tests.conftest import jsonl

    kw = {"epochs": 1, "limit": 10, "held_out": 6, "seed": 3, "lr": 0.02}
    scheme = "bias=2,-1=1,-2=0.5,patch=0-1x2,stream_input=true"
    host = run_training_session("host", scheme=scheme, out_dir=tmp_path / "host", save=False, **kw)
    try:
        board = run_training_session(BOARD.name, scheme=scheme, out_dir=tmp_path / "board", **kw)
    finally:
        emulator.stop(BOARD.name)
    keys = ("sample_id", "label", "prediction", "loss")
    h_steps, b_steps = jsonl(host / "steps.jsonl"), jsonl(board / "steps.jsonl")
    assert len(b_steps) == 10
    assert [[s[k] for k in keys] for s in h_steps] == [[s[k] for k in keys] for s in b_steps]
    h_state, b_state = np.load(host / "trained_state.npz"), np.load(board / "trained_state.npz")
    assert sorted(h_state.files) == sorted(b_state.files) and h_state.files
    for name in h_state.files:
        assert h_state[name].tobytes() == b_state[name].tobytes(), name
