"""The DSP SIMD forward kernels (firmware/kernels/*_dsp.c, selected by -DKERNELS_DSP=1 in
firmware/build.toml's [cpu.cortex-m7] cflags) against the reference kernels, bit for bit.

On the host, dsp.h gives the SIMD instructions portable C twins, and the host library exports
both X_ref_run and X_dsp_run (X_run picks by the global kernels_dsp_host), so the optimized
code paths are compared directly with the reference on randomized cases (odd channel counts,
strides, paddings, dilations, zero points, per-channel and per-tensor, trained slices), and
with TFLite's reference through the usual lowering.

On the emulated board (the firmware built for the Cortex-M7 runs them as real SMLAD/SXTB16),
whole models must match TFLite's reference, and the cost of a 1x1 convolution is measured in
instructions (QEMU -icount shift=0) for the optimized build and for a reference build (the
same BuildSpec without -DKERNELS_DSP=1, built into its own directory).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from pytools.model.kernels import KernelCall, host_lib, run_kernel
from pytools.model.lowering import lower
from tests.kernels.conv.support import conv_options, tensor_adder
from tests.kernels.conv.test_conv_kernels import (
    Case,
    _graph,
    conv_case,
    depthwise_case,
    fc_case,
)
from tests.kernels.support import check_bit_exact, quant

KERNELS = ("conv2d_s8", "depthwise_conv2d_s8", "fully_connected_s8")
# Operand indices of the trained slices (kernels' headers).
TRAINED = {
    "conv2d_s8": (5, 6),
    "depthwise_conv2d_s8": (5, 6),
    "fully_connected_s8": (4, 5),
}


@contextmanager
def dsp_on_host(enabled: bool = True) -> Iterator[None]:
    """X_run dispatches to X_dsp_run while inside (host builds only)."""
    flag = ctypes.c_int.in_dll(host_lib(), "kernels_dsp_host")
    old = flag.value
    flag.value = int(enabled)
    try:
        yield
    finally:
        flag.value = old


def _operands(case_graph, call: KernelCall, rng: np.random.Generator) -> list[np.ndarray]:
    """Operand arrays in order: a random input, the lowering's constants, a zeroed output."""
    arrays = []
    for operand in call.operands:
        if operand.data is not None:
            arrays.append(np.ascontiguousarray(operand.data))
            continue
        t = case_graph.tensor(operand.tensor)
        if operand.is_output:
            arrays.append(np.zeros(t.shape, dtype=t.dtype))
        elif t.data is not None:
            arrays.append(np.ascontiguousarray(t.data, dtype=t.dtype))
        else:
            arrays.append(rng.integers(-128, 128, t.shape, dtype=np.int8))
    return arrays


def _with_trained_slice(
    call: KernelCall, arrays: list[np.ndarray], rng: np.random.Generator
) -> tuple[KernelCall, list[np.ndarray]]:
    """The same call with the first rows read from RAM copies that differ from the flash
    weights (train_rows > 0, train_bias_rows > 0), as a training step runs it."""
    kernel = call.kernel
    w_idx, b_idx = TRAINED[kernel]
    w = arrays[1]
    if kernel == "depthwise_conv2d_s8":
        channels = w.shape[-1]
        rows = int(rng.integers(1, channels + 1))
        trained_w = np.ascontiguousarray(w.reshape(-1, channels)[:, :rows]).copy()  # [taps, rows]
    else:
        channels = w.shape[0]
        rows = int(rng.integers(1, channels + 1))
        trained_w = w.reshape(channels, -1)[:rows].copy()
    trained_w = np.clip(trained_w.astype(np.int16) + rng.integers(-3, 4, trained_w.shape), -127, 127)
    bias_rows = int(rng.integers(1, channels + 1))
    trained_b = rng.integers(-20000, 20000, bias_rows).astype(np.int32)
    params = dict(call.params, train_rows=rows, train_bias_rows=bias_rows)
    out = list(arrays)
    out[w_idx] = np.ascontiguousarray(trained_w.astype(np.int8))
    out[b_idx] = trained_b
    return dataclasses.replace(call, params=params), out


def _run(call: KernelCall, arrays: list[np.ndarray], variant: str) -> np.ndarray:
    """Runs X_<variant>_run on copies of arrays; returns the output."""
    arrays = [a.copy() for a in arrays]
    run_kernel(call, arrays, variant)  # the planned scratch, guarded past its end
    return arrays[-1]


