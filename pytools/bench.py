"""The training benchmark: what one training step costs a board, in memory and in time.

run_bench(model, scheme, board, out_md) compiles the training step for the board, links it
into the firmware, runs it on the board and measures:

- peak SRAM, measured: the linker's RAM figure for the image holding the training plan
  (static data + the plan's arena + the reserved stacks), minus the reserved thread stack,
  plus the thread stack's high-water mark the running firmware reports after the steps.
  The arena is also broken down by category at its busiest operator (compile_train);
- flash, from the linker;
- cost per training step: one whole INVOKE of the plan (median of a few steps), the same
  step split into forward (operators [0, n_forward)) and loss + backward + update (the
  rest) by two INVOKE ranges, and per operator (one INVOKE per [i, i+1)), in the board's
  counter unit: instructions under QEMU -icount shift=0 on the emulated board, DWT cycles
  on a real one. Every figure carries the board's timing_note;
- multiply-accumulates per step: forward MACs of conv, depthwise and fully-connected layers,
  plus the backward MACs of the operators actually in the step (input gradients: as many as
  the layer's forward; weight gradients: the forward's times the trained fraction of rows),
  and MACs per counter unit.

A step that does not fit the board is reported as such, with the breakdown and the
linker's overflow, not run. A real board is refused unless one is attached (its figures
are measured on the board itself); `link_only=True` gives its memory figures alone.

    python -m pytools.bench --model M.tflite --scheme S [--board B] [--out report.md]
    python -m pytools.bench --suite --out BENCHMARKS.md        (zoo + MobileNetV2 tables)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import re
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytools import emulator
from pytools.boards import Board, load_board
from pytools.errors import USER_ERRORS, ToolError
from pytools.link.client import Link
from pytools.link.protocol import Msg, layout
from pytools.model.host_twin import io_tensors, tensor_table
from pytools.model.ir import Graph, Op, Tensor
from pytools.model.planner import align_up
from pytools.paths import ROOT
from pytools.train.compile_train import (
    CATEGORIES,
    CompiledTraining,
    arena_profile,
    category,
    compile_training,
    lifetimes,
)
from pytools.train.scheme import load_scheme

PEAK_FORMULA = "peak SRAM = linker static RAM - reserved thread stack + measured thread-stack high-water"
_OVERFLOW = re.compile(r"(\w+) overflowed by ([\d,]+) bytes")
_FORWARD_MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")

# ------------------------------------------------------------------------------- MACs


def _prod(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def op_macs(g: Graph, op: Op) -> int:
    """Multiply-accumulates of one forward conv / depthwise / fully-connected operator."""
    if op.kind not in _FORWARD_MAC_OPS:
        return 0
    x, w, y = g.tensor(op.inputs[0]), g.tensor(op.inputs[1]), g.tensor(op.outputs[0])
    if op.kind == "CONV_2D":  # w [cout, kh, kw, cin]
        return _prod(y.shape) * _prod(w.shape[1:])
    if op.kind == "DEPTHWISE_CONV_2D":  # w [1, kh, kw, cout]
        return _prod(y.shape) * w.shape[1] * w.shape[2]
    return (_prod(x.shape) // w.shape[1]) * _prod(w.shape)  # FC: rows x out x in


def _resolution(g: Graph, op: Op) -> str:
    """HxW of an operator's first output (NHWC; a clamp mask: of its activation), or "vector"."""
    t = op.inputs[0] if op.kind == "CLAMP_MASK" else (op.outputs[0] if op.outputs else -1)
    shape = g.tensor(t).shape if t >= 0 else ()
    return f"{shape[1]}x{shape[2]}" if len(shape) == 4 else "vector"


def _params(g: Graph) -> int:
    """Weights and biases of the conv / depthwise / fully-connected layers."""
    return sum(
        _prod(g.tensor(t).shape)
        for op in g.ops
        if op.kind in _FORWARD_MAC_OPS
        for t in op.inputs[1:3]
        if t >= 0
    )


def graph_macs(g: Graph) -> dict[int, int]:
    """Operator index -> forward MACs, for the operators that multiply-accumulate."""
    return {op.index: m for op in g.ops if (m := op_macs(g, op))}


def step_macs(ct: CompiledTraining) -> list[int]:
    """MACs of every operator of the training step, in step order.

    Forward layers count as in graph_macs (a trained layer computes the same products);
    X_GRAD_INPUT as many as its layer's forward (the transposed convolution); X_GRAD_UPDATE
    its forward's times rows/channels for the weight gradient (none for a bias-only update:
    a sum is not a multiply-accumulate). Masks, adds, pooling and the loss count none.
    """
    g = ct.train.graph
    out = []
    for op in g.ops:
        # The two-pass and float-gradient variants compute the same products as their kind.
        kind = op.kind.removesuffix("_2PASS").removesuffix("_F32")
        if kind in _FORWARD_MAC_OPS:
            out.append(op_macs(g, op))
        elif kind.endswith("_GRAD_INPUT") and kind.rsplit("_GRAD_", 1)[0] in _FORWARD_MAC_OPS:
            out.append(op_macs(g, g.ops[op.options["forward"]]))
        elif kind.endswith("_GRAD_UPDATE"):
            fwd = g.ops[op.options["forward"]]
            w = g.tensor(fwd.inputs[1])
            channels = w.shape[-1] if fwd.kind == "DEPTHWISE_CONV_2D" else w.shape[0]
            out.append(op_macs(g, fwd) * int(op.options.get("train_rows", 0)) // channels)
        else:
            out.append(0)
    return out


# ------------------------------------------------------------------------------- memory


def live_tensors(ct: CompiledTraining, step: int) -> list[tuple[str, tuple[int, ...], int, str]]:
    """(name, shape, bytes, category) of the arena tensors alive at an operator, largest first."""
    g = ct.train.graph
    out = [
        (
            g.tensor(t).name,
            g.tensor(t).shape,
            align_up(g.tensor(t).nbytes),
            category(ct.train, t, g.tensor(t).name),
        )
        for t, (a, b) in lifetimes(ct).items()
        if a <= step <= b
    ]
    return sorted(out, key=lambda x: -x[2])


def _memory(ct: CompiledTraining) -> dict[str, Any]:
    m, c = ct.board.memory, ct.compiled
    assert ct.base is not None
    base_ram, base_flash = ct.base.regions["RAM"].used, ct.base.regions["FLASH"].used
    prof = arena_profile(ct)
    nf = ct.train.n_forward
    back = max(range(nf, len(prof)), key=lambda i: sum(prof[i].values()), default=nf)
    g = ct.train.graph
    mem: dict[str, Any] = {
        "unit": "bytes",
        "ram_limit": m.ram_size,
        "flash_limit": m.flash_size,
        "arena": c.arena,
        "arena_peak_operator": ct.peak_step,
        "arena_peak_kind": g.ops[ct.peak_step].kind if ct.peak_step < len(g.ops) else "end",
        "arena_breakdown": {k: ct.breakdown[k] for k in CATEGORIES},
        "arena_peak_tensors": live_tensors(ct, ct.peak_step),
        "arena_backward_peak_operator": back,
        "arena_backward_peak_kind": g.ops[back].kind if back < len(g.ops) else "end",
        "arena_backward_breakdown": prof[back] if back < len(prof) else {},
        "inference_activations": max(
            (p["activations"] + p["scratch"] for p in prof[:nf]), default=0
        ),  # forward activations + scratch at their busiest forward operator
        "trainable_state": ct.breakdown["state total"],
        "flash_weights": ct.breakdown["flash weights"],
        "plan_bytes": len(c.blob),
        "firmware_ram": base_ram,
        "firmware_flash": base_flash,
        "reserved_thread_stack": m.stack_size,
        "reserved_handler_stack": m.handler_stack_size,
    }
    if ct.image is not None:
        mem["linker_ram"] = ct.image.regions["RAM"].used
        mem["linker_flash"] = ct.image.regions["FLASH"].used
        mem["ram_source"] = mem["flash_source"] = "linker"
        mem["overflow"] = {}
    else:
        mem["linker_ram"] = base_ram + c.arena  # what the image would need; the link failed
        mem["linker_flash"] = base_flash + len(c.blob)
        mem["ram_source"] = "sum of the firmware's RAM and the arena; the link failed"
        mem["flash_source"] = "sum of the firmware's flash and the plan; the link failed"
        mem["overflow"] = {r: int(n.replace(",", "")) for r, n in _OVERFLOW.findall(ct.link_error)}
    return mem


# ------------------------------------------------------------------------------- the board


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
            "give --port, use link_only for its memory figures, or benchmark the emulated board "
            "(mps2_an500, same memory limits)."
        ) from None


