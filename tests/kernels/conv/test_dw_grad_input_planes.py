"""The depthwise input gradients over the channel-plane engine, bit for bit against the reference.

- The one-pass operator's channel-plane variant (depthwise_conv2d_s8_grad_input_planes_dsp.c,
  which its DSP entry takes for gradients of 8x8 and up): strides, paddings, odd channel counts,
  masks, trained rows, batches, rows written straight into the accumulators (every column phase
  a multiple of 4 wide) or through the row buffer.
- The two-pass operator keeps half of its channels' accumulators in the output bytes between
  its passes as int16 (acc >> shift) and computes an accumulator again where a rounding boundary
  falls inside a kept value's interval: layers where that happens and the kept value alone would
  round wrong (counted by a numpy replica of the kernel's arithmetic, whose kept-channel count is
  held to the kernel's own, so a kernel that kept nothing or skipped the recomputation fails
  bit-exactness there), layers that keep
  nothing (two batches, channels too few for the rows' scratch), and a largest |acc| below 128
  (where the kept values are not used).
- Both on the emulated Cortex-M7 and Cortex-M4 (the firmware build's objects).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import pytest

from pytools.model.kernels import KernelCall, host_lib, scratch_size
from tests.kernels import grad_support as gs
from tests.kernels.conv.support import assert_board_matches_ref, dsp_same_as_ref, run_variant


def _planes_take(call: KernelCall) -> bool:
    """Whether the one-pass DSP entry takes the channel-plane variant (the C function itself)."""
    fn = host_lib().depthwise_conv2d_s8_grad_input_planes_dsp_takes
    fn.argtypes = [ctypes.c_char_p]
    fn.restype = ctypes.c_int
    return bool(fn(call.packed_params()))


def _kept_by_the_kernel(call: KernelCall) -> int:
    """The channels the two-pass DSP variant keeps for these parameters (the C function itself,
    depthwise_conv2d_s8_grad_input_2pass_dsp_kept; -1 where it falls back to the reference)."""
    fn = host_lib().depthwise_conv2d_s8_grad_input_2pass_dsp_kept
    fn.argtypes = [ctypes.c_char_p]
    fn.restype = ctypes.c_int32
    return int(fn(call.packed_params()))


def _quads(call: KernelCall) -> bool:
    """Whether the two-pass DSP variant runs its channel-quad engine (3x3 filters, channels a
    multiple of 4, small maps: depthwise_conv2d_s8_grad_input_2pass_dsp_quads) instead."""
    fn = host_lib().depthwise_conv2d_s8_grad_input_2pass_dsp_quads
    fn.argtypes = [ctypes.c_char_p]
    fn.restype = ctypes.c_int32
    return bool(fn(call.packed_params()))


def _whole4(p: dict[str, Any]) -> bool:
    """Every column phase a multiple of 4 columns: the rows go straight into the accumulators."""
    sw, w = p["stride_w"], p["input_w"]
    for px in range(sw):
        x0 = ((px - p["pad_w"]) % sw + sw) % sw
        n = (w - 1 - x0) // sw + 1 if x0 < w else 0
        if n % 4:
            return False
    return True


def _planes_layer(seed: int) -> gs.Layer:
    rng = np.random.default_rng(90_000 + seed)
    k = [(3, 3), (5, 5), (7, 7), (1, 1), (3, 5), (5, 3)][seed % 6]
    opts: dict[str, Any] = dict(mult=1, fh=k[0], fw=k[1], dh=1, dw=1)
    opts["sh"], opts["sw"] = (int(v) for v in rng.integers(1, 3, 2))
    # inputs whose gradients (outputs) have 64 pixels or more, mostly
    opts["h"] = int(rng.integers(8, 15)) * opts["sh"]
    opts["w"] = 8 * opts["sw"] if seed % 3 == 0 else int(rng.integers(8, 15)) * opts["sw"]
    # The variant's buffers take the multipliers' scratch (4 bytes a channel): most cases have
    # channels enough for their plane, every 4th too few (the channel-vectorized variant runs).
    opts["in_c"] = int(rng.integers(1, 70)) if seed % 4 == 3 else int(rng.integers(150, 300))
    opts["padding"] = "VALID" if seed % 4 == 1 else "SAME"
    if seed % 5 == 0:
        opts["n"] = 2
    if seed == 7:
        opts["density"] = 0.0
    return gs.make_layer("dw", seed, **opts)


@pytest.mark.parametrize("seed", range(48))
def test_one_pass_planes_variant_matches_reference(seed: int) -> None:
    call, values = gs.grad_input_call(_planes_layer(seed))
    out = dsp_same_as_ref(call, values)
    assert np.any(out[6]) or seed == 7


def test_one_pass_planes_variant_takes_its_shapes() -> None:
    """The cases above mostly run the channel-plane variant, both ways of writing its rows;
    4x4 gradients (MCUNet's 4x4 layers, MobileNetV2's 3x3/2 from 8x8) and depth multipliers above
    1 stay with the channel-vectorized one."""
    calls = [gs.grad_input_call(_planes_layer(seed))[0] for seed in range(48)]
    taken = [c for c in calls if _planes_take(c)]
    assert len(taken) >= 24
    assert any(_whole4(c.params) for c in taken) and any(not _whole4(c.params) for c in taken)
    for shape in [
        dict(h=4, w=4, in_c=288, fh=7, fw=7, sh=1, sw=1),
        dict(h=8, w=8, in_c=192, fh=3, fw=3, sh=2, sw=2, padding="SAME"),
        dict(h=8, w=8, in_c=16, mult=2, fh=3, fw=3, sh=1, sw=1),
    ]:
        call, _ = gs.grad_input_call(gs.make_layer("dw", 5, **{"mult": 1, **shape}))
        assert not _planes_take(call)
    mcunet = gs.make_layer("dw", 6, h=8, w=8, in_c=160, mult=1, fh=5, fw=5, sh=1, sw=1, padding="SAME")
    assert _planes_take(gs.grad_input_call(mcunet)[0])


@pytest.mark.parametrize("i", range(6))
def test_one_pass_planes_variant_writes_its_output_over_its_scratch(i: int) -> None:
    """The planner may put the int8 output at the scratch's start (compiler.OUTPUT_OVER_SCRATCH):
    the variant writes it only in the final requantization, element i after accumulator i."""
    taken = (gs.grad_input_call(_planes_layer(seed)) for seed in range(48))
    call, values = [c for c in taken if _planes_take(c[0])][i]
    want = run_variant(call, values, "ref")
    got = [v.copy() for v in values]
    n = scratch_size(call)
    scratch = np.full(n + 64, 0x5A, np.uint8)
    ptrs = [v.ctypes.data if v.size else None for v in got]
    ptrs[6] = scratch.ctypes.data
    fn = host_lib().depthwise_conv2d_s8_grad_input_dsp_run
    fn.restype = None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
    fn(call.packed_params(), (ctypes.c_void_p * len(got))(*ptrs), scratch.ctypes.data)
    assert (scratch[n:] == 0x5A).all()
    np.testing.assert_array_equal(scratch[: want[6].nbytes].view(np.int8).reshape(want[6].shape), want[6])
    assert got[7].tobytes() == want[7].tobytes()


# --- the two-pass operator's kept channels -------------------------------------------------


def _two_pass(layer: gs.Layer) -> tuple[KernelCall, list[np.ndarray]]:
    call, values = gs.grad_input_call(layer)
    return KernelCall(call.kernel + "_2pass", call.params, call.operands), values


def _accumulators(call: KernelCall, values: list[np.ndarray]) -> np.ndarray:
    """The kernels' int32 accumulators [batches, h, w, c] (multiplier 1), from their definition
    (depthwise_conv2d_s8_grad_input.h: Q23 multipliers, the shift from the overflow bound, one
    rounded term g' per tap)."""
    p = call.params
    g, _, mask, flash, trained, scales = values[:6]
    c_n, tr = p["input_c"], p["train_rows"]
    fh, fw = p["filter_h"], p["filter_w"]
    w = flash.reshape(fh, fw, c_n).astype(np.int64).copy()
    if tr:
        w[:, :, :tr] = trained.reshape(fh, fw, tr)
    s = scales.astype(np.float32)
    m = np.floor(s / s.max() * np.float32(2**23) + np.float32(0.5)).astype(np.int64)
    m = np.broadcast_to(m if p["per_channel"] else m[:1], (c_n,))
    total = np.abs(w).sum((0, 1))
    b0, w1, shift = int((total * 128 * m).max()), int(total.max()), 15
    while shift < 30 and (b0 >> shift) + 1 + (w1 + 1) // 2 > 2**31 - 1:
        shift += 1
    gg = g.astype(np.int64).reshape(-1)
    if p["has_mask"]:
        gg = gg * np.unpackbits(mask.view(np.uint8), bitorder="little")[: gg.size]
    v = gg.reshape(g.shape) * m
    gp = np.sign(v) * ((np.abs(v) + (1 << (shift - 1))) >> shift)
    acc = np.zeros((p["batches"], p["input_h"], p["input_w"], c_n), np.int64)
    for oy in range(p["output_h"]):
        for ox in range(p["output_w"]):
            for fy in range(fh):
                for fx in range(fw):
                    y, x = oy * p["stride_h"] - p["pad_h"] + fy, ox * p["stride_w"] - p["pad_w"] + fx
                    if 0 <= y < p["input_h"] and 0 <= x < p["input_w"]:
                        acc[:, y, x, :] += gp[:, oy, ox, :] * w[fy, fx, :]
    return acc


def _kept(p: dict[str, Any]) -> int:
    """The channels the two-pass DSP variant keeps between its passes
    (depthwise_conv2d_s8_grad_input_2pass_dsp.c: one batch, and every row of a channel in the
    scratch left beside the kept shifts): half of them in the output bytes, and more (the next
    channels) in what the rows leave of that scratch, each h * w int16 and a shift byte."""
    c_n, h, w = p["input_c"], p["input_h"], p["input_w"]
    free = ((4 * c_n + 7) & ~7) - c_n // 2
    rows = free // (4 * (w + 8))
    block = 1 if rows < 2 else min(rows, h)
    if p["batches"] != 1 or block != h:
        return 0
    if rows < 2:  # the rows in the engine's own buffer
        return c_n // 2
    used = block * (w if _whole4(p) else w + 8) * 4
    return c_n // 2 + min((free - used) // (2 * h * w + 1), c_n - c_n // 2)


def _boundary_masks(call: KernelCall, values: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per kept channel, over its positions (one batch, row-major): where a rounding boundary
    falls inside the kept interval (the kernel computes the accumulator again), and where the
    kept value alone (the interval's low end, rounded) would have rounded wrong: a kernel
    without the exact recomputation would differ from the reference there."""
    acc = _accumulators(call, values)
    kept = _kept(call.params)
    big = int(np.abs(acc).max())
    if not kept or not 128 <= big < 2**30:
        return []
    half, masks = big // 2, []
    for c in range(kept):
        a = acc[..., c].reshape(-1)
        cmax = int(np.abs(a).max())
        sh = max(0, cmax.bit_length() - 15)
        v = a >> sh
        lo = np.where(v >= 0, v << sh, ((-1 - v) << sh) + 1)
        rem = (127 * lo + half) % big
        hit = rem + 127 * ((1 << sh) - 1) >= big
        masks.append((hit, hit & ((127 * lo + half) // big != (127 * np.abs(a) + half) // big)))
    return masks


def _boundary_hits(call: KernelCall, values: list[np.ndarray]) -> tuple[int, int]:
    """How many kept accumulators are computed again, and how many of those the kept value
    alone would have rounded wrong (_boundary_masks)."""
    masks = _boundary_masks(call, values)
    return sum(int(h.sum()) for h, _ in masks), sum(int(w.sum()) for _, w in masks)


def _early_stops(call: KernelCall, values: list[np.ndarray]) -> tuple[int, int, int]:
    """Where kept_run (the assembly on the board) stops at a boundary, counted over the kept
    channels: at the first element of its run, a channel's first position or the one right
    after a recomputed one (it returns 0, nothing written), and after writing some (mid-run)."""
    first = again = mid = 0
    for hit, _ in _boundary_masks(call, values):
        at = np.flatnonzero(hit)
        after = np.isin(at - 1, at)
        first, again = first + int((at == 0).sum()), again + int(after.sum())
        mid += int((~after & (at > 0)).sum())
    return first, again, mid


def _kept_layer(seed: int) -> gs.Layer:
    """8x8 inputs with channels enough to keep (>= 147 at 8 wide): MCUNet's shapes first."""
    rng = np.random.default_rng(91_000 + seed)
    # (3x3 with channels a multiple of 4 on 8x8 run the channel-quad engine instead, which keeps
    # whole quads its own way: one channel more keeps these on the channel-plane engine)
    shapes = [(5, 192, 1), (7, 288, 2), (3, 161, 1), (5, 576, 1)]
    if seed < len(shapes):
        k, c, st = shapes[seed]
        h = 4 if c == 576 else 8
        return gs.make_layer(
            "dw", 400 + seed, h=h, w=h, in_c=c, mult=1, fh=k, fw=k, sh=st, sw=st, padding="SAME", n=1
        )
    k = int(rng.choice([3, 5, 7]))
    opts: dict[str, Any] = dict(mult=1, fh=k, fw=k, n=1, padding=str(rng.choice(["SAME", "VALID"])))
    opts["h"], opts["w"] = int(rng.integers(k if opts["padding"] == "VALID" else 4, 9)), 8
    opts["sh"] = opts["sw"] = int(rng.integers(1, 3))
    opts["in_c"] = int(rng.integers(150, 320))
    if k == 3 and opts["in_c"] % 4 == 0:
        opts["in_c"] += 1  # the channel-plane engine's shapes (above)
    return gs.make_layer("dw", 400 + seed, **opts)


@pytest.mark.parametrize("seed", [*range(12), 64])  # 64: a boundary at a channel's first position
def test_two_pass_kept_channels_match_reference(seed: int) -> None:
    call, values = _two_pass(_kept_layer(seed))
    assert _kept(call.params) > 0 and _kept_by_the_kernel(call) == _kept(call.params)
    out = dsp_same_as_ref(call, values)
    assert np.any(out[6])


def test_two_pass_keeps_more_channels_in_its_scratch_on_small_maps() -> None:
    """4x4 maps with many channels (MCUNet's 5x5 4x4x576) keep more than half of their channels:
    the rest of the scratch beside the rows holds the next ones. Bit-exact with the reference,
    with kept values on a rounding boundary among those channels (computed again exactly) and
    somewhere the kept value alone would round wrong."""
    hits = wrong = 0
    for seed in range(6):
        c = [576, 288, 401, 333, 201, 577][seed]  # 3x3: not a multiple of 4 (the quads)
        k = [5, 7, 3, 5, 3, 5][seed]
        layer = gs.make_layer(
            "dw", 950 + seed, h=4, w=4, in_c=c, mult=1, fh=k, fw=k, sh=1, sw=1, padding="SAME", n=1
        )
        call, values = _two_pass(layer)
        kept = _kept_by_the_kernel(call)
        assert kept == _kept(call.params) and kept > c // 2 + 10, (kept, c)
        dsp_same_as_ref(call, values)
        masks = _boundary_masks(call, values)[c // 2 :]
        hits += sum(int(h.sum()) for h, _ in masks)
        wrong += sum(int(w.sum()) for _, w in masks)
    assert hits >= 3 and wrong >= 1, (hits, wrong)  # measured: 4 and 2


def test_two_pass_recomputes_kept_values_on_a_rounding_boundary() -> None:
    """The exact recomputation runs, many times over these layers (bit-exact with the reference
    in the test above), and in some of them the kept value alone would have rounded wrong: a
    kernel that skipped the recomputation would fail there."""
    hits = wrong = 0
    for seed in range(12):
        call, values = _two_pass(_kept_layer(seed))
        h, w = _boundary_hits(call, values)
        hits, wrong = hits + h, wrong + w
    assert hits >= 20 and wrong >= 1, (hits, wrong)


def test_the_kept_count_replica_is_the_kernels() -> None:
    """_kept (the replica the counts above use) against the kernel's own choice, over shapes
    that keep and shapes that do not (batches, channels, heights, widths, strides)."""
    rng = np.random.default_rng(5)
    seen = set()
    for i in range(60):
        k = int(rng.choice([3, 5, 7]))
        h = int(rng.integers(4, 17))
        layer = gs.make_layer(
            "dw",
            700 + i,
            h=h,
            w=int(rng.integers(4, 17)),
            in_c=int(rng.integers(8, 400)),
            mult=1,
            fh=k,
            fw=k,
            sh=int(rng.integers(1, 3)),
            sw=int(rng.integers(1, 3)),
            padding="SAME",
            n=int(rng.integers(1, 3)),
        )
        call, _ = _two_pass(layer)
        c = _kept_by_the_kernel(call)
        if c >= 0 and not _quads(call):  # (the channel-quad engine keeps its own way: whole quads)
            assert c == _kept(call.params), call.params
            seen.add(c > 0)
    assert seen == {True, False}


def test_the_replica_is_the_kernels_arithmetic() -> None:
    """The numpy accumulators give the kernel's int8 gradient (so the boundary count above
    counts the kernel's own cases)."""
    call, values = _two_pass(_kept_layer(0))
    acc = _accumulators(call, values)
    big = int(np.abs(acc).max())
    q = np.sign(acc) * ((np.abs(acc) * 127 + big // 2) // big)
    np.testing.assert_array_equal(run_variant(call, values, "ref")[6], q.astype(np.int8))


@pytest.mark.parametrize("case", ["two batches", "few channels", "largest below 128"])
def test_two_pass_without_kept_values_matches_reference(case: str) -> None:
    if case == "two batches":
        layer = gs.make_layer("dw", 31, h=8, w=8, in_c=200, mult=1, fh=5, fw=5, sh=1, sw=1, n=2)
    elif case == "few channels":
        layer = gs.make_layer("dw", 32, h=8, w=8, in_c=40, mult=1, fh=5, fw=5, sh=1, sw=1, n=1)
    else:
        layer = gs.make_layer(
            "dw",
            33,
            h=8,
            w=8,
            in_c=200,
            mult=1,
            fh=3,
            fw=3,
            sh=1,
            sw=1,
            n=1,
            has_mask=False,
            per_channel=True,
        )
    call, values = _two_pass(layer)
    if case == "largest below 128":
        # One gradient in a channel whose scale is 3e-5 of the largest: g' = 1, |acc| <= 127.
        values[0][...] = 0
        values[0][0, 3, 3, 7] = 127
        values[5][...] = np.float32(1.0)
        values[5][7] = np.float32(3e-5)
        acc = _accumulators(call, values)
        assert 0 < np.abs(acc).max() < 128
    else:
        assert _kept(call.params) == 0
    out = dsp_same_as_ref(call, values)
    assert np.any(out[6])


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_planes_variants_on_the_emulated_board(tmp_path, monkeypatch, board_name: str) -> None:
    """The firmware build's objects (KERNELS_DSP=1) on QEMU against the host's reference."""
    kernel = "depthwise_conv2d_s8_grad_input_2pass"
    monkeypatch.setattr(gs, "HARNESS_KERNELS", [*gs.HARNESS_KERNELS, kernel])
    # Layers small enough for the harness's arena (one call's operands and scratch, 224 KB).
    shapes = [
        dict(h=8, w=8, in_c=160, fh=5, fw=5, sh=1, sw=1, padding="SAME", n=1),  # rows straight in
        dict(h=9, w=10, in_c=150, fh=3, fw=3, sh=1, sw=1, padding="SAME", n=1),  # the row buffer
        dict(h=16, w=16, in_c=100, fh=3, fw=3, sh=2, sw=2, padding="SAME", n=1),  # four phases
        dict(h=8, w=8, in_c=241, fh=7, fw=7, sh=1, sw=1, padding="SAME", n=2),  # two batches
        dict(h=4, w=4, in_c=288, fh=7, fw=7, sh=1, sw=1, padding="SAME", n=1),  # channel-vectorized
        dict(h=8, w=8, in_c=192, fh=3, fw=3, sh=2, sw=2, padding="SAME", n=1),  # channel-vectorized
    ]
    calls = [gs.grad_input_call(gs.make_layer("dw", 60 + i, mult=1, **sh)) for i, sh in enumerate(shapes)]
    assert [_planes_take(c) for c, _ in calls] == [True] * 4 + [False] * 2
    kept = [_two_pass(_kept_layer(seed)) for seed in (0, 1, 2, 3, 4, 9, 11, 64)]
    # The assembly's kept_run stops at a rounding boundary (the accumulator computed again) at a
    # channel's first position (seed 64), right after a recomputed one (seed 9) and mid-run, and
    # somewhere the kept value alone would round wrong.
    stops = [sum(n) for n in zip(*(_early_stops(c, v) for c, v in kept), strict=True)]
    wrong = sum(_boundary_hits(c, v)[1] for c, v in kept)
    assert min(stops) >= 1 and wrong >= 1, (stops, wrong)
    calls += kept
    # Stride 2 on 8-wide maps, both column phases in one block (the board's rows_s2): 7x7 with
    # two batches (nothing kept), 8x8 (phase 1's window left of phase 0's); 6x6 VALID (both windows
    # at one column) takes the per-phase blocks.
    calls += [
        _two_pass(gs.make_layer("dw", 70 + i, mult=1, sh=2, sw=2, **shape))
        for i, shape in enumerate(
            [
                dict(h=8, w=8, in_c=100, fh=7, fw=7, padding="SAME", n=2),
                dict(h=8, w=8, in_c=150, fh=8, fw=8, padding="SAME", n=1),
                dict(h=9, w=8, in_c=37, fh=6, fw=6, padding="VALID", n=1),
            ]
        )
    ]
    # 7x7/2 after an explicit PAD of 3 folded into the operator (MCUNet's, TFLite's export): both
    # phases' windows at one column (corr8s2_same); with and without kept channels.
    for i, n in enumerate((1, 2)):
        call, values = _two_pass(
            gs.make_layer(
                "dw",
                75 + i,
                h=8,
                w=8,
                in_c=288 - 100 * i,
                mult=1,
                fh=7,
                fw=7,
                sh=2,
                sw=2,
                padding="SAME",
                n=n,
            )
        )
        call.params["pad_h"] = call.params["pad_w"] = 3
        calls.append((call, values))
    calls += [gs.grad_input_call(_vectorized_layer(i)) for i in (1, 2)]
    board = gs.run_on_board(calls, tmp_path, board_name)
    assert_board_matches_ref(calls, board)
    assert sum(bool(np.any(g[6])) for g in board) >= len(calls) - 1


# --- the small-map shortcuts (session 8) ---------------------------------------------------


def _reference_shift(call: KernelCall, values: list[np.ndarray]) -> int:
    """The reference kernels' accumulator shift (depthwise_conv2d_s8_grad_input.c's overflow
    bound over the weights, multiplier 1), in numpy."""
    p = call.params
    c_n, tr = p["input_c"], p["train_rows"]
    w = values[3].reshape(-1, c_n).astype(np.int64).copy()
    if tr:
        w[:, :tr] = values[4].reshape(-1, tr)
    s = values[5].astype(np.float32)
    m = np.floor(s / s.max() * np.float32(2**23) + np.float32(0.5)).astype(np.int64)
    m = np.broadcast_to(m if p["per_channel"] else m[:1], (c_n,))
    total = np.abs(w).sum(0)
    b0, w1, shift = int((total * 128 * m).max()), int(total.max()), 15
    while shift < 30 and (b0 >> shift) + 1 + (w1 + 1) // 2 > 2**31 - 1:
        shift += 1
    return shift


def _vectorized_layer(i: int) -> gs.Layer:
    """4x4 gradients (the channel-vectorized variant) whose trained rows end inside a group of 4
    channels or a 128-channel block, masked or not, one multiplier or one per channel."""
    c, tr = [(133, 5), (300, 130), (300, 131), (37, 37), (64, 0), (250, 127)][i]
    return gs.make_layer(
        "dw", 990 + i, h=4, w=4, in_c=c, mult=1, fh=3 + 2 * (i % 2), fw=3 + 2 * (i % 2), sh=1, sw=1,
        padding="SAME", n=1 + i % 2, train_rows=tr, has_mask=i % 3 != 2, per_channel=i % 2 == 0,
    )  # fmt: skip


@pytest.mark.parametrize("i", range(6))
def test_channel_vectorized_blocks_end_at_the_trained_rows(i: int) -> None:
    """The channel-vectorized variant's int16 g' groups (gpos) start where a block's weights do:
    a block ends where the trained rows do."""
    call, values = gs.grad_input_call(_vectorized_layer(i))
    assert not _planes_take(call)
    out = dsp_same_as_ref(call, values)
    assert np.any(out[6])


@pytest.mark.parametrize("full_scale", [True, False], ids=["needs-16", "needs-15"])
def test_filters_past_the_worst_case_shift_bound(full_scale: bool) -> None:
    """Up to 511 taps the smallest shift holds whatever the weights, so the DSP variants skip the
    reference's pass over them (dw_grad_worst_shift); a 23x23 filter (529 taps) can need one
    more bit: at full-scale weights the reference takes shift 16, and the channel-vectorized
    variant computes the same from the weights (with ordinary weights, 15). Per-channel scales,
    so that the terms of the two shifts round apart (one scale would only move a power of 2)."""
    layer = gs.make_layer(
        "dw", 77, h=25, w=25, in_c=13, mult=1, fh=23, fw=23, sh=1, sw=1, padding="VALID", n=2,
        per_channel=True, train_rows=0, has_mask=True,
    )  # fmt: skip
    call, values = gs.grad_input_call(layer)
    if full_scale:
        rng = np.random.default_rng(3)
        values[3][...] = np.where(rng.random(values[3].shape) < 0.5, -127, 127).astype(np.int8)
    assert _reference_shift(call, values) == (16 if full_scale else 15)
    assert not _planes_take(call)
    out = dsp_same_as_ref(call, values)
    assert np.any(out[6])


@pytest.mark.parametrize("in_c", [160, 163, 576, 37])
@pytest.mark.parametrize("shape", ["5x5 8x8", "7x7/2 8x8", "5x5 4x4", "3x3 4x4"])
def test_small_maps_masked_any_channel_count(shape: str, in_c: int) -> None:
    """MCUNet's small-map shapes, every gradient masked: dwp_fill reads each element's mask bit
    at one place in its byte when the channel count is a multiple of 8 (160, 576) and walks the
    bits otherwise (163, 37); the engine reads only the window rows inside the gradient (5x5 and
    7x7 windows are wider than 4x4 maps). One-pass (DSP entry) and two-pass, against the
    reference."""
    k, st, h = {"5x5 8x8": (5, 1, 8), "7x7/2 8x8": (7, 2, 8), "5x5 4x4": (5, 1, 4), "3x3 4x4": (3, 1, 4)}[
        shape
    ]
    layer = gs.make_layer(
        "dw", 80 + in_c + k, h=h, w=h, in_c=in_c, mult=1, fh=k, fw=k, sh=st, sw=st, padding="SAME", n=1,
        has_mask=True, density=0.6,
    )  # fmt: skip
    call, values = gs.grad_input_call(layer)
    out = dsp_same_as_ref(call, values)[6]
    assert np.any(out)
    two, values2 = _two_pass(layer)
    assert _kept_by_the_kernel(two) >= 0  # the channel-plane path, not the reference's
    np.testing.assert_array_equal(dsp_same_as_ref(two, values2)[6], out)
