"""Measuring one training step on a board: run_bench().

run_bench(model, scheme, board, out_md) compiles the training step for the board, links it
into the firmware, runs it on the board and measures:

- peak SRAM, measured: the linker's RAM figure for the image holding the training plan
  (static data + the plan's arena + the reserved stacks), minus the reserved thread stack,
  plus the thread stack's high-water mark the running firmware reports after the steps;
- flash, from the linker; the arena by category (memory.py);
- cost per training step, in the board's counter unit (instructions under QEMU -icount
  shift=0 on the emulated board, DWT cycles on a real one). Every step is measured three ways
  on the same state and the same sample (the trained state is read back with ARENA_READ
  before the step and put back with STATE_LOAD between the ways, and each way must end on
  the identical loss): one INVOKE of the whole step; two INVOKEs, forward [0, n_forward) and
  loss + backward + update [n_forward, n); and, for the last step, one INVOKE per operator.
  The ways differ only by the extra INVOKEs' own cost, which is measured too (empty INVOKEs,
  the dispatch overhead): parts - (INVOKEs - 1) x overhead = whole step, within the timer's
  tick per INVOKE (parts_check). A plan that streams its input stops at each of its fetches
  (NEED_INPUT, docs/protocol.md) and goes on in another INVOKE, so even the whole step is several
  INVOKEs: the check counts the INVOKEs each way took, parts - (their INVOKEs - the whole's) x
  overhead = whole step;
- multiply-accumulates per step (macs.py) and MACs per counter unit.

The steps train on samples of the model's own kind (samples.py) at a learning rate checked
on the host twin not to diverge (learning_rate.py). A step that does not fit the board is
reported as such, with the breakdown and the linker's overflow, not run. A real board is
refused unless one is attached; `link_only=True` gives its memory figures alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import statistics
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pytools import emulator
from pytools.bench import samples as sample_sources
from pytools.bench.learning_rate import CANDIDATES, RateCheck, check_rate
from pytools.bench.macs import graph_macs, model_params, step_macs
from pytools.bench.memory import PEAK_FORMULA, check_stack, memory_figures
from pytools.bench.report import describe, layer_of, markdown, resolution
from pytools.bench.samples import DEFAULT_COUNT, Feed, SampleChoice, Samples
from pytools.boards import Board, load_board
from pytools.errors import ToolError
from pytools.link.client import Link
from pytools.link.protocol import Msg, layout
from pytools.model.board_runner import asked_window, need_input, read_arena
from pytools.model.host_twin import io_tensors, tensor_table
from pytools.model.ir import Graph
from pytools.model.plan import STORAGE_STATE, STORAGE_STREAM, read_header
from pytools.train.compile_train import CompiledTraining, compile_training
from pytools.train.scheme import load_scheme

# Writes go in 1 KB chunks and the link waits patiently (as a fleet's does): on a machine
# loaded by parallel builds QEMU's UART slows to ~2 kB/s, and 4 KB frames then went unanswered
# 21 times over. Counts are instructions under -icount, so a slow host changes no figure.
CHUNK = 1024
LINK_TIMEOUT, LINK_RETRIES = 2.0, 40
EMPTY_INVOKES = 25  # empty INVOKEs [0, 0) whose mean is the dispatch overhead of one INVOKE


def _attached(board: Board, port: str | None) -> str:
    """The real board's port, or a ToolError saying the benchmark needs one attached."""
    if port:
        return port
    from pytools.connect import find_stlink_port

    try:
        return find_stlink_port()
    except ToolError as e:
        raise ToolError(
            f"{board.name} is a real board and none is attached ({e}). Its costs are CPU cycles "
            "measured on the board itself, so the benchmark cannot run without it: connect it, "
            "give --port, use --link-only for its memory figures, or benchmark the emulated board "
            "(mps2_an500, same memory limits)."
        ) from None


