"""`invoke fleet` (pytools/fleet): FedAvg of the trained int8/int32 slice, held to a float
reference; the data partitions; STATE_LOAD refusals on the twin and on the emulated board; a
small fleet on Flower's deployment runtime on the host twin, with a client killed mid-round; and
(slow) a fleet of emulated boards end to end."""

from __future__ import annotations

import json
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pytools.errors import ToolError
from pytools.fleet import partition as partitions
from pytools.fleet.aggregate import SliceTensor, fedavg, real_values, round_mean, stochastic_u32
from pytools.fleet.state import StateRefused, load_to_board, load_to_twin, state_blob

# ---------------------------------------------------------------- FedAvg against a float reference


def _plan(rng: np.random.Generator) -> list[SliceTensor]:
    return [
        SliceTensor("w", "weights", "int8", (6, 3, 2), rng.uniform(1e-3, 5e-2, (6, 1, 1))),
        SliceTensor("dw", "weights", "int8", (1, 3, 3, 4), rng.uniform(1e-3, 5e-2, (1, 1, 1, 4))),
        SliceTensor("b", "bias", "int32", (6,), rng.uniform(1e-6, 1e-4, (6,))),
        SliceTensor("rng", "local", "uint32", (1,), None),
    ]


def _states(plan: list[SliceTensor], rng: np.random.Generator, k: int) -> list[dict[str, np.ndarray]]:
    out = []
    for _ in range(k):
        st = {}
        for t in plan:
            if t.dtype == "int8":
                st[t.name] = rng.integers(-127, 128, t.shape).astype(np.int8)
            elif t.dtype == "int32":
                st[t.name] = rng.integers(-(2**31), 2**31, t.shape, dtype=np.int64).astype(np.int32)
            else:
                st[t.name] = rng.integers(0, 2**32, t.shape, dtype=np.uint64).astype(np.uint32)
        out.append(st)
    return out


def _float_reference(t: SliceTensor, states: list[dict], counts: list[int]) -> np.ndarray:
    """Dequantize with the tensor's scales, average weighted by samples (float64), requantize."""
    real = sum(n * real_values(t, s[t.name]) for s, n in zip(states, counts, strict=True)) / sum(counts)
    return real / t.scale


def test_fedavg_nearest_is_the_float_reference_rounded_half_to_even() -> None:
    rng = np.random.default_rng(1)
    plan = _plan(rng)
    states, counts = _states(plan, rng, 4), [215, 164, 1, 90]
    avg = fedavg(plan, states, counts, "nearest")
    assert "rng" not in avg  # each board keeps its own random-number state
    for t in plan[:3]:
        ref = _float_reference(t, states, counts)
        exact = [
            Fraction(
                int(sum(int(s[t.name].flat[i]) * n for s, n in zip(states, counts, strict=True))), 379 + 91
            )
            for i in range(int(np.prod(t.shape)))
        ]
        got = avg[t.name]
        assert got.dtype == np.dtype(t.dtype) and got.shape == t.shape
        for i, e in enumerate(exact):
            fl, frac = e.numerator // e.denominator, e - e.numerator // e.denominator
            want = fl + (frac > Fraction(1, 2) or (frac == Fraction(1, 2) and fl % 2 == 1))
            assert int(got.flat[i]) == want, (t.name, i, e)
            if abs(frac - Fraction(1, 2)) > Fraction(1, 10**6):  # away from ties: the float reference
                assert int(got.flat[i]) == int(np.rint(ref.flat[i])), (t.name, i)


