"""The DSP variants that kept their buffers on the thread stack now keep them in their
operator's scratch (issue 14, item 3: the measured stack high-water is part of peak SRAM):

- depthwise_conv2d_s8_3x3_dsp.c (the group's constants, then the first band's widened copy),
- depthwise_conv2d_s8_kxk_pair_dsp.c (the weight sets, then the first tile's copy),
- depthwise_conv2d_s8_grad_input_2pass_dsp.c through the plane engine
  (depthwise_conv2d_s8_grad_input_planes.c: accumulator row, packed weights, then the g' plane),
- conv2d_s8_grad_update_dsp.c (rows4's four rows of sums; the 1x1 path's position pairs), and
  fully_connected_s8_grad_update through it.

For each: the selector's X_scratch_size is the size the test expects from the variant's layout
(so a change of one without the other fails here), the DSP variant stays bit-exact with the
reference through run_kernel (exactly that scratch, a guard behind it), and the same call with
the scratch planned 8 bytes short writes into the guard, which run_kernel reports: the variant
does use its buffer up to the end the size function gives. The emulated board runs these
variants from the planned scratch in the existing tests (tests/kernels/conv/test_dsp_*.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import pytools.model.kernels as kernels
from pytools.model.kernels import KernelCall, scratch_size
from pytools.model.lowering import lower
from tests.kernels import grad_support as gs
from tests.kernels.conv.support import conv_options, run_variant
from tests.kernels.conv.test_conv_kernels import Case, _graph
from tests.kernels.conv.test_dsp_depthwise_channel_pairs import engine_bytes
from tests.kernels.conv.test_dsp_kernels import _operands, _run
from tests.kernels.support import quant


def _align8(n: int) -> int:
    return (n + 7) // 8 * 8


def _dw_case(h: int, w: int, c: int, k: int, stride: int, padding: str, seed: int = 0) -> Case:
    """A depthwise k x k layer (RELU6, per-channel scales)."""
    rng = np.random.default_rng(88_000 + seed)
    scales = (6.0 / (k * 73 * 74 * 0.02) * 10 ** rng.uniform(-0.5, 0.3, c)).astype(np.float32)
    wts = rng.integers(-127, 128, (1, k, k, c), dtype=np.int8)
    bias = (rng.integers(-3000, 3000, c).astype(np.int32), quant(list(0.02 * scales), 0))
    out_q = quant(6.0 / 200, -100)
    options = conv_options(padding, stride, "RELU6", depth_multiplier=1)

    def size(n: int) -> int:
        return -(-n // stride) if padding == "SAME" else -(-(n - k + 1) // stride)

    out = (1, size(h), size(w), c)
    w_q = quant(list(scales), 0, 3)
    g = _graph("DEPTHWISE_CONV_2D", (1, h, w, c), quant(0.02, 7), wts, w_q, bias, out, out_q, options)
    return Case(g, out_q, "RELU6")


def _short_is_caught(monkeypatch, run, used: int | None = None) -> None:
    """run() passes with the planned scratch and raises with it 8 bytes short (or 8 bytes short
    of `used`, what a variant that needs less than the layer plans writes)."""
    run()
    real = kernels.scratch_size
    monkeypatch.setattr(kernels, "scratch_size", lambda call: (real(call) if used is None else used) - 8)
    with pytest.raises(RuntimeError, match=r"past the \d+ bytes \w+_scratch_size gives"):
        run()


# --- depthwise forward: the 3x3 variant ------------------------------------------------------

D3K = 144  # struct d3k, 8-aligned (140 B on the Cortex-M, 144 on a 64-bit host)
D3_PIX = 200  # widened pixels the variant's band may hold (DW_PAD_WORDS / 2)

# (h, w, c, stride, padding): one band (MCUNet's 8x8 and 16x16), several bands with a partial
# channel group, stride 2 in one band and in bands of one row.
CASES_3X3 = [
    (8, 8, 48, 1, "SAME"),
    (16, 16, 22, 1, "SAME"),
    (40, 40, 18, 1, "SAME"),
    (17, 17, 13, 2, "VALID"),
    (6, 64, 12, 2, "SAME"),
]


def _d3_bytes(h: int, w: int, stride: int, padding: str) -> int:
    oh, ow = (-(-n // stride) if padding == "SAME" else -(-(n - 2) // stride) for n in (h, w))
    pw = (ow - 1) * stride + 3
    band = (D3_PIX // pw - 3) // stride + 1
    rows = min(band, oh)
    return D3K + ((rows - 1) * stride + 3) * pw * 8


@pytest.mark.parametrize("case", CASES_3X3)
def test_depthwise_3x3_copy_is_planned_scratch(case, monkeypatch) -> None:
    h, w, c, stride, padding = case
    g = _dw_case(h, w, c, 3, stride, padding).graph
    call = lower(g, g.ops[0])
    assert scratch_size(call) == _d3_bytes(h, w, stride, padding) <= 1600 + D3K
    arrays = _operands(g, call, np.random.default_rng(1))
    ref = _run(call, arrays, "ref")

    def run() -> None:
        np.testing.assert_array_equal(_run(call, arrays, "dsp"), ref)

    _short_is_caught(monkeypatch, run, engine_bytes(call))  # the channel-pair engine uses less


# --- depthwise forward: the k x k pair variant ----------------------------------------------

# MCUNet-5FPS's 5x5 and 7x7 layers (8x8 and 4x4 maps, 7x7/2 from 8x8), and maps of several
# tiles with a partial channel group.
CASES_KXK = [
    (8, 8, 160, 5, 1, "SAME"),
    (4, 4, 36, 7, 1, "SAME"),
    (8, 8, 28, 7, 2, "SAME"),
    (30, 23, 13, 5, 1, "VALID"),
    (31, 26, 9, 7, 2, "SAME"),
]


@pytest.mark.parametrize("case", CASES_KXK)
def test_depthwise_kxk_pair_buffers_are_planned_scratch(case, monkeypatch) -> None:
    h, w, c, k, stride, padding = case
    g = _dw_case(h, w, c, k, stride, padding, seed=k).graph
    call = lower(g, g.ops[0])
    weights = (2 if stride % 2 else 1) * 28 * 16  # weight sets of KP_ROW_PAIRS_MAX pairs
    # At most the 1,600 B copy and both weight sets the variant kept on the stack; at least
    # kp_weights_load's widened taps (464 B) in the copy.
    assert weights + 464 <= scratch_size(call) <= weights + 1600
    arrays = _operands(g, call, np.random.default_rng(2))
    ref = _run(call, arrays, "ref")

    def run() -> None:
        np.testing.assert_array_equal(_run(call, arrays, "dsp"), ref)

    _short_is_caught(monkeypatch, run, engine_bytes(call))  # the channel-pair engine uses less


def test_depthwise_kxk_pair_plans_less_for_small_maps() -> None:
    """A 4x4 map's 7x7 windows copy 10 rows of 5 pairs (800 B), not the whole 1,600 B."""
    g = _dw_case(4, 4, 36, 7, 1, "SAME").graph
    assert scratch_size(lower(g, g.ops[0])) == 2 * 28 * 16 + 10 * 5 * 16