class BoardBench:
    """The training plan on a board: inputs written, INVOKE over ranges, the trained state
    read back and put back (so several measurements run the very same step)."""

    def __init__(self, link: Link, ct: CompiledTraining) -> None:
        self.link = link
        blob = ct.compiled.blob
        self.tensors = tensor_table(blob)
        self.inputs, self.outputs = io_tensors(blob)
        self.plan_crc = int(read_header(blob)["crc32"])
        self.state_tensors = [t for t in self.tensors if t["storage"] == STORAGE_STATE]
        info = layout("MODEL_INFO_RSP").unpack(link.request(Msg.MODEL_INFO).payload)
        if info["status"] != 0:
            raise ToolError(f"the board has no usable model: {info['message']}")
        self.n_ops = info["n_ops"]
        self.streams: dict[int, bytes] = {}  # a streamed input's bytes, sent when the board asks

    def _write(self, k: int, data: bytes, start: int = 0) -> None:
        chunk = min(self.link.board["max_payload"] - layout("TENSOR_WRITE").size, CHUNK)
        for off in range(0, len(data), chunk):
            head = layout("TENSOR_WRITE").pack(io=0, index=k, offset=start + off)
            self.link.request(Msg.TENSOR_WRITE, head + data[off : off + chunk])

    def write_inputs(self, xs: list[np.ndarray]) -> None:
        """The inputs; a streamed one is only kept, for the NEED_INPUTs of the next INVOKEs."""
        for k, x in enumerate(xs):
            t = self.tensors[self.inputs[k]]
            data = np.ascontiguousarray(x, dtype=t["dtype_name"]).tobytes()
            if t["storage"] == STORAGE_STREAM:
                self.streams[k] = data
            else:
                self._write(k, data)

    def loss(self) -> float:
        """The step's loss (output 0 of the training plan, float32)."""
        req = layout("TENSOR_READ").pack(io=1, index=0, offset=0, length=4)
        return float(np.frombuffer(self.link.request(Msg.TENSOR_READ, req).payload, dtype="<f4")[0])

    def invoke(self, first: int, end: int) -> tuple[int, int]:
        """The cost of operators [first, end) on what the arena holds now (inputs not rewritten),
        and the INVOKEs it took: one, or where the board stopped for rows of a streamed input,
        one more per stop short of end (each NEED_INPUT answered with the bytes it names)."""
        cost, invokes = 0, 0
        while True:
            r = self.link.request(Msg.INVOKE, layout("INVOKE").pack(first=first, end=end), timeout=600.0)
            invokes += 1
            if r.type != Msg.NEED_INPUT:
                return cost + int(layout("INVOKE_RSP").unpack(r.payload)["cost"]), invokes
            need = need_input(r.payload)
            cost += int(need["cost"])
            k = need["input"]
            if k not in self.streams or not first < need["next_op"] <= end:
                raise ToolError(f"INVOKE [{first}, {end}) answered a NEED_INPUT this plan cannot ask: {need}")
            lo, hi = asked_window(need, len(self.streams[k]), f"input {k}")
            self._write(k, self.streams[k][lo:hi], lo)
            if need["next_op"] == end:
                return cost, invokes
            first = need["next_op"]

    def read_state(self) -> bytes:
        """The trained state (the plan's state tensors in order: what STATE_LOAD takes)."""
        return b"".join(read_arena(self.link, t["offset"], t["size"]) for t in self.state_tensors)

    def load_state(self, state: bytes) -> None:
        """Puts a state read by read_state back (STATE_LOAD: the board checks plan and CRC-32)."""
        if not state:
            return
        head = layout("STATE_LOAD")
        room = min(int(self.link.board["max_payload"]) - head.size, CHUNK)
        crc = zlib.crc32(state)
        for off in range(0, len(state), room):
            fields = {"plan_crc": self.plan_crc, "state_size": len(state), "state_crc": crc, "offset": off}
            self.link.request(Msg.STATE_LOAD, head.pack(**fields) + state[off : off + room])