def test_fedavg_ties_and_exact_means() -> None:
    t = SliceTensor("w", "weights", "int8", (4,), np.full((4,), 0.02))
    a = {"w": np.array([0, 1, -1, -2], np.int8)}
    b = {"w": np.array([1, 2, 0, -1], np.int8)}
    # Means 0.5, 1.5, -0.5, -1.5: half to even.
    assert fedavg([t], [a, b], [1, 1], "nearest")["w"].tolist() == [0, 2, 0, -2]
    # Weighted 3:1 -> 0.25, 1.25, -0.75, -1.75 (nearest: 0, 1, -1, -2).
    assert fedavg([t], [a, b], [3, 1], "nearest")["w"].tolist() == [0, 1, -1, -2]
    # A client with no samples weighs nothing; identical states average to themselves.
    assert fedavg([t], [a, b], [5, 0], "stochastic")["w"].tolist() == [0, 1, -1, -2]
    assert fedavg([t], [b, b, b], [2, 7, 1], "stochastic")["w"].tolist() == [1, 2, 0, -1]
    # Extremes of the int32 bias range stay in range (a mean is a convex combination).
    tb = SliceTensor("b", "bias", "int32", (2,), np.full((2,), 1e-5))
    lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    got = fedavg(
        [tb],
        [{"b": np.array([lo, hi], np.int32)}, {"b": np.array([lo, hi - 1], np.int32)}],
        [1, 1],
        "nearest",
    )
    assert got["b"].tolist() == [lo, hi - 1]  # hi - 0.5 -> even


def test_fedavg_stochastic_rounding_is_the_hash_reference_unbiased_and_order_free() -> None:
    rng = np.random.default_rng(2)
    plan = _plan(rng)
    states, counts = _states(plan, rng, 3), [10, 20, 7]
    avg = fedavg(plan, states, counts, "stochastic", seed=5, rnd=3)
    for i, t in enumerate(plan[:3]):
        h = stochastic_u32(5, 3, i, int(np.prod(t.shape)))
        for j in range(int(np.prod(t.shape))):
            e = Fraction(sum(int(s[t.name].flat[j]) * n for s, n in zip(states, counts, strict=True)), 37)
            fl = e.numerator // e.denominator
            want = fl + (e - fl > Fraction(int(h[j]), 2**32))
            assert int(avg[t.name].flat[j]) == want
    # The clients' order does not matter (it is the order their replies came in).
    perm = [2, 0, 1]
    again = fedavg(plan, [states[k] for k in perm], [counts[k] for k in perm], "stochastic", seed=5, rnd=3)
    assert all(np.array_equal(avg[k], again[k]) for k in avg)
    # Unbiased: a quarter step rounds up about a quarter of the time (nearest would drop it).
    num = np.ones(200_000, dtype=np.int64)
    up = round_mean(num, 4, "stochastic", seed=9, rnd=1, tensor=0)
    assert set(np.unique(up).tolist()) == {0, 1}
    assert abs(up.mean() - 0.25) < 0.005
    assert round_mean(num, 4, "nearest").max() == 0


def test_fedavg_refuses_what_is_not_the_plans_slice() -> None:
    t = SliceTensor("w", "weights", "int8", (2,), np.full((2,), 0.1))
    with pytest.raises(ToolError, match="no tensor 'w'"):
        fedavg([t], [{"x": np.zeros(2, np.int8)}], [1])
    with pytest.raises(ToolError, match=r"int32\[2\], the plan's int8\[2\]"):
        fedavg([t], [{"w": np.zeros(2, np.int32)}], [1])
    with pytest.raises(ToolError, match="positive sum"):
        fedavg([t], [{"w": np.zeros(2, np.int8)}], [0])
    with pytest.raises(ToolError, match="unknown rounding"):
        fedavg([t], [{"w": np.zeros(2, np.int8)}], [1], "up")


# ---------------------------------------------------------------- partitions


def test_dirichlet_partition_deals_every_sample_once_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    y_t, y_h = rng.integers(0, 6, 600), rng.integers(0, 6, 300)
    part = partitions.parse("dirichlet:0.3", "fashion_mnist", None)
    a = partitions.deal(y_t, y_h, 4, part, seed=3)
    b = partitions.deal(y_t, y_h, 4, part, seed=3)
    assert all(np.array_equal(x[0], z[0]) and np.array_equal(x[1], z[1]) for x, z in zip(a, b, strict=True))
    for j, y in enumerate((y_t, y_h)):
        dealt = np.sort(np.concatenate([c[j] for c in a]))
        assert np.array_equal(dealt, np.arange(len(y)))
    # Non-IID: with alpha 0.3 the clients' label mixes differ a lot.
    mixes = np.array([np.bincount(y_t[c[0]], minlength=6) / len(c[0]) for c in a])
    assert np.abs(mixes - mixes.mean(axis=0)).max() > 0.2
    c = partitions.deal(y_t, y_h, 4, part, seed=4)
    assert not all(np.array_equal(x[0], z[0]) for x, z in zip(a, c, strict=True))


