"""The fleet's Flower apps: the ServerApp (aggregation, rounds, evaluation) and the ClientApp
(one per board). They run on Flower's deployment runtime (pytools/fleet/runtime.py starts a
SuperLink and one SuperNode per client on loopback; `flwr run` submits the app in
pytools/fleet/flower_app/). Both read the fleet's settings from its folder (config.json, and
plan.npz: the slice's layout and the plan's initial slice, which the server holds instead of
compiling the model, so it never sees a sample).

Per round, each client's reply carries its trained slice and its metrics (samples, held-out
accuracy of its local model, bytes sent); the server averages the slices (aggregate.fedavg:
real-valued FedAvg requantized into the int8/int32 layout) and sends the global slice with the
next round's TRAIN message: each client loads it onto its board (STATE_LOAD) and scores it on
its own held-out samples before training on it (no EVALUATE round trip); the fleet's global
accuracy of a round is the sum of the clients' correct answers over the sum of their held-out
samples: the global model on everyone's held-out data. After the last round one more TRAIN
message with "personalise" brings the final global state: each client scores it, then trains
one more epoch from it (the fleet + personalisation result), which is not aggregated.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from pytools.fleet.aggregate import SliceTensor, fedavg
from pytools.fleet.client import FleetClient, FleetSettings
from pytools.fleet.plan_file import read_plan
from pytools.fleet.report import ROUNDS_FILE


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def from_record(rec: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: rec[k].numpy() for k in rec.keys()}


def _row(folder: Path, row: dict[str, Any]) -> None:
    with open(folder / ROUNDS_FILE, "a") as f:
        f.write(json.dumps(row) + "\n")


GLOBAL_KEYS = ("global-accuracy", "global-correct", "global-loss", "spot-checked-on-board")


def log_reply(folder: Path, rnd: int, phase: str, metrics: dict[str, Any]) -> None:
    """A client's reply in rounds.jsonl: its training (or personalisation) line and, when its
    message brought the previous round's global model, that model's score on its held-out
    samples (an "evaluate" line of that round)."""
    _row(folder, {"round": rnd, "phase": phase, **{k: v for k, v in metrics.items() if k not in GLOBAL_KEYS}})
    if "global-round" in metrics:
        ev = {k: metrics[k] for k in GLOBAL_KEYS}
        _row(
            folder,
            {
                "round": int(metrics["global-round"]),
                "phase": "evaluate",
                "client": metrics["client"],
                "held-out": metrics["held-out"],
                "num-examples": metrics["held-out"],
                **ev,
            },
        )


class QuantizedFedAvg(FedAvg):
    """Flower's FedAvg, with the average taken by aggregate.fedavg (exact, requantized).

    No EVALUATE messages (fraction_evaluate 0): the global model of round r is scored by each
    client when round r + 1's TRAIN message (or the personalisation's) brings it, since the
    client loads it onto its board then anyway: a message, a process and a state load saved
    per client and round."""

    def __init__(self, plan: list[SliceTensor], folder: Path, rounding: str, seed: int, **kw: Any) -> None:
        super().__init__(fraction_evaluate=0.0, **kw)
        self.plan, self.folder, self.rounding, self.seed = plan, folder, rounding, seed

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, errors = self._check_and_log_replies(replies, is_train=True)
        for m in errors:
            _row(
                self.folder,
                {
                    "round": server_round,
                    "phase": "train",
                    "node": m.metadata.src_node_id,
                    "error": m.error.reason,
                },
            )
        if not valid:
            return None, None
        states, counts = [], []
        for m in valid:
            metrics = dict(m.content["metrics"])
            log_reply(self.folder, server_round, "train", metrics)
            states.append(from_record(m.content["arrays"]))
            counts.append(int(metrics["num-examples"]))
        avg = fedavg(self.plan, states, counts, self.rounding, self.seed, server_round)
        agg = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)
        return to_record(avg), agg


server = ServerApp()


@server.main()
def server_main(grid: Grid, context: Context) -> None:
    folder = Path(str(context.run_config["fleet-dir"]))
    s = FleetSettings.load(folder)
    cfg = json.loads((folder / "config.json").read_text())
    plan, initial = read_plan(folder)
    min_clients = int(cfg["min_clients"])
    # Round 1 starts when every board is up (a board's first message builds and boots it);
    # later rounds go on with at least min_clients.
    t0 = time.monotonic()
    while len(list(grid.get_node_ids())) < s.boards:
        if time.monotonic() - t0 > float(cfg["connect_timeout"]):
            break
        time.sleep(0.5)
    strategy = QuantizedFedAvg(
        plan,
        folder,
        s.rounding,
        s.seed,
        min_train_nodes=min_clients,
        min_available_nodes=min_clients,
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=to_record(initial),
        num_rounds=s.rounds,
        timeout=float(cfg["round_timeout"]),
    )
    final = from_record(result.arrays)
    np.savez(folder / "global_slice.npz", **final)
    # Fleet + personalisation: one more epoch per client from the final global state, kept local.
    nodes = list(grid.get_node_ids())
    content = RecordDict(
        {"arrays": result.arrays, "config": ConfigRecord({"server-round": s.rounds + 1, "personalise": 1})}
    )
    msgs = [Message(content=content, message_type=MessageType.TRAIN, dst_node_id=n) for n in nodes]
    for m in grid.send_and_receive(msgs, timeout=float(cfg["round_timeout"])):
        if m.has_error():
            _row(folder, {"round": s.rounds + 1, "phase": "personalise", "error": m.error.reason})
        else:
            log_reply(folder, s.rounds + 1, "personalise", dict(m.content["metrics"]))
    (folder / "server_done.json").write_text(json.dumps({"rounds": s.rounds, "utc": time.time()}) + "\n")


client = ClientApp()


def _client(context: Context) -> FleetClient:
    nc = context.node_config
    port = str(nc.get("port", "")) or None
    return FleetClient(Path(str(nc["fleet-dir"])), int(nc["client"]), port)


def _process_age() -> float:
    """Seconds since this ClientApp process started (Flower starts one per message)."""
    ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - ticks / os.sysconf("SC_CLK_TCK")


def _timed(metrics: dict[str, Any], t_start: float, t_ready: float) -> dict[str, Any]:
    """Where a message's time went: the process start and imports before the handler ran,
    bringing the client up (its inputs, its board), and the work itself."""
    now = time.monotonic()
    return {
        **metrics,
        "seconds-before-handler": round(_process_age() - (now - t_start), 2),
        "seconds-client-up": round(t_ready - t_start, 2),
        "seconds-work": round(now - t_ready, 2),
    }


@client.train()
def client_train(msg: Message, context: Context) -> Message:
    t_start = time.monotonic()
    c = _client(context)
    t_ready = time.monotonic()
    try:
        cfg = msg.content["config"]
        rnd = int(cfg["server-round"])
        personalise = bool(cfg.get("personalise", 0))
        # Fault tests (runtime.run_fleet's `fault`): once, in that round, halfway through.
        fault = str(context.node_config.get("fault", ""))
        fault_round = int(context.node_config.get("fault-in-round", 0))
        marker = c.folder / f"fault-in-round-{rnd}"
        fault_after = 0
        if fault and fault_round == rnd and not marker.exists():
            marker.write_text(f"fault test: {fault} halfway through this round\n")
            fault_after = max(1, len(c.inp.y_train) // 2)
        sl, metrics = c.train_round(
            rnd,
            from_record(msg.content["arrays"]),
            name="personalise" if personalise else None,
            fault=fault if fault_after else "",
            fault_after=fault_after,
        )
    finally:
        c.close()
    metrics = _timed(metrics, t_start, t_ready)
    content = RecordDict({"arrays": to_record(sl), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)