class _Bench:
    """The training plan on a board: inputs written once per step, INVOKE over ranges."""

    def __init__(self, link: Link, ct: CompiledTraining) -> None:
        self.link = link
        self.tensors = tensor_table(ct.compiled.blob)
        self.inputs, self.outputs = io_tensors(ct.compiled.blob)
        info = layout("MODEL_INFO_RSP").unpack(link.request(Msg.MODEL_INFO).payload)
        if info["status"] != 0:
            raise ToolError(f"the board has no usable model: {info['message']}")
        self.n_ops = info["n_ops"]

    def write_inputs(self, xs: list[np.ndarray]) -> None:
        chunk = self.link.board["max_payload"] - layout("TENSOR_WRITE").size
        for k, x in enumerate(xs):
            t = self.tensors[self.inputs[k]]
            data = np.ascontiguousarray(x, dtype=t["dtype_name"]).tobytes()
            for off in range(0, len(data), chunk):
                head = layout("TENSOR_WRITE").pack(io=0, index=k, offset=off)
                self.link.request(Msg.TENSOR_WRITE, head + data[off : off + chunk])

    def loss(self) -> float:
        """The step's loss (output 0 of the training plan, float32)."""
        req = layout("TENSOR_READ").pack(io=1, index=0, offset=0, length=4)
        return float(np.frombuffer(self.link.request(Msg.TENSOR_READ, req).payload, dtype="<f4")[0])

    def invoke(self, first: int, end: int) -> dict[str, Any]:
        """Operators [first, end) on what the arena holds now (inputs are not rewritten)."""
        rng = layout("INVOKE").pack(first=first, end=end)
        return layout("INVOKE_RSP").unpack(self.link.request(Msg.INVOKE, rng, timeout=600.0).payload)


Samples = tuple[np.ndarray, np.ndarray]  # float inputs (n, ...) in the model's real domain, labels (n,)


def _as_input(x: np.ndarray, t: Tensor) -> np.ndarray:
    """A real-valued sample as the model's input tensor takes it (quantized, or float)."""
    x = np.asarray(x, dtype=np.float32).reshape(t.shape)
    if t.dtype == "float32" or t.quant is None:
        return x.astype(t.dtype)
    info = np.iinfo(t.dtype)
    v = np.round(x / float(t.quant.scale[0])) + int(t.quant.zero_point[0])
    return np.clip(v, info.min, info.max).astype(t.dtype)


class _Feed:
    """The samples steps train on: the given ones in turn (quantized as the model's input
    is), or random ones (uniform int8, or normal floats) with random labels."""

    def __init__(self, ct: CompiledTraining, bench: _Bench, samples: Samples | None, seed: int) -> None:
        g = ct.train.graph
        self.x_tensor = g.tensor(g.inputs[0])
        self.spec = bench.tensors[bench.inputs[0]]
        self.classes = _prod(g.tensor(ct.train.logits).shape)
        head = ct.train.head
        if head is not None and head.loss == "bce" and self.classes == 1:
            self.classes = 2  # one sigmoid output: labels 0 and 1
        # A regression's MSE takes a float32 target vector instead of a label.
        self.target = g.tensor(ct.train.label) if head is not None and head.target == "vector" else None
        self.samples = samples
        self.rng = np.random.default_rng(seed)
        self.k = 0

    def next(self) -> list[np.ndarray]:
        if self.samples is not None:
            xs, ys = self.samples
            i = self.k % len(ys)
            self.k += 1
            if self.target is not None:
                return [
                    _as_input(xs[i], self.x_tensor),
                    np.asarray(ys[i], np.float32).reshape(self.target.shape),
                ]
            return [_as_input(xs[i], self.x_tensor), np.array([int(ys[i])], dtype=np.int32)]
        if self.spec["dtype_name"] == "float32":
            x = self.rng.normal(0.0, 1.0, self.spec["shape"]).astype(np.float32)
        else:
            info = np.iinfo(self.spec["dtype_name"])
            x = self.rng.integers(info.min, info.max + 1, self.spec["shape"]).astype(self.spec["dtype_name"])
        if self.target is not None:
            return [x, self.rng.normal(0.0, 1.0, self.target.shape).astype(np.float32)]
        return [x, np.array([self.rng.integers(0, self.classes)], dtype=np.int32)]


def _measure(
    link: Link,
    ct: CompiledTraining,
    steps: int,
    per_op: bool,
    feed_args: tuple[Samples | None, int],
    fixed_input: bool,
) -> dict[str, Any]:
    """steps whole steps, steps split steps (two ranges), one step operator by operator.

    Each step takes the next sample unless fixed_input. Every INVOKE measures what its own
    step does: on the state the previous step trained, with this step's sample.
    """
    bench = _Bench(link, ct)
    n, nf = bench.n_ops, ct.train.n_forward
    feed = _Feed(ct, bench, *feed_args)
    first = feed.next()

    def sample() -> list[np.ndarray]:
        return first if fixed_input else feed.next()

    full, fwd, back, losses = [], [], [], []
    for k in range(steps):
        bench.write_inputs(first if k == 0 else sample())
        full.append(bench.invoke(0, n)["cost"])
        losses.append(bench.loss())
    for _ in range(steps):
        bench.write_inputs(sample())
        fwd.append(bench.invoke(0, nf)["cost"])
        back.append(bench.invoke(nf, n)["cost"])
        losses.append(bench.loss())
    per: list[int] = []
    if per_op:
        bench.write_inputs(sample())
        per = [bench.invoke(i, i + 1)["cost"] for i in range(n)]
    info = link.info()
    return {
        "steps": full,
        "forward_steps": fwd,
        "backward_update_steps": back,
        "per_op": per,
        "losses": losses,
        "stack_high_water": info["stack_high_water"],
        "stack_size": info["stack_size"],
        "ram_static": info["ram_static"],
        "flash_used": info["flash_used"],
        "counter_unit": info["counter_unit"],
        "build_id": link.board.get("build_id", ""),
    }