def test_partition_options() -> None:
    assert str(partitions.parse("", "hapt", None)) == "users"
    assert str(partitions.parse("", "fashion_mnist", None)) == "dirichlet:0.5"
    assert partitions.user_split(3, 4) == "user24"
    with pytest.raises(ToolError, match="no users"):
        partitions.parse("users", "digits", None)
    with pytest.raises(ToolError, match="ALPHA must be a number > 0"):
        partitions.parse("dirichlet:-1", "digits", None)
    with pytest.raises(ToolError, match="users 21-30"):
        partitions.user_split(0, 11)


# ---------------------------------------------------------------- STATE_LOAD refusals


@pytest.fixture(scope="module")
def hapt_step():
    from pytools.boards import load_board
    from pytools.session import prepare

    return prepare(
        load_board("mps2_an500"),
        "hapt",
        "hapt_cnn1d-hapt-64KB",
        0.01,
        "user21",
        None,
        8,
        12,
        0,
        "constant",
        link=False,
    )


def test_the_twin_refuses_another_plans_state_and_a_corrupted_one(hapt_step) -> None:
    from pytools.fleet.aggregate import slice_layout
    from pytools.session import TwinTraining

    twin = TwinTraining(hapt_step.ct)
    plan = slice_layout(hapt_step.ct)
    before = twin.state_crc()
    state = twin.trainer.state()
    blob = state_blob(plan, state)
    crc = twin.config["plan_crc"]
    with pytest.raises(StateRefused, match="STATE_MISMATCH"):
        load_to_twin(twin, plan, crc ^ 1, blob)
    with pytest.raises(StateRefused, match="STATE_MISMATCH"):
        load_to_twin(twin, plan, crc, blob[:-4])
    with pytest.raises(StateRefused, match="CRC-32"):
        load_to_twin(twin, plan, crc, blob, claimed_crc=zlib.crc32(blob) ^ 0xFF)
    assert twin.state_crc() == before  # nothing was written
    changed = {k: v.copy() for k, v in state.items()}
    first = next(t.name for t in plan if t.kind == "bias")
    changed[first][0] += 1
    load_to_twin(twin, plan, crc, state_blob(plan, changed))
    assert twin.state_crc() == zlib.crc32(state_blob(plan, changed)) != before