# --- depthwise input gradient, two passes: the plane engine ---------------------------------


def _dwp_bytes(call: KernelCall) -> int:
    """The two-pass DSP variant's layout: the Q23 multipliers, then (8-aligned) the engine's
    accumulator row (input_w + 8 int32), packed weight pairs and g' plane (ph x pw int16):
    dwp_setup's geometry."""
    p = call.params
    sh, sw = p["stride_h"], p["stride_w"]
    kh = [-(-(p["filter_h"] - py) // sh) for py in range(sh)]
    kw = [-(-(p["filter_w"] - px) // sw) for px in range(sw)]
    words = sum(h * ((w + 1) // 2) for h in kh for w in kw)
    ph = max(kh) - 1 + max((p["input_h"] - 1 + p["pad_h"]) // sh + 1, p["output_h"])
    pw = max(kw) - 1 + max((p["input_w"] - 1 + p["pad_w"]) // sw + 1, p["output_w"]) + 6
    return _align8(4 * p["input_c"]) + 4 * (p["input_w"] + 8) + 4 * words + 2 * ph * pw


# MCUNet-5FPS's trained depthwise layers, and small maps of any filter and stride 1 or 2.
CASES_DWP = [
    dict(h=4, w=4, in_c=576, fh=7, fw=7, sh=1, sw=1, padding="SAME"),
    dict(h=4, w=4, in_c=288, fh=5, fw=5, sh=1, sw=1, padding="SAME"),
    dict(h=8, w=8, in_c=288, fh=7, fw=7, sh=2, sw=2, padding="SAME"),
    dict(h=3, w=5, in_c=11, fh=3, fw=3, sh=2, sw=1, padding="SAME"),
    dict(h=6, w=7, in_c=5, fh=5, fw=5, sh=1, sw=2, padding="VALID"),
]


@pytest.mark.parametrize("shape", CASES_DWP)
def test_depthwise_grad_input_2pass_planes_are_planned_scratch(shape, monkeypatch) -> None:
    layer = gs.make_layer("dw", 7, mult=1, **shape)
    call, values = gs.grad_input_call(layer)
    call = KernelCall(call.kernel + "_2pass", call.params, call.operands)
    p = call.params
    ref_bytes = 4 * (p["batches"] * p["input_h"] * p["input_w"] + p["input_c"])
    dsp_bytes = _dwp_bytes(call)
    # The engine's buffers decide the size in these cases (so the guard sits behind P).
    assert dsp_bytes > ref_bytes
    assert scratch_size(call) == dsp_bytes
    # At most what the engine kept on the stack: a 2 KB plane, 64 words, a row of 72.
    assert dsp_bytes - _align8(4 * p["input_c"]) <= 2048 + 4 * 64 + 4 * 72
    want = run_variant(call, values, "ref")
    assert np.any(want[6])

    def run() -> None:
        got = run_variant(call, values, "dsp")
        for k, (w, g) in enumerate(zip(want, got, strict=True)):
            np.testing.assert_array_equal(g, w, err_msg=f"operand {k}")

    _short_is_caught(monkeypatch, run)


def test_depthwise_grad_input_2pass_plans_the_reference_where_larger(monkeypatch) -> None:
    """A 24x24 map: the reference's one-channel accumulators are larger than the engine's
    buffers, so the operator plans those (the engine runs inside them, bit-exact)."""
    layer = gs.make_layer("dw", 3, mult=1, h=24, w=24, in_c=4, fh=3, fw=3, sh=1, sw=1, padding="SAME")
    call, values = gs.grad_input_call(layer)
    call = KernelCall(call.kernel + "_2pass", call.params, call.operands)
    assert scratch_size(call) == 4 * (24 * 24 + 4) > _dwp_bytes(call)
    want, got = run_variant(call, values, "ref"), run_variant(call, values, "dsp")
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)


# --- conv and fully-connected weight gradient / update --------------------------------------

PAIR_BYTES = 24  # struct gu_pair on a 64-bit host: two pointers and a word (12 B on the board)


def _update_run(call: KernelCall, values: list[np.ndarray]) -> None:
    want = run_variant(call, values, "ref")
    got = run_variant(call, values, "dsp")
    for k, (w, g) in enumerate(zip(want, got, strict=True)):
        np.testing.assert_array_equal(g, w, err_msg=f"{call.kernel} operand {k}")


def _update(layer: gs.Layer, seed: int) -> tuple[KernelCall, list[np.ndarray]]:
    call, values = gs.update_call(layer, 0.05, True, True, 0x1234567 + seed, has_mask=False)
    return call, [np.ascontiguousarray(v) for v in values[:8]]


@pytest.mark.parametrize("in_c", [1, 3, 7])
def test_conv_update_rows4_sums_are_planned_scratch(in_c: int, monkeypatch) -> None:
    """Narrow inputs with a 3x3 filter take 4 rows at a time: 4 x filter_size int32 of
    scratch (at most the 2 KB they took on the stack); 12x12 outputs keep the spatial
    variant out."""
    layer = gs.make_layer(
        "conv",
        40 + in_c,
        h=12,
        w=12,
        in_c=in_c,
        out_c=10,
        fh=3,
        fw=3,
        sh=1,
        sw=1,
        dh=1,
        dw=1,
        padding="SAME",
        density=1.0,
        train_rows=10,
    )
    call, values = _update(layer, in_c)
    assert scratch_size(call) == 4 * 4 * 9 * in_c <= 2048
    _short_is_caught(monkeypatch, lambda: _update_run(call, values))


@pytest.mark.parametrize("positions", [1, 5, 100])
def test_conv_update_1x1_pairs_are_planned_scratch(positions: int, monkeypatch) -> None:
    """The 1x1 path's position pairs after one row's sums: a pair per two positions, at most
    GU_PAIRS_BYTES (768 B)."""
    in_c = 13
    layer = gs.make_layer(
        "conv",
        60 + positions,
        h=1,
        w=positions,
        in_c=in_c,
        out_c=3,
        fh=1,
        fw=1,
        sh=1,
        sw=1,
        dh=1,
        dw=1,
        padding="VALID",
        density=1.0,
        train_rows=3,
    )
    call, values = _update(layer, positions)
    pairs = min(768 // PAIR_BYTES, (positions + 1) // 2)
    assert scratch_size(call) == _align8(4 * in_c) + pairs * PAIR_BYTES
    _short_is_caught(monkeypatch, lambda: _update_run(call, values))


def test_fully_connected_update_plans_the_conv_variant() -> None:
    """fully_connected_s8_grad_update runs as a 1x1 convolution over its batches: its scratch
    is that convolution's (the pairs included)."""
    layer = gs.make_layer("fc", 5, batches=1, depth=37, units=4, density=1.0, train_rows=4)
    call, values = _update(layer, 5)
    assert scratch_size(call) == _align8(4 * 37) + PAIR_BYTES
    _update_run(call, values)