def measure(link: Link, ct: CompiledTraining, steps: int, per_op: bool, feed: Feed) -> dict[str, Any]:
    """steps steps, each measured whole and as forward + backward from the same state and
    sample; the last one also operator by operator; the dispatch overhead of an INVOKE."""
    bench = BoardBench(link, ct)
    n, nf = bench.n_ops, ct.train.n_forward
    empty = [bench.invoke(0, 0)[0] for _ in range(EMPTY_INVOKES)]
    full, fwd, back, losses, mismatches = [], [], [], [], []
    per: list[int] = []
    # INVOKEs each way took (more than one per range where a streamed input's fetches stop it)
    invokes: dict[str, list[int]] = {"steps": [], "split": [], "per_op": []}
    for k in range(steps):
        sample = feed.next()
        state = bench.read_state()
        bench.write_inputs(sample)
        cost, count = bench.invoke(0, n)
        full.append(cost)
        invokes["steps"].append(count)
        losses.append(bench.loss())
        ways = ["split"] + (["per_op"] if per_op and k == steps - 1 else [])
        for way in ways:
            bench.load_state(state)  # the state this step started from
            bench.write_inputs(sample)
            if way == "split":
                (f, fi), (b, bi) = bench.invoke(0, nf), bench.invoke(nf, n)
                fwd.append(f)
                back.append(b)
                invokes["split"].append(fi + bi)
            else:
                runs = [bench.invoke(i, i + 1) for i in range(n)]
                per = [c for c, _ in runs]
                invokes["per_op"] = [sum(i for _, i in runs)]
            again = bench.loss()
            if not (again == losses[-1] or (np.isnan(again) and np.isnan(losses[-1]))):
                mismatches.append(f"step {k}, {way}: loss {again!r}, whole step {losses[-1]!r}")
    info = link.info()
    return {
        "steps": full,
        "forward_steps": fwd,
        "backward_update_steps": back,
        "per_op": per,
        "losses": losses,
        "empty_invokes": empty,
        "invokes": invokes,
        "same_step_mismatches": mismatches,
        "state_bytes": sum(t["size"] for t in bench.state_tensors),
        "stack_high_water": info["stack_high_water"],
        "stack_size": info["stack_size"],
        "ram_static": info["ram_static"],
        "flash_used": info["flash_used"],
        "counter_unit": info["counter_unit"],
        "build_id": link.board.get("build_id", ""),
    }


def kernel_variant(elf: Path) -> str:
    """Which kernels an image holds: the DSP SIMD variants are linked only when the build
    enables them (KERNELS_DSP=1, firmware/kernels/dsp.h)."""
    import subprocess

    from pytools.build.builder import CROSS

    p = subprocess.run([CROSS + "nm", "-j", str(elf)], capture_output=True, text=True)
    if p.returncode != 0:
        return "unknown (nm failed)"
    dsp = sorted(s.removesuffix("_dsp_run") for s in p.stdout.split() if s.endswith("_dsp_run"))
    if dsp:
        return f"optimized DSP SIMD variants ({', '.join(dsp)}); the rest reference C"
    return "reference C (non-DSP)"


DSP_FLAG = "-DKERNELS_DSP=1"  # firmware/build.toml's [cpu.cortex-m7] switch (kernels/dsp.h)
KERNELS = ("optimized", "reference")


@contextmanager
def reference_kernels() -> Iterator[None]:
    """Firmware built inside links the reference kernels: firmware/build.toml's spec without
    -DKERNELS_DSP=1, compiled into build/kernels_ref/ so the two builds never share objects
    (tests/kernels/conv/test_dsp_kernels.py builds its reference firmware the same way)."""
    from pytools.build import builder

    spec_of, build_dir = builder.target_spec, builder.BUILD

    def reference_spec(board: Board) -> Any:
        spec = spec_of(board)
        return dataclasses.replace(
            spec,
            cflags=[f for f in spec.cflags if f != DSP_FLAG],
            ldflags=[f for f in spec.ldflags if f != DSP_FLAG],
            defines=dict(spec.defines),
        )

    builder.target_spec, builder.BUILD = reference_spec, build_dir / "kernels_ref"
    try:
        yield
    finally:
        builder.target_spec, builder.BUILD = spec_of, build_dir


def granularity(board: Board) -> int:
    """Counter units per timer tick: 40 instructions on the emulated board's 25 MHz timer."""
    return round(1e9 / board.clock_hz) if board.counter_unit == "instructions" else 1


