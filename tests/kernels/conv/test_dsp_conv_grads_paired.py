"""The session-7 paths of the conv gradient kernels against the reference kernels, bit for bit,
on the host twin and on both emulated boards (their builds' assembly):

- conv2d_s8_grad_input_dsp.c's 1x1 gather: every pair of a tile in one call (gather_pairs_m7,
  a jump into unrolled steps), a lone pixel paired with its own row, the chunk's paired weights
  (chunk_weights_m7), per-channel terms 4 channels a turn (lanes4) and a chunk's mask bits read
  as a word (odd channel offsets: bits straddling a fifth byte);
- dsp.h's requantization loops in assembly (dsp_max_abs4, dsp_round4) with their C tails, at
  every magnitude branch (all zero, below 128, the fixed-point branch, 2^30 and above), and
  sums that take every fraction of the rounding, exact ties included;
- the overflow bound's pass, which stops once the input channels read need the largest shift
  the weights could need;
- dsp.h's weight step with VCVTM (the Cortex-M7 build) and the spatial update's rows no
  gradient reached (draws and saturation only, a -128 weight among them).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from tests.kernels import grad_support as gs
from tests.kernels.conv.support import assert_board_matches_ref, dsp_same_as_ref, run_variant

# (h, w, in_c, out_c, extra): lone pixels (odd pixel counts), input-channel tails (in_c % 4),
# chunks of 1..32 channels and several chunks, per-tensor scales (no lanes4), strides and
# padding (pixels no output reads), MCUNet's shapes.
SHAPES: list[tuple[int, int, int, int, dict[str, Any]]] = [
    (3, 3, 5, 1, {}),
    (3, 5, 7, 3, {}),
    (5, 5, 12, 33, {}),
    (7, 3, 9, 40, {"per_channel": False}),
    (4, 4, 96, 70, {}),
    (5, 7, 18, 37, {"sh": 2, "sw": 2, "padding": "SAME"}),
    (6, 6, 20, 13, {"sh": 2, "sw": 1, "padding": "VALID"}),
    (8, 8, 160, 40, {}),
    (4, 4, 96, 576, {}),
    (8, 8, 48, 288, {"has_mask": False}),
    (9, 9, 3, 66, {"n": 2}),
]


HUGE_C = 300  # channels whose full-scale sums exceed 2^30 (shift 15)


def _pointwise(i: int, h: int, w: int, in_c: int, out_c: int, extra: dict[str, Any]) -> gs.Layer:
    opts: dict[str, Any] = dict(fh=1, fw=1, dh=1, dw=1, sh=1, sw=1, n=1, padding="SAME")
    opts.update(h=h, w=w, in_c=in_c, out_c=out_c, density=0.6, train_rows=out_c // 3)
    opts.update(extra)
    if "has_mask" not in extra:
        opts["has_mask"] = True
    return gs.make_layer("conv", 70_000 + i, **opts)


def _small_sums(layer: gs.Layer) -> gs.Layer:
    """Every accumulator below 128 in magnitude (the requantization's branch for small maxima):
    one gradient of 1 at a channel whose scale is 1/512 of the largest, so g' is 1 and the sums
    are weights."""
    s_w = np.full(layer.s_w.shape, np.float32(1.0))
    s_w[-1] = np.float32(1 / 512)
    g = np.zeros_like(layer.g_q)
    g[0, 0, 0, -1] = 1
    return replace(layer, s_w=s_w, g_q=g, mask=None)


def _huge_sums(layer: gs.Layer) -> gs.Layer:
    """Sums at the overflow bound (above 2^30: the requantization's widest branch): every
    gradient -128 at full scale, every weight 127."""
    w = np.full(layer.w_flash.shape, 127, np.int8)
    return replace(
        layer,
        s_w=np.ones(layer.s_w.shape, np.float32),
        g_q=np.full(layer.g_q.shape, -128, np.int8),
        mask=None,
        w_flash=w,
        w_ram=w[: layer.train_rows].copy(),
    )


def _ties(seed: int, g: int) -> gs.Layer:
    """One pixel, one output channel and 253 input channels whose weights are -126..126: the
    sums are g' * W, their largest |acc| is g' * 126, so 127 |W| / 126 takes every fraction
    of the rounding, the exact tie (|W| = 63: 63.5) among them."""
    layer = _pointwise(seed, 1, 1, 253, 1, {"per_channel": True})
    w = np.arange(-126, 127, dtype=np.int8).reshape(1, 1, 1, 253)
    return replace(layer, w_flash=w, w_ram=w[:0].copy(), g_q=np.full((1, 1, 1, 1), g, np.int8), mask=None)


def _wide(seed: int, mode: str) -> gs.Layer:
    """600 output channels at full scale: the largest shift the weights could need is 16, so the
    bound's pass over the weights runs; with every weight 127 the first input channels already
    need 16 (the pass stops there), with small weights 15 (it reads them all), with one full
    column last it stops at the end."""
    layer = _pointwise(seed, 2, 2, 7, 600, {"per_channel": True})
    rng = np.random.default_rng(seed)
    if mode == "full":
        w = np.full(layer.w_flash.shape, 127, np.int8)
    else:
        w = rng.integers(-20, 21, layer.w_flash.shape).astype(np.int8)
        if mode == "last":
            w[..., -1] = 127
    s_w = np.ones(layer.s_w.shape, np.float32)
    return replace(layer, w_flash=w, w_ram=w[: layer.train_rows].copy(), s_w=s_w)


def _calls() -> list:
    layers = [_pointwise(i, *shape) for i, shape in enumerate(SHAPES)]
    layers += [_ties(60 + i, g) for i, g in enumerate((1, -77, 127, -128))]
    layers += [_wide(70 + i, mode) for i, mode in enumerate(("full", "small", "last"))]
    layers.append(_small_sums(_pointwise(50, 3, 3, 7, 4, {"per_channel": True})))
    layers.append(_huge_sums(_pointwise(51, 3, 3, 5, HUGE_C, {})))
    layers.append(replace(layers[0], g_q=np.zeros_like(layers[0].g_q)))  # all zero
    return [gs.grad_input_call(layer) for layer in layers]


def test_grad_input_1x1_paths_match_reference_on_the_host() -> None:
    for call, values in _calls():
        dsp_same_as_ref(call, values)


def test_the_requantization_cases_are_what_they_claim() -> None:
    """The crafted layers reach the branches they are meant for (their int32 sums: the
    reference's scale / 127 per unit)."""
    calls = _calls()
    small, huge, zero = calls[-3], calls[-2], calls[-1]
    out_small = run_variant(*small, "ref")
    assert 0 < np.abs(out_small[6]).max() and out_small[7][0] > 0
    # max |acc| * unit = 127 * scale / 127; unit = s_g * max s_W * 2^(shift - 23), shift 15
    unit = np.float32(small[1][1][0]) * np.float32(1.0) * np.float32(2.0**-8)
    assert out_small[7][0] / unit * 127 < 127.5  # max |acc| <= 127
    out_huge = run_variant(*huge, "ref")
    assert np.abs(out_huge[6]).max() == 127
    out_zero = run_variant(*zero, "ref")
    assert not np.any(out_zero[6]) and out_zero[7][0] == 0
    # the huge case's sums (conv2d_s8_grad_input.h): the bound b0 = 128 * sum |W| m over the
    # channels, the smallest shift that keeps it below 2^31, then |acc| = C * 127 * |g'|
    b0, w1 = 128 * HUGE_C * 127 * 2**23, HUGE_C * 127
    shift = next(s for s in range(15, 31) if (b0 >> s) + 1 + (w1 + 1) // 2 <= 2**31 - 1)
    assert HUGE_C * 127 * ((128 * 2**23 + 2 ** (shift - 1)) >> shift) >= 2**30


def _updates() -> list:
    calls = []
    shapes = [(4, 96, 64, 48), (8, 48, 40, 12), (3, 10, 12, 0), (4, 7, 9, 0)]  # h, in_c, out_c, cols
    for k, (h, in_c, out_c, cols) in enumerate(shapes):
        opts: dict[str, Any] = dict(fh=1, fw=1, dh=1, dw=1, sh=1, sw=1, n=1, padding="SAME")
        opts.update(h=h, w=h, in_c=in_c, out_c=out_c, has_mask=True, density=0.7)
        if cols:
            opts["train_cols"] = cols
        else:
            opts["train_rows"] = out_c
        layer = gs.make_layer("conv", 80_000 + k, **opts)
        layer.mask[..., 1::3] = False  # rows no gradient reached
        w_ram = layer.w_ram.copy()
        w_ram[1, ...] = -128  # a zero row's weights saturate to -127
        w_ram[2, ..., 0] = -128
        layer = replace(layer, w_ram=w_ram)
        for lr in (0.01, 3.0, 1e30):
            call, values = gs.update_call(layer, lr, True, True, 0x2468ACE + k)
            calls.append((call, [np.ascontiguousarray(v) for v in values[:8]]))
    return calls


def test_spatial_update_zero_rows_match_reference_on_the_host() -> None:
    for call, values in _updates():
        dsp_same_as_ref(call, copy.deepcopy(values))


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_conv_gradient_paths_on_the_emulated_boards(tmp_path, board_name: str) -> None:
    """The firmware build's objects (the M7's with VCVTM, the M4's without) against the host's
    reference kernels, bit for bit."""
    calls = _calls() + _updates()
    board = gs.run_on_board(calls, tmp_path, board_name)
    wants = assert_board_matches_ref(calls, board, f"on {board_name}")
    changed = 0
    for (call, values), want in zip(calls, wants, strict=True):
        if call.kernel.endswith("update"):
            changed += int(not np.array_equal(want[5], values[5]))
    assert changed >= 10  # the updates moved weights


def _pick_shift(b0: int, w1: int) -> int:
    """conv2d_s8_grad_input.h's conv_grad_pick_shift from 15."""
    shift = 15
    while shift < 30 and (b0 >> shift) + 1 + (w1 + 1) // 2 > 2**31 - 1:
        shift += 1
    return shift


def test_the_wide_cases_need_the_shifts_they_claim() -> None:
    """The largest possible shift of the wide layers is 16; the full and last-column weights
    need it, the small ones 15 (so the bound's pass stops early, reads everything, and stops
    at the end)."""
    for i, (mode, want) in enumerate((("full", 16), ("small", 15), ("last", 16))):
        layer = _wide(70 + i, mode)
        a = np.abs(layer.w_flash.reshape(600, -1).astype(np.int64))
        assert _pick_shift(128 * 128 * 600 * 2**23, 128 * 600) == 16
        assert _pick_shift(int((a * 2**23).sum(0).max()) * 128, int(a.sum(0).max())) == want, mode
