"""`invoke hil`: the on-board test suite, run against any board (emulated or real).

It puts the main job's training plan on the board (the default `invoke train` plan: the
digits model, its scheme and lr) linked into the DIAGNOSTIC firmware (`invoke build --diag`:
the same kernels and runtime, plus the fault-injection requests a lab needs, such as tearing a
save); `--no-diag` tests the very image `invoke train` flashes instead (its torn-save check is
then skipped, and says so). Then it checks, each with its figure:

  identity      HELLO: board name, firmware build id and plan CRC are the image's; the boot
                banner's chip line (DBGMCU IDCODE, flash size, unique id; what an emulator is)
  link          PINGs of random payloads through a port that flips a bit in 2 % of the
                transfers each way: every answer arrives, exact, once (retransmissions counted)
  kernels       the forward pass (every kernel of the plan's forward) on held-out samples:
                the logits the board computes equal the host twin's, byte for byte
  training      training steps on the board and on the host twin, same samples: the same loss
                and prediction at every step, and the same trained state afterwards
  persistence   SAVE, RESET (the RESET request: AIRCR.SYSRESETREQ), the state restored at boot
                is the saved one; a torn save (power lost mid-save, DIAG_SAVE_ABORT) leaves the
                previous save restored
  cost          cost per training step: DWT cycles on silicon, instructions on the emulator
  memory        thread stack high-water against its size, static RAM and flash against the
                board's limits

It writes report.md and junit.xml into hil/<time>-<board>/ (the board, chip id, firmware build
id, plan CRC, host, date, every check with its figure). docs/boards.md says how to read them.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
import socket
import statistics
import time
import traceback
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from pytools import emulator
from pytools.boards import Board, load_board
from pytools.errors import ToolError
from pytools.link.client import BoardRefused, Link
from pytools.link.protocol import Msg
from pytools.paths import ROOT

HIL_DIR = ROOT / "hil"
KERNEL_SAMPLES = 8  # forward passes compared with the twin
TRAIN_STEPS = 12  # training steps compared with the twin
LINK_PINGS = 150
CORRUPTION = 0.02  # fraction of transfers with one bit flipped, each way
STACK_MARGIN = 0.9  # the thread stack's high-water must stay below this share of it


@dataclass
class Check:
    name: str
    passed: bool | None  # None: skipped
    figure: str  # the measured figure, with its unit
    detail: str = ""
    seconds: float = 0.0


@dataclass
class HilRun:
    board: Board
    folder: Path
    facts: dict[str, str] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)


class _CorruptingPort:
    """Flips one random bit in a fraction of the writes and reads of a serial port."""

    def __init__(self, inner: Any, rate: float, seed: int) -> None:
        self.inner, self.rate, self.rng = inner, rate, random.Random(seed)
        self.injected = 0

    def _maybe_flip(self, data: bytes) -> bytes:
        if not data or self.rng.random() >= self.rate:
            return data
        b = bytearray(data)
        bit = self.rng.randrange(len(b) * 8)
        b[bit // 8] ^= 1 << (bit % 8)
        self.injected += 1
        return bytes(b)

    def write(self, data: bytes) -> int | None:
        return self.inner.write(self._maybe_flip(data))

    def read(self, size: int = 1) -> bytes:
        # The rate is per 64 bytes read, not per read call: the host reads byte by byte while
        # QEMU trickles a reply in, and a per-call rate damaged almost every long reply.
        data = self.inner.read(size)
        if not data or self.rng.random() >= self.rate * len(data) / 64:
            return data
        b = bytearray(data)
        bit = self.rng.randrange(len(b) * 8)
        b[bit // 8] ^= 1 << (bit % 8)
        self.injected += 1
        return bytes(b)

    @property
    def in_waiting(self) -> int:
        return self.inner.in_waiting

    def close(self) -> None:
        self.inner.close()


class _Suite:
    """The checks, sharing one board connection and the compiled main job."""

    def __init__(self, board: Board, url: str, ct: Any, graph: Any, image: Any, boot_logs: list[str]) -> None:
        from pytools.train.trainer import Trainer

        self.board, self.url, self.ct, self.graph, self.image = board, url, ct, graph, image
        self.boot_logs = boot_logs
        self.link = Link.open(url, baudrate=board.baud)
        self.twin = Trainer(ct)
        x, y = _samples(graph)
        self.x, self.y = x, y

    def close(self) -> None:
        self.link.close()

    def board_trainer(self) -> Any:
        from pytools.model.board_runner import BoardTraining
        from pytools.train.trainer import Trainer

        return Trainer(self.ct, BoardTraining(self.link))

    # --- the checks ---------------------------------------------------------------------

    def identity(self) -> Check:
        hello = self.link.board
        chip = next((t for t in self.boot_logs if t.startswith("chip ")), "")
        clock = next((t for t in self.boot_logs if t.startswith("clock ")), "")
        problem = next((t for t in self.boot_logs if t.startswith("bring-up:")), "")
        problems = []
        if hello["board"] != self.board.name:
            problems.append(f"HELLO names board {hello['board']!r}, not {self.board.name!r}")
        if hello["build_id"] != self.image.build_id:
            problems.append(f"HELLO's build id {hello['build_id']} is not the image's {self.image.build_id}")
        if not chip:
            problems.append("the boot banner has no chip line (firmware older than the banner?)")
        if problem:
            problems.append(problem)
        return Check(
            "identity",
            not problems,
            f"build {hello['build_id']}",
            "; ".join(problems) or f"{chip}; {clock}",
        )

    def link_integrity(self) -> Check:
        rng = random.Random(15)
        corrupt = _CorruptingPort(self.link.port, CORRUPTION, seed=15)
        noisy = Link(corrupt, bytes_per_second=self.link.bytes_per_second)
        noisy.board = dict(self.link.board)
        noisy._seq = self.link._seq  # continue the sequence numbers of this connection
        wrong = 0
        for _ in range(LINK_PINGS):
            payload = rng.randbytes(rng.randrange(1, 200))
            r = noisy.request(Msg.PING, payload)
            wrong += r.type != Msg.PONG or r.payload != payload
        self.link._seq = noisy._seq
        s = noisy.stats
        ok = wrong == 0 and corrupt.injected > 0
        return Check(
            "link",
            ok,
            f"{LINK_PINGS} PINGs, {corrupt.injected} bits flipped, {wrong} wrong answers",
            f"retransmitted {s.retransmits}, NACKs {s.nacks}, time-outs {s.timeouts}, damaged replies "
            f"{s.damaged_rx}" + ("" if corrupt.injected else "; no corruption was injected: no evidence"),
        )

    def kernels(self) -> Check:
        from pytools.model.board_runner import BoardModel, read_arena
        from pytools.model.host_twin import HostTwin, io_tensors, tensor_table

        blob = self.ct.compiled.blob
        ins, outs = io_tensors(blob)
        bm = BoardModel(self.link, tensor_table(blob), ins, outs)
        host = HostTwin(blob)
        logits = self.ct.compiled.plan_ids[self.ct.train.logits]
        t = tensor_table(self.ct.compiled.blob)[logits]
        differ = []
        for k in range(KERNEL_SAMPLES):
            x = self.x[-1 - k]
            # The forward pass alone (INVOKE over its range): PREDICT runs on into the loss head,
            # whose buffers may reuse the logits' (pytools/train/losses.py).
            bm.invoke([x, np.array([0], np.int32)], first=0, end=self.ct.train.n_forward)
            board = read_arena(self.link, t["offset"], t["size"])
            host.invoke([x, np.array([0], np.int32)], 0, self.ct.train.n_forward)
            if host.tensor(logits).tobytes() != board:
                differ.append(k)
        n_ops = self.ct.train.n_forward
        kinds = sorted({op.kind for op in self.ct.train.graph.ops[:n_ops]})
        return Check(
            "kernels",
            not differ,
            f"{KERNEL_SAMPLES - len(differ)} of {KERNEL_SAMPLES} forward passes bit-exact",
            f"{n_ops} forward operators ({', '.join(kinds)})"
            + (f"; logits differ for samples {differ}" if differ else ""),
        )

    def training(self) -> tuple[Check, list[int]]:
        board = self.board_trainer()
        first = board.backend.status()["samples_trained"]
        if first:
            return Check("training", False, "-", f"the board had trained {first} samples: not fresh"), []
        mismatches, costs = [], []
        for k in range(TRAIN_STEPS):
            r = board.backend.train(k, self.x[k], int(self.y[k]))
            costs.append(r.cost)
            want = self.twin.step(self.x[k], int(self.y[k]))
            if (r.loss, r.prediction) != want:
                mismatches.append(f"step {k}: board {(r.loss, r.prediction)}, twin {want}")
        same_state = _state_crc(board.state()) == _state_crc(self.twin.state())
        ok = not mismatches and same_state
        return (
            Check(
                "training",
                ok,
                f"{TRAIN_STEPS - len(mismatches)} of {TRAIN_STEPS} steps bit-exact; state CRC-32 "
                f"0x{_state_crc(board.state()):08x}",
                "; ".join(mismatches) + ("" if same_state else " the trained states differ"),
            ),
            costs,
        )

    def persistence(self) -> Check:
        from pytools import persist

        board = self.board_trainer()
        saved = _state_crc(board.state())
        s = persist.save(self.link)
        boot = persist.reset(self.link)
        restored = _state_crc(self.board_trainer().state())
        notes = [f"saved slot {s['slot']} seq {s['sequence']}", f"after RESET: {_first(boot, 'persist:')}"]
        ok = restored == saved
        torn = "torn save: not run"
        if ok:
            trainer = self.board_trainer()
            n = trainer.backend.status()["samples_trained"]
            trainer.backend.train(n, self.x[n], int(self.y[n]))  # the state moves on
            try:
                boot = persist.save_aborted(self.link, 64)
                after = _state_crc(self.board_trainer().state())
                torn_ok = after == saved
                outcome = "previous save restored" if torn_ok else "WRONG state restored"
                torn = f"torn save (64 B then power lost): {outcome}"
                ok = ok and torn_ok
            except BoardRefused as e:  # a firmware built without the diagnostics
                torn = f"torn save skipped: the firmware refuses DIAG_SAVE_ABORT ({e})"
        notes.append(torn)
        return Check(
            "persistence",
            ok,
            f"state CRC-32 0x{saved:08x} saved, 0x{restored:08x} restored",
            "; ".join(notes),
        )

    def cost(self, costs: list[int]) -> Check:
        unit = self.board.counter_unit
        if not costs:
            return Check("cost", None, "-", "no training steps ran")
        med = statistics.median(costs)
        return Check(
            "cost",
            med > 0,
            f"{med:,.0f} {unit} per training step (median of {len(costs)})",
            f"min {min(costs):,}, max {max(costs):,}; {self.board.timing_note}",
        )

    def memory(self) -> Check:
        info = self.link.info()
        hw, size = info["stack_high_water"], info["stack_size"]
        m = self.board.memory
        problems = []
        if hw >= STACK_MARGIN * size:
            problems.append(f"stack high-water {hw:,} B is over {STACK_MARGIN:.0%} of the {size:,} B stack")
        if info["ram_static"] > m.ram_size or info["ram_size"] != m.ram_size:
            problems.append(
                f"RAM {info['ram_static']:,} of {info['ram_size']:,} B (board file: {m.ram_size:,})"
            )
        if info["flash_used"] > m.flash_size or info["flash_size"] != m.flash_size:
            problems.append(f"flash {info['flash_used']:,} of {info['flash_size']:,} B")
        return Check(
            "memory",
            not problems,
            f"stack {hw:,} of {size:,} B; static RAM {info['ram_static']:,} of {info['ram_size']:,} B; "
            f"flash {info['flash_used']:,} of {info['flash_size']:,} B",
            "; ".join(problems),
        )


def _first(lines: list[str], prefix: str) -> str:
    return next((t for t in lines if t.startswith(prefix)), "(no such log line)")


def _state_crc(state: dict[str, np.ndarray]) -> int:
    crc = 0
    for name in sorted(state):
        crc = zlib.crc32(np.ascontiguousarray(state[name]).tobytes(), crc)
    return crc


def _samples(graph: Any) -> tuple[np.ndarray, np.ndarray]:
    """The main job's fine-tuning samples, as the model's input type."""
    import datasets
    from pytools.session import model_inputs

    part = datasets.load_split("digits").finetune
    n = TRAIN_STEPS + 1 + KERNEL_SAMPLES
    return model_inputs(graph, part.x[:n]), part.y[:n]


def _boot_logs_emulated(url: str, board: Board) -> list[str]:
    """The first client of a fresh QEMU sees the boot log (QEMU holds the guest until then)."""
    with Link.open(url, baudrate=board.baud) as link:
        link.poll(0.2)
        return [e["text"] for e in link.logs]


def _boot_logs_by_reset(url: str, board: Board) -> list[str]:
    """A real board booted long ago: RESET it to read its boot banner."""
    from pytools import persist

    with Link.open(url, baudrate=board.baud) as link:
        return persist.reset(link)


def run_hil(
    board_name: str, port: str | None = None, tool: str | None = None, flash: bool = True, diag: bool = True
) -> HilRun:
    """Runs every check against the board; writes the report; returns the run. diag: link the
    plan into the diagnostic firmware (build/<board>-diag), so the torn-save check runs."""
    from pytools.build.builder import build_firmware
    from pytools.flashing import check_running, compile_training_firmware, flash_image

    board = load_board(board_name)
    stamp = dt.datetime.now(dt.UTC)
    folder = HIL_DIR / f"{stamp:%Y%m%d-%H%M%S}-{board.name}"
    folder.mkdir(parents=True, exist_ok=True)
    run = HilRun(board, folder)
    ct, graph = compile_training_firmware(board)
    image = build_firmware(board, ct.compiled.blob, ct.compiled.arena, diag=True) if diag else ct.image
    run.facts = {
        "board": f"{board.name} ({board.description})",
        "firmware": "the diagnostic build with the plan" if diag else "invoke train's own image",
        "firmware build id": image.build_id,
        "plan CRC-32": image.build_id.rsplit("-", 1)[-1],
        "plan": f"{ct.name}: {ct.scheme.describe()}",
        "host": f"{socket.gethostname()} ({platform.platform()}, Python {platform.python_version()})",
        "date": stamp.strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    name = None
    t0 = time.monotonic()
    try:
        if board.is_emulated and not port:
            name = f"hil-{board.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            emulator.erase_flash(name)
            url = emulator.start(board, image.elf, name=name).url
            boot = _boot_logs_emulated(url, board)
        else:
            from pytools.connect import port_url

            url = port_url(board, port)
            if flash and not board.is_emulated:
                done = flash_image(board, image, tool)
                run.facts["flashed with"] = done.tool
                check_running(board, image, url)
            boot = _boot_logs_by_reset(url, board)
        chip = _first(boot, "chip ")
        run.facts["chip"] = chip.removeprefix("chip ")
        run.facts["clock"] = _first(boot, "clock ").removeprefix("clock ")
        suite = _Suite(board, url, ct, graph, image, boot)
        try:
            _timed(run, suite.identity)
            _timed(run, suite.link_integrity)
            _timed(run, suite.kernels)
            costs: list[int] = []

            def training() -> Check:
                c, k = suite.training()
                costs.extend(k)
                return c

            _timed(run, training)
            _timed(run, lambda: suite.cost(costs))
            _timed(run, suite.memory)
            _timed(run, suite.persistence)
        finally:
            suite.close()
    except (ToolError, OSError) as e:
        run.checks.append(Check("setup", False, "-", f"{type(e).__name__}: {e}"))
    finally:
        if name:
            emulator.stop(name)
            emulator.erase_flash(name)
    run.facts["duration"] = f"{time.monotonic() - t0:.1f} s"
    write_reports(run)
    return run


def _timed(run: HilRun, fn: Callable[[], Check]) -> None:
    t0 = time.monotonic()
    try:
        check = fn()
    except (ToolError, OSError, ValueError, KeyError) as e:
        name = getattr(fn, "__name__", "check").replace("_integrity", "")
        check = Check(name, False, "-", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
    check.seconds = time.monotonic() - t0
    run.checks.append(check)


def write_reports(run: HilRun) -> tuple[Path, Path]:
    md, xml = run.folder / "report.md", run.folder / "junit.xml"
    verdict = "PASSED" if run.passed else "FAILED"
    lines = [f"# Hardware-in-the-loop: {run.board.name}: {verdict}", ""]
    lines += [f"- {k}: {v}" for k, v in run.facts.items()]
    lines += ["", "| check | result | figure | detail | s |", "|---|---|---|---|---:|"]
    for c in run.checks:
        result = "pass" if c.passed else "skipped" if c.passed is None else "**FAIL**"
        detail = c.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {c.name} | {result} | {c.figure} | {detail} | {c.seconds:.1f} |")
    lines += ["", "How to read a failure: docs/boards.md, section 'Reading a HIL report'.", ""]
    md.write_text("\n".join(lines))
    failures = sum(c.passed is False for c in run.checks)
    skipped = sum(c.passed is None for c in run.checks)
    props = "".join(f"<property name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in run.facts.items())
    cases = []
    for c in run.checks:
        inner = ""
        if c.passed is False:
            inner = f"<failure message={quoteattr(c.figure)}>{escape(c.detail)}</failure>"
        elif c.passed is None:
            inner = f"<skipped message={quoteattr(c.detail)}/>"
        out = f"<system-out>{escape(c.figure + '; ' + c.detail)}</system-out>"
        cases.append(
            f'<testcase classname="hil.{run.board.name}" name={quoteattr(c.name)} '
            f'time="{c.seconds:.3f}">{inner}{out}</testcase>'
        )
    xml.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuite name="hil-{run.board.name}" tests="{len(run.checks)}" failures="{failures}" '
        f'skipped="{skipped}" errors="0"><properties>{props}</properties>' + "".join(cases) + "</testsuite>\n"
    )
    return md, xml