def _compare(case: Case, seed: int, trained: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = case.graph
    call = lower(g, g.ops[0])
    arrays = _operands(g, call, rng)
    if trained:
        call, arrays = _with_trained_slice(call, arrays, rng)
    ref = _run(call, arrays, "ref")
    dsp = _run(call, arrays, "dsp")
    np.testing.assert_array_equal(dsp, ref)
    return ref


# --- (a) host: optimized vs reference, and vs TFLite --------------------------------------

SEEDS = range(60)


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_conv2d_dsp_matches_reference(seed: int, trained: bool) -> None:
    _compare(conv_case(seed), seed, trained)


def _conv1x1_case(seed: int) -> Case:
    """1x1 convolutions (the GEMM path's hot case): odd channel counts, strides, batches."""
    rng = np.random.default_rng(7000 + seed)
    n, h, w = int(rng.integers(1, 3)), int(rng.integers(1, 9)), int(rng.integers(1, 9))
    in_c, out_c = int(rng.integers(1, 80)), int(rng.integers(1, 40))
    stride = int(rng.integers(1, 3))
    per_channel = bool(rng.random() < 0.7)
    scales = (10 ** rng.uniform(-3, -1.5, out_c if per_channel else 1)).astype(np.float32)
    wts = rng.integers(-127, 128, (out_c, 1, 1, in_c), dtype=np.int8)
    in_q = quant(0.02, int(rng.integers(-128, 128)))
    bias = (rng.integers(-5000, 5000, out_c).astype(np.int32), quant(list(0.02 * scales), 0))
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    out_scale = float(0.02 * np.median(scales) * np.sqrt(in_c) * 70 / 25)
    out_q = quant(out_scale, int(rng.integers(-50, 50)))
    options = {"padding": "VALID", "stride_h": stride, "stride_w": stride, "activation": "NONE"}
    g = _graph(
        "CONV_2D",
        (n, h, w, in_c),
        in_q,
        wts,
        quant(list(scales), 0, 0),
        bias,
        (n, oh, ow, out_c),
        out_q,
        options,
    )
    return Case(g, out_q, "NONE")


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("seed", range(40))
def test_conv2d_1x1_dsp_matches_reference(seed: int, trained: bool) -> None:
    _compare(_conv1x1_case(seed), seed, trained)


def _narrow_case(seed: int) -> Case:
    """Pointwise convolutions over 8, 16 or more input channels, a multiple of 8
    (conv2d_s8_dsp.c's narrow path, one pass per 8; beyond 16, from 64 output pixels):
    output channels a multiple of 4 up to its buffer's limit (and a few beyond it, or not a
    multiple of 4, or with a clamped activation range: the GEMM path), batches, per-channel
    and per-tensor, ReLU6 over [0, 6] (the full int8 range, as MobileNetV2's)."""
    rng = np.random.default_rng(9000 + seed)
    n, h, w = int(rng.integers(1, 3)), int(rng.integers(1, 10)), int(rng.integers(1, 10))
    in_c = 8 * int(rng.integers(3, 13)) if seed % 4 == 3 else (8 if seed % 2 == 0 else 16)
    if in_c > 16:  # taken from 64 output pixels on
        h, w = int(rng.integers(6, 13)), int(rng.integers(6, 13))
    # 8 and 16 channels: the narrow path's buffer (1536 words); more: chunks of output channels
    limit = 4 * (1536 // (5 * (in_c // 8 - 1) + 8) // 4) if in_c <= 16 else 200
    out_c = 4 * int(rng.integers(1, limit // 4 + 1))
    if seed % 7 == 3:
        out_c = int(rng.integers(1, 40))  # mostly not a multiple of 4
    elif seed % 11 == 5:
        out_c = limit + 4 * int(rng.integers(1, 4))  # beyond the narrow path's buffer
    per_channel = bool(rng.random() < 0.7)
    scales = (10 ** rng.uniform(-3, -1.5, out_c if per_channel else 1)).astype(np.float32)
    wts = rng.integers(-127, 128, (out_c, 1, 1, in_c), dtype=np.int8)
    in_q = quant(0.02, int(rng.integers(-128, 128)))
    bias = (rng.integers(-5000, 5000, out_c).astype(np.int32), quant(list(0.02 * scales), 0))
    spread = float(0.02 * np.median(scales) * np.sqrt(in_c) * 73 * 74 / 25)  # ~25 quanta per std
    kind = ("NONE", "RELU6", "RELU")[seed % 3]
    if kind == "NONE":
        out_q = quant(spread, int(rng.integers(-50, 50)))
    elif kind == "RELU6":
        out_q = quant(6.0 / 255.0 * float(rng.uniform(0.5, 1.5)) if seed % 6 == 1 else 6.0 / 255.0, -128)
    else:  # a clamp below the int8 range
        out_q = quant(spread, int(rng.integers(-60, 0)))
    options = {"padding": "VALID", "stride_h": 1, "stride_w": 1, "activation": kind}
    g = _graph(
        "CONV_2D",
        (n, h, w, in_c),
        in_q,
        wts,
        quant(list(scales), 0, 0),
        bias,
        (n, h, w, out_c),
        out_q,
        options,
    )
    return Case(g, out_q, kind)


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("seed", range(44))
def test_conv2d_narrow_1x1_dsp_matches_reference(seed: int, trained: bool) -> None:
    out = _compare(_narrow_case(seed), seed, trained)
    assert np.unique(out).size >= min(16, out.size // 4), np.unique(out).size  # informative


@pytest.mark.parametrize("seed", range(12))
def test_conv2d_narrow_1x1_dsp_is_bit_exact_with_tflite(seed: int) -> None:
    with dsp_on_host():
        case = _narrow_case(seed)
        check_bit_exact(case.graph, np.random.default_rng(seed))


def test_conv2d_dsp_large_patch_takes_the_direct_path() -> None:
    """A patch beyond the stack buffers (3x3x64 = 576 taps) runs the direct (unbuffered) path."""
    for seed, (c, k) in enumerate([(64, 3), (200, 3), (513, 1), (130, 2)]):
        rng = np.random.default_rng(seed)
        wts = rng.integers(-127, 128, (5, k, k, c), dtype=np.int8)
        g = _graph(
            "CONV_2D",
            (1, 4, 5, c),
            quant(0.02, -7),
            wts,
            quant(0.01),
            None,
            (1, 4, 5, 5),
            quant(2.0, 3),
            {"padding": "SAME", "stride_h": 1, "stride_w": 1, "activation": "NONE"},
        )
        for trained in (False, True):
            _compare(Case(g, quant(2.0, 3), "NONE"), seed, trained)


def test_the_random_cases_are_informative() -> None:
    """Most outputs spread over many values (a saturated output would match anything)."""
    outs = [_compare(_conv1x1_case(s), s, False) for s in range(40)]
    outs += [_compare(conv_case(s), s, False) for s in range(40)]
    outs += [_compare(_depthwise3x3_case(s), s, False) for s in range(40)]
    spread = [np.unique(o).size >= 8 for o in outs if o.size >= 32]
    assert len(spread) >= 60 and np.mean(spread) >= 0.8, (len(spread), np.mean(spread))


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_depthwise_dsp_matches_reference(seed: int, trained: bool) -> None:
    _compare(depthwise_case(seed), seed, trained)


def _depthwise3x3_case(seed: int, large: bool = False, gain: bool = False) -> Case:
    """Depthwise 3x3, depth multiplier 1 (the channel-vectorized path): any channel count,
    strides 1 and 2, SAME and VALID padding, dilation now and then. Small maps run from the
    padded copy on the stack; large ones (beyond its 400 words) at the image's own border.
    gain: real multipliers from 0.3 to 4 (left shifts too; the exact path, not the fused one)
    with small weights, so that outputs still spread."""
    rng = np.random.default_rng(8000 + seed + (1000 if large else 0) + (2000 if gain else 0))
    c = int(rng.integers(1, 41))
    stride, dil = int(rng.integers(1, 3)), int(rng.choice([1, 1, 1, 2]))
    padding = str(rng.choice(["SAME", "VALID"]))
    lo, hi = (2 * dil + 1, 12) if not large else (2 * dil + 40 // stride, 2 * dil + 60 // stride)
    h, w = int(rng.integers(lo, hi)), int(rng.integers(lo, hi))
    per_channel = bool(rng.random() < 0.8)
    scales = (10 ** rng.uniform(-2.5, -1.5, c if per_channel else 1)).astype(np.float32)
    wts = rng.integers(-127, 128, (1, 3, 3, c), dtype=np.int8)
    bias = (rng.integers(-3000, 3000, c).astype(np.int32), quant(list(0.02 * scales), 0))
    out_q = quant(float(0.02 * np.median(scales) * 3 * 73 / 25), int(rng.integers(-30, 30)))
    if gain:
        wts = rng.integers(-2, 3, (1, 3, 3, c), dtype=np.int8)
        bias = (rng.integers(-100, 100, c).astype(np.int32), bias[1])
        out_q = quant(float(0.02 * np.median(scales) / rng.uniform(0.5, 3)), int(rng.integers(-30, 30)))

    def size(n: int) -> int:
        return -(-n // stride) if padding == "SAME" else -(-(n - 2 * dil) // stride)

    options = conv_options(padding, stride, "NONE", dil, depth_multiplier=1)
    in_q = quant(0.02, int(rng.integers(-128, 128)))
    w_q = quant(list(scales), 0, 3)
    shapes = ((1, h, w, c), (1, size(h), size(w), c))
    g = _graph("DEPTHWISE_CONV_2D", shapes[0], in_q, wts, w_q, bias, shapes[1], out_q, options)
    return Case(g, out_q, "NONE")


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("seed", range(40))
def test_depthwise3x3_dsp_matches_reference(seed: int, trained: bool) -> None:
    _compare(_depthwise3x3_case(seed), seed, trained)


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("seed", range(10))
def test_depthwise3x3_large_maps_dsp_matches_reference(seed: int, trained: bool) -> None:
    _compare(_depthwise3x3_case(seed, large=True), seed, trained)


@pytest.mark.parametrize("large", [False, True])
@pytest.mark.parametrize("seed", range(20))
def test_depthwise3x3_left_shifts_dsp_matches_reference(seed: int, large: bool) -> None:
    """Real multipliers of 1/2 and more (requantization shifts >= 0) take the exact path."""
    _compare(_depthwise3x3_case(seed, large=large, gain=True), seed, seed % 2 == 0)


def test_the_left_shift_cases_are_informative() -> None:
    """Their outputs spread (most clip at such gains, but not all), and their multipliers are
    at or above 1/2: requantization shifts >= 0, which the fused path does not take."""
    outs, shifts = [], []
    for seed in range(20):
        case = _depthwise3x3_case(seed, gain=True)
        outs.append(_compare(case, seed, False))
        call = lower(case.graph, case.graph.ops[0])
        shifts.append(_operands(case.graph, call, np.random.default_rng(seed))[4])
    assert np.mean([np.unique(o).size >= 8 for o in outs]) >= 0.8
    assert np.mean([np.any(sh >= 0) for sh in shifts]) >= 0.8


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("seed", range(30))
def test_fully_connected_dsp_matches_reference(seed: int, per_channel: bool, trained: bool) -> None:
    _compare(fc_case(seed, per_channel), seed, trained)


@pytest.mark.parametrize("seed", range(8))
def test_fully_connected_dsp_weights_zero_point(seed: int) -> None:
    _compare(fc_case(100 + seed, per_channel=False, weights_zp=True), seed, trained=False)


@pytest.mark.parametrize("seed", range(12))
def test_dsp_kernels_are_bit_exact_with_tflite(seed: int) -> None:
    """Through X_run with the optimized kernels selected: TFLite's reference, bit for bit."""
    with dsp_on_host():
        cases = (
            conv_case(seed),
            _conv1x1_case(seed),
            depthwise_case(seed),
            _depthwise3x3_case(seed),
            fc_case(seed, seed % 2 == 0),
        )
        for case in cases:
            graph = case.oracle if case.oracle is not None else case.graph
            check_bit_exact(graph, np.random.default_rng(seed))


def test_the_host_dispatch_follows_the_flag() -> None:
    """X_run runs the reference by default on the host and the optimized kernel when asked:
    the kernels_dsp_host global exists and both paths agree through X_run too."""
    case = _conv1x1_case(3)
    call = lower(case.graph, case.graph.ops[0])
    arrays = _operands(case.graph, call, np.random.default_rng(3))
    assert ctypes.c_int.in_dll(host_lib(), "kernels_dsp_host").value == 0
    a = _run_dispatch(call, arrays)
    with dsp_on_host():
        b = _run_dispatch(call, arrays)
    np.testing.assert_array_equal(a, b)


def _run_dispatch(call: KernelCall, arrays: list[np.ndarray]) -> np.ndarray:
    from pytools.model.kernels import run_kernel

    arrays = [a.copy() for a in arrays]
    run_kernel(call, arrays)
    return arrays[-1]


# --- requant_fast.h against fixedpoint.h, exhaustively on the edges -------------------------

REQUANT_SWEEP_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include "fixedpoint.h"
#include "requant_fast.h"

static uint64_t state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}
static long long checks = 0, bad = 0;

/* rq_multiply == the reference; on the fast path also the fused offset + int8 clamp. */
static void check(int32_t x, int32_t m, int sh, int32_t off) {
    const int32_t want = fp_multiply_by_quantized_multiplier(x, m, sh);
    ++checks;
    if (rq_multiply(x, m, sh) != want && bad++ < 10)
        printf("mismatch x=%d m=%d shift=%d\n", x, m, sh);
    if (rq_fast_ok(m, sh) &&
        rq_fused(x, rq_m2(m), rq_s1(sh), 1 + 2 * off) != fp_clamp(want + off, -128, 127) &&
        bad++ < 10)
        printf("fused mismatch x=%d m=%d shift=%d offset=%d\n", x, m, sh, off);
}

/* x around the reference's rounding ties of shift sh: the first rounding's result v near
 * k 2^e + 2^(e-1) (the second rounding's tie), x near v 2^31 / m (the first one's). */
static void ties(int32_t m, int sh, int64_t k, int32_t off) {
    if (sh >= 0 || m == 0) return;
    const int e = -sh;
    const int64_t v = k * ((int64_t)1 << e) + ((int64_t)1 << (e - 1));
    const int64_t x = (int64_t)((__int128)v * ((__int128)1 << 31) / m);
    for (int64_t d = -3; d <= 3; ++d)
        if (x + d >= INT32_MIN && x + d <= INT32_MAX) check((int32_t)(x + d), m, sh, off);
}

int main(int argc, char **argv) {
    const long long random_triples = argc > 1 ? atoll(argv[1]) : 1000000;
    static const int32_t xs[] = {INT32_MIN, INT32_MIN + 1, -65536, -256, -3, -2, -1, 0, 1,
                                 2, 3, 256, 65535, INT32_MAX - 1, INT32_MAX};
    static const int32_t offs[] = {-128, -1, 0, 5, 127};
    /* Every edge: each shift, edge multipliers, edge x, ties for many k. */
    for (int sh = -31; sh <= 30; ++sh) {
        int32_t ms[8] = {0, 1 << 30, (1 << 30) + 1, INT32_MAX, INT32_MAX - 1, 1518500250,
                         (int32_t)(0x40000000u | (rnd() >> 34)), 0};
        ms[7] = (int32_t)(0x40000000u | (rnd() >> 34));
        for (int j = 0; j < 8; ++j) {
            for (unsigned i = 0; i < sizeof xs / sizeof xs[0]; ++i)
                for (unsigned o = 0; o < sizeof offs / sizeof offs[0]; ++o)
                    check(xs[i], ms[j], sh, offs[o]);
            for (int64_t k = -300; k <= 300; ++k) ties(ms[j], sh, k, (int32_t)(k % 128));
            for (int t = 0; t < 200; ++t) {
                const int64_t k = (int64_t)(int32_t)(rnd() >> 32) >> (-sh > 1 ? -sh - 1 : 0);
                ties(ms[j], sh, k, 0);
            }
        }
    }
    /* Random triples: x uniform, small, or power-of-two scaled; multipliers in [2^30, 2^31). */
    for (long long i = 0; i < random_triples; ++i) {
        const uint64_t r = rnd(), q = rnd();
        const int sh = (int)(r % 62) - 31;
        const int32_t m = (r >> 14) % 1000 == 0 ? 0 : (int32_t)(0x40000000u | (uint32_t)(r >> 34));
        const int32_t off = (int32_t)((r >> 40) % 256) - 128;
        int32_t x = (int32_t)(q >> 32);
        if ((q & 3) == 1) x = (int32_t)(q >> 40) - (1 << 23);
        if ((q & 3) == 2) x >>= (q >> 3) & 31;
        check(x, m, sh, off);
        ties(m, sh, (int64_t)(int32_t)(rnd() >> 32) >> (-sh > 1 ? -sh - 1 : 0), off);
    }
    printf("%lld %lld\n", checks, bad);
    return bad != 0;
}
"""


def _requant_sweep(tmp_path, random_triples: int) -> int:
    """Compiles the sweep with the host compiler (requant_fast.h's portable C, the very
    expressions the DSP build runs as SMMLAR/QADD/SSAT) and returns the checks made."""
    import shutil
    import subprocess
    from pathlib import Path

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    kernels = Path(__file__).resolve().parents[3] / "firmware" / "kernels"
    src, exe = tmp_path / "sweep.c", tmp_path / "sweep"
    src.write_text(REQUANT_SWEEP_C)
    flags = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{kernels}"]
    subprocess.run([cc, *flags, str(src), "-o", str(exe)], check=True)
    p = subprocess.run([str(exe), str(random_triples)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout
    checks, bad = map(int, p.stdout.split()[-2:])
    assert bad == 0
    return checks


def test_fast_requantization_is_bit_identical_with_the_reference(tmp_path) -> None:
    """requant_fast.h (its proof is in the header) against fp_multiply_by_quantized_multiplier:
    every shift -31..30 with edge multipliers (2^30, 2^31 - 1, ...) and edge x (INT32_MIN/MAX,
    0, +-1, ...), x around both rounding ties, and random triples; a few million checks here
    (a one-off sweep of 500M random triples, 973M checks, found no difference either)."""
    assert _requant_sweep(tmp_path, 1_500_000) > 3_000_000


# --- (b), (c) the emulated Cortex-M7: whole models, and the cost of 1x1 convolutions -------

DSP_FLAG = "-DKERNELS_DSP=1"


def _firmware(compiled, dsp: bool):
    """The firmware for mps2_an500 with this plan: as firmware/build.toml builds it (the DSP
    kernels), or (dsp=False) from the same BuildSpec without -DKERNELS_DSP=1, i.e. the
    reference kernels, compiled into a directory of its own (build/kernels_ref/...) so the
    two builds never share objects."""
    from unittest import mock

    from pytools.boards import load_board
    from pytools.build import builder, manifest

    board = load_board("mps2_an500")
    spec = manifest.target_spec(board)
    assert DSP_FLAG in spec.cflags, "firmware/build.toml should select the DSP kernels for the Cortex-M7"
    if dsp:
        return board, builder.build_firmware(board, compiled.blob, compiled.arena)
    ref = dataclasses.replace(
        spec,
        cflags=[f for f in spec.cflags if f != DSP_FLAG],
        ldflags=[f for f in spec.ldflags if f != DSP_FLAG],
        defines=dict(spec.defines),
    )
    with (
        mock.patch.object(builder, "target_spec", lambda _board: ref),
        mock.patch.object(builder, "BUILD", builder.BUILD / "kernels_ref"),
    ):
        return board, builder.build_firmware(board, compiled.blob, compiled.arena)


@contextmanager
def emulated_model(compiled, dsp: bool, tag: str = "test-dsp") -> Iterator[Any]:
    """The plan's BoardModel (pytools.model.board_runner) on a fresh emulated board running the
    DSP (or reference) kernel build; the emulator stopped and its files removed afterwards."""
    from pytools import emulator
    from pytools.link.client import Link
    from pytools.model.board_runner import BoardModel
    from pytools.model.host_twin import io_tensors, tensor_table

    board, image = _firmware(compiled, dsp)
    name = f"{tag}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    emulator.start(board, image.elf, name=name)
    try:
        with Link.open(emulator.find(name).url) as link:
            ins, outs = io_tensors(compiled.blob)
            yield BoardModel(link, tensor_table(compiled.blob), ins, outs)
    finally:
        emulator.stop(name)
        for suffix in (".log", ".json"):
            (emulator.RUN / f"{name}{suffix}").unlink(missing_ok=True)


def _on_board(compiled, dsp: bool, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """Outputs and INVOKE costs (instructions) of the plan on a fresh emulated board."""
    with emulated_model(compiled, dsp) as model:
        results, costs = [], []
        for x in inputs:
            out, report = model.invoke([x])
            assert report["counter_unit"] == 1  # instructions (-icount shift=0)
            results.append(out[0])
            costs.append(int(report["cost"]))
        return results, costs


def _conv_graph_1x1(h: int, w: int, cin: int, cout: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    wts = rng.integers(-127, 128, (cout, 1, 1, cin), dtype=np.int8)
    scales = (10 ** rng.uniform(-2.5, -1.5, cout)).astype(np.float32)
    bias = (rng.integers(-5000, 5000, cout).astype(np.int32), quant(list(0.02 * scales), 0))
    out_q = quant(float(0.02 * np.median(scales) * np.sqrt(cin) * 70 / 25), 5)
    options = {"padding": "VALID", "stride_h": 1, "stride_w": 1, "activation": "NONE"}
    return _graph(
        "CONV_2D",
        (1, h, w, cin),
        quant(0.02, -3),
        wts,
        quant(list(scales), 0, 0),
        bias,
        (1, h, w, cout),
        out_q,
        options,
    )


def _pointwise_net(seed: int = 0):
    """A small 1x1-heavy network (pointwise, depthwise 3x3, pointwise, general 3x3, FC), built
    as an IR graph and exported with pytools.model.tflite_export for the oracle."""
    from pytools.model.ir import Graph, Op, Tensor

    rng = np.random.default_rng(seed)
    tensors: list[Tensor] = []
    ops: list[Op] = []
    tensor = tensor_adder(tensors)

    def layer(kind, x, cout, k, options, depthwise=False, fc=False) -> int:
        xt = tensors[x]
        cin = xt.shape[-1]
        in_s = float(xt.quant.scale[0])
        scales = (10 ** rng.uniform(-2.5, -1.5, cout)).astype(np.float32)
        if fc:
            depth = int(np.prod(xt.shape[1:]))
            wshape, axis, taps = (cout, depth), 0, depth
        elif depthwise:
            wshape, axis, taps = (1, k, k, cout), 3, k * k
        else:
            wshape, axis, taps = (cout, k, k, cin), 0, k * k * cin
        wts = rng.integers(-127, 128, wshape, dtype=np.int8)
        w = tensor(wshape, quant(list(scales), 0, axis), wts)
        b = tensor(
            (cout,),
            quant(list(np.float32(in_s) * scales), 0),
            rng.integers(-3000, 3000, cout).astype(np.int32),
            "int32",
        )
        out_scale = float(in_s * np.median(scales) * np.sqrt(taps) * 73 / 25)
        shape = (1, cout) if fc else (*xt.shape[:3], cout)
        y = tensor(shape, quant(out_scale, int(rng.integers(-20, 20))))
        ops.append(Op(len(ops), kind, [x, w, b], [y], options))
        return y

    conv = {"padding": "SAME", "stride_h": 1, "stride_w": 1, "activation": "RELU"}
    x = tensor((1, 12, 12, 16), quant(0.03, -5))
    y = layer("CONV_2D", x, 48, 1, conv)
    y = layer("DEPTHWISE_CONV_2D", y, 48, 3, {**conv, "depth_multiplier": 1}, depthwise=True)
    y = layer("CONV_2D", y, 32, 1, conv)
    y = layer("CONV_2D", y, 24, 3, conv)
    y = layer("CONV_2D", y, 40, 1, {**conv, "activation": "NONE"})
    y = layer("FULLY_CONNECTED", y, 10, 1, {"activation": "NONE", "keep_num_dims": False}, fc=True)
    return Graph(tensors, ops, inputs=[0], outputs=[y])


def _compile(graph, name: str):
    from pytools.boards import load_board
    from pytools.model.compiler import compile_graph

    return compile_graph(graph, load_board("mps2_an500"), name)


@pytest.mark.emulator
@pytest.mark.parametrize("name", ["pointwise_net", "mobilenet_tiny"])
def test_models_with_dsp_kernels_are_bit_exact_on_the_emulated_board(name: str) -> None:
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_export import write_tflite
    from pytools.model.tflite_import import import_tflite

    if name == "mobilenet_tiny":
        from pytools.pretrain.zoo import zoo_model

        model = zoo_model(name)
        graph = import_tflite(model, name)
    else:
        graph = _pointwise_net()
        model = write_tflite(graph)
    compiled = _compile(graph, name)
    from tests.test_models import random_inputs

    inputs = random_inputs(compiled.blob, np.random.default_rng(11), 2)
    expected = [run_tflite(model, [x])[0] for x in inputs]
    cost = {}
    for dsp in (True, False):
        outs, costs = _on_board(compiled, dsp, inputs)
        for got, want in zip(outs, expected, strict=True):
            np.testing.assert_array_equal(got, want)
        cost[dsp] = min(costs)
    print(
        f"\n{name}: {cost[False]:,} instructions per inference with the reference kernels, "
        f"{cost[True]:,} with the DSP kernels ({cost[False] / cost[True]:.2f}x)"
    )
    assert cost[True] < cost[False]


@pytest.mark.emulator
def test_1x1_convolution_cost_on_the_emulated_board() -> None:
    """Single-op 1x1 convolution plans (MACs = H*W*Cin*Cout); the cost is the whole INVOKE
    (runtime included), in instructions, for the DSP build and for the reference build.

    Issue 7's bar: 1.0 MAC/instruction (the DSP limit is 2). 16x16x64 -> 64 takes the packed
    pointwise path (per output channel a record of widened weights; passes of 8 input channels)
    at about 1.07; 8x8x128 and 4x4x256 take the pair path: per 2x2 block (2 pixels x 2
    channels) conv2d_s8_gemm_dsp.c's pair_fast_m7 takes 3 + 4 x 46 + 30 = 217 instructions at 64
    input channels (1.18 MAC/instruction; rq4 on doubled sums where output channels outnumber
    half the input channels, else pair_fast_m7_single's 4 more); widening the pixels once and
    each filter row once per 46-pixel tile, and the per-channel-pair setup, take the rest."""
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_export import write_tflite

    shapes = [(16, 16, 64, 64), (8, 8, 128, 128), (4, 4, 256, 256), (16, 16, 32, 32)]
    rate = {}
    for h, w, cin, cout in shapes:
        graph = _conv_graph_1x1(h, w, cin, cout)
        compiled = _compile(graph, f"conv1x1_{h}x{w}x{cin}x{cout}")
        x = np.random.default_rng(5).integers(-128, 128, (1, h, w, cin), dtype=np.int8)
        want = run_tflite(write_tflite(graph), [x])[0]
        assert np.unique(want).size > 64  # an informative output
        macs = h * w * cin * cout
        for dsp in (True, False):
            outs, costs = _on_board(compiled, dsp, [x])
            np.testing.assert_array_equal(outs[0], want)
            rate[(h, w, cin, cout, dsp)] = macs / costs[0]
        ref, opt = rate[(h, w, cin, cout, False)], rate[(h, w, cin, cout, True)]
        print(
            f"\n1x1 conv {h}x{w}x{cin} -> {cout} ({macs:,} MACs): reference {ref:.3f} MAC/instruction, "
            f"DSP {opt:.3f} ({opt / ref:.2f}x)"
        )
    ref, opt = rate[(16, 16, 64, 64, False)], rate[(16, 16, 64, 64, True)]
    assert opt / ref >= 8.0, (ref, opt)
    assert opt >= 1.0, opt
    assert rate[(8, 8, 128, 128, True)] >= 1.05
    assert rate[(4, 4, 256, 256, True)] >= 1.0


@pytest.mark.emulator
def test_narrow_1x1_convolution_cost_on_the_emulated_board() -> None:
    """MobileNetV2's narrow pointwise convolutions (8 -> 48, 16 -> 96, 16 -> 8) on
    conv2d_s8_dsp.c's narrow path, against TFLite, in instructions per whole INVOKE (runtime
    included). Per output the assembly takes 10 instructions for 8 input channels (LDM, 4
    SMLAD, rq4's 4 of requantization, STRB) and 6 more per further 8 (LDM, 4 SMLAD, STR), plus the
    loop's and each pixel's overhead: >= 0.6 MAC/instruction for 8 -> 48 and >= 0.8 for
    16 -> 96, where the GEMM path took 0.42-0.50 (its per-output requantization, stores and
    per-channel-pair setup weigh as much as 8 or 16 MACs)."""
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_export import write_tflite

    floor = {(16, 16, 8, 48): 0.6, (16, 16, 16, 96): 0.8, (16, 16, 16, 8): 0.6}
    for (h, w, cin, cout), bar in floor.items():
        graph = _conv_graph_1x1(h, w, cin, cout, seed=cin + cout)
        compiled = _compile(graph, f"narrow_cost_{h}x{w}x{cin}x{cout}")
        x = np.random.default_rng(6).integers(-128, 128, (1, h, w, cin), dtype=np.int8)
        want = run_tflite(write_tflite(graph), [x])[0]
        assert np.unique(want).size > 32  # an informative output
        outs, costs = _on_board(compiled, True, [x])
        np.testing.assert_array_equal(outs[0], want)
        rate = h * w * cin * cout / costs[0]
        print(
            f"\n1x1 conv {h}x{w}x{cin} -> {cout}: DSP {rate:.3f} MAC/instruction ({costs[0]:,} instructions)"
        )
        assert rate >= bar, (h, w, cin, cout, rate)


@pytest.mark.emulator
def test_narrow_1x1_convolutions_on_the_emulated_board() -> None:
    """The assembly's variants by input depth (2 groups: no loop; 4 and more: the loop, with and
    without its 2-group tail; 8 and 16 channels: the narrow path's two functions, up to its
    buffer's limits), odd pixel counts and channel counts, against TFLite."""
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_export import write_tflite

    shapes = [(5, 7, 4, 6), (8, 8, 8, 48), (3, 5, 12, 9), (6, 6, 24, 16), (4, 3, 40, 11)]
    # conv2d_s8_dsp.c's narrow path (8 or 16 input channels, output channels a multiple of 4)
    shapes += [(7, 5, 16, 96), (9, 9, 16, 8), (3, 3, 8, 4), (1, 1, 16, 116), (2, 3, 8, 192)]
    shapes += [(8, 8, 48, 8), (8, 8, 96, 16), (8, 9, 24, 20), (9, 8, 32, 28)]
    shapes += [(8, 8, 24, 148), (8, 8, 64, 100), (8, 10, 56, 36)]  # chunks of output channels
    for h, w, cin, cout in shapes:
        rng = np.random.default_rng(cin)
        scales = (10 ** rng.uniform(-2.5, -1.5, cout)).astype(np.float32)
        bias = (rng.integers(-50 * cin, 50 * cin, cout).astype(np.int32), quant(list(0.02 * scales), 0))
        out_q = quant(float(0.02 * np.median(scales) * np.sqrt(cin) * 73 * 74 / 25), 5)  # ~25 quanta per std
        options = {"padding": "VALID", "stride_h": 1, "stride_w": 1, "activation": "NONE"}
        wts = rng.integers(-127, 128, (cout, 1, 1, cin), dtype=np.int8)
        shapes = ((1, h, w, cin), (1, h, w, cout))
        graph = _graph(
            "CONV_2D",
            shapes[0],
            quant(0.02, -3),
            wts,
            quant(list(scales), 0, 0),
            bias,
            shapes[1],
            out_q,
            options,
        )
        compiled = _compile(graph, f"narrow_{h}x{w}x{cin}x{cout}")
        x = np.random.default_rng(cin).integers(-128, 128, (1, h, w, cin), dtype=np.int8)
        want = run_tflite(write_tflite(graph), [x])[0]
        outs, _ = _on_board(compiled, True, [x])
        np.testing.assert_array_equal(outs[0], want)
        assert np.mean((want > -128) & (want < 127)) > 0.5 and np.unique(want).size >= 16


# --- ADD and SUB (add_s8_dsp.c, sub_s8_dsp.c: per-input tables shared in add_s8_dsp.h, four
# contiguous elements per step, the fused output requantization) -------------------------------


def _add_case(seed: int, kind: str = "ADD"):
    """A residual ADD (or a SUB) of 16 to ~14,000 elements (the tables' path from 512; odd
    lengths leave a tail after the four-element steps), the activations, zero points and scales
    at random; every fourth seed broadcasts along some dimensions."""
    from tests.kernels.test_other_kernels import ACTS, one_op, rand_scale, rand_zp, t8

    rng = np.random.default_rng(9000 + seed)
    shape = [1, int(rng.integers(4, 20)), int(rng.integers(4, 20)), int(rng.integers(1, 40))]
    a_shape, b_shape = list(shape), list(shape)
    if seed % 4 == 3:
        for k in range(1, 4):
            r = rng.random()
            if r < 0.3:
                a_shape[k] = 1
            elif r < 0.5:
                b_shape[k] = 1
    s1, s2 = rand_scale(rng, 0.005, 0.2), rand_scale(rng, 0.005, 0.2)
    so = (s1 + s2) * float(rng.uniform(0.4, 2.0))
    a = t8(a_shape, quant(s1, rand_zp(rng)), "a")
    b = t8(b_shape, quant(s2, rand_zp(rng)), "b")
    out = t8(shape, quant(so, rand_zp(rng)), "out")
    return one_op(kind, [a, b], out, {"activation": str(rng.choice(ACTS))})


@pytest.mark.parametrize("kind", ["ADD", "SUB"])
@pytest.mark.parametrize("seed", range(40))
def test_add_dsp_matches_reference(seed: int, kind: str) -> None:
    g = _add_case(seed, kind)
    call = lower(g, g.ops[0])
    arrays = _operands(g, call, np.random.default_rng(seed))
    np.testing.assert_array_equal(_run(call, arrays, "dsp"), _run(call, arrays, "ref"))


def test_add_cases_are_informative_and_take_the_table_path() -> None:
    outs = []
    for seed in range(40):
        g = _add_case(seed)
        call = lower(g, g.ops[0])
        outs.append(_run(call, _operands(g, call, np.random.default_rng(seed)), "ref"))
    assert np.mean([o.size >= 512 for o in outs]) >= 0.6
    assert np.mean([np.unique(o).size >= 8 for o in outs if o.size >= 512]) >= 0.8


@pytest.mark.parametrize("kind", ["ADD", "SUB"])
@pytest.mark.parametrize("seed", range(6))
def test_add_dsp_is_bit_exact_with_tflite(seed: int, kind: str) -> None:
    with dsp_on_host():
        check_bit_exact(_add_case(seed, kind), np.random.default_rng(seed))


def _add_takes_run4(call: KernelCall) -> bool:
    """Whether add_s8_dsp.h's assembly runs (addsub_row_run4) take the call: the full int8 range
    (no clamp; the cases' multipliers are all on requant_fast.h's path), and runs of 4 or more
    (every case here: without broadcasting the whole tensor is one run)."""
    p = call.params
    return p["act_min"] <= -128 and p["act_max"] >= 127


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_add_on_the_emulated_cortex_m7(tmp_path, monkeypatch, board_name: str) -> None:
    """The firmware build's add_s8 and sub_s8 (the Cortex-M7 objects; the Cortex-M4's on
    mps2-an386) on the emulated board against the host's reference kernel, on the same random
    calls: the assembly runs of 4 elements (addsub_row_run4, ADD and SUB) among them."""
    from tests.kernels import grad_support as gs

    monkeypatch.setattr(gs, "HARNESS_KERNELS", [*gs.HARNESS_KERNELS, "add_s8", "sub_s8"])
    calls = []
    for seed in range(14):
        g = _add_case(seed, "SUB" if seed % 3 == 2 else "ADD")
        call = lower(g, g.ops[0])
        calls.append((call, _operands(g, call, np.random.default_rng(seed))))
    run4 = [c for c, _ in calls if _add_takes_run4(c)]
    assert any(c.kernel == "add_s8" for c in run4) and any(c.kernel == "sub_s8" for c in run4)
    board = gs.run_on_board(calls, tmp_path, board_name)
    for (call, arrays), got in zip(calls, board, strict=True):
        np.testing.assert_array_equal(got[-1], _run(call, arrays, "ref"))


# --- clamp_mask_s8 (clamp_mask_s8_dsp.c: four byte lanes per comparison) -------------------

MASK_RANGES = [(-128, 127), (-129, 128), (-5, 127), (-128, 40), (-20, 30), (0, 0), (10, 11)]
MASK_RANGES += [(126, 127), (127, 300), (-300, -128), (-128, -127), (-1000, 1000), (3, 5)]


def _mask_call(seed: int) -> tuple[KernelCall, list[np.ndarray], np.ndarray]:
    """Random outputs of any length (tails of 1 to 7), the edges of the range among them, and
    an oracle: numpy's comparison packed LSB first (grad.h's layout)."""
    from pytools.model.kernels import Operand

    rng = np.random.default_rng(9500 + seed)
    n = int(rng.choice([1, 7, 8, 9, 31, 64, 1000, 1003, 4099]))
    lo, hi = MASK_RANGES[seed % len(MASK_RANGES)]
    y = rng.integers(-128, 128, n).astype(np.int8)
    edges = [v for v in (lo, hi, lo + 1, hi - 1, -128, 127) if -128 <= v <= 127]
    y[rng.integers(0, n, min(n, 12))] = rng.choice(edges, min(n, 12))
    mask = np.full((n + 7) // 8, 0xA5, np.uint8)
    call = KernelCall(
        "clamp_mask_s8", {"size": n, "act_min": lo, "act_max": hi}, [Operand(data=y), Operand(data=mask)]
    )
    bits = (y.astype(np.int32) > lo) & (y.astype(np.int32) < hi)
    return call, [y, mask], np.packbits(bits, bitorder="little")


@pytest.mark.parametrize("seed", range(39))
def test_clamp_mask_dsp_matches_reference_and_numpy(seed: int) -> None:
    call, arrays, want = _mask_call(seed)
    got = _run(call, arrays, "dsp")
    np.testing.assert_array_equal(got, _run(call, arrays, "ref"))
    np.testing.assert_array_equal(got, want)


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_clamp_mask_on_the_emulated_cortex_m7(tmp_path, monkeypatch, board_name: str) -> None:
    """The Cortex-M7 build (and the Cortex-M4's on mps2-an386): the 32-output assembly groups
    (clamp_mask32_m7) and the 8-output and bit-by-bit tails."""
    from tests.kernels import grad_support as gs

    monkeypatch.setattr(gs, "HARNESS_KERNELS", [*gs.HARNESS_KERNELS, "clamp_mask_s8"])
    calls = [_mask_call(seed) for seed in range(26)]
    assert sum(c.params["size"] >= 64 for c, _, _ in calls) >= 8
    board = gs.run_on_board([(c, a) for c, a, _ in calls], tmp_path, board_name)
    for (_, _, want), got in zip(calls, board, strict=True):
        np.testing.assert_array_equal(got[-1], want)


# --- MEAN (mean_s8_dsp.c: spatial means four channels at a time) ---------------------------


def _mean_case(seed: int):
    """Spatial means (axes 1, 2 of NHWC; up to 20x20 positions, several 255-position flushes
    of the 16-bit lane sums; channel counts across the 64-channel chunks and their tails),
    and every fifth seed another reduction (the reference's path)."""
    from tests.kernels.test_other_kernels import _mean_graph, rand_scale, rand_zp

    rng = np.random.default_rng(9700 + seed)
    shape = [
        int(rng.integers(1, 3)),
        int(rng.integers(1, 21)),
        int(rng.integers(1, 21)),
        int(rng.integers(1, 150)),
    ]
    qin = quant(rand_scale(rng, 0.01, 0.2), rand_zp(rng))
    qout = quant(float(qin.scale[0]) * float(rng.uniform(0.05, 1.5)), rand_zp(rng))
    axes = [1, 2] if seed % 5 else [[3], [0, 1], [1, 2, 3]][seed % 3]
    return _mean_graph(shape, axes, bool(seed % 2), qin, qout)


@pytest.mark.parametrize("seed", range(30))
def test_mean_dsp_matches_reference(seed: int) -> None:
    g = _mean_case(seed)
    call = lower(g, g.ops[0])
    arrays = _operands(g, call, np.random.default_rng(seed))
    np.testing.assert_array_equal(_run(call, arrays, "dsp"), _run(call, arrays, "ref"))


@pytest.mark.parametrize("seed", range(6))
def test_mean_dsp_is_bit_exact_with_tflite(seed: int) -> None:
    with dsp_on_host():
        check_bit_exact(_mean_case(seed), np.random.default_rng(seed))


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_mean_on_the_emulated_cortex_m7(tmp_path, monkeypatch, board_name: str) -> None:
    from tests.kernels import grad_support as gs

    monkeypatch.setattr(gs, "HARNESS_KERNELS", [*gs.HARNESS_KERNELS, "mean_s8"])
    calls = []
    for seed in range(8):
        g = _mean_case(seed)
        call = lower(g, g.ops[0])
        calls.append((call, _operands(g, call, np.random.default_rng(seed))))
    board = gs.run_on_board(calls, tmp_path, board_name)
    for (call, arrays), got in zip(calls, board, strict=True):
        np.testing.assert_array_equal(got[-1], _run(call, arrays, "ref"))
