"""Training over the serial link (protocol v2: SAMPLE, TRAIN, EVAL, PREDICT, TRAIN_STATUS) on the
emulated board: exactly once across host processes, resumed after a killed host, through 2 %
corrupted frames, and clear refusals of bad input that leave the board's state as it was.

The oracle is the host twin (pytools.model.host_twin: the same C runtime and kernels built for
the host), trained once on the same sample sequence: the board's trained state must be
bit-identical with it, and every step's loss and prediction equal.

Every test keeps its emulators in a temporary run directory, so a board the user runs is never
touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import datasets
from pytools import emulator, persist, session
from pytools.boards import load_board
from pytools.build.manifest import persist_region
from pytools.errors import ToolError
from pytools.link.client import BoardRefused, Link
from pytools.link.protocol import Err, Msg, layout
from pytools.link.transport import SocketPort
from pytools.model.board_runner import BoardModel, BoardTraining
from pytools.model.host_twin import io_tensors, tensor_table
from pytools.model.tflite_import import import_tflite
from pytools.paths import ROOT
from pytools.pretrain import digits
from pytools.session import board as session_board
from pytools.train import schedule as schedules
from pytools.train.compile_train import CompiledTraining, compile_training
from pytools.train.scheme import parse_scheme_text
from pytools.train.trainer import Trainer
from tests.conftest import CorruptingPort, jsonl

pytestmark = pytest.mark.emulator

BOARD = "mps2_an500"


@pytest.fixture(scope="module")
def ct() -> CompiledTraining:
    """The default session's training step (digits model, default scheme, lr 0.01)."""
    board = load_board(BOARD)
    graph = import_tflite(digits.pretrained_model(), digits.NAME)
    return compile_training(graph, parse_scheme_text(session.DEFAULT_SCHEME), board, digits.NAME, True, 0.01)


@pytest.fixture(scope="module")
def samples() -> tuple[np.ndarray, np.ndarray]:
    """Fine-tuning samples as the model takes them (int8), and their labels."""
    graph = import_tflite(digits.pretrained_model(), digits.NAME)
    part = datasets.load_split("digits").finetune
    return session.model_inputs(graph, part.x), part.y


@pytest.fixture
def board_emu(run_dir: Path, ct: CompiledTraining) -> Iterator[emulator.Emulator]:
    """An emulated board running the training plan's firmware, under the board's own name (a
    session reuses it and leaves it running, so the test can read its state at the end)."""
    e = emulator.start(load_board(BOARD), ct.image.elf)
    try:
        yield e
    finally:
        emulator.stop(BOARD)


def board_state(url: str, ct: CompiledTraining) -> tuple[dict[str, np.ndarray], dict]:
    """The board's trained state (ARENA_READ) and its TRAIN_STATUS."""
    with Link.open(url) as link:
        ins, outs = io_tensors(ct.compiled.blob)
        trainer = Trainer(ct, BoardModel(link, tensor_table(ct.compiled.blob), ins, outs))
        return trainer.state(), BoardTraining(link).status()


def twin_after(ct: CompiledTraining, x: np.ndarray, y: np.ndarray) -> tuple[Trainer, list[tuple[float, int]]]:
    """The host twin trained once on these samples, in order, the lr decaying linearly over
    them as a session's does; each step's (loss, prediction)."""
    twin = Trainer(ct)
    n = len(y)
    return twin, [twin.step(x[k], int(y[k]), schedules.lr_scale("linear", k, n)) for k in range(n)]


def state_crc(trainer: Trainer) -> int:
    """CRC-32 of the trained state tensors in tensor order, as TRAIN_STATUS computes it."""
    crc = 0
    for _, tid in sorted(trainer.state_ids.items(), key=lambda kv: kv[1]):
        crc = zlib.crc32(trainer._tensor(tid).tobytes(), crc)
    return crc


def assert_same_state(board: dict[str, np.ndarray], twin: dict[str, np.ndarray]) -> None:
    assert board.keys() == twin.keys()
    for name in twin:
        assert board[name].tobytes() == twin[name].tobytes(), name


