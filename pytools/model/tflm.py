"""TFLite Micro as a second oracle: its outputs and the tensor arena it needs for a model.

Both use tflite-micro's own Python runtime (the `tflite-micro` package: TFLM's C++
MicroInterpreter with its reference kernels, built for the host), no TensorFlow.

What tflm_arena_bytes reports
-----------------------------
TFLM runs a model from one caller-supplied byte array, the tensor arena. Its allocator
(SingleArenaBufferAllocator) fills the arena from both ends:

- head (non-persistent, from the start): one block laid out by TFLM's GreedyMemoryPlanner at
  the end of AllocateTensors(), holding every activation tensor (inputs, intermediates,
  outputs: each tensor without a constant buffer) and the scratch buffers kernels request in
  Prepare; buffers never alive together share memory; offsets are 16-byte aligned. Of the
  ops in pytools.model.ir only MEAN asks for scratch here (int32, one per output element).
  Before the plan exists, each kernel's Prepare also takes *temporary* TfLiteTensor structs
  from the head; they are released before the plan is laid out.
- tail (persistent, from the end): what lives as long as the interpreter: the allocator and
  memory planner objects themselves, a TfLiteEvalTensor per tensor, the NodeAndRegistration
  array, persistent TfLiteTensor structs and quantization arrays (for the model's inputs and
  outputs), and each kernel's OpData (for int8 convolutions and fully-connected layers,
  per-channel output multipliers and shifts: 8 bytes per output channel).

TFLM's RecordingMicroAllocator prints, after AllocateTensors():
    Arena allocation total = GetUsedBytes() = head + tail
    Arena allocation head  = GetNonPersistentUsedBytes() = max(head_, temp_) - arena start
    Arena allocation tail  = GetPersistentUsedBytes() = arena end - tail_
and, per kind of tail allocation, "used N bytes with alignment overhead (requested M bytes
for K ...)". tflm_arena_bytes captures that print (it goes to the C stderr, fd 2), measured
with a 64 MiB arena, and returns in bytes:

    total        TFLM's "Arena allocation total": head + tail
    activations  TFLM's "head": the activation plan (+ MEAN's scratch)
    persistent   TFLM's "tail"; its breakdown, as far as TFLM itemises it:
      eval_tensors, persistent_tensors, quantization, persistent_buffers (kernel OpData),
      variable_buffers, node_registrations, op_data (only the kinds TFLM printed), and
      tail_other  the rest of the tail: allocator, planner, subgraph and input/output arrays
    minimum      the smallest arena_size for which TFLM allocates and runs the model, by
                 bisection (each try in a forked child, ~20 ms). It differs from total:
                 - for tiny models, upwards: the Prepare temporaries, taken while the tail
                   is still growing, outgrow the final plan, and the printed head does not
                   count them (the 64-32-10 MLP of pytools/pretrain/zoo.py: total 1,856, minimum
                   2,248; an arena in between makes TFLM fail, or even abort the process);
                 - by up to 15 bytes downwards: tail allocations are aligned down from the
                   arena's end, so an arena whose size is not a multiple of 16 can need a
                   few bytes less of padding (VWW: total 103,680, minimum 103,672).
                 Use `minimum` to size an arena; `total` is what TFLM itself reports.

Caveats when reading these as a Cortex-M budget: this runtime is built for a 64-bit host,
so every struct in the tail holds 8-byte pointers (a TfLiteEvalTensor is 24 bytes here, 12
on a 32-bit MCU) and the tail is larger than on the device; it also uses the *recording*
allocator, whose bookkeeping adds about 0.2 KB of tail. The head is the same on the device
as long as the kernels request the same scratch (CMSIS-NN kernels request more than these
reference kernels). The arena's start must be 16-byte aligned (TFLM aligns it up and loses
the difference otherwise); the host's new[] buffer here is.
"""

from __future__ import annotations

import contextlib
import faulthandler
import glob
import os
import pickle
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pytools.errors import ToolError

# Arena for running a model (not for measuring): ample for anything a microcontroller runs.
# The host allocates it with new[] and touches only what TFLM uses.
RUN_ARENA = 64 << 20

_KINDS = {
    "TfLiteEvalTensor data": "eval_tensors",
    "Persistent TfLiteTensor data": "persistent_tensors",
    "Persistent TfLiteTensor quantization data": "quantization",
    "Persistent buffer data": "persistent_buffers",
    "TfLiteTensor variable buffer data": "variable_buffers",
    "NodeAndRegistration struct": "node_registrations",
    "Operator runtime data": "op_data",
}
_TOP = ("total", "activations", "persistent")
_SECTION = re.compile(r"\[RecordingMicroAllocator\] Arena allocation (total|head|tail) (\d+) bytes")
_KIND = re.compile(r"\[RecordingMicroAllocator\] '([^']+)' used (\d+) bytes")