def choose_samples(
    model_path: Path,
    graph: Graph,
    plan: Callable[[], CompiledTraining],
    *,
    samples: Samples | None,
    samples_file: str,
    dataset: str,
    label_column: str | None,
    count: int,
    seed: int,
) -> SampleChoice:
    """The samples the steps train on (samples.py's order of choice). plan(): the training
    plan on the host twin, compiled only when drawn samples need its forward pass."""
    if samples_file and dataset:
        raise ToolError("give --samples FILE.npz or --dataset NAME|PATH, not both")
    if samples is not None:
        return sample_sources.given(graph, samples, f"{len(samples[1])} given samples in turn")
    if samples_file:
        return sample_sources.from_data(graph, samples_file, count, seed, None, option="--samples")
    if dataset:
        return sample_sources.from_data(graph, dataset, count, seed, label_column)
    own = sample_sources.own_kind(model_path, graph, count, seed)
    return own if own is not None else sample_sources.drawn(plan(), count, seed)


# ------------------------------------------------------------------------------- run_bench


def run_bench(
    model_path: Path,
    scheme_spec: str,
    board_name: str | None,
    out_md: Path | None,
    *,
    steps: int = 5,
    per_op: bool = True,
    port: str | None = None,
    link_only: bool = False,
    samples: Samples | None = None,
    samples_file: str = "",
    dataset: str = "",
    label_column: str | None = None,
    sample_count: int = DEFAULT_COUNT,
    seed: int = 0,
    lr: float | None = None,
    kernels: str = "optimized",
    loss: str = "auto",
    new_head: int = 0,
) -> dict[str, Any]:
    """Benchmarks one training step of model_path under scheme_spec on a board.

    board_name: a board of boards/ (None: the emulated mps2_an500). scheme_spec: a scheme
    file or the inline form ("bias=2,-1=1"). out_md: where to write the Markdown report
    (None: nowhere; it is also returned under "markdown").
    steps: steps measured (each whole and split); per_op: the last one also one INVOKE per
    operator; port: a serial port for a real board (default: its ST-LINK); link_only: compile
    and link only (memory from the linker, no cost, no board needed).
    samples: (real-valued inputs, labels) to train on in turn; samples_file: an .npz (x/y or
    x_train/y_train); dataset: a built-in data set or the user's own file (both through the
    loader `invoke train` uses); none of them: the model's own kind (samples.py).
    sample_count: how many the steps cycle through; seed: of the split and of drawn samples.
    lr: the steps' learning rate (None: the first of learning_rate.CANDIDATES that does not
    diverge on the host twin; a given one is checked the same way and the report says if it
    diverges). kernels: "optimized" (the firmware as firmware/build.toml builds it) or
    "reference" (the same firmware without -DKERNELS_DSP=1); loss: auto | ce | bce | mse;
    new_head: replace the output layer by a new_head-class one first.
    Returns a dict of figures, each with its unit. A step that does not fit is returned with
    fits=False and the overflow, not raised.
    """
    if kernels not in KERNELS:
        raise ToolError(f"kernels must be one of {', '.join(KERNELS)}, not {kernels!r}")
    if steps < 1:
        raise ToolError(f"steps must be at least 1, got {steps}")
    if kernels == "reference":
        with reference_kernels():
            args: dict[str, Any] = dict(steps=steps, per_op=per_op, port=port, link_only=link_only)
            args |= dict(samples=samples, samples_file=samples_file, dataset=dataset)
            args |= dict(label_column=label_column)
            args |= dict(sample_count=sample_count, seed=seed, lr=lr, loss=loss, new_head=new_head)
            res = run_bench(model_path, scheme_spec, board_name, out_md, **args)
            res["kernels_choice"] = "reference"
            return res
    from pytools.model.tflite_import import load_tflite

    t0 = time.monotonic()
    board = load_board(board_name)
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ToolError(f"no model at {model_path}")
    if not link_only and not board.is_emulated:
        port = _attached(board, port)  # before anything is compiled: a real board must be there
    scheme = load_scheme(scheme_spec)
    graph = load_tflite(model_path)
    if new_head:
        from pytools.train.new_head import replace_head

        graph, _ = replace_head(graph, new_head)

    twin_plans: dict[float, CompiledTraining] = {}

    def compile_at(rate: float) -> CompiledTraining:
        """The plan at a rate, not linked: for the host twin."""
        if rate not in twin_plans:
            twin_plans[rate] = compile_training(
                graph, scheme, board, model_path.stem, lr=rate, loss=loss, link=False
            )
        return twin_plans[rate]

    rate: RateCheck | None = None
    choice: SampleChoice | None = None
    if not link_only:
        choice = choose_samples(
            model_path,
            graph,
            lambda: compile_at(lr if lr is not None else CANDIDATES[0]),
            samples=samples,
            samples_file=samples_file,
            dataset=dataset,
            label_column=label_column,
            count=sample_count,
            seed=seed,
        )
        rate = check_rate(compile_at, choice, lr)
    step_lr = rate.lr if rate is not None else (lr if lr is not None else 0.0)
    ct = compile_training(graph, scheme, board, model_path.stem, lr=step_lr, loss=loss)
    macs = step_macs(ct)
    nf = ct.train.n_forward
    res: dict[str, Any] = {
        "model": model_path.stem,
        "model_path": str(model_path),
        "scheme": scheme.describe(),
        "scheme_spec": scheme_spec,
        "board": board.name,
        "board_description": board.description,
        "timing_note": board.timing_note,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "operators": {"step": len(ct.train.graph.ops), "forward": nf, "backward_update": len(macs) - nf},
        "op_kinds": [op.kind for op in ct.train.graph.ops],
        # The forward operator each operator belongs to (itself for a forward layer; a backward
        # or update operator's layer; -1 for the loss and gradient sums).
        "op_layer": [layer_of(op, nf) for op in ct.train.graph.ops],
        "op_resolution": [resolution(ct.train.graph, op) for op in ct.train.graph.ops],
        "op_desc": [describe(ct.train.graph, op) for op in ct.train.graph.ops],
        "kernels": kernel_variant((ct.image or ct.base).elf) if (ct.image or ct.base) else "",
        "fits": ct.image is not None,
        "link_error": ct.link_error,
        "memory": memory_figures(ct),
        "macs": {
            "unit": "multiply-accumulates per training step",
            "forward": sum(macs[:nf]),
            "backward_update": sum(macs[nf:]),
            "step": sum(macs),
            "model_forward": sum(graph_macs(graph).values()),
            "per_op": macs,
        },
        "model_params": model_params(graph),
        "lr": step_lr,
        "lr_check": rate.sentence() if rate is not None else "",
        "lr_diverged": bool(rate and rate.diverged),
        "cost": None,
    }
    if choice is not None:
        res["samples"] = choice.description
    if res["fits"] and not link_only:
        assert choice is not None
        res["cost"] = _run_on_board(ct, board, steps, per_op, port, Feed(ct, choice))
        derive(res, board)
    res["seconds"] = round(time.monotonic() - t0, 1)
    res["markdown"] = markdown(res)
    if out_md is not None:
        Path(out_md).write_text(res["markdown"] + "\n")
    return res