def kernel_variant(elf: Path) -> str:
    """Which forward kernels an image holds: the DSP SIMD variants are linked only when the
    build enables them (KERNELS_DSP=1, firmware/kernels/dsp.h)."""
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
    (tests/kernels/test_dsp_kernels.py builds its reference firmware the same way)."""
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


def _granularity(board: Board) -> int:
    """Counter units per timer tick: 40 instructions on the emulated board's 25 MHz timer."""
    return round(1e9 / board.clock_hz) if board.counter_unit == "instructions" else 1


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
    fixed_input: bool = False,
    samples: Samples | None = None,
    seed: int = 0,
    lr: float = 0.05,
    kernels: str = "optimized",
    loss: str = "auto",
    new_head: int = 0,
) -> dict[str, Any]:
    """Benchmarks one training step of model_path under scheme_spec on a board.

    board_name: a board of boards/ (None: the emulated mps2_an500). scheme_spec: a scheme
    file or the inline form ("bias=2,-1=1"). out_md: where to write the Markdown report
    (None: nowhere; it is also returned under "markdown").
    steps: whole steps for the median (and as many split steps); per_op: also one INVOKE per
    operator; port: a serial port for a real board (default: its ST-LINK); link_only:
    compile and link only (memory from the linker, no cost, no board needed); fixed_input:
    the same sample every step (with lr=0 every step is then the same work, which isolates
    the measurement itself); samples: (float inputs, labels) to train on in turn, quantized
    as the model's input (default: random int8 samples and labels; the gradient kernels
    skip zeros, so the backward cost depends on the data); lr: the step's learning rate;
    kernels: "optimized" (the firmware as firmware/build.toml builds it: the DSP SIMD
    variants on the Cortex-M7) or "reference" (the same firmware without -DKERNELS_DSP=1);
    loss: auto | ce | bce | mse (pytools/train/losses.py); new_head: replace the output layer by
    a new_head-class one first (pytools/train/new_head.py).
    Returns a dict of figures, each with its unit; see the module docstring. A step that
    does not fit is returned with fits=False and the overflow, not raised.
    """
    if kernels not in KERNELS:
        raise ToolError(f"kernels must be one of {', '.join(KERNELS)}, not {kernels!r}")
    if kernels == "reference":
        with reference_kernels():
            args = dict(steps=steps, per_op=per_op, port=port, link_only=link_only)
            args |= dict(
                fixed_input=fixed_input, samples=samples, seed=seed, lr=lr, loss=loss, new_head=new_head
            )
            res = run_bench(model_path, scheme_spec, board_name, out_md, **args)  # type: ignore[arg-type]
            res["kernels_choice"] = "reference"
            return res
    from pytools.model.tflite_import import load_tflite

    t0 = time.monotonic()
    board = load_board(board_name)
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ToolError(f"no model at {model_path}")
    scheme = load_scheme(scheme_spec)
    graph = load_tflite(model_path)
    if new_head:
        from pytools.train.new_head import replace_head

        graph, _ = replace_head(graph, new_head)
    ct = compile_training(graph, scheme, board, model_path.stem, lr=lr, loss=loss)
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
        "op_layer": [_layer_of(op, nf) for op in ct.train.graph.ops],
        "op_resolution": [_resolution(ct.train.graph, op) for op in ct.train.graph.ops],
        "op_desc": [_describe(ct.train.graph, op) for op in ct.train.graph.ops],
        "kernels": kernel_variant((ct.image or ct.base).elf) if (ct.image or ct.base) else "",
        "fits": ct.image is not None,
        "link_error": ct.link_error,
        "memory": _memory(ct),
        "macs": {
            "unit": "multiply-accumulates per training step",
            "forward": sum(macs[:nf]),
            "backward_update": sum(macs[nf:]),
            "step": sum(macs),
            "model_forward": sum(graph_macs(graph).values()),
            "per_op": macs,
        },
        "model_params": _params(graph),
        "lr": lr,
        "cost": None,
    }
    if res["fits"] and not link_only:
        res["cost"] = _run_on_board(ct, board, steps, per_op, port, (samples, seed), fixed_input)
        res["samples"] = (
            f"{len(samples[1])} given samples in turn (real-valued, quantized as the model's input)"
            if samples is not None
            else "random samples (uniform over the input type) with random labels"
        )
        _derive(res, board)
    res["seconds"] = round(time.monotonic() - t0, 1)
    res["markdown"] = markdown(res)
    if out_md is not None:
        Path(out_md).write_text(res["markdown"] + "\n")
    return res


def _run_on_board(
    ct: CompiledTraining,
    board: Board,
    steps: int,
    per_op: bool,
    port: str | None,
    feed_args: tuple[Samples | None, int],
    fixed_input: bool,
) -> dict[str, Any]:
    assert ct.image is not None
    name = None
    if board.is_emulated and not port:
        name = f"bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        port = emulator.start(board, ct.image.elf, name=name).url
    elif not board.is_emulated:
        port = _attached(board, port)
        from pytools.flashing import flash_image

        flash_image(board, ct.image)
    try:
        with Link.open(port, baudrate=board.baud) as link:
            return _measure(link, ct, steps, per_op, feed_args, fixed_input)
    finally:
        if name:
            emulator.stop(name)
            for suffix in (".log", ".json"):
                (emulator.RUN / f"{name}{suffix}").unlink(missing_ok=True)


def _derive(res: dict[str, Any], board: Board) -> None:
    """Peak SRAM from the measured high-water, medians, split check, MACs per unit."""
    mem, cost = res["memory"], res["cost"]
    mem["stack_high_water"] = cost.pop("stack_high_water")
    mem["firmware_ram_static"] = cost.pop("ram_static")  # the firmware's own linker symbols
    mem["firmware_flash_used"] = cost.pop("flash_used")
    mem["reserved_thread_stack"] = cost.pop("stack_size")
    mem["peak_sram"] = mem["linker_ram"] - mem["reserved_thread_stack"] + mem["stack_high_water"]
    mem["peak_formula"] = PEAK_FORMULA
    cost.pop("counter_unit")
    cost["unit"] = board.counter_unit
    cost["timing_note"] = board.timing_note
    res["build_id"] = cost.pop("build_id")
    cost["step"] = int(statistics.median(cost["steps"]))
    cost["forward"] = int(statistics.median(cost["forward_steps"]))
    cost["backward_update"] = int(statistics.median(cost["backward_update_steps"]))
    sums = [f + b for f, b in zip(cost["forward_steps"], cost["backward_update_steps"], strict=True)]
    cost["split_sum"] = int(statistics.median(sums))
    cost["split_difference"] = cost["split_sum"] - cost["step"]
    cost["granularity"] = _granularity(board)
    cost["per_op_sum"] = sum(cost["per_op"])
    if not board.is_emulated:
        cost["ms_per_step"] = 1e3 * cost["step"] / board.clock_hz
    res["macs"]["per_unit"] = res["macs"]["step"] / cost["step"] if cost["step"] else 0.0


# ------------------------------------------------------------------------------- Markdown


def _kb(n: int) -> str:
    return f"{n:,} B ({n / 1024:.1f} KiB)"


def _m(n: float, unit: str = "") -> str:
    return f"{n / 1e6:,.2f} M{' ' + unit if unit else ''}"