@pytest.mark.emulator
def test_the_board_refuses_a_mismatched_or_corrupted_state_and_trains_on_none(run_dir, hapt_step) -> None:
    from pytools import emulator
    from pytools.boards import load_board
    from pytools.connect import open_link
    from pytools.fleet.aggregate import slice_layout
    from pytools.link.client import BoardRefused
    from pytools.model.board_runner import BoardModel, BoardTraining
    from pytools.model.host_twin import io_tensors, tensor_table
    from pytools.session import prepare
    from pytools.train.trainer import Trainer

    board = load_board("mps2_an500")
    inp = prepare(
        board, "hapt", "hapt_cnn1d-hapt-64KB", 0.01, "user21", None, 8, 12, 0, "constant", link=True
    )
    emu = emulator.start(board, inp.ct.image.elf, name="test-fleet-state-load")
    try:
        with open_link(board, emu.url) as link:
            training = BoardTraining(link)
            blob_ct = inp.ct.compiled.blob
            ins, outs = io_tensors(blob_ct)
            trainer = Trainer(inp.ct, BoardModel(link, tensor_table(blob_ct), ins, outs))
            plan = slice_layout(inp.ct)
            state = trainer.state()
            plan_crc = training.config["plan_crc"]
            before = training.status()["state_crc"]
            blob = state_blob(plan, state)
            # Another plan's state, or another size: refused before a byte is written.
            with pytest.raises(StateRefused, match=r"this board runs plan .*nothing written.*STATE_MISMATCH"):
                load_to_board(link, plan_crc ^ 0x1000, blob)
            with pytest.raises(StateRefused, match="STATE_MISMATCH"):
                load_to_board(link, plan_crc, blob + b"\0\0\0\0")
            assert training.status()["state_crc"] == before
            # Bytes that are not the ones claimed: refused after the last chunk, and the board
            # then trains on nothing and saves nothing until a good load.
            changed = {k: v.copy() for k, v in state.items()}
            first = next(t.name for t in plan if t.kind == "bias")
            changed[first][0] += 7
            good = state_blob(plan, changed)
            with pytest.raises(StateRefused, match=r"CRC-32.*STATE_MISMATCH"):
                load_to_board(link, plan_crc, good, claimed_crc=zlib.crc32(blob))
            with pytest.raises(BoardRefused, match=r"TRAIN.*STATE_LOAD.*BAD_STATE"):
                training.train(training.status()["samples_trained"], inp.x_train[0], int(inp.y_train[0]))
            from pytools import persist

            with pytest.raises(BoardRefused, match=r"SAVE.*BAD_STATE"):
                persist.save(link)
            # A good load: accepted, read back byte for byte, and training goes on.
            load_to_board(link, plan_crc, good)
            assert training.status()["state_crc"] == zlib.crc32(good)
            assert state_blob(plan, trainer.state()) == good
            n = training.status()["samples_trained"]
            r = training.train(n, inp.x_train[0], int(inp.y_train[0]))
            assert r.samples_trained == n + 1
    finally:
        emulator.stop("test-fleet-state-load")


# ---------------------------------------------------------------- fleets on Flower


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "rounds.jsonl").read_text().splitlines()]


@pytest.mark.timeout(900)
def test_a_twin_fleet_on_flower_survives_a_client_killed_mid_round(tmp_path) -> None:
    from pytools.fleet.runtime import run_fleet

    folder = run_fleet(
        "host",
        "hapt",
        None,
        boards=2,
        rounds=3,
        held_out=24,
        min_clients=1,
        out=tmp_path / "fleet",
        fault=(1, 2, "exit"),
    )
    res = json.loads((folder / "results.json").read_text())
    rounds = res["rounds"]
    # Round 2 went on without client 1 (its process died halfway through its samples); it came
    # back for round 3 with its board's state and the round's global slice.
    assert [r["clients_trained"] for r in rounds] == [[0, 1], [0], [0, 1]]
    assert len(rounds[1]["failures"]) == 1 and not rounds[0]["failures"] and not rounds[2]["failures"]
    assert all(r["all_trained_once"] for r in rounds)
    rows = _rows(folder)
    train = [r for r in rows if r["phase"] == "train" and "error" not in r]
    assert {r["num-examples"] for r in train if r["client"] == 0} == {215}
    assert all(r["bytes-sent"] == res["slice_bytes"] < res["model_bytes"] for r in train)
    # Every client loaded the round's global state (the server's initial slice in round 1).
    assert len({r["loaded-crc"] for r in train if r["round"] == 1}) == 1
    assert 0 <= res["final_global_accuracy"] <= 1 and res["personalised_accuracy"] is not None
    for f in ("accuracy.png", "bytes.png", "summary.txt", "global_slice.npz"):
        assert (folder / f).is_file()
    # The global slice the server kept is what the clients were sent last: a round's evaluate
    # loaded it (its CRC is the state CRC in the clients' round-3 global folders).
    assert (folder / "client-1" / "fault-in-round-2").exists()