def _run_on_board(
    ct: CompiledTraining, board: Board, steps: int, per_op: bool, port: str | None, feed: Feed
) -> dict[str, Any]:
    assert ct.image is not None
    name = None
    if board.is_emulated and not port:
        name = f"bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        port = emulator.start(board, ct.image.elf, name=name).url
    elif not board.is_emulated:
        assert port is not None  # run_bench found the attached board
        from pytools.flashing import flash_image

        flash_image(board, ct.image)
    try:
        with Link.open(port, baudrate=board.baud, timeout=LINK_TIMEOUT, retries=LINK_RETRIES) as link:
            return measure(link, ct, steps, per_op, feed)
    finally:
        if name:
            emulator.stop(name)
            for suffix in (".log", ".json", ".flash"):  # the emulated flash too: nothing persists
                (emulator.RUN / f"{name}{suffix}").unlink(missing_ok=True)


def split_check(
    sums: list[int], steps: list[int], split_invokes: list[int], whole_invokes: list[int], overhead: float
) -> tuple[list[float], int]:
    """Per step, (forward + backward) - the split's extra INVOKEs' overhead - the whole step, and
    the most INVOKEs one step's two ways took together (3 unstreamed; a streamed input's fetches
    add one per stop to each way): each of them is read to within one timer tick."""
    residuals = [
        round(s - (si - wi) * overhead - w, 1)
        for s, w, si, wi in zip(sums, steps, split_invokes, whole_invokes, strict=True)
    ]
    return residuals, max(si + wi for si, wi in zip(split_invokes, whole_invokes, strict=True))


