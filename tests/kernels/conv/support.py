"""What several conv kernel test files share: a chain of depthwise layers as one graph, a kernel
call run through one variant or through both (DSP against reference), and the host-compiled C
sweeps that hold a DSP helper to its reference value by value."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytools.model.ir import Graph, Op, Tensor
from pytools.model.kernels import KernelCall, run_kernel
from tests.kernels.support import quant

KERNELS = Path(__file__).resolve().parents[3] / "firmware" / "kernels"

# (filter size k, stride, padding, activation, bound of the activation's output range)
DepthwiseLayer = tuple[int, int, str, str, float]


def conv_options(
    padding: str,
    stride: int,
    activation: str,
    dilation: int = 1,
    depth_multiplier: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A CONV_2D (depth_multiplier None) or DEPTHWISE_CONV_2D layer's options, the same stride
    and dilation both ways; extra: further options (explicit_pad)."""
    options: dict[str, Any] = {
        "padding": padding,
        "stride_h": stride,
        "stride_w": stride,
        "dilation_h": dilation,
        "dilation_w": dilation,
    }
    if depth_multiplier is not None:
        options["depth_multiplier"] = depth_multiplier
    options["activation"] = activation
    return {**options, **extra}


def tensor_adder(tensors: list[Tensor]) -> Callable[..., int]:
    """tensor(shape, q, data=None, dtype="int8"): appends a tensor named by its index to tensors
    and returns that index (how the tests build IR graphs by hand)."""

    def tensor(shape: Sequence[int], q: Any, data: Any = None, dtype: str = "int8") -> int:
        tensors.append(Tensor(len(tensors), f"t{len(tensors)}", tuple(shape), dtype, q, data=data))
        return len(tensors) - 1

    return tensor


def depthwise_chain(
    h: int,
    w: int,
    c: int,
    layers: Sequence[DepthwiseLayer],
    seed: int = 0,
    scale_spread: tuple[float, float] = (-0.5, 0.3),
) -> Graph:
    """k x k depthwise layers (depth multiplier 1, dilation 1) in a row on an h x w x c input:
    per-channel weight scales spread by 10 ** uniform(scale_spread) around what keeps the
    outputs inside the activation's bound, random biases and output zero points."""
    rng = np.random.default_rng(seed)
    tensors: list[Tensor] = []
    ops: list[Op] = []
    tensor = tensor_adder(tensors)
    x = tensor((1, h, w, c), quant(0.03, -5))
    for k, st, padding, activation, bound in layers:
        xt = tensors[x]
        in_s = float(xt.quant.scale[0])
        scales = (bound / (k * 73 * 74 * in_s) * 10 ** rng.uniform(*scale_spread, c)).astype(np.float32)
        wt = tensor(
            (1, k, k, c), quant(list(scales), 0, 3), rng.integers(-127, 128, (1, k, k, c), dtype=np.int8)
        )
        b = tensor(
            (c,),
            quant(list(np.float32(in_s) * scales), 0),
            rng.integers(-3000, 3000, c).astype(np.int32),
            "int32",
        )
        zp = int(rng.integers(-100, 0))
        oh, ow = xt.shape[1:3] if padding == "SAME" else (xt.shape[1] - k + 1, xt.shape[2] - k + 1)
        oh, ow = -(-oh // st), -(-ow // st)
        y = tensor((1, oh, ow, c), quant(bound / (127 - zp), zp))
        options = conv_options(padding, st, activation, depth_multiplier=1)
        ops.append(Op(len(ops), "DEPTHWISE_CONV_2D", [x, wt, b], [y], options))
        x = y
    return Graph(tensors, ops, inputs=[0], outputs=[x])


def xorshift64_c(seed: int) -> str:
    """C source of `static uint64_t rnd(void)`: xorshift64 (13, 7, 17) from seed, for the sweeps."""
    return f"""
static uint64_t state = 0x{seed:016X}ull;
static uint64_t rnd(void) {{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}}
"""


def run_c_sweep(tmp_path: Path, source: str, rounds: int, extra_flags: Sequence[str] = ()) -> tuple[int, int]:
    """Compiles source (a main(argc, argv) that takes the rounds and prints "checks bad" last)
    with grad.c by the host compiler, runs it, and returns (checks, bad); skips without a
    compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    src, exe = tmp_path / "sweep.c", tmp_path / "sweep"
    src.write_text(source)
    flags = ["-std=gnu11", "-O2", "-ffp-contract=off", "-Wall", *extra_flags]
    includes = [f"-I{KERNELS}", f"-I{KERNELS.parent / 'common'}"]
    subprocess.run(
        [cc, *flags, *includes, str(src), str(KERNELS / "grad.c"), "-o", str(exe), "-lm"], check=True
    )
    p = subprocess.run([str(exe), str(rounds)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout
    checks, bad = map(int, p.stdout.split()[-2:])
    return checks, bad


def run_variant(call: KernelCall, values: list[np.ndarray], variant: str) -> list[np.ndarray]:
    """X_<variant>_run on copies of the operands; returns them all after the call."""
    values = [v.copy() for v in values]
    run_kernel(call, values, variant)  # the planned scratch, guarded past its end
    return values


def dsp_same_as_ref(call: KernelCall, values: list[np.ndarray]) -> list[np.ndarray]:
    """Runs the call's reference and DSP variants on copies of the operands, asserts every
    operand ends equal bit for bit, and returns the reference's."""
    ref = run_variant(call, values, "ref")
    dsp = run_variant(call, values, "dsp")
    for k, (r, d) in enumerate(zip(ref, dsp, strict=True)):
        np.testing.assert_array_equal(d, r, err_msg=f"{call.kernel} operand {k}")
    return ref


def assert_board_matches_ref(
    calls: list[tuple[KernelCall, list[np.ndarray]]],
    board: list[list[np.ndarray]],
    where: str = "on the board",
) -> list[list[np.ndarray]]:
    """Every operand the board returned for each call (grad_support.run_on_board) equals, bit
    for bit, what the host's reference kernel makes of the same operands; returns the
    reference's operands per call."""
    wants = []
    for (call, values), got in zip(calls, board, strict=True):
        want = run_variant(call, values, "ref")
        for k, (w, b) in enumerate(zip(want, got, strict=True)):
            np.testing.assert_array_equal(b, w, err_msg=f"{call.kernel} operand {k} {where}")
        wants.append(want)
    return wants