def check_session_against_twin(
    folder: Path, ct: CompiledTraining, samples: tuple[np.ndarray, np.ndarray], total: int
) -> Trainer:
    """Every step once, in order, with the twin's loss and prediction; returns the trained twin."""
    steps = jsonl(folder / "steps.jsonl")
    first = json.loads((folder / "config.json").read_text())["first_sample_id"]
    assert [s["sample_id"] for s in steps] == list(range(first, first + total))
    x_all, y_all = samples
    idx = [s["sample"] for s in steps]
    twin, results = twin_after(ct, x_all[idx], y_all[idx])
    for k, (s, (loss, pred)) in enumerate(zip(steps, results, strict=True)):
        assert s["label"] == y_all[s["sample"]]
        assert s["lr_scale"] == schedules.lr_scale("linear", k, total)
        assert (s["loss"], s["prediction"]) == (loss, pred), s
    return twin


def session_killed_after(
    folder: Path,
    run_dir: Path,
    limit: int,
    epochs: int,
    seed: int,
    kill_after: int,
    save_every: int | None = None,
    kill: str = "host",
) -> int:
    """Runs a session in a host process of its own and, once it has logged kill_after steps,
    SIGKILLs it (kill="host": no finally block runs, the link is simply cut), or its emulated
    board's QEMU (kill="board": a power cut; the host fails on the closed link and ends as it
    does on any error), or both (kill="both"). Returns the steps logged."""
    code = (
        "import sys; from pathlib import Path; from pytools.session import run_training_session; "
        f"run_training_session('{BOARD}', epochs={epochs}, limit={limit}, seed={seed}, held_out=60, "
        f"save_every={save_every}, out_dir=Path(sys.argv[1]))"
    )
    env = {**os.environ, "TINYTRAIN_RUN_DIR": str(run_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    steps_file = folder / "steps.jsonl"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if steps_file.exists() and steps_file.read_text().count("\n") >= kill_after:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the session ended before it could be killed"
        if kill in ("host", "both"):
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        if kill in ("board", "both"):
            emu = json.loads((folder / "config.json").read_text())["board"]["emulator"]
            qemu = emulator.find(emu["name"] or emu["reused"])
            assert qemu is not None
            os.kill(qemu.pid, signal.SIGKILL)
            assert proc.wait(60) != 0  # the host's link closed under it: the session failed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    logged = steps_file.read_text().count("\n")
    assert kill_after <= logged < limit * epochs
    return logged


def test_a_killed_host_resumes_and_every_sample_is_trained_exactly_once(
    run_dir: Path, board_emu: emulator.Emulator, ct: CompiledTraining, samples, tmp_path: Path
) -> None:
    limit, epochs, kill_after = 40, 2, 15
    folder = tmp_path / "s"
    logged = session_killed_after(folder, run_dir, limit, epochs, 3, kill_after)

    # The killed host may have trained a step it never logged; make sure that case is covered:
    # train the next step here, as the dead process would have, without a line in steps.jsonl.
    config = json.loads((folder / "config.json").read_text())
    orders = [o for o in _orders(3, limit, epochs)]
    x_all, y_all = samples
    chosen = session.subset(y_all, limit)
    with Link.open(board_emu.url) as link:
        bt = BoardTraining(link)
        st = bt.status()
        g = st["samples_trained"] - config["first_sample_id"]
        assert g >= logged
        if g == logged:
            i = chosen[orders[g // limit][g % limit]]
            scale = schedules.lr_scale("linear", g, limit * epochs)  # as the session would have
            bt.train(st["samples_trained"], x_all[i], int(y_all[i]), g // limit + 1, lr_scale=scale)
            g += 1
    unlogged = g - logged
    assert unlogged >= 1

    folder2 = session.run_training_session(BOARD, resume=True, out_dir=folder)
    assert folder2 == folder
    resumes = jsonl(folder / "resumes.jsonl")
    assert len(resumes) == 1 and resumes[0]["replayed"] == unlogged
    steps = jsonl(folder / "steps.jsonl")
    assert len(steps) == limit * epochs
    assert [s["replayed"] for s in steps[logged:g]] == [True] * unlogged
    assert not any(s["replayed"] for s in steps[g:])
    for epoch in (1, 2):
        assert sorted(s["sample"] for s in steps if s["epoch"] == epoch) == sorted(chosen.tolist())
    assert [e["epoch"] for e in jsonl(folder / "epochs.jsonl")] == [0, 1, 2]
    assert "completed" in (folder / "summary.txt").read_text()

    twin = check_session_against_twin(folder, ct, samples, limit * epochs)
    state, status = board_state(board_emu.url, ct)
    assert_same_state(state, twin.state())
    assert status["samples_trained"] == config["first_sample_id"] + limit * epochs
    assert status["replays"] == unlogged
    assert status["state_crc"] == state_crc(twin)

    # A second resume of a finished session trains nothing more.
    session.run_training_session(BOARD, resume=True, out_dir=folder)
    assert board_state(board_emu.url, ct)[1]["samples_trained"] == status["samples_trained"]
    assert len(jsonl(folder / "steps.jsonl")) == limit * epochs

    # A board restarted since comes back with its last checkpoint (the final save), its count
    # included: a resume trains nothing more.
    emulator.stop(BOARD)
    emu = emulator.start(load_board(BOARD), ct.image.elf)
    session.run_training_session(BOARD, resume=True, out_dir=folder)
    assert board_state(emu.url, ct)[1]["samples_trained"] == status["samples_trained"]
    assert board_state(emu.url, ct)[1]["state_crc"] == state_crc(twin)
    assert len(jsonl(folder / "steps.jsonl")) == limit * epochs

    # A board whose flash was erased and that then trained elsewhere stands at no point this
    # session saved: refused, and the session's files are left as they were.
    emulator.stop(BOARD)
    emulator.erase_flash(BOARD)
    emu = emulator.start(load_board(BOARD), ct.image.elf)
    with Link.open(emu.url) as link:
        bt = BoardTraining(link)
        for k in range(3):
            bt.train(k, x_all[k], int(y_all[k]))
    with pytest.raises(ToolError, match=r"can carry on only from its start or a checkpoint it saved"):
        session.run_training_session(BOARD, resume=True, out_dir=folder)
    assert len(jsonl(folder / "steps.jsonl")) == limit * epochs
    assert not (folder / session.ROLLED_BACK).exists()


def _orders(seed: int, n: int, epochs: int) -> list[np.ndarray]:
    """The session's sample order per epoch (as run_training_session draws it)."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(epochs)]


def test_a_session_through_2_percent_corrupted_frames_ends_with_the_twins_weights(
    run_dir: Path, board_emu: emulator.Emulator, ct: CompiledTraining, samples, tmp_path, monkeypatch
) -> None:
    ports: list[CorruptingPort] = []

    def corrupted(board, url, **kw):  # the session's link, 2 % of frames damaged both ways
        port = CorruptingPort(SocketPort.from_url(url), rate=0.0, seed=2026)
        # A short wait before retransmitting: QEMU answers in milliseconds, and an early repeat is
        # itself part of the test (the board must answer it from its cache, not train twice).
        link = Link(port, timeout=0.1, bytes_per_second=board.baud / 10, **kw)
        link.hello()
        port.rate = 0.02
        ports.append(port)
        return link

    monkeypatch.setattr(session_board, "open_link", corrupted)
    limit, epochs = 30, 2
    folder = session.run_training_session(
        BOARD, epochs=epochs, limit=limit, seed=5, out_dir=tmp_path / "s", held_out=120
    )
    (port,) = ports
    print(f"damaged: {port.injected_tx} requests, {port.injected_rx} replies")
    assert port.injected_tx >= 5 and port.injected_rx >= 5, (port.injected_tx, port.injected_rx)
    summary = (folder / "summary.txt").read_text()
    assert "completed" in summary
    twin = check_session_against_twin(folder, ct, samples, limit * epochs)
    state, status = board_state(board_emu.url, ct)
    assert_same_state(state, twin.state())
    assert status["samples_trained"] == limit * epochs and status["replays"] == 0
    assert status["state_crc"] == state_crc(twin)
    # Held-out evaluation went through the same damaged link: the same accuracy as the twin's.
    last = jsonl(folder / "epochs.jsonl")[-1]
    graph = import_tflite(digits.pretrained_model(), digits.NAME)
    held = datasets.load_split("digits").held_out
    which = session.subset(held.y, 120)
    xh, yh = session.model_inputs(graph, held.x[which]), held.y[which]
    right = sum(twin.predict(xh[k]) == yh[k] for k in range(len(yh)))
    assert last["held_out_samples"] == 120 and last["held_out_correct"] == right


def refused(fn, code: int, *words: str) -> str:
    with pytest.raises(BoardRefused) as e:
        fn()
    assert e.value.code == code, str(e.value)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    return str(e.value)


def test_bad_input_is_refused_clearly_and_changes_nothing(
    run_dir: Path, board_emu: emulator.Emulator, ct: CompiledTraining, samples
) -> None:
    x, y = samples
    twin = Trainer(ct)
    with Link.open(board_emu.url) as link:
        bt = BoardTraining(link)
        assert (bt.config["sample_size"], bt.config["classes"]) == (64, 10)
        assert bt.config["chunk_max"] == link.board["max_payload"] - layout("SAMPLE").size
        kept = [bt.train(k, x[k], int(y[k]), 1) for k in range(3)]
        for k in range(3):
            assert (kept[k].loss, kept[k].prediction) == twin.step(x[k], int(y[k]))
        before = bt.status()
        ins, outs = io_tensors(ct.compiled.blob)
        reader = Trainer(ct, BoardModel(link, tensor_table(ct.compiled.blob), ins, outs))
        state = reader.state()

        def sample(sid: int, offset: int, data: bytes, label: int = 0) -> None:
            head = layout("SAMPLE").pack(sample_id=sid, offset=offset, label=label)
            link.request(Msg.SAMPLE, head + data)

        good = x[3].tobytes()
        refusals = [
            refused(lambda: sample(3, 0, good + b"\0"), Err.SAMPLE_SIZE, "a sample is 64 bytes", "65 bytes"),
            refused(lambda: sample(3, 0, good, 10), Err.BAD_LABEL, "label 10 is out of range", "10 classes"),
            refused(lambda: sample(3, 0, good, 0xFFFF), Err.BAD_LABEL, "out of range"),
            refused(lambda: bt.replay(3), Err.NO_SAMPLE, "TRAIN 3 before its SAMPLE", "no sample is loaded"),
            refused(lambda: bt.replay(5), Err.OUT_OF_ORDER, "skips ahead", "next sample id is 3"),
            refused(lambda: link.request(Msg.EVAL, b"\0\0\0\0"), Err.NO_SAMPLE, "EVAL 0 before its SAMPLE"),
            refused(lambda: link.request(Msg.PREDICT, b"\0\0\0\0"), Err.NO_SAMPLE, "PREDICT 0"),
            refused(
                lambda: link.request(Msg.TRAIN, b"\3\0"), Err.BAD_LENGTH, "TRAIN payload must be 12 bytes"
            ),
            *(
                refused(lambda v=v: bt.replay(3, lr_scale=v), Err.BAD_ARGUMENT, "lr_scale must be a number")
                for v in (float("nan"), float("inf"), -0.5, 1e6)
            ),
            refused(lambda: sample(3, 8, good[8:]), Err.SAMPLE_SIZE, "has no chunk at offset 0"),
        ]
        # A wrong-sized sample: 63 bytes arrive, then TRAIN; a gap; a skipped-over id.
        sample(3, 0, good[:63], int(y[3]))
        refusals += [
            refused(lambda: bt.replay(3), Err.NO_SAMPLE, "incomplete, 63 of 64 bytes"),
            refused(lambda: sample(3, 32, good[32:]), Err.SAMPLE_SIZE, "the next chunk starts at 63"),
            refused(lambda: sample(3, 63, good[63:], int(y[3]) ^ 1), Err.BAD_LABEL, "its first chunk said"),
        ]
        sample(4, 0, x[4].tobytes(), int(y[4]))  # a complete sample of another id
        refusals.append(refused(lambda: bt.replay(3), Err.NO_SAMPLE, "the loaded sample is 4"))
        refusals.append(refused(lambda: bt.replay(4), Err.OUT_OF_ORDER, "TRAIN 4 skips ahead"))
        # A generic TENSOR_WRITE writes the arena the loaded sample lives in: the sample is dropped.
        sample(3, 0, good, int(y[3]))
        link.request(Msg.TENSOR_WRITE, layout("TENSOR_WRITE").pack(io=0, index=0, offset=0) + bytes(64))
        refusals.append(refused(lambda: bt.replay(3), Err.NO_SAMPLE, "no sample is loaded"))
        with pytest.raises(ToolError, match=r"a sample is 64 bytes \(int8 \[1, 8, 8, 1\]\).*this one is 128"):
            bt.load(3, np.zeros(128, np.int8))  # refused by the host, before anything is sent

        after = bt.status()
        assert after["refused"] == before["refused"] + len(refusals)
        for k in ("samples_trained", "last_id", "state_crc", "replays", "evals", "predicts"):
            assert after[k] == before[k], k
        assert_same_state(reader.state(), state)
        assert after["state_crc"] == state_crc(twin)

        # An id already trained: its kept result, nothing trained (also with another sample loaded).
        again = bt.replay(1)
        assert again.replayed and (again.loss, again.prediction, again.cost) == (
            kept[1].loss,
            kept[1].prediction,
            kept[1].cost,
        )
        assert bt.status()["state_crc"] == before["state_crc"]
        # And training goes on exactly where it was, in step with the twin, with the schedule's
        # factor applied alike (0.37: a factor that is not a power of two).
        r = bt.train(3, x[3], int(y[3]), 1, lr_scale=0.37)
        assert (r.loss, r.prediction, r.samples_trained) == (*twin.step(x[3], int(y[3]), 0.37), 4)
        assert r.lr_scale == np.float32(0.37)
        assert_same_state(reader.state(), twin.state())
        # A factor of 0 moves no weight nor bias (the sample is counted, and the stochastic
        # rounding generator, part of the state, still draws its numbers).
        held = reader.state()
        assert bt.train(4, x[4], int(y[4]), 1, lr_scale=0.0).samples_trained == 5
        twin.step(x[4], int(y[4]), 0.0)
        now = reader.state()
        moved = [k for k in held if held[k].tobytes() != now[k].tobytes()]
        assert moved and all(held[k].dtype == np.uint32 for k in moved), moved  # the generator alone
        assert bt.status()["state_crc"] == state_crc(twin)
        e = bt.evaluate(77, x[9], int(y[9]))
        p = bt.predict(78, x[9])
        assert (e.kind, p.kind) == ("eval", "predict") and e.prediction == p.prediction == twin.predict(x[9])
        assert bt.status()["samples_trained"] == 5 and bt.status()["state_crc"] == state_crc(twin)


def test_results_older_than_the_kept_window_are_refused_not_retrained(
    run_dir: Path, board_emu: emulator.Emulator, ct: CompiledTraining, samples
) -> None:
    x, y = samples
    with Link.open(board_emu.url) as link:
        bt = BoardTraining(link)
        kept = bt.config["results_kept"]
        for k in range(kept + 2):
            bt.train(k, x[k], int(y[k]))
        crc = bt.status()["state_crc"]
    with Link.open(board_emu.url) as link:  # a new host process: HELLO does not reset the count
        bt = BoardTraining(link)
        assert bt.status()["samples_trained"] == kept + 2
        assert bt.replay(2).replayed
        refused(lambda: bt.replay(1), Err.RESULT_GONE, "sample 1 was trained already", "no longer kept")
        assert bt.status()["state_crc"] == crc


def test_a_firmware_without_a_training_plan_refuses_training_messages(link: Link) -> None:
    refused(lambda: link.request(Msg.TRAIN_CONFIG), Err.BAD_STATE, "no usable model")
    refused(lambda: link.request(Msg.TRAIN, bytes(12)), Err.BAD_STATE, "no usable model")


def test_invoke_monitor_follows_a_running_session_live(
    run_dir: Path, board_emu: emulator.Emulator, tmp_path: Path
) -> None:
    """`invoke monitor --session` tails the folder a training process writes, while it runs."""
    from pytools.console import follow_session

    limit, epochs = 60, 2
    folder = tmp_path / "s"
    code = (
        "import sys; from pathlib import Path; from pytools.session import run_training_session; "
        f"run_training_session('{BOARD}', epochs={epochs}, limit={limit}, seed=1, held_out=60, "
        "out_dir=Path(sys.argv[1]))"
    )
    env = {**os.environ, "TINYTRAIN_RUN_DIR": str(run_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    shown: list[tuple[float, str]] = []
    try:
        follow_session(
            folder, seconds=180, interval=0.1, out=lambda line: shown.append((time.monotonic(), line))
        )
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [line for _, line in shown]
    steps = jsonl(folder / "steps.jsonl")
    epochs_rows = jsonl(folder / "epochs.jsonl")
    status = [line for line in lines if " step " in line and "board trained" in line]
    trained = [int(line.rsplit("board trained ", 1)[1]) for line in status]
    # Live: several views while the steps came in, each further on than the last.
    assert len(status) >= 3 and trained == sorted(set(trained)), trained
    assert trained[-1] == limit * epochs
    last = steps[-1]
    mine = [s for s in steps if s["epoch"] == epochs]
    acc = sum(s["prediction"] == s["label"] for s in mine) / len(mine)
    assert f"epoch {epochs}/{epochs} step {limit}/{limit}: loss {last['loss']:.3f}" in status[-1]
    assert f"epoch accuracy {acc:.3f}" in status[-1]
    assert f"lr {0.01 * last['lr_scale']:.3g}," in status[-1]  # the session's lr, as the schedule has it now
    assert f"stack high-water {max(s['stack_high_water'] for s in steps):,} B" in status[-1]
    rate = float(status[-1].split(" samples/s")[0].rsplit(", ", 1)[1])
    assert rate > 0
    # The firmware's own log lines (it logs every 100 trained samples), and each epoch's result.
    assert any("trained 100 samples (epoch 2)" in line for line in lines)
    for e in epochs_rows:
        want = f"epoch {e['epoch']} done: held-out accuracy {e['held_out_accuracy']:.3f}"
        assert any(want in line for line in lines), want
    assert lines[-1].startswith("session ended:") and lines[-1].endswith("completed")


def test_the_trainer_drives_a_board_with_the_training_messages(
    run_dir: Path, board_emu: emulator.Emulator, ct: CompiledTraining, samples
) -> None:
    x, y = samples
    twin = Trainer(ct)
    with Link.open(board_emu.url) as link:
        board = Trainer(ct, BoardTraining(link))
        for k in range(12):
            assert board.step(x[k], int(y[k])) == twin.step(x[k], int(y[k])), k
        assert_same_state(board.state(), twin.state())
        assert [board.predict(x[k]) for k in range(20, 30)] == [twin.predict(x[k]) for k in range(20, 30)]
        assert board.backend.status()["samples_trained"] == 12


def test_a_killed_host_that_started_its_own_emulator_resumes_on_it(
    run_dir: Path, ct: CompiledTraining, samples, tmp_path: Path
) -> None:
    """The killed process had started the emulator itself (nothing was running): the emulator
    outlives it, the resumed session carries on there and stops it at the end."""
    limit, epochs = 30, 2
    folder = tmp_path / "s"
    try:
        logged = session_killed_after(folder, run_dir, limit, epochs, 4, 10)
        name = json.loads((folder / "config.json").read_text())["board"]["emulator"]["name"]
        assert name.startswith("session-") and emulator.find(name) is not None
        session.run_training_session(BOARD, resume=True, out_dir=folder)
        assert emulator.find(name) is None, "the resumed session did not stop the emulator it took over"
    finally:
        for state in run_dir.glob("*.json"):
            emulator.stop(state.stem)
    steps = jsonl(folder / "steps.jsonl")
    assert len(steps) == limit * epochs and not any(s["replayed"] for s in steps[:logged])
    twin = check_session_against_twin(folder, ct, samples, limit * epochs)
    summary = (folder / "summary.txt").read_text()
    assert "completed" in summary and f"state CRC-32 0x{state_crc(twin):08x}" in summary
    assert f"board: {limit * epochs:,} samples trained (" in summary
    # The session stopped its emulator at the end and kept its flash: a resume starts the board
    # again from that flash, which holds the final state and count, and trains nothing.
    session.run_training_session(BOARD, resume=True, out_dir=folder)
    assert emulator.find(name) is None
    assert len(jsonl(folder / "steps.jsonl")) == limit * epochs
    assert f"state CRC-32 0x{state_crc(twin):08x}" in (folder / "summary.txt").read_text()
    # Without that flash nothing is left to resume from.
    (folder / session.BOARD_FLASH).unlink()
    with pytest.raises(ToolError, match=r"is not running any more, and neither its flash file"):
        session.run_training_session(BOARD, resume=True, out_dir=folder)


def test_the_count_is_saved_with_the_state_and_an_older_slot_restores_without_it(
    run_dir: Path, board_emu: emulator.Emulator, ct: CompiledTraining, samples
) -> None:
    """SAVE keeps the board's count of trained samples (and the last epoch) with the state: after
    a reset, sample ids carry on from the saved state. A slot written by the firmware before
    that (format 1) is restored without a count: ids start at 0 again, and the boot log says so."""
    x, y = samples
    twin = Trainer(ct)
    with Link.open(board_emu.url) as link:
        bt = BoardTraining(link)
        for k in range(5):
            r = bt.train(k, x[k], int(y[k]), 2)
            assert (r.loss, r.prediction) == twin.step(x[k], int(y[k]))
        saved_crc = bt.status()["state_crc"]
        assert saved_crc == state_crc(twin)
        assert persist.save(link)["sequence"] == 1
        for k in range(5, 7):
            bt.train(k, x[k], int(y[k]), 2)
        log = persist.reset(link)  # the two steps after the save are lost
        assert any("from slot 0, sequence 1; 5 samples trained, epoch 2" in t for t in log), log
        st = bt.status()
        assert (st["samples_trained"], st["last_id"], st["last_epoch"]) == (5, 4, 2)
        assert st["state_crc"] == saved_crc
        # Samples before the reset are not trained again, and their results are gone with it
        # (a zeroed result slot must not pass for sample 0's).
        refused(lambda: bt.replay(4), Err.RESULT_GONE, "trained before the last reset", "holds 5 samples")
        refused(lambda: bt.replay(0), Err.RESULT_GONE, "trained before the last reset")
        refused(lambda: bt.replay(6), Err.OUT_OF_ORDER, "next sample id is 5")
        assert bt.status()["state_crc"] == saved_crc
        # Training carries on from the saved state, in step with the twin.
        r = bt.train(5, x[5], int(y[5]), 2)
        assert (r.loss, r.prediction, r.samples_trained) == (*twin.step(x[5], int(y[5])), 6)
        assert bt.status()["state_crc"] == state_crc(twin)

    # The same slot as the older firmware wrote it: format 1, nothing at offset 12, bytes 36..63
    # erased, the header CRC over bytes 0..27.
    emulator.stop(BOARD)
    board = load_board(BOARD)
    at = persist_region(board).slots[0] - board.qemu["persist_backend_base"]
    with open(emulator.flash_file(BOARD), "r+b") as f:
        f.seek(at)
        h = bytearray(f.read(64))
        assert int.from_bytes(h[4:6], "little") == 2 and int.from_bytes(h[12:16], "little") == 5
        h[4:6] = (1).to_bytes(2, "little")
        h[12:16] = bytes(4)
        h[36:64] = b"\xff" * 28
        h[28:32] = zlib.crc32(bytes(h[:28])).to_bytes(4, "little")
        f.seek(at)
        f.write(h)
    emu = emulator.start(board, ct.image.elf)
    with Link.open(emu.url) as link:
        text = [e["text"] for e in link.logs]
        assert any("from slot 0, sequence 1; format 1: no sample count, ids start at 0" in t for t in text), (
            text
        )
        st = BoardTraining(link).status()
        assert (st["samples_trained"], st["state_crc"]) == (0, saved_crc)


def test_a_board_reset_after_a_checkpoint_rolls_the_session_back_and_trains_those_steps_again(
    run_dir: Path, board_emu: emulator.Emulator, ct: CompiledTraining, samples, tmp_path: Path
) -> None:
    """The host is killed in epoch 2, and the board reset: it comes back with the checkpoint of
    epoch 1's end. The resume moves the lost steps' lines to rolled_back.jsonl, trains them
    again, and the board ends with the twin's state, every sample trained once."""
    limit, epochs = 30, 2
    folder = tmp_path / "s"
    logged = session_killed_after(folder, run_dir, limit, epochs, 6, 40)  # checkpoints: epoch ends
    before = session.read_jsonl(folder / "steps.jsonl")
    saved = [c for c in jsonl(folder / session.CHECKPOINTS) if c["status"] == "saved"]
    assert [(c["samples_trained"], c["epoch"]) for c in saved] == [(limit, 1)]
    with Link.open(board_emu.url) as link:
        log = persist.reset(link)
        assert any(f"; {limit} samples trained, epoch 1" in t for t in log), log
        st = BoardTraining(link).status()
        assert (st["samples_trained"], st["state_crc"]) == (limit, saved[0]["state_crc"])

    session.run_training_session(BOARD, resume=True, out_dir=folder)
    (resume,) = jsonl(folder / "resumes.jsonl")
    assert resume["rolled_back"] == {
        "to_samples_trained": limit,
        "to": "checkpoint",
        "steps": logged - limit,
        "epochs": [],  # epoch 1's held-out row was taken on the checkpoint's state: it stays
        "checkpoints": 0,
    }
    moved = [r for r in jsonl(folder / session.ROLLED_BACK) if r["file"] == "steps.jsonl"]
    assert [r["row"] for r in moved] == before[limit:]  # the lost lines, kept
    steps = jsonl(folder / "steps.jsonl")
    assert len(steps) == limit * epochs and "completed" in (folder / "summary.txt").read_text()
    # Trained again: the same sample ids, lr factors, losses and predictions as the lost lines.
    keys = ("sample_id", "sample", "lr_scale", "loss", "prediction")
    assert [[s[k] for k in keys] for s in steps[limit:logged]] == [
        [b[k] for k in keys] for b in before[limit:]
    ]
    assert not any(s["replayed"] for s in steps)
    twin = check_session_against_twin(folder, ct, samples, limit * epochs)
    state, status = board_state(board_emu.url, ct)
    assert_same_state(state, twin.state())
    assert status["samples_trained"] == limit * epochs and status["state_crc"] == state_crc(twin)
    final = [c for c in jsonl(folder / session.CHECKPOINTS) if c["status"] == "saved"]
    assert [c["samples_trained"] for c in final] == [limit, 2 * limit]
    assert final[-1]["state_crc"] == state_crc(twin)

    # A board that runs another plan than the one the session trained is refused.
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config["plan"]["crc32"] ^= 1
    path.write_text(json.dumps(config))
    with pytest.raises(ToolError, match=r"the board runs plan CRC-32 0x[0-9a-f]{8}, the session trained"):
        session.run_training_session(BOARD, resume=True, out_dir=folder)


def test_a_power_cut_loses_only_the_steps_since_the_last_checkpoint(
    run_dir: Path, ct: CompiledTraining, samples, tmp_path: Path
) -> None:
    """The session's own emulated board loses power mid-epoch (QEMU killed): the host fails and
    keeps the board's flash in the session folder; the resume starts the board again from it,
    where it stands at the last checkpoint (every 7 steps), and trains the rest again."""
    limit, epochs, every = 30, 2, 7
    folder = tmp_path / "s"
    try:
        logged = session_killed_after(folder, run_dir, limit, epochs, 8, 24, save_every=every, kill="board")
        assert "failed" in (folder / "summary.txt").read_text()
        assert (folder / session.BOARD_FLASH).is_file()
        saved = [c["samples_trained"] for c in jsonl(folder / session.CHECKPOINTS) if c["status"] == "saved"]
        assert saved == list(range(every, every * len(saved) + 1, every)) and len(saved) >= 3
        name = json.loads((folder / "config.json").read_text())["board"]["emulator"]["name"]
        assert emulator.find(name) is None
        session.run_training_session(BOARD, resume=True, out_dir=folder)
        assert emulator.find(name) is None, "the resumed session did not stop the emulator it started"
    finally:
        for state in run_dir.glob("*.json"):
            emulator.stop(state.stem)
    (resume,) = jsonl(folder / "resumes.jsonl")
    back = resume["board"]["samples_trained"]
    assert back == saved[-1] < logged
    assert resume["rolled_back"]["to_samples_trained"] == back
    assert resume["rolled_back"]["steps"] == logged - back
    assert any(
        f"{back} samples trained, epoch 1" in line for line in (folder / "board.log").read_text().splitlines()
    )
    steps = jsonl(folder / "steps.jsonl")
    assert len(steps) == limit * epochs
    twin = check_session_against_twin(folder, ct, samples, limit * epochs)
    summary = (folder / "summary.txt").read_text()
    assert "completed" in summary and f"state CRC-32 0x{state_crc(twin):08x}" in summary
    assert f"{limit * epochs:,} samples trained) to slot" in summary  # the final save