def markdown(res: dict[str, Any], per_op_rows: int = 60) -> str:
    """The report of one run: memory, cost, MACs, each figure with its unit."""
    mem, cost, macs = res["memory"], res["cost"], res["macs"]
    ops = res["operators"]
    lines = [
        f"### {res['model']} on {res['board']}: {res['scheme']} (lr {res['lr']:g})",
        "",
        f"- board: {res['board_description']}; {res['date']}",
        f"- forward kernels: {res['kernels']}"
        + (f"; firmware build {res['build_id']}" if res.get("build_id") else ""),
        f"- step: {ops['step']} operators ({ops['forward']} forward, "
        f"{ops['backward_update']} loss + backward + update)",
    ]
    if res["fits"]:
        lines.append(
            f"- **fits** {res['board']}: SRAM {mem['linker_ram']:,} of {mem['ram_limit']:,} B, "
            f"flash {mem['linker_flash']:,} of {mem['flash_limit']:,} B (linker)"
        )
    else:
        over = ", ".join(f"{r} by {n:,} B" for r, n in mem["overflow"].items()) or "see the link error"
        lines.append(
            f"- **does not fit** {res['board']}: it would need {mem['linker_ram']:,} B of SRAM "
            f"(limit {mem['ram_limit']:,} B) and {mem['linker_flash']:,} B of flash "
            f"(limit {mem['flash_limit']:,} B); the linker refuses it: over {over}"
        )
    lines += ["", "| memory | bytes | source |", "|---|---:|---|"]
    rows = [
        ("arena (planned, whole step)", mem["arena"], "compile_train"),
        ("firmware RAM without a model (stacks, link buffers, .data/.bss)", mem["firmware_ram"], "linker"),
        ("static RAM with the training plan", mem["linker_ram"], mem["ram_source"]),
        ("reserved thread stack", mem["reserved_thread_stack"], "board file / INFO"),
    ]
    if "peak_sram" in mem:
        rows += [
            ("thread-stack high-water (measured)", mem["stack_high_water"], "INFO after the steps"),
            ("**peak SRAM**", mem["peak_sram"], PEAK_FORMULA),
        ]
    rows += [
        ("flash (image with the plan)", mem["linker_flash"], mem["flash_source"]),
        ("of which the plan (weights, tables)", mem["plan_bytes"], "compile_train"),
        ("trainable state in RAM (weight slices, biases, RNG)", mem["trainable_state"], "compile_train"),
    ]
    lines += [f"| {a} | {b:,} | {c} |" for a, b, c in rows]
    bd, back = mem["arena_breakdown"], mem["arena_backward_breakdown"]
    lines += [
        "",
        f"Arena by category (bytes) at its busiest operator (#{mem['arena_peak_operator']}, "
        f"{mem['arena_peak_kind']}) and at the busiest operator of loss + backward + update "
        f"(#{mem['arena_backward_peak_operator']}, {mem['arena_backward_peak_kind']}):",
        "",
        "| category | busiest operator | busiest backward operator |",
        "|---|---:|---:|",
        *[f"| {k} | {bd[k]:,} | {back.get(k, 0):,} |" for k in CATEGORIES],
        f"| total | {sum(bd.values()):,} | {sum(back.values()):,} |",
    ]
    if cost is None:
        why = "the step does not fit" if not res["fits"] else "memory only (link_only): no board was run"
        lines += ["", f"Cost: not measured ({why})."]
        lines += [
            "",
            f"MACs per step: {macs['step']:,} ({macs['forward']:,} forward, "
            f"{macs['backward_update']:,} backward + update).",
        ]
        return "\n".join(lines)
    u = cost["unit"]
    n = len(cost["forward_steps"])

    def per(m: int, c: int) -> str:
        return f"{m / c:.3f}" if c else ""

    steps = cost["steps"]
    lines += [
        "",
        f"Cost in {u} ({cost['timing_note']}):",
        "",
        f"| figure | {u} | MACs | MACs per {u[:-1]} |",
        "|---|---:|---:|---:|",
        f"| **training step**, one INVOKE (median of {len(steps)}; range {min(steps):,} to {max(steps):,}) "
        f"| {cost['step']:,} | {macs['step']:,} | {per(macs['step'], cost['step'])} |",
        f"| forward, operators [0, {ops['forward']}) (median of {n}) | {cost['forward']:,} | "
        f"{macs['forward']:,} | {per(macs['forward'], cost['forward'])} |",
        f"| loss + backward + update, [{ops['forward']}, {ops['step']}) (median of {n}) "
        f"| {cost['backward_update']:,} | {macs['backward_update']:,} | "
        f"{per(macs['backward_update'], cost['backward_update'])} |",
        f"| forward + backward, two INVOKEs per step (median of {n}) | {cost['split_sum']:,} | | |",
    ]
    if cost["per_op"]:
        lines.append(
            f"| one step as {len(cost['per_op'])} one-operator INVOKEs (each also times its own "
            f"call, ~40 {u}) | {cost['per_op_sum']:,} | | |"
        )
    if "ms_per_step" in cost:
        lines.append(f"| training step in ms at {res['board']}'s clock | {cost['ms_per_step']:.1f} ms | | |")
    lines += [
        "",
        f"Samples: {res['samples']}; learning rate {res['lr']:g}. Loss of each step (the whole-step "
        f"INVOKEs, then the split ones): {', '.join(f'{v:.3f}' for v in cost['losses'])}.",
        "",
        f"Each INVOKE is timed by the firmware (timer tick: {cost['granularity']} {u}). Steps differ in "
        "their sample and in the state the previous step trained, and the gradient kernels skip zero "
        "gradients, so the backward part of a step depends on its data; MACs count every product, "
        "skipped or not.",
    ]
    if cost["per_op"]:
        lines += ["", _per_op_table(res, per_op_rows)]
        share = 0.0 if len(cost["per_op"]) <= per_op_rows else 0.005
        lines += ["", f"Per layer (the same INVOKEs; {u}):", "", layer_table(res, min_share=share)]
    return "\n".join(lines)


def _describe(g: Graph, op: Op) -> str:
    """A forward layer in a few words: kind, filter, input -> output shape."""
    if not op.inputs or op.inputs[0] < 0 or not op.outputs:
        return op.kind
    shape_in = "x".join(map(str, g.tensor(op.inputs[0]).shape[1:]))
    shape_out = "x".join(map(str, g.tensor(op.outputs[0]).shape[1:]))
    k = ""
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(op.inputs) > 1:
        w = g.tensor(op.inputs[1]).shape
        k = f" {w[1]}x{w[2]}" + (
            f"/{op.options.get('stride_h', 1)}" if op.options.get("stride_h", 1) > 1 else ""
        )
    return f"{op.kind}{k} {shape_in} -> {shape_out}"


def _layer_of(op: Op, nf: int) -> int:
    if op.index < nf and op.kind != "CLAMP_MASK":
        return op.index
    return int(op.options.get("forward", -1))


def _phase(i: int, kind: str, nf: int) -> str:
    from pytools.train.losses import LOSS_OPS, LOSS_OPS_F32

    return (
        "forward" if i < nf else ("loss" if kind in (*LOSS_OPS, *LOSS_OPS_F32, "LOGITS_S32") else "backward")
    )


def _per_op_table(res: dict[str, Any], max_rows: int) -> str:
    """Per operator for short steps; for long ones, by phase and kind, and forward by resolution."""
    cost, kinds, macs = res["cost"], res["op_kinds"], res["macs"]["per_op"]
    nf, u = res["operators"]["forward"], res["cost"]["unit"]
    total = max(cost["per_op_sum"], 1)
    if len(kinds) <= max_rows:
        rows = [
            f"| {i} | {_phase(i, k, nf)} | {k} | {c:,} | {100 * c / total:.1f} | {m:,} |"
            for i, (k, c, m) in enumerate(zip(kinds, cost["per_op"], macs, strict=True))
        ]
        head = f"Per operator (one INVOKE each, one step; {u}):"
        return "\n".join(
            [head, "", f"| # | phase | operator | {u} | % | MACs |", "|---:|---|---|---:|---:|---:|", *rows]
        )

    def table(title: str, key_head: str, groups: dict[str, list[int]], order: list[str]) -> list[str]:
        rows = [
            f"| {k} | {groups[k][0]} | {groups[k][1]:,} | {100 * groups[k][1] / total:.1f} | "
            f"{groups[k][2]:,} | {groups[k][2] / max(groups[k][1], 1):.3f} |"
            for k in order
        ]
        return [
            title,
            "",
            f"| {key_head} | operators | {u} | % of the step | MACs | MACs per {u[:-1]} |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
        ]

    by_kind: dict[str, list[int]] = {}
    by_res: dict[str, list[int]] = {}
    for i, (k, c, m) in enumerate(zip(kinds, cost["per_op"], macs, strict=True)):
        for groups, key in ((by_kind, f"{_phase(i, k, nf)}: {k}"), (by_res, res["op_resolution"][i])):
            if groups is by_res and i >= nf:
                continue
            g = groups.setdefault(key, [0, 0, 0])
            g[0] += 1
            g[1] += c
            g[2] += m
    kind_order = sorted(by_kind, key=lambda k: -by_kind[k][1])
    lines = table(
        f"Per operator kind (one INVOKE per operator over one step, summed; {u}):",
        "operator",
        by_kind,
        kind_order,
    )
    title = f"Forward pass by output resolution (the same INVOKEs; {u}):"
    lines += ["", *table(title, "output", by_res, list(by_res))]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- per layer

PHASES = ("forward", "backward", "update")


def _op_phase(kind: str, layer: int, index: int, nf: int) -> str:
    """forward (a layer and its clamp mask), backward (input gradients, mask applications),
    update (weight and bias updates), or other (the loss, gradient sums)."""
    if index < nf:
        return "forward"
    if layer < 0:
        return "other"
    return "update" if kind.endswith("_GRAD_UPDATE") else "backward"