@pytest.mark.emulator
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_board_reset_mid_round_does_not_stall_the_fleet_and_the_client_rejoins_at_its_checkpoint(
    tmp_path,
) -> None:
    """Client 1's board is reset halfway through round 2 (RESET: it reboots at its last
    checkpoint, the end of round 1); the board refuses the next sample, the client's round fails
    with the board's words, round 2 goes on with client 0. In round 3 client 1 trains again from
    its board's checkpoint: the samples of round 2 it had trained were lost with the reset."""
    from pytools.fleet.runtime import run_fleet

    n = 16
    folder = run_fleet(
        "mps2_an500",
        "hapt",
        None,
        boards=2,
        rounds=3,
        limit=n,
        held_out=12,
        min_clients=1,
        round_timeout=600,
        out=tmp_path / "fleet",
        fault=(1, 2, "reset"),
    )
    res = json.loads((folder / "results.json").read_text())
    rounds = res["rounds"]
    assert [r["clients_trained"] for r in rounds] == [[0, 1], [0], [0, 1]]
    (failure,) = rounds[1]["failures"]
    assert "TRAIN" in failure and "refused" in failure, failure
    assert all(r["all_trained_once"] for r in rounds) and not rounds[0]["failures"] + rounds[2]["failures"]
    train = {
        (r["client"], r["round"]): r for r in _rows(folder) if r["phase"] == "train" and "error" not in r
    }
    # Client 0 trained n samples a round: its board's ids run on. Client 1's board came back at
    # its round-1 checkpoint (n samples, the state CRC saved then), not at n + n/2.
    assert [train[(0, r)]["first-sample-id"] for r in (1, 2, 3)] == [0, n, 2 * n]
    assert train[(1, 3)]["first-sample-id"] == n
    saved = [
        json.loads(x)
        for x in (folder / "client-1" / "round-1" / "checkpoints.jsonl").read_text().splitlines()
    ]
    assert saved[-1]["status"] == "saved" and saved[-1]["samples_trained"] == n
    assert "reset after 8 steps" in (folder / "client-1" / "board.log").read_text()
    # Scored on the twin with each board's state, the board answering the first samples too.
    evals = [r for r in _rows(folder) if r["phase"] == "evaluate" and "error" not in r]
    assert evals and all(r["spot-checked-on-board"] == 3 for r in evals)
    assert all(train[k]["scored-on-twin"] == 1 for k in train)
    assert {r["client"] for r in _rows(folder) if r["phase"] == "personalise" and "error" not in r} == {0, 1}
    for k in (0, 1):  # each board's checkpoint (its flash) is kept with its client
        assert (folder / f"client-{k}" / "board-flash.bin").is_file()


@pytest.mark.emulator
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_issues_fleet_command_four_emulated_boards_three_rounds(tmp_path) -> None:
    """`invoke fleet --boards 4 --dataset hapt --split users --rounds 3`, as the issue gives it:
    HAPT users 21-24 on four emulated boards; every sample trained once per round on its own
    board; the final global and personalised accuracies and the plots in the fleet folder."""
    import subprocess
    import sys
    import time

    from pytools.paths import ROOT

    out = tmp_path / "fleet"
    invoke = [sys.executable, "-m", "invoke"]
    cmd = ["fleet", "--boards", "4", "--dataset", "hapt", "--split", "users", "--rounds", "3"]
    t0 = time.monotonic()
    r = subprocess.run([*invoke, *cmd, "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    sizes = {0: 215, 1: 164, 2: 189, 3: 192}  # users 21-24's fine-tuning windows
    for rnd in res["rounds"]:
        assert rnd["clients_trained"] == [0, 1, 2, 3] and rnd["all_trained_once"], rnd
        assert rnd["samples"] == sum(sizes.values()) and not rnd["failures"]
        assert rnd["global_accuracy"] is not None and len(rnd["global_accuracy_per_client"]) == 4
    train = [x for x in _rows(out) if x["phase"] == "train" and "error" not in x]
    for x in train:  # on its own board: the board's count went up by exactly its samples
        assert x["samples-trained"] - x["first-sample-id"] == x["num-examples"] == sizes[x["client"]]
    assert res["final_global_accuracy"] is not None and res["personalised_accuracy"] is not None
    assert len(res["personalised_accuracy_per_client"]) == 4
    for f in ("accuracy.png", "bytes.png", "summary.txt", "partition.json"):
        assert (out / f).is_file()
    cfg = json.loads((out / "config.json").read_text())
    print(f"invoke fleet (4 boards, 3 rounds): {seconds:.0f} s, Flower {cfg['flower_seconds']} s")