def derive(res: dict[str, Any], board: Board) -> None:
    """Peak SRAM from the measured high-water, medians, the whole-against-parts checks, MACs
    per unit."""
    mem, cost = res["memory"], res["cost"]
    mem["stack_high_water"] = cost.pop("stack_high_water")
    mem["firmware_ram_static"] = cost.pop("ram_static")  # the firmware's own linker symbols
    mem["firmware_flash_used"] = cost.pop("flash_used")
    mem["reserved_thread_stack"] = cost.pop("stack_size")
    check_stack(mem["stack_high_water"], mem["reserved_thread_stack"], board.name)
    mem["peak_sram"] = mem["linker_ram"] - mem["reserved_thread_stack"] + mem["stack_high_water"]
    mem["peak_formula"] = PEAK_FORMULA
    cost.pop("counter_unit")
    cost["unit"] = board.counter_unit
    cost["timing_note"] = board.timing_note
    res["build_id"] = cost.pop("build_id")
    g = granularity(board)
    cost["granularity"] = g
    cost["step"] = int(statistics.median(cost["steps"]))
    cost["forward"] = int(statistics.median(cost["forward_steps"]))
    cost["backward_update"] = int(statistics.median(cost["backward_update_steps"]))
    # One INVOKE's own cost (reading the counter, the call, the reply's bookkeeping before the
    # counter stops): what every extra INVOKE adds to a step measured in parts.
    overhead = statistics.fmean(cost["empty_invokes"])
    cost["dispatch_overhead"] = overhead
    sums = [f + b for f, b in zip(cost["forward_steps"], cost["backward_update_steps"], strict=True)]
    cost["split_sum"] = int(statistics.median(sums))
    # INVOKEs each way took: 1 for the whole step and 2 split, unless a streamed input's fetches
    # stopped the board (measure()); a bench result without the counts is of an unstreamed plan.
    whole_invokes = cost.get("invokes", {}).get("steps") or [1] * len(sums)
    split_invokes = cost.get("invokes", {}).get("split") or [2] * len(sums)
    residuals, invokes = split_check(sums, cost["steps"], split_invokes, whole_invokes, overhead)
    cost["split_residuals"] = residuals
    cost["split_extra_invokes"] = max(si - wi for si, wi in zip(split_invokes, whole_invokes, strict=True))
    cost["split_invokes"] = invokes
    cost["split_tolerance"] = invokes * g  # every INVOKE of both ways read to within one tick
    cost["per_op_sum"] = sum(cost["per_op"])
    if cost["per_op"]:
        n = (cost.get("invokes", {}).get("per_op") or [len(cost["per_op"])])[0]
        whole = cost["steps"][-1]
        extra = n - whole_invokes[-1]  # n - 1 unstreamed
        cost["parts_check"] = {
            "whole": whole,
            "parts": cost["per_op_sum"],
            "invokes": n,
            "extra_invokes": extra,
            "dispatch": round(extra * overhead, 1),
            "residual": round(cost["per_op_sum"] - extra * overhead - whole, 1),
            "tolerance": (n + whole_invokes[-1]) * g,  # every INVOKE read to within one tick
        }
    if not board.is_emulated:
        cost["ms_per_step"] = 1e3 * cost["step"] / board.clock_hz
    res["macs"]["per_unit"] = res["macs"]["step"] / cost["step"] if cost["step"] else 0.0