class TflmError(ToolError):
    """TFLite Micro refused the model (allocation or invocation failed); carries its log."""


@contextlib.contextmanager
def _c_stderr() -> Iterator[list[str]]:
    """Captures what C/C++ code writes to fd 2 inside the block; the text is appended to the
    yielded list when the block ends (also when it raises)."""
    captured: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as f:
            os.dup2(f.fileno(), 2)
            try:
                yield captured
            finally:
                os.dup2(saved, 2)
                f.seek(0)
                captured.append(f.read().decode(errors="replace"))
    finally:
        os.close(saved)


def _interpreter(model: bytes, arena_size: int) -> Any:
    from tflite_micro.python.tflite_micro import runtime

    log: list[str] = []
    try:
        with _c_stderr() as log:
            return runtime.Interpreter.from_bytes(bytes(model), arena_size=arena_size)
    except RuntimeError as e:
        msg = f"TFLite Micro could not allocate the model in {arena_size} bytes: {e}"
        raise TflmError(f"{msg}\n{''.join(log)}") from e


def _io_counts(model: bytes) -> tuple[int, int]:
    import tflite

    try:
        g = tflite.Model.GetRootAsModel(model, 0).Subgraphs(0)
        return g.InputsLength(), g.OutputsLength()
    except Exception as e:  # the generated reader fails in many ways on a damaged file
        raise TflmError(f"not a readable .tflite model (its subgraph cannot be read: {e})") from None


def _invoke(it: Any, inputs: list[np.ndarray], n_in: int) -> None:
    if len(inputs) != n_in:
        raise ValueError(f"the model has {n_in} inputs, {len(inputs)} given")
    for i, x in enumerate(inputs):
        it.set_input(np.ascontiguousarray(x), i)
    log: list[str] = []
    try:
        with _c_stderr() as log:
            it.invoke()
    except RuntimeError as e:
        raise TflmError(f"TFLite Micro could not run the model: {e}\n{''.join(log)}") from e


def run_tflm(model: bytes, inputs: list[np.ndarray], arena_size: int = RUN_ARENA) -> list[np.ndarray]:
    """The model's outputs in TFLite Micro (its reference kernels): bit-exact with
    pytools.model.oracle.run_tflite (TFLite's reference kernels), float32 I/O included.

    Raises TflmError if TFLM cannot allocate or run the model, but an arena just a little
    too small can make TFLM abort the process instead: size it with tflm_arena_bytes
    (key "minimum") or arena_fits, or keep the ample default.
    """
    n_in, n_out = _io_counts(model)
    it = _interpreter(model, arena_size)
    _invoke(it, inputs, n_in)
    return [np.array(it.get_output(i), copy=True) for i in range(n_out)]


def _zero_inputs(it: Any, n_in: int) -> list[np.ndarray]:
    shapes = [it.get_input_details(i) for i in range(n_in)]
    return [np.zeros(tuple(d["shape"]), d["dtype"]) for d in shapes]


def tflm_arena_bytes(model: bytes) -> dict[str, int]:
    """The tensor arena TFLite Micro needs for the model, in bytes, with TFLM's breakdown.

    Keys: total (TFLM's own count, = activations + persistent), activations (the head),
    persistent (the tail), the tail's per-kind breakdown as far as TFLM printed it
    (eval_tensors, persistent_tensors, quantization, persistent_buffers, node_registrations,
    ...), tail_other, and minimum (the smallest arena that works, measured). See the module
    docstring for what each holds and how TFLM computes it.
    """
    n_in, _ = _io_counts(model)
    it = _interpreter(model, RUN_ARENA)
    _invoke(it, _zero_inputs(it, n_in), n_in)  # also proves the model runs (allocation is done by then)
    with _c_stderr() as log:
        it.print_allocations()
    text = "".join(log)
    sections = {k: int(v) for k, v in _SECTION.findall(text)}
    if set(sections) != {"total", "head", "tail"}:
        raise TflmError(f"unexpected print_allocations() output from TFLite Micro:\n{text}")
    out = {"total": sections["total"], "activations": sections["head"], "persistent": sections["tail"]}
    for name, used in _KIND.findall(text):
        key = _KINDS.get(name, re.sub(r"\W+", "_", name.lower()).strip("_"))
        out[key] = out.get(key, 0) + int(used)
    out["tail_other"] = out["persistent"] - sum(out[k] for k in out if k not in _TOP)
    out["minimum"] = _minimum_arena(model, out["total"])
    return out