def per_layer(res: dict[str, Any]) -> dict[str, Any]:
    """One training step's per-operator costs gathered per forward layer: {"layers": [(index,
    description, {phase: cost}, forward MACs)], "other": cost, "totals": {phase: cost}}. A
    layer's forward includes its clamp mask; its backward, its input gradient (and mask
    application); its update, the weight and bias update."""
    cost = res["cost"]
    if cost is None or not cost["per_op"]:
        raise ToolError("per-layer figures need a run with per_op=True")
    nf = res["operators"]["forward"]
    layers: dict[int, dict[str, int]] = {}
    other = 0
    totals = dict.fromkeys(PHASES, 0)
    for i, (kind, layer, c) in enumerate(zip(res["op_kinds"], res["op_layer"], cost["per_op"], strict=True)):
        phase = _op_phase(kind, layer, i, nf)
        if phase == "other":
            other += c
            continue
        layers.setdefault(layer, dict.fromkeys(PHASES, 0))[phase] += c
        totals[phase] += c
    macs = res["macs"]["per_op"]
    rows = [(i, res["op_desc"][i], layers[i], macs[i]) for i in sorted(layers)]
    return {"layers": rows, "other": other, "totals": totals}


def _pointwise_rate(res: dict[str, Any], min_c: int = 0, max_c: int = 1 << 30) -> tuple[int, int]:
    """(MACs, cost) of the forward 1x1 convolutions with min_c <= input channels < max_c."""
    nf = res["operators"]["forward"]
    macs = cost = 0
    for i in range(nf):
        m = re.match(r"CONV_2D 1x1 \d+x\d+x(\d+) ", res["op_desc"][i])
        if res["op_kinds"][i] == "CONV_2D" and m and min_c <= int(m.group(1)) < max_c:
            macs += res["macs"]["per_op"][i]
            cost += res["cost"]["per_op"][i]
    return macs, cost


def layer_table(opt: dict[str, Any], ref: dict[str, Any] | None = None, min_share: float = 0.0) -> str:
    """Per layer: forward, backward and update costs of the optimized kernels (and of the
    reference kernels, and the ratio, when ref is given), MACs and MACs per unit. Layers whose
    optimized step share is below min_share are summed in one row."""
    a = per_layer(opt)
    b = per_layer(ref) if ref is not None else None
    u = opt["cost"]["unit"]
    total = max(sum(a["totals"].values()) + a["other"], 1)
    ref_rows = {i: c for i, _, c, _ in b["layers"]} if b else {}
    head = f"| # | layer | forward | backward | update | MACs (forward) | MACs per {u[:-1]} (forward) |"
    sep = "|---:|---|---:|---:|---:|---:|---:|"
    if b:
        head += " reference: forward | backward | update | reference / optimized |"
        sep += "---:|---:|---:|---:|"

    def cells(c: dict[str, int]) -> str:
        return " | ".join(f"{c[ph]:,}" if c[ph] else "" for ph in PHASES)

    lines = [head, sep]
    rest = dict.fromkeys(PHASES, 0)
    rest_ref = dict.fromkeys(PHASES, 0)
    rest_n = 0
    for i, desc, c, m in a["layers"]:
        r = ref_rows.get(i)
        if sum(c.values()) / total < min_share:
            rest_n += 1
            for ph in PHASES:
                rest[ph] += c[ph]
                rest_ref[ph] += r[ph] if r else 0
            continue
        rate = f"{m / c['forward']:.3f}" if m and c["forward"] else ""
        row = f"| {i} | {desc} | {cells(c)} | {m:,} | {rate} |"
        if b and r:
            row += f" {cells(r)} | {sum(r.values()) / max(sum(c.values()), 1):.2f} |"
        lines.append(row)
    if rest_n:
        row = f"| | {rest_n} smaller layers (each < {100 * min_share:g} % of the step) | {cells(rest)} | | |"
        if b:
            row += f" {cells(rest_ref)} | {sum(rest_ref.values()) / max(sum(rest.values()), 1):.2f} |"
        lines.append(row)
    row = f"| | loss and gradient sums | {a['other']:,} | | | | |"
    if b:
        row += f" {b['other']:,} | | | |"
    lines.append(row)
    t = a["totals"]
    row = f"| | **total** | {cells(t)} | | |"
    if b:
        tr = b["totals"]
        row += f" {cells(tr)} | {(sum(tr.values()) + b['other']) / max(total, 1):.2f} |"
    lines.append(row)
    return "\n".join(lines)


def comparison_rows(label: str, opt: dict[str, Any], ref: dict[str, Any]) -> str:
    """One row of the optimized-vs-reference summary: whole step (median), forward, backward,
    update (per-operator sums), the ratio, and the forward 1x1 convolutions' MACs per unit."""
    a, b = per_layer(opt), per_layer(ref)
    ta, tb = a["totals"], b["totals"]
    pm, pc = _pointwise_rate(opt)
    rm, rc = _pointwise_rate(ref)
    pw = f"{pm / pc:.3f} (reference {rm / rc:.3f})" if pc and rc else "no 1x1 conv"
    so, sr = opt["cost"]["step"], ref["cost"]["step"]
    return (
        f"| {label} | {sr:,} | {so:,} | **{sr / so:.2f}x** | {tb['forward']:,} / {ta['forward']:,} | "
        f"{tb['backward']:,} / {ta['backward']:,} | {tb['update']:,} / {ta['update']:,} | {pw} |"
    )


COMPARISON_HEAD = (
    "| model, scheme | step, reference kernels | step, optimized | reference / optimized | "
    "forward (reference / optimized) | backward | update | forward 1x1 convs: MACs per instruction |\n"
    "|---|---:|---:|---:|---:|---:|---:|---|"
)


# ------------------------------------------------------------------------------- suite


@dataclass(frozen=True)
class Entry:
    model: Path
    scheme: str
    label: str
    samples: Samples | None = None


SUITE_SAMPLES = 16
# The suite measures the model as given: with lr 0 the measured steps run every kernel of the
# step (updates included) but do not change the model, so every step costs what a step of that
# model costs. A zero update costs a little less than a real one: MobileNetV2's step, 0.27 M of
# 203.6 M instructions (0.13 %), measured once per operator on the same sample.
SUITE_LR = 0.0


def _zoo_entries() -> list[Entry]:
    """The project's zoo (pytools/pretrain/zoo.py) with a head-only and a sparse scheme each."""
    try:
        from pytools.pretrain.zoo import zoo_model, zoo_path
    except ImportError as e:
        raise ToolError(
            "the benchmark suite builds its models with pytools/pretrain/zoo.py (TensorFlow): "
            "run ./setup.sh first"
        ) from e
    from pytools.pretrain.zoo import ZOO

    sparse = {
        "cnn_int8_io": "bias=2,-1=1,-2=0.25",  # MAX_POOL and PAD below: no backward kernel
        "mobilenet_tiny": "bias=8,-1=1,-2=0.125,-5=0.25",
        "mlp": "bias=2,-1=1,-2=0.25",
    }
    out = []
    for name, sp in sparse.items():
        zoo_model(name)  # built (with TensorFlow) and cached on first use
        data = ZOO[name].data(SUITE_SAMPLES, 2)  # unseen samples of the model's own kind
        out.append(Entry(zoo_path(name), str(ROOT / "schemes" / "head_only.toml"), "head only", data))
        out.append(Entry(zoo_path(name), sp, "sparse", data))
    return out + _backbone_entries()


# The committed backbones (models/, invoke pretrain) with the schemes invoke plan chose for
# them under 64 KB, on held-out samples of their transfer data sets.
BACKBONES = {
    "fashion_mbv2": ("schemes/fashion_mbv2-mnist-64KB.toml", "mnist", "transfer"),
    "hapt_cnn1d": ("schemes/hapt_cnn1d-hapt-64KB.toml", "hapt", "users"),
}


