"""`invoke fleet`: a fleet run on Flower's deployment runtime, on loopback.

run_fleet() makes the fleet folder (sessions/fleet-<UTC time>/), compiles the training step once
(the boards' firmware is built once and every client reuses it), writes the slice's layout and
the plan's initial slice for the server (plan.npz), then starts, each as its own process on
127.0.0.1 only:
- one SuperLink (`flower-superlink --insecure`), which runs the ServerApp when the run comes;
- one SuperNode per client (`flower-supernode --insecure --node-config "fleet-dir=... client=k"`),
  which runs the ClientApp for each message; the ClientApp brings up its own board;
and submits the app (`flwr run pytools/fleet/flower_app`, with a Flower config in the fleet
folder's flwr-home/ naming this SuperLink). When the ServerApp is done it stops every process it
started, by its process group id, and every emulated board (by name, each board's flash kept in
its client folder), then writes the results (report.py). On a lab network the same processes
run on other machines: a SuperNode per board machine, pointed at the SuperLink's address.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pytools import emulator
from pytools.boards import HOST, load_board
from pytools.errors import ToolError
from pytools.fleet import partition as partitions
from pytools.fleet.aggregate import DEFAULT_ROUNDING, ROUNDINGS, slice_layout
from pytools.fleet.client import EVAL_ON, FleetSettings, client_inputs
from pytools.fleet.plan_file import write_plan
from pytools.model.plan import read_header
from pytools.paths import ROOT
from pytools.session import SESSIONS
from pytools.train.trainer import Trainer

APP_DIR = Path(__file__).resolve().parent / "flower_app"
BIN = Path(sys.executable).parent  # flower-superlink, flower-supernode and flwr beside this Python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise ToolError(f"{what} exited with code {proc.returncode}; its log: {log}\n{_tail(log)}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise ToolError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s; its log: {log}")


def _tail(path: Path, lines: int = 25) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def descendants(pid: int) -> list[int]:
    """The pids of a process's children, their children and so on (from /proc), parents first."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class Processes:
    """The Flower processes this run started: each in its own session, stopped by its group id."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder = env, folder
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, cmd: list[str]) -> tuple[subprocess.Popen, Path]:
        log = self.folder / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        with open(log, "ab") as f:
            p = subprocess.Popen(
                cmd, stdout=f, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT, start_new_session=True
            )
        self.procs[name] = p
        return p, log

    def stop(self, name: str) -> None:
        p = self.procs.pop(name, None)
        if p is None:
            return
        # Flower starts its SuperExec (and through it the app processes) detached, in sessions
        # of their own: they are found as this process's descendants and stopped by their pids.
        for pid in reversed(descendants(p.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, sig)  # its group: the app processes it started go with it
            try:
                p.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # children left in the group after the leader exited

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def fleet_folder(out: Path | None) -> Path:
    if out is not None:
        if out.exists() and any(out.iterdir()):
            raise ToolError(f"{out} exists and is not empty: a fleet writes a folder of its own")
        return out
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return SESSIONS / f"fleet-{stamp}"


def run_fleet(
    board: str,
    dataset: str = "hapt",
    split: str | None = None,
    boards: int = 4,
    rounds: int = 3,
    partition: str = "",
    scheme: str = "",
    lr: float = 0.01,
    model: str | None = None,
    seed: int = 0,
    held_out: int | None = None,
    rounding: str = DEFAULT_ROUNDING,
    min_clients: int | None = None,
    round_timeout: float | None = None,
    out: Path | None = None,
    ports: list[str] | None = None,
    fault: tuple[int, int, str] | None = None,
    limit: int | None = None,
    eval_on: str = "twin",
    label_column: str | None = None,
) -> Path:
    """Runs a fleet of `boards` clients for `rounds` rounds; returns the fleet folder.

    board: "host" (every client on its own host twin) or a board name (emulated: each client
    starts its own; real: one --port per client, in `ports`). min_clients: a round goes on with
    at least this many replies (default: half the boards, at least 1); a client that does not
    reply within round_timeout is left out of that round. fault (client, round, "exit" or
    "reset"), the fault tests: halfway through its training in that round, that client's process
    exits, or its board is reset. limit: fine-tuning samples per client per round (default all).
    eval_on: where held-out samples are scored ("twin": the host twin with the board's state,
    spot-checked against the board; "board": every sample on the board).
    """
    from pytools.fleet.report import write_report

    if boards < 1 or rounds < 1:
        raise ToolError(f"a fleet needs --boards >= 1 and --rounds >= 1, got {boards} and {rounds}")
    if eval_on not in EVAL_ON:
        raise ToolError(f"--eval-on {eval_on!r}: one of {', '.join(EVAL_ON)}")
    if limit is not None and limit < 1:
        raise ToolError(f"--limit must be at least 1, got {limit}")
    if rounding not in ROUNDINGS:
        raise ToolError(f"--rounding {rounding!r}: one of {', '.join(ROUNDINGS)}")
    if not (math.isfinite(lr) and lr >= 0):
        raise ToolError(f"--lr must be a finite number >= 0, got {lr}")
    on_twin = board == HOST
    if ports and len(ports) != boards:
        raise ToolError(f"{len(ports)} ports for {boards} boards: give one --port per board, comma-separated")
    if not on_twin and not load_board(board).is_emulated and not ports:
        raise ToolError(f"{board} is a real board: give one serial port per client (--port a,b,...)")
    part = partitions.parse(partition, dataset, split)  # a bad --partition: said before anything starts
    if part.kind == "users":
        partitions.user_split(boards - 1, boards)
    min_clients = min_clients or max(1, boards // 2)
    round_timeout = round_timeout or (120.0 if on_twin else 900.0)
    folder = fleet_folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    fleet_id = folder.name.removeprefix("fleet-").lower()[-12:] + f"-{os.getpid()}"
    given = dataset
    if part.kind == "column":  # the groups out of the data (a CSV's column is no feature)
        dataset = partitions.prepare_groups(folder, dataset, part)
    s = FleetSettings(
        fleet_id=fleet_id,
        folder=str(folder),
        board=board,
        dataset=dataset,
        split=split,
        partition=partition,
        boards=boards,
        scheme=scheme or ("hapt_cnn1d-hapt-64KB" if dataset == "hapt" else "bias=3,-1=1,-2=0.5"),
        lr=lr,
        model=model,
        seed=seed,
        held_out=held_out,
        rounds=rounds,
        rounding=rounding,
        limit=limit,
        eval_on=eval_on,
        label_column=label_column,
    )
    config: dict[str, Any] = {
        "settings": asdict(s),
        "min_clients": min_clients,
        "round_timeout": round_timeout,
        "connect_timeout": 600.0,
        "ports": ports,
        "fault": fault,
        "dataset_given": given,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"fleet     {folder}: {boards} clients on {board}, {dataset}, {rounds} rounds")
    # The plan, once: the firmware every client's board runs is built here, and the server
    # gets the slice's layout and initial values without the model or the data. Each client's
    # inputs (the compiled step and its own samples) are prepared here too, once, into its
    # inputs cache: a Flower message then loads them instead of compiling again.
    t_prep = time.monotonic()
    inputs = [client_inputs(s, k, link=not on_twin) for k in range(boards)]
    inp = inputs[0]
    groups = partitions.client_groups(folder, boards) if part.kind == "column" else None
    shares = [
        partitions.share(k, x.y_train, x.y_held, groups[k] if groups else None) for k, x in enumerate(inputs)
    ]
    partitions.write_shares(folder, part, shares)
    plan = slice_layout(inp.ct)
    initial = Trainer(inp.ct).state()
    write_plan(folder, plan, initial, read_header(inp.ct.compiled.blob)["crc32"])
    config["model_bytes"] = len(inp.model_bytes)
    config["prepare_seconds"] = round(time.monotonic() - t_prep, 1)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for sh in shares:
        print(
            f"client {sh['client']}  {sh['finetune']} fine-tuning, {sh['held_out']} held-out samples"
            + (f" (group {sh['group']})" if sh["group"] is not None else "")
        )

    home = folder / "flwr-home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(APP_DIR), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env["FLWR_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    # A SuperExec looks for new messages every second by default; a fleet's rounds wait on it
    # several times each (train, evaluate): five times a second costs nothing on loopback.
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.2")
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])  # Flower starts flower-superexec by name
    link_port = _free_port()
    connection = f'[superlink.fleet]\naddress = "127.0.0.1:{link_port}"\ninsecure = true\n'
    (home / "config.toml").write_text(f'[superlink]\ndefault = "fleet"\n\n{connection}')
    procs = Processes(env, folder)
    t0 = time.monotonic()
    try:
        p, log = procs.start(
            "superlink",
            [str(BIN / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(link_port)],
        )
        _wait_port(link_port, p, "the SuperLink", log)
        print(f"flower    SuperLink on 127.0.0.1:{link_port} (pid {p.pid})")
        for k in range(boards):
            node = f"fleet-dir='{folder}' client={k}"
            if ports:
                node += f" port='{ports[k]}'"
            if fault and fault[0] == k:
                node += f" fault='{fault[2]}' fault-in-round={fault[1]}"
            p, _ = procs.start(
                f"supernode-{k}",
                [
                    str(BIN / "flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{link_port}",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(_free_port()),
                    "--node-config",
                    node,
                ],
            )
            print(f"flower    SuperNode for client {k} (pid {p.pid})")
        p, log = procs.start(
            "flwr-run",
            [
                str(BIN / "flwr"),
                "run",
                str(APP_DIR),
                "fleet",
                "--run-config",
                f"fleet-dir='{folder}'",
                "--stream",
            ],
        )
        done = folder / "server_done.json"
        limit = 600.0 + (rounds + 1) * 2 * round_timeout
        while not done.exists():
            if time.monotonic() - t0 > limit:
                raise ToolError(
                    f"the fleet did not finish within {limit:.0f} s; Flower's logs: {folder / 'logs'}"
                )
            if p.poll() is not None and not done.exists():
                time.sleep(2.0)
                if not done.exists():
                    raise ToolError(
                        f"the Flower run ended (code {p.returncode}) before the server finished; "
                        f"its log ({log}):\n{_tail(log)}"
                    )
            time.sleep(0.5)
        print(f"flower    the ServerApp finished {rounds} rounds in {time.monotonic() - t0:.0f} s")
        config["flower_seconds"] = round(time.monotonic() - t0, 1)
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    finally:
        procs.stop_all()
        if not on_twin and not ports:
            b = load_board(board)
            for k in range(boards):
                name = f"fleet-{fleet_id}-{k}"
                if emulator.stop(name):
                    print(f"stopped   emulated board '{name}'")
                if emulator.flash_file(name).exists():
                    emulator.export_flash(b, name, folder / f"client-{k}" / "board-flash.bin")
                    emulator.erase_flash(name)
    return write_report(folder)
