"""The kernel catalogue (firmware/kernels/ops.def + each kernel's .def) and a host runner.

`run_kernel` executes one lowered operator with the firmware's own C kernel, compiled for
the host (build/host/libfirmware_host.so): the same code the board runs.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from pytools.cdefs import Layout, parse_layouts, strip_comments
from pytools.paths import FIRMWARE

KERNELS_DIR = FIRMWARE / "kernels"


@dataclass(frozen=True)
class OpDef:
    code: int  # the op's number in a plan
    tflite: str  # TFLite builtin name
    kernel: str  # firmware/kernels/<kernel>.{def,h,c}


@cache
def _ops_def_text() -> str:
    return strip_comments((KERNELS_DIR / "ops.def").read_text())


@cache
def op_defs() -> dict[str, OpDef]:
    """Operator name -> OpDef, from ops.def's OP lines, in their order."""
    text = _ops_def_text()
    return {m[2]: OpDef(int(m[1]), m[2], m[3]) for m in re.finditer(r"\bOP\((\d+),\s*(\w+),\s*(\w+)\)", text)}


@cache
def _annotations(macro: str) -> tuple[tuple[str, str], ...]:
    """(builtin, runtime operator) of each FORWARD or BACKWARD line of ops.def."""
    pairs = tuple(
        (m[1], m[2]) for m in re.finditer(rf"^\s*{macro}\((\w+),\s*(\w+)\)", _ops_def_text(), re.MULTILINE)
    )
    ops = op_defs()
    for builtin, name in pairs:
        if builtin not in ops or name not in ops:
            raise ValueError(f"ops.def: {macro}({builtin}, {name}) names an operator without an OP line")
    return pairs


@cache
def forward_ops() -> tuple[str, ...]:
    """The TFLite builtin operators the engine runs: the OP lines named after a builtin
    (tflite's BuiltinOperator), in ops.def's order. pytools.model.ir.SUPPORTED_OPS."""
    from tflite.BuiltinOperator import BuiltinOperator

    builtins = {k for k in vars(BuiltinOperator) if not k.startswith("_")}
    return tuple(name for name in op_defs() if name in builtins)


def forward_kernels(builtin: str) -> list[OpDef]:
    """The builtin's forward kernels: its own OP line, then its FORWARD lines."""
    ops = op_defs()
    return [ops[builtin], *(ops[n] for b, n in _annotations("FORWARD") if b == builtin)]


def backward_ops(builtin: str) -> list[OpDef]:
    """The runtime operators of the builtin's backward pass (its BACKWARD lines)."""
    ops = op_defs()
    return [ops[n] for b, n in _annotations("BACKWARD") if b == builtin]


def has_dsp_variant(kernel: str) -> bool:
    """Whether firmware/kernels/<kernel>_dsp.c exists (the build selects it on the M7)."""
    return (KERNELS_DIR / f"{kernel}_dsp.c").exists()


def op_code(kind: str, kernel: str) -> int:
    """The plan op code of an operator of `kind` lowered to `kernel`: its own ops.def line
    when that names the kernel, else the one line that does (QUANTIZE with an int8 input is
    lowered to requantize_s8, the line QUANTIZE_S8)."""
    ops = op_defs()
    if kind in ops and ops[kind].kernel == kernel:
        return ops[kind].code
    codes = [d.code for d in ops.values() if d.kernel == kernel]
    if len(codes) != 1:
        raise KeyError(f"{kind} lowered to {kernel}: ops.def has {len(codes)} lines with that kernel, not 1")
    return codes[0]


@cache
def params_layout(kernel: str) -> Layout:
    path = KERNELS_DIR / f"{kernel}.def"
    if not path.exists():
        raise FileNotFoundError(f"kernel {kernel} has no {path.name}")
    layouts = parse_layouts(path, "PARAMS")
    return layouts[kernel]


@dataclass
class Operand:
    """One kernel operand: a graph tensor, or a constant the lowering derived."""

    tensor: int | None = None  # graph tensor index
    data: np.ndarray | None = None  # derived constant (e.g. per-channel multipliers)
    is_output: bool = False

    def __post_init__(self) -> None:
        if (self.tensor is None) == (self.data is None):
            raise ValueError("an operand is either a graph tensor or derived data, not both or neither")


@dataclass
class KernelCall:
    """What the runtime executes for one operator: kernel, parameters, operands in order."""

    kernel: str
    params: dict[str, int | float]
    operands: list[Operand] = field(default_factory=list)

    def packed_params(self) -> bytes:
        return params_layout(self.kernel).pack(**self.params)


@cache
def host_lib() -> ctypes.CDLL:
    """The host build of the firmware's kernels and runtime (the host twin's library), loaded."""
    from pytools.build.builder import build_host_lib

    return ctypes.CDLL(str(build_host_lib()))


def scratch_size(call: KernelCall) -> int:
    fn = getattr(host_lib(), f"{call.kernel}_scratch_size")
    fn.restype = ctypes.c_size_t
    fn.argtypes = [ctypes.c_char_p]
    return int(fn(call.packed_params()))


# Bytes past a kernel's scratch that run_kernel fills with a pattern and checks afterwards.
SCRATCH_GUARD = 64


def run_kernel(call: KernelCall, values: list[np.ndarray], variant: str = "") -> None:
    """Runs the C kernel on numpy arrays given in operand order (outputs written in place).
    variant: "" (X_run, the selector), "ref" (X_ref_run) or "dsp" (X_dsp_run). The scratch is
    exactly X_scratch_size bytes, as the planner gives it, followed by a guard: a kernel that
    writes past its own scratch size is an error here, not a silent overwrite of the arena."""
    if len(values) != len(call.operands):
        raise ValueError(f"{call.kernel} takes {len(call.operands)} operands, got {len(values)}")
    for v in values:
        if not v.flags.c_contiguous:
            raise ValueError("operands must be C-contiguous arrays")
    ptrs = (ctypes.c_void_p * len(values))(*(v.ctypes.data if v.size else None for v in values))
    need = scratch_size(call)
    # 16-byte aligned, as the planner places scratch.
    raw = np.zeros(need + SCRATCH_GUARD + 16, dtype=np.uint8)
    start = -raw.ctypes.data % 16
    scratch = raw[start : start + need + SCRATCH_GUARD]
    scratch[need:] = 0xA5
    fn = getattr(host_lib(), f"{call.kernel}_{variant}_run" if variant else f"{call.kernel}_run")
    fn.restype = None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
    fn(call.packed_params(), ptrs, scratch.ctypes.data)
    if not (scratch[need:] == 0xA5).all():
        first = need + int(np.flatnonzero(scratch[need:] != 0xA5)[0])
        raise RuntimeError(
            f"{call.kernel}{'_' + variant if variant else ''}_run wrote byte {first} of its scratch, "
            f"past the {need} bytes {call.kernel}_scratch_size gives (the planner plans that size)"
        )
