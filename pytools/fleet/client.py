"""One fleet client: it owns one board, trains a round there on its own samples, and loads the
fleet's global state onto it.

A client is rebuilt from its settings for every Flower message (Flower starts a new ClientApp
process for each message), so nothing it needs lives only in memory, and nothing costly is done
again per message:
- its inputs (the compiled training step, the firmware image, its own samples) are prepared once
  by the orchestrator and kept in client-<k>/inputs.pkl, keyed by the fleet's settings: a
  message loads them (a fraction of a second) instead of loading the data set and compiling the
  plan again (seconds to tens of seconds on a loaded machine);
- an emulated board is a QEMU process named fleet-<fleet id>-<client>: started by the client's
  first message, found again by the next ones, started again from its flash file (the board
  restores its last checkpoint at boot) if it stopped; a real board is on --port;
- on the host twin (--board host) the twin is built again each message and the client's own
  state (the RNG its stochastic rounding uses) is kept in the client folder (own_state.npz).

A training round is a session epoch (pytools.session.Run) in the client's round folder:
each of the client's samples trained once, in a seeded order, on the board's next sample ids
(the board counts them, so ids carry on across rounds), a checkpoint SAVE to flash at its end,
the held-out accuracy of the trained (local) model on the client's own held-out samples. Then
the trained state is read back and its slice returned with the sample count.

Held-out samples are scored on the host twin, which runs the same C as the board and agrees with
it bit for bit: the board's trained state is read back (ARENA_READ, needed anyway for the slice)
and loaded into a twin with STATE_LOAD's checks, and the board itself evaluates the first
SPOT_CHECK held-out samples, whose loss and prediction must be the twin's exactly (else the
round fails, naming the sample). Scoring every held-out sample over an emulator's link cost as
much as training (two passes per round); `--eval-on board` (FleetSettings.eval_on) scores them
all on the board as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pytools import emulator, persist
from pytools.boards import DEFAULT_BOARD, HOST, load_board
from pytools.connect import open_link
from pytools.console import log_line
from pytools.errors import ToolError
from pytools.fleet import partition as partitions
from pytools.fleet.aggregate import SliceTensor, slice_layout
from pytools.fleet.state import StateRefused, load_to_board, load_to_twin, merge, state_blob
from pytools.link.client import Link
from pytools.model.board_runner import BoardModel, BoardTraining
from pytools.model.host_twin import io_tensors, tensor_table
from pytools.session import Inputs, Run, TwinTraining, model_info, plan_mismatches, prepare, subset
from pytools.train.trainer import Trainer

OWN_STATE = "own_state.npz"
INPUTS_CACHE = "inputs.pkl"
SPOT_CHECK = 3  # held-out samples the board scores too: its answers must be the twin's
EVAL_ON = ("twin", "board")
FAULTS = ("exit", "reset")  # fault tests: the client's process exits, or its board resets, mid-round
LINK_TIMEOUT, LINK_RETRIES = 2.0, 40  # seconds per try, tries: about 80 s before a board is given up


@dataclass(frozen=True)
class FleetSettings:
    """What every client and the server agree on (the fleet's config.json "settings")."""

    fleet_id: str
    folder: str
    board: str  # "host" or a board name
    dataset: str
    split: str | None
    partition: str
    boards: int
    scheme: str
    lr: float
    model: str | None
    seed: int
    held_out: int | None
    rounds: int
    rounding: str
    lr_schedule: str = "constant"
    limit: int | None = None  # fine-tuning samples per client per round (None: all of its own)
    eval_on: str = "twin"  # where held-out samples are scored: "twin" (spot-checked) or "board"
    label_column: str | None = None  # a CSV's label column (the user's own data)

    @classmethod
    def load(cls, folder: Path) -> FleetSettings:
        return cls(**json.loads((folder / "config.json").read_text())["settings"])


def client_inputs(s: FleetSettings, client: int, link: bool) -> Inputs:
    """The training step and this client's own samples (and only those): from the client's
    inputs cache when it holds these settings' (the orchestrator fills it before the run),
    else prepared (data loaded, plan compiled and linked) and cached."""
    cache = Path(s.folder) / f"client-{client}" / INPUTS_CACHE
    key = json.dumps([asdict(s), client, link], sort_keys=True)
    if cache.exists():
        # Written by this fleet's own orchestrator or client, in the fleet's own folder.
        with open(cache, "rb") as f:
            got = pickle.load(f)
        inp = got["inputs"]
        if got["key"] == key and (inp.ct.image is None or Path(inp.ct.image.elf).exists()):
            return inp
    inp = _prepare_client(s, client, link)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        pickle.dump({"key": key, "inputs": inp}, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(cache)
    return inp


def _prepare_client(s: FleetSettings, client: int, link: bool) -> Inputs:
    part = partitions.parse(s.partition, s.dataset, s.split)
    board = load_board(DEFAULT_BOARD if s.board == HOST else s.board)
    split = partitions.user_split(client, s.boards) if part.kind == "users" else s.split
    model = Path(s.model) if s.model else None
    # One client at a time: compiling links the firmware in the shared build folder, which the
    # builder does not share between processes (the first links it, the others reuse it).
    with open(Path(s.folder) / "build.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        inp = prepare(
            board,
            s.dataset,
            s.scheme,
            s.lr,
            split,
            model,
            None,
            None,
            s.seed,
            s.lr_schedule,
            link=link,
            label_column=s.label_column,
        )
    if part.kind == "users":
        idx_t, idx_h = np.arange(len(inp.y_train)), np.arange(len(inp.y_held))
    else:
        idx_t, idx_h = partitions.client_share(Path(s.folder), inp, s.boards, part, s.seed)[client]
    if s.limit is not None:  # the first `limit` of its own samples, classes in turn (as a session's)
        idx_t = idx_t[subset(inp.y_train[idx_t], s.limit)]
    if s.held_out is not None:  # the first held_out samples, classes in turn (as a session's)
        idx_h = idx_h[subset(inp.y_held[idx_h], s.held_out)]
    # The data set itself is not kept: the client needs its own samples and the compiled step.
    return replace(
        inp,
        data=None,
        chosen=inp.chosen[idx_t],
        x_train=inp.x_train[idx_t],
        y_train=inp.y_train[idx_t],
        x_held=inp.x_held[idx_h],
        y_held=inp.y_held[idx_h],
    )


class TwinScoredRun(Run):
    """A session epoch on the board whose held-out scoring is done by `scorer` (the client's
    twin, spot-checked against the board) instead of an EVAL per sample over the link."""

    def __init__(self, *args: Any, scorer: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.scorer = scorer
        self.scored_state: dict[str, np.ndarray] | None = None

    def held_out_results(self, epoch: int) -> list[Any]:
        self.scored_state = self.trainer.state()  # ARENA_READ: the trained state, read once
        rs, _ = self.scorer(self.scored_state)
        return rs


class FleetClient:
    """Client `client` of the fleet in `folder`: its board, its samples, its rounds."""

    def __init__(self, folder: Path, client: int, port: str | None = None) -> None:
        self.s = FleetSettings.load(folder)
        self.client, self.port = client, port
        self.folder = folder / f"client-{client}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.on_twin = self.s.board == HOST
        self.inp = client_inputs(self.s, client, link=not self.on_twin)
        self.plan: list[SliceTensor] = slice_layout(self.inp.ct)
        self.link: Link | None = None
        self.twin: TwinTraining | None = None
        self._scoring: TwinTraining | None = None  # the twin that scores a board's held-out samples
        self.log = open(self.folder / "board.log", "a")  # closed by close()
        if self.on_twin:
            self.twin = TwinTraining(self.inp.ct)
            own = self.folder / OWN_STATE
            if own.exists():  # this client's own tensors (its RNG) from its last round
                with np.load(own) as f:
                    for t in self.plan:
                        if t.kind == "local":
                            self.twin.twin.set_tensor(self.twin.trainer.state_ids[t.name], f[t.name])
            self.plan_crc = int(self.twin.config["plan_crc"])
        else:
            self.link = self._board()
            self.training = BoardTraining(self.link)
            self.plan_crc = int(self.training.config["plan_crc"])

    @property
    def emulator_name(self) -> str:
        return f"fleet-{self.s.fleet_id}-{self.client}"

    def _on_log(self, frame: Any, entry: dict[str, Any]) -> None:
        self.log.write(log_line(entry) + "\n")
        self.log.flush()

    def _board(self) -> Link:
        board = load_board(self.s.board)
        ct = self.inp.ct
        assert ct.image is not None
        if board.is_emulated and not self.port:
            emu = emulator.find(self.emulator_name)
            if emu is None:  # first round, or the board stopped: from its flash (its checkpoint)
                emu = emulator.start(board, ct.image.elf, name=self.emulator_name)
                self.log.write(f"started emulated board {self.emulator_name}: pid {emu.pid}\n")
            url = emu.url
        else:
            url = self.port or ""
        # Patient retransmission: a fleet runs several boards (emulators) on one machine, and a
        # starved one may not answer for many seconds; a repeat is never executed twice.
        link = open_link(board, url, on_log=self._on_log, timeout=LINK_TIMEOUT, retries=LINK_RETRIES)
        problems = plan_mismatches(link.board, model_info(link), ct)
        if problems:
            link.close()
            raise ToolError(
                f"client {self.client}'s board does not run the fleet's plan: {'; '.join(problems)}"
            )
        return link

    def close(self) -> None:
        if self.link is not None:
            with contextlib.suppress(Exception):
                self.link.close()
        self.log.close()

    # ------------------------------------------------------------------ state

    def _run(self, where: Path) -> Run:
        where.mkdir(parents=True, exist_ok=True)
        unit = "ns" if self.on_twin else load_board(self.s.board).counter_unit
        first = self.twin.trained if self.twin is not None else self.training.status()["samples_trained"]
        save_every = 0 if self.on_twin else None  # a checkpoint at the round's end (no flash on the twin)
        args = (where, self.inp, self.link, unit, first, self.s.lr_schedule, 1, save_every)
        if self.twin is None:
            return TwinScoredRun(*args, scorer=self.score_results)
        return Run(*args, twin=self.twin)

    def score(self, state: dict[str, np.ndarray]) -> tuple[int, float, int]:
        """The held-out samples scored with `state`: (correct, mean loss, samples the board scored)."""
        rs, on_board = self.score_results(state)
        return sum(int(r.correct) for r in rs), float(np.mean([r.loss for r in rs])), on_board

    def score_results(self, state: dict[str, np.ndarray]) -> tuple[list[Any], int]:
        """The held-out samples scored with `state`, which the board (or the twin) holds: each
        sample's result, and how many the board scored.

        On the twin fleet, by the twin itself; on a board with eval_on "board", by the board,
        every sample; with "twin" (the default), by a host twin holding the same state (loaded
        with STATE_LOAD's checks), the board scoring the first SPOT_CHECK samples too: each of its
        answers must be the twin's, bit for bit, or the round fails."""
        x, y = self.inp.x_held, self.inp.y_held
        if self.twin is not None:
            return [self.twin.evaluate(k, x[k], int(y[k])) for k in range(len(y))], 0
        if self.s.eval_on == "board":
            return [self.training.evaluate(k, x[k], int(y[k])) for k in range(len(y))], len(y)
        if self._scoring is None:
            self._scoring = TwinTraining(self.inp.ct)
        load_to_twin(self._scoring, self.plan, self.plan_crc, state_blob(self.plan, state))
        rs = [self._scoring.evaluate(k, x[k], int(y[k])) for k in range(len(y))]
        checked = min(SPOT_CHECK, len(y))
        for k in range(checked):
            b = self.training.evaluate(k, x[k], int(y[k]))
            t = rs[k]
            if b.prediction != t.prediction or np.float32(b.loss).tobytes() != np.float32(t.loss).tobytes():
                raise ToolError(
                    f"client {self.client}: held-out sample {k}: the board answers class {b.prediction}, "
                    f"loss {b.loss!r}; the host twin with the board's state answers class {t.prediction}, "
                    f"loss {t.loss!r}: they must agree bit for bit (score on the board: --eval-on board)"
                )
        return rs, checked

    def state(self) -> dict[str, np.ndarray]:
        """The board's whole trained state (ARENA_READ; the twin's tensors), by state tensor name."""
        if self.twin is not None:
            return self.twin.trainer.state()
        assert self.link is not None
        blob = self.inp.ct.compiled.blob
        ins, outs = io_tensors(blob)
        return Trainer(self.inp.ct, BoardModel(self.link, tensor_table(blob), ins, outs)).state()

    def load(self, global_slice: dict[str, np.ndarray], claimed_crc: int | None = None) -> int:
        """Loads the fleet's slice onto the board (its own local tensors kept): STATE_LOAD, checked
        by the board against the plan's CRC and the state's CRC-32. Returns the state CRC-32;
        the state loaded is kept in self.loaded."""
        self.loaded = merge(self.plan, global_slice, self.state())
        blob = state_blob(self.plan, self.loaded)
        if self.twin is not None:
            load_to_twin(self.twin, self.plan, self.plan_crc, blob, claimed_crc)
            crc = self.twin.state_crc()
        else:
            assert self.link is not None
            load_to_board(self.link, self.plan_crc, blob, claimed_crc)
            crc = self.training.status()["state_crc"]
        if crc != zlib.crc32(blob):
            raise StateRefused(
                f"after STATE_LOAD the board's state CRC-32 is 0x{crc:08x}, not 0x{zlib.crc32(blob):08x}"
            )
        return crc

    def slice_of(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {t.name: state[t.name] for t in self.plan if t.kind != "local"}

    # ------------------------------------------------------------------ rounds

    def train_round(
        self,
        rnd: int,
        global_slice: dict[str, np.ndarray] | None,
        name: str | None = None,
        fault: str = "",
        fault_after: int = 0,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Loads the global slice (None: the board's state as it is, the plan's initial one in
        round 1), trains each own sample once, evaluates on the own held-out samples; returns the
        trained slice and the round's metrics. fault (fault tests), after fault_after steps:
        "exit", this process exits (a client killed mid-round); "reset", the board is reset
        (it reboots at its last checkpoint) and the round goes on: the board refuses the next
        sample, so the round fails with the board's words."""
        loaded = self.load(global_slice) if global_slice is not None else None
        # The global model this message brought (the fleet's after the previous round), scored
        # on the own held-out samples before training on it: no evaluation round trip of its own.
        glob = self.score(self.loaded) if loaded is not None and rnd > 1 else None
        run = self._run(self.folder / (name or f"round-{rnd}"))
        n = len(self.inp.y_train)
        order = np.random.default_rng([self.s.seed, self.client, rnd]).permutation(n)
        try:
            if fault:
                if fault not in FAULTS:
                    raise ToolError(f"unknown fault {fault!r}: one of {', '.join(FAULTS)}")
                x, y = self.inp.x_train, self.inp.y_train
                for k, i in enumerate(order):
                    if k == fault_after:
                        if fault == "exit":
                            os._exit(17)  # the fault tests' client process killed mid-round
                        assert self.link is not None, "a reset needs a board"
                        self.log.write(f"round {rnd}: fault test: the board is reset after {k} steps\n")
                        persist.reset(self.link)
                    run.training.train(run.first_id + k, x[i], int(y[i]), 1)
                raise ToolError(f"client {self.client} round {rnd}: the fault ({fault}) did not happen")
            run.epoch(1, 1, order)
            st = run.status()
            steps = [s for s in run.steps if s["epoch"] == 1]
            once = st["samples_trained"] - run.first_id == n and sorted(s["sample"] for s in steps) == sorted(
                int(c) for c in self.inp.chosen
            )
            if not once:
                raise ToolError(
                    f"client {self.client} round {rnd}: its samples were not each trained exactly once"
                )
            ep = run.epochs[-1]
            scored = getattr(run, "scored_state", None)
            state = scored if scored is not None else run.trainer.state()
        finally:
            run.close()
        if self.twin is not None:
            np.savez(
                self.folder / OWN_STATE, **{t.name: state[t.name] for t in self.plan if t.kind == "local"}
            )
        sl = self.slice_of(state)
        metrics = {
            "client": self.client,
            "round": rnd,
            "num-examples": n,
            "first-sample-id": run.first_id,
            "samples-trained": st["samples_trained"],
            "trained-once": int(once),
            "local-accuracy": ep["held_out_accuracy"],
            "local-correct": ep["held_out_correct"],
            "held-out": ep["held_out_samples"],
            "train-loss": ep["train_loss"],
            "train-seconds": ep["train_seconds"],
            "bytes-sent": sum(a.nbytes for a in sl.values()),
            "loaded-crc": -1 if loaded is None else loaded,
            "state-crc": st["state_crc"],
            "plan-crc": self.plan_crc,
            "scored-on-twin": int(self.on_twin or self.s.eval_on == "twin"),
        }
        if glob is not None:
            correct, loss, checked = glob
            metrics |= {
                "global-round": rnd - 1,
                "global-accuracy": correct / len(self.inp.y_held),
                "global-correct": correct,
                "global-loss": loss,
                "spot-checked-on-board": checked,
            }
        (self.folder / (name or f"round-{rnd}") / "round.json").write_text(
            json.dumps(metrics, indent=2) + "\n"
        )
        return sl, metrics