def arena_fits(model: bytes, arena_size: int) -> bool:
    """Whether TFLite Micro allocates and runs the model (zero inputs) in arena_size bytes.

    Tried in a forked child: with an arena slightly too small, TFLM can abort the process
    ("All temp buffers must be freed before calling ResetTempAllocations()"), and below a
    few hundred bytes it dereferences a null pointer. Each try costs ~20 ms.
    """
    n_in, _ = _io_counts(model)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: no Python cleanup, no output (nor a faulthandler dump if TFLM crashes)
        code = 1
        try:
            faulthandler.disable()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            it = _interpreter(model, arena_size)
            _invoke(it, _zero_inputs(it, n_in), n_in)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _minimum_arena(model: bytes, used: int) -> int:
    """The smallest arena_size that works, by bisection around TFLM's used bytes.

    Not quite monotonic: the tail is aligned down from the arena's end, so sizes one apart
    can differ by up to 15 bytes of padding. Bisection returns a size that works whose
    predecessor fails, which is the minimum whenever that ripple does not matter.
    """
    hi, step, lo = used, 256, -1  # invariant after the searches: lo fails, hi fits
    while not arena_fits(model, hi):  # tiny models: Prepare's temporaries need more
        lo, hi, step = hi, used + step, 2 * step
        if step > 64 * max(used, 1024):
            raise TflmError(f"TFLite Micro does not run the model in any arena up to {hi} bytes")
    if lo < 0:
        lo = max(0, used - 64)  # alignment slack only: expected to fail
        while lo > 0 and arena_fits(model, lo):
            lo = max(0, 2 * lo - used)
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        if arena_fits(model, mid):
            hi = mid
        else:
            lo = mid
    return hi


# ---- invoke compare-tflm -----------------------------------------------------------------

COMPARE_HEADER = (
    "| model | our arena | TFLM activations | TFLM total arena | ours / TFLM total | note |",
    "|---|---|---|---|---|---|",
)


def expand_model_paths(spec: str, default_dir: Path) -> list[Path]:
    """The models a comma-separated list names: files, or glob patterns (which the shell
    does not expand inside one comma-joined word); a pattern that matches nothing stays as
    given, so that its row says the file is missing. Empty: every .tflite in default_dir."""
    if not spec.strip():
        return sorted(default_dir.glob("*.tflite"))
    paths: list[Path] = []
    for item in (s.strip() for s in spec.split(",")):
        if item:
            paths.extend([Path(p) for p in sorted(glob.glob(item))] or [Path(item)])
    return paths


def _reason(e: BaseException) -> str:
    """One table cell: the error's message on one line (TFLM's logs joined), no pipes."""
    if isinstance(e, ToolError):
        text = str(e)
    else:  # not one of the errors we raise on purpose: name the type, so it can be reported
        text = f"unexpected {type(e).__name__}: {e}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " / ".join(lines).replace("|", "\\|")


def isolated(fn: Callable[[bytes], dict[str, int]], model: bytes) -> dict[str, int]:
    """fn(model) in a forked child, so that TFLite Micro aborting or crashing on a model
    (it does on some damaged files and arena sizes) costs that model only. Returns fn's
    result; raises TflmError with fn's error, or saying how the child died."""
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no Python cleanup, nothing but the pickled outcome on the pipe
        try:
            os.close(r)
            faulthandler.disable()
            try:
                outcome = ("ok", fn(model))
            except BaseException as e:  # every failure goes back to the parent
                outcome = ("error", _reason(e))
            with os.fdopen(w, "wb") as f:
                f.write(pickle.dumps(outcome))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        payload = f.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        code = os.waitstatus_to_exitcode(status)
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        raise TflmError(f"TFLite Micro crashed on the model ({how})")
    kind, value = pickle.loads(payload)
    if kind != "ok":
        raise TflmError(value)
    return value


def compare_row(
    path: Path,
    ours: Callable[[bytes, str], int],
    tflm: Callable[[bytes], dict[str, int]] = tflm_arena_bytes,
) -> str:
    """One model's row of the compare-tflm table: our arena (bytes, from `ours`) and TFLite
    Micro's (`tflm`, run isolated), each side on its own: when one side cannot take the
    model, the row still gives the other side's figures and says why in the note."""
    name = path.stem
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"| {name} | - | - | - | - | cannot read {path}: {e.strerror or e} |"
    notes: list[str] = []
    arena: int | None = None
    theirs: dict[str, int] | None = None
    try:
        arena = ours(data, name)
    except Exception as e:  # one model's failure must not hide the others' rows
        notes.append(f"ours: {_reason(e)}")
    try:
        theirs = isolated(tflm, data)
    except TflmError as e:
        notes.append(f"TFLM: {_reason(e)}")
    cells = [
        f"{arena:,} B" if arena is not None else "-",
        f"{theirs['activations']:,} B" if theirs else "-",
        f"{theirs['total']:,} B" if theirs else "-",
        f"{arena / theirs['total']:.0%}" if arena is not None and theirs else "-",
    ]
    return f"| {name} | {' | '.join(cells)} | {'; '.join(notes)} |"