def _backbone_entries() -> list[Entry]:
    import datasets

    out = []
    for name, (scheme, dataset, split) in BACKBONES.items():
        held = datasets.load_split(dataset, split).held_out
        data = (held.x[:SUITE_SAMPLES].astype(np.float32), held.y[:SUITE_SAMPLES])
        model = ROOT / "models" / f"{name}.tflite"
        out.append(Entry(model, str(ROOT / "schemes" / "head_only.toml"), "head only", data))
        out.append(Entry(model, str(ROOT / scheme), "sparse", data))
    return out


MBV2_SCHEME = "schemes/mbv2_sparse.toml"
# The same scheme plus 1/8 of the final 1x1 conv (112 -> 1280): 17,920 B more trainable state.
MBV2_LARGER = "bias=20,-1=1,-2=0.125,-5=0.25,-8=0.125,-11=0.25,-14=0.125,patch=0-5x4+6-9x2"
PAPER = {"peak_kb": 141, "ms": 373, "clock_hz": 216_000_000}


def write_benchmarks(out_md: Path, board_name: str = "mps2_an500", command: str = "") -> dict[str, Any]:
    """Runs the whole suite and writes BENCHMARKS.md; returns every run's result."""
    from pytools.model.tflm import tflm_arena_bytes

    try:
        from pytools.pretrain.mobilenet_v2 import mobilenet_v2_path
        from pytools.pretrain.mobilenet_v2 import samples as mobilenet_v2_samples
    except ImportError as e:
        raise ToolError(
            "the suite builds MobileNetV2 with pytools/pretrain/mobilenet_v2.py: run it from the root"
        ) from e
    t0 = time.monotonic()
    zoo = [
        (e, run_bench(e.model, e.scheme, board_name, None, samples=e.samples, lr=SUITE_LR))
        for e in _zoo_entries()
    ]
    # The same sparse steps with the reference kernels (the firmware without -DKERNELS_DSP=1).
    zoo_ref = {
        id(e): run_bench(
            e.model, e.scheme, board_name, None, samples=e.samples, lr=SUITE_LR, kernels="reference"
        )
        for e, _ in zoo
        if e.label == "sparse"
    }
    mb = mobilenet_v2_path()
    mb_data = mobilenet_v2_samples(SUITE_SAMPLES, 2)
    mb_run = run_bench(mb, str(ROOT / MBV2_SCHEME), board_name, None, samples=mb_data, lr=SUITE_LR)
    mb_ref = run_bench(
        mb, str(ROOT / MBV2_SCHEME), board_name, None, samples=mb_data, lr=SUITE_LR, kernels="reference"
    )
    # The same steps learning at the project's default rate: what consecutive steps then cost.
    mb_learning = run_bench(mb, str(ROOT / MBV2_SCHEME), board_name, None, samples=mb_data, per_op=False)
    mb_nucleo = run_bench(mb, str(ROOT / MBV2_SCHEME), "nucleo_f746zg", None, link_only=True)
    mb_larger = run_bench(mb, MBV2_LARGER, "nucleo_f746zg", None, link_only=True)
    if mb_learning["cost"] is not None:
        n_steps = len(mb_learning["cost"]["losses"])
        mb_learning["logit_mask_after"] = logit_mask_after(mb, str(ROOT / MBV2_SCHEME), mb_data, n_steps)
    tflm = tflm_arena_bytes(mb.read_bytes())
    elapsed = time.monotonic() - t0
    refs = [(e, r, zoo_ref[id(e)]) for e, r in zoo if id(e) in zoo_ref]
    text = _suite_markdown(
        command, board_name, zoo, mb_run, mb_learning, mb_nucleo, mb_larger, tflm, elapsed, refs, mb_ref
    )
    Path(out_md).write_text(text)
    return {
        "zoo": [r for _, r in zoo],
        "zoo_reference": [r for _, _, r in refs],
        "mobilenet_v2_reference": mb_ref,
        "mobilenet_v2": mb_run,
        "mobilenet_v2_learning": mb_learning,
        "mobilenet_v2_nucleo": mb_nucleo,
        "mobilenet_v2_larger": mb_larger,
        "tflm": tflm,
        "seconds": elapsed,
    }


def logit_mask_after(
    model: Path, scheme_spec: str, samples: Samples, n_steps: int, lr: float = 0.05
) -> tuple[int, int]:
    """(logits strictly inside the int8 range, logits) after n_steps steps on the host twin:
    what a clamp mask on the logits would pass (the step has none: docs/training.md).

    The steps take the samples in the order run_bench gives them to the board (the host twin
    runs the same C, bit-identical), so this is the board's state after its steps.
    """
    from pytools.model.tflite_import import load_tflite
    from pytools.train.trainer import Trainer

    ct = compile_training(
        load_tflite(model), load_scheme(scheme_spec), load_board(None), model.stem, link=False, lr=lr
    )
    trainer = Trainer(ct)
    g = ct.train.graph
    xs, ys = samples
    for k in range(n_steps):
        trainer.step(_as_input(xs[k % len(ys)], g.tensor(g.inputs[0])), int(ys[k % len(ys)]))
    logits = np.asarray(trainer.backend.tensor(ct.compiled.plan_ids[ct.train.logits])).reshape(-1)
    return int(np.count_nonzero((logits > -128) & (logits < 127))), int(logits.size)


def _short(name: str) -> str:
    """A TFLite tensor name without its fused-op aliases and model prefix."""
    return "/".join(name.split(";")[0].split("/")[1:]) or name


def _kernels_sentence(kernels: str) -> str:
    if kernels.startswith("reference"):
        return "the firmware's reference (non-DSP, no CMSIS-NN) C kernels"
    if kernels.startswith("optimized"):
        return (
            f"the firmware as built: {kernels.replace('; the rest reference C', '')}, reference C "
            "for every other kernel (section 3 compares them with the reference kernels)"
        )
    return f"the firmware's kernels ({kernels})"


def _suite_markdown(
    command: str,
    board_name: str,
    zoo: list[tuple[Entry, dict[str, Any]]],
    mb: dict[str, Any],
    mb_learning: dict[str, Any],
    mb_nucleo: dict[str, Any],
    mb_larger: dict[str, Any],
    tflm: dict[str, int],
    elapsed: float,
    refs: list[tuple[Entry, dict[str, Any], dict[str, Any]]] | None = None,
    mb_ref: dict[str, Any] | None = None,
) -> str:
    board = load_board(board_name)
    lines = [
        "# Benchmarks: one on-device training step",
        "",
        f"Produced by `{command}` (`pytools.bench.write_benchmarks`, one `run_bench` per row) on "
        f"{mb['date']}, in {elapsed:.0f} s on a 2-core host. Board: **{board.name}** "
        f"({board.description}); firmware build {mb.get('build_id', '?')}.",
        "",
        f"**Costs are {board.counter_unit}: {board.timing_note}.** They are emulator instruction "
        "counts, not silicon cycles (a real Cortex-M7 adds flash wait states and cache effects and "
        "can dual-issue, so cycles and instructions differ in either direction), of "
        f"{_kernels_sentence(mb['kernels'])}. "
        "Each step trains on the next of 16 unseen samples of the model's own kind "
        "(pytools/pretrain/zoo.py's synthetic images or features; 128x128 ones for MobileNetV2). The "
        "costs are those of a step of the model as given: the steps run at learning rate 0, so every "
        "kernel runs, updates included, but the measured steps do not change the model (a zero update "
        "costs ~0.1 % less than a real one; section 2 shows MobileNetV2 learning at 0.05 too). The "
        "gradient kernels skip zero gradients, so backward costs vary with the data: the step column "
        "is a median of 5 whole steps; section 4 has every step, the range and the losses. "
        "Memory figures are the linker's, and peak SRAM is measured on the running board: "
        f"{PEAK_FORMULA}. Sizes are in bytes (KiB = 1,024 B); the paper's KB are as the paper gives them.",
        "",
        "## 1. The project's zoo models (pytools/pretrain/zoo.py) and backbones (models/)",
        "",
        "| model | scheme | fits | peak SRAM (B) | arena (B) | trainable state (B) | flash (B) | "
        f"step ({board.counter_unit}) | forward | backward + update | MACs per step | "
        f"MACs per {board.counter_unit[:-1]} |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e, r in zoo:
        mem, cost, macs = r["memory"], r["cost"], r["macs"]
        name = r["model"].rsplit("-", 1)[0]
        if cost is None:
            lines.append(
                f"| {name} | {e.label}: {r['scheme']} | **no** | | {mem['arena']:,} | "
                f"{mem['trainable_state']:,} | {mem['linker_flash']:,} | | | | {macs['step']:,} | |"
            )
            continue
        lines.append(
            f"| {name} | {e.label}: {r['scheme']} | yes | {mem['peak_sram']:,} | "
            f"{mem['arena']:,} | {mem['trainable_state']:,} | {mem['linker_flash']:,} | {cost['step']:,} | "
            f"{cost['forward']:,} | {cost['backward_update']:,} | {macs['step']:,} | {macs['per_unit']:.3f} |"
        )
    lines += [
        "",
        "Sparse schemes, inline (pytools/train/scheme.py) or the file invoke plan wrote: "
        + "; ".join(
            f"{r['model'].rsplit('-', 1)[0]} `{e.scheme.removeprefix(str(ROOT) + '/')}`"
            for e, r in zoo
            if e.label == "sparse"
        )
        + ". Head only: `schemes/head_only.toml` (the classifier's weights and bias).",
    ]
    lines += _mbv2_section(mb, mb_learning, mb_nucleo, mb_larger, tflm)
    if mb_ref is not None and mb_ref.get("cost") and mb.get("cost"):
        lines += _kernels_section(mb, mb_ref, refs or [])
    lines += ["", "## 4. Every run in detail", ""]
    for _, r in zoo:
        lines += [r["markdown"], ""]
    for _, _, r in refs or []:
        lines += [r["markdown"], ""]
    lines += [mb["markdown"], ""]
    if mb_ref is not None:
        lines += [mb_ref["markdown"], ""]
    lines += [
        mb_learning["markdown"],
        "",
        mb_nucleo["markdown"],
        "",
        mb_larger["markdown"],
        "",
    ]
    return "\n".join(lines)


def _kernels_section(
    mb: dict[str, Any], mb_ref: dict[str, Any], refs: list[tuple[Entry, dict[str, Any], dict[str, Any]]]
) -> list[str]:
    """Section 3: the optimized kernels against the reference kernels, same models, schemes and
    samples; MobileNetV2 layer by layer."""
    paper_cycles = PAPER["ms"] * PAPER["clock_hz"] // 1000
    so, sr = mb["cost"]["step"], mb_ref["cost"]["step"]
    pm, pc = _pointwise_rate(mb)
    nm, nc = _pointwise_rate(mb, max_c=32)  # narrow: 8 or 16 input channels
    wm, wc = _pointwise_rate(mb, min_c=32)
    rows = [comparison_rows(f"MobileNetV2-w0.35, `{MBV2_SCHEME}`", mb, mb_ref)]
    rows += [comparison_rows(f"{r['model'].rsplit('-', 1)[0]}, {e.label}", r, ref) for e, r, ref in refs]
    return [
        "",
        "## 3. Optimized kernels against the reference kernels",
        "",
        "The same steps (model, scheme, samples, lr 0) on the same emulated board, with the firmware "
        "as firmware/build.toml builds it (`-DKERNELS_DSP=1`: the Cortex-M7 DSP SIMD variants of "
        f"{', '.join(_dsp_kernels(mb['kernels']))}) and with the same firmware built without that "
        "flag (every kernel reference C). Both give bit-identical results (tests/kernels/"
        "test_dsp_kernels.py, test_dsp_grads.py, tests/test_training.py). Step: median of whole "
        "steps; forward, backward, update: sums of one-operator INVOKEs over one step (forward "
        "includes the clamp masks; backward the input gradients; update the weight and bias "
        "updates; the loss and gradient sums are in neither). **Ours are instruction counts on the "
        "emulator (QEMU -icount shift=0), not cycles on silicon.**",
        "",
        COMPARISON_HEAD,
        *rows,
        "",
        f"Issue 7's bars: the optimized training step at least 3x fewer instructions than the "
        f"reference kernels on MobileNetV2-w0.35: **{sr / so:.2f}x** ({_m(sr)} -> {_m(so)} instructions); "
        f"the forward 1x1 convolutions at or above 1 MAC per instruction (the DSP limit is 2): "
        f"**{_ratio(pm, pc)}** over all of MobileNetV2's 1x1 convs: {_ratio(wm, wc)} for those with 32 or "
        f"more input channels, {_ratio(nm, nc)} for the narrow ones (fewer than 32 input channels: "
        "per output, the requantization and the widening weigh more against 8 or 16 MACs); "
        "single 1x1 layers such as 16x16x64 -> 64 are held at or above 1.0 by "
        "tests/kernels/test_dsp_kernels.py. The paper's figures, for "
        f"context: {PAPER['peak_kb']} KB and {PAPER['ms']} ms per image on the STM32F746 at 216 MHz "
        f"(= {paper_cycles / 1e6:.1f} M cycles, their own optimized kernels on silicon); ours: "
        f"{_m(so)} instructions per step on the emulator, not comparable unit for unit.",
        "",
        "MobileNetV2-w0.35, layer by layer (one step; instructions; optimized kernels, then the "
        "reference kernels):",
        "",
        layer_table(mb, mb_ref, min_share=0.005),
    ]


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def _dsp_kernels(kernels: str) -> list[str]:
    m = re.search(r"\(([^)]*)\)", kernels)
    return m.group(1).split(", ") if m else []


def _mbv2_section(
    mb: dict[str, Any],
    learning: dict[str, Any],
    nucleo: dict[str, Any],
    larger: dict[str, Any],
    tflm: dict[str, int],
) -> list[str]:
    mem, cost, macs = mb["memory"], mb["cost"], mb["macs"]
    nm, lm = nucleo["memory"], larger["memory"]
    paper_cycles = PAPER["ms"] * PAPER["clock_hz"] // 1000
    budget = 256 * 1024
    lines = [
        "",
        "## 2. MobileNetV2-w0.35 at 128x128, the paper's model, against the NUCLEO-F746ZG",
        "",
        "Keras' own `MobileNetV2(alpha=0.35, input_shape=(128, 128, 3), weights=None)`, batch 1, with a "
        "10-class head (a transfer-learning head; Keras' 1000-class one alone is 1.28 MB of int8 weights), "
        "BatchNorm statistics re-estimated on 64 images, full-int8 export "
        "(pytools/pretrain/mobilenet_v2.py): "
        f"{macs['model_forward'] / 1e6:.1f} M MACs and {mb['model_params'] / 1e6:.2f} M parameters "
        "(the paper's w0.35: 17 M MACs, 0.25 M parameters; Keras keeps the last conv at 1280 channels). "
        f"Scheme `{MBV2_SCHEME}`: {mb['scheme']}.",
        "",
        "| figure | ours | paper (STM32F746 @ 216 MHz, sparse update + reordering) |",
        "|---|---|---|",
    ]
    verdict = "fits" if nucleo["fits"] else "**does not fit**"
    lines.append(
        f"| static SRAM, nucleo_f746zg image (linker) | {_kb(nm['linker_ram'])}: {verdict} its "
        f"{nm['ram_limit']:,} B | |"
    )
    persist = load_board("nucleo_f746zg").raw["persist"]
    lines.append(
        f"| flash, nucleo_f746zg image (linker) | {_kb(nm['linker_flash'])} of {nm['flash_limit']:,} B, "
        f"counting the {persist['region_size']:,} B the image skips for the trained-state slots "
        "(boards/nucleo_f746zg.toml [persist]) | |"
    )
    if mb["fits"] and cost is not None:
        steps = cost["steps"]
        lines += [
            f"| **peak SRAM**, measured on {mb['board']} (same limits) | {_kb(mem['peak_sram'])} | "
            f"{PAPER['peak_kb']} KB |",
            f"| of it: training-plan arena | {_kb(mem['arena'])} | |",
            f"| of it: trainable state (in the arena, alive all step) | {_kb(mem['trainable_state'])} | |",
            f"| **training step** (median of {len(steps)}) | "
            f"{_m(cost['step'], cost['unit'])} on {mb['board']} "
            f"(range {_m(min(steps))} to {_m(max(steps))}) | {PAPER['ms']} ms = "
            f"{paper_cycles / 1e6:.1f} M cycles |",
            f"| of it forward | {_m(cost['forward'], cost['unit'])} | |",
            f"| of it loss + backward + update | {_m(cost['backward_update'], cost['unit'])} | |",
            f"| MACs per step | {_m(macs['step'])} ({_m(macs['forward'])} forward, "
            f"{_m(macs['backward_update'])} backward) | |",
            f"| MACs per {cost['unit'][:-1]} (ours) / per cycle (paper) | {macs['per_unit']:.3f} "
            f"({macs['forward'] / cost['step']:.3f} counting forward MACs only) | "
            f"{17e6 / paper_cycles:.3f} (their 17 M forward MACs only) |",
        ]
    else:
        over = ", ".join(f"{r} over by {n:,} B" for r, n in mem["overflow"].items())
        lines.append(f"| training step on {mb['board']} | not run: does not fit ({over}) | |")
    lines += [
        f"| TFLite Micro's arena to run inference, same model (tflite-micro `print_allocations`, "
        f"64-bit host) | {_kb(tflm['total'])}, of which {tflm['activations']:,} B activations | |",
        f"| our forward activations at their busiest operator | {_kb(mem['inference_activations'])} | |",
    ]

    bd, back = mem["arena_breakdown"], mem["arena_backward_breakdown"]
    top = mem["arena_peak_tensors"][:3]
    top_text = ", ".join(
        f"`{_short(name)}` {'x'.join(map(str, shape))} ({size:,} B, {cat})" for name, shape, size, cat in top
    )
    lines += [
        "",
        "**Where the memory goes.** The arena peaks at operator "
        f"#{mem['arena_peak_operator']} ({mem['arena_peak_kind']}), early in the forward pass, with "
        f"{bd['activations']:,} B of forward activations and {bd['trainable state']:,} B of trainable state "
        f"(weight slices, biases and the RNG live all step); the largest tensors alive there: {top_text}. "
        f"No saved activation, mask or gradient is alive at that point "
        f"({bd['saved activations'] + bd['masks'] + bd['gradients']:,} B): they belong to the late 8x8 "
        "and 4x4 layers, which is what sparse update buys. At the busiest operator of the backward part "
        f"(#{mem['arena_backward_peak_operator']}, {mem['arena_backward_peak_kind']}) the arena holds "
        f"{sum(back.values()):,} B: {back['saved activations']:,} saved activations, "
        f"{back['masks']:,} masks, "
        f"{back['gradients']:,} gradients, {back['trainable state']:,} trainable state, "
        f"{back['scratch']:,} scratch, {back['activations']:,} other activations.",
    ]
    inference_floor = mem["inference_activations"] + mem["firmware_ram"]
    para = (
        f"Forward activations alone ({mem['inference_activations']:,} B) plus the firmware's own RAM "
        f"({mem['firmware_ram']:,} B, {mem['reserved_thread_stack']:,} of it the reserved thread stack) "
        f"come to {inference_floor:,} B"
    )
    if inference_floor > budget:
        para += (
            f", more than 256 KB ({budget:,} B) before any training state: a layer-by-layer forward pass "
            "cannot train this model in 256 KB, and the paper's 141 KB is out of reach for it. "
            "Reaching it needs what method.md section 7 describes for the frozen first stages: "
            "patch-based inference (MCUNetV2-style: several layers computed tile by tile, the "
            "receptive-field overlap recomputed) and in-place depthwise convolutions."
        )
    else:
        para += f", within 256 KB ({budget:,} B)."
    if mb["fits"] and cost is not None:
        para += (
            f" On the F746's 320 KB the step does fit, with {nm['ram_limit'] - nm['linker_ram']:,} B "
            "to spare (nucleo_f746zg link)."
        )
    if larger["fits"]:
        para += f" The larger variant `{MBV2_LARGER}` also fits ({lm['linker_ram']:,} B)."
    else:
        over = ", ".join(f"{r} by {n:,} B" for r, n in lm["overflow"].items())
        para += (
            f" The margin is thin: adding 1/8 of the final 1x1 conv's weights (inline scheme "
            f"`{MBV2_LARGER}`, {lm['trainable_state']:,} B of trainable state instead of "
            f"{mem['trainable_state']:,}) does not fit nucleo_f746zg: the linker overflows {over} "
            f"({lm['linker_ram']:,} B needed)."
        )
    lines += ["", para]
    lc = learning["cost"]
    if lc is not None:
        ls = lc["losses"]
        para2 = (
            f"**Learning at lr {learning['lr']:g}.** The same samples at the project's default learning "
            f"rate, consecutive steps: whole steps {', '.join(_m(v) for v in lc['steps'])} {lc['unit']}; "
            f"their backward + update parts {', '.join(_m(v) for v in lc['backward_update_steps'])}; "
            f"losses {', '.join(f'{v:.3f}' for v in ls)}."
        )
        mask = learning.get("logit_mask_after")
        if mask is not None:
            para2 += (
                f" Replayed on the host twin (bit-identical with the board), {mask[0]} of the {mask[1]} "
                f"logits lie strictly inside the int8 range after these {len(ls)} steps. The loss gradient "
                "passes straight through the logits' int8 saturation (docs/training.md): with a clamp mask "
                "there, saturated logits stopped all learning at this rate, and the gradient kernels, which "
                "skip zeros, made those steps cheaper."
            )
        lines += ["", para2]
    lines += [
        "",
        f"**On time.** The paper's {PAPER['ms']} ms is their engine's optimized kernels on silicon; "
        "ours is an instruction count of our kernels under QEMU. The units differ, so the two rows are "
        "context, not a like-for-like ratio.",
    ]
    return lines


# ------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pytools.bench", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path)
    p.add_argument("--scheme", default="schemes/head_only.toml")
    p.add_argument("--board", default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--no-per-op", action="store_true", help="skip the one-INVOKE-per-operator profile")
    p.add_argument("--lr", type=float, default=0.05, help="learning rate of the measured steps")
    p.add_argument("--port", default=None, help="serial port of a real board (default: its ST-LINK)")
    p.add_argument("--link-only", action="store_true", help="memory from the linker only; no board")
    p.add_argument("--suite", action="store_true", help="zoo + MobileNetV2 tables (BENCHMARKS.md)")
    p.add_argument(
        "--kernels",
        choices=KERNELS,
        default="optimized",
        help="the firmware as built, or its reference kernels",
    )
    a = p.parse_args(argv)
    try:
        if a.suite:
            cmd = "python -m pytools.bench " + " ".join(sys.argv[1:] if argv is None else argv)
            write_benchmarks(a.out or Path("BENCHMARKS.md"), a.board or "mps2_an500", cmd)
            print(f"wrote {a.out or 'BENCHMARKS.md'}")
            return 0
        if a.model is None:
            p.error("--model is required (or --suite)")
        res = run_bench(
            a.model,
            a.scheme,
            a.board,
            a.out,
            steps=a.steps,
            per_op=not a.no_per_op,
            port=a.port,
            link_only=a.link_only,
            lr=a.lr,
            kernels=a.kernels,
        )
        print(res["markdown"])
        return 0 if res["fits"] else 1
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
