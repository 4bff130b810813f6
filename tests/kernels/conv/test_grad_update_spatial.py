"""The conv2d_s8 update's variant with SMLAD over the spatial dimension
(firmware/kernels/conv2d_s8_grad_update_spatial_dsp.c) against the reference, bit for bit: new
weights, biases and generator state, on layers it takes (at most 64 output positions, at least 4
trained rows): 4x4 maps (its 16-position path), odd position counts, batches, 1x1 and larger
filters with strides, padding and dilation, masks, rows with no gradient at all, row and
input-channel slices; and the same calls on the emulated Cortex-M7 (its build's objects)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from pytools.model.kernels import params_layout, run_kernel, scratch_size
from tests.kernels import grad_support as gs
from tests.kernels.conv.support import (
    assert_board_matches_ref,
    dsp_same_as_ref,
    run_c_sweep,
    run_variant,
    xorshift64_c,
)


def _layer(seed: int) -> gs.Layer:
    rng = np.random.default_rng(91_000 + seed)
    opts: dict[str, Any] = {}
    if seed % 3 != 2:
        opts.update(fh=1, fw=1, dh=1, dw=1)
    else:  # 3x3, any stride, SAME or VALID (the size fits the filter: no dilation)
        opts.update(fh=3, fw=3)
    if seed % 4 == 0:
        opts.update(h=4, w=4, sh=1, sw=1, n=1, padding="SAME")  # 16 positions
    else:
        opts.update(h=int(rng.integers(3, 9)), w=int(rng.integers(3, 9)), n=int(rng.integers(1, 3)))
    in_c = int(rng.choice([3, 8, 12, 24, 48, 5]))
    out_c = int(rng.integers(4, 40))
    opts.update(in_c=in_c, out_c=out_c)
    if seed % 5 == 1:
        opts["train_cols"] = int(rng.integers(1, in_c + 1))
    else:
        opts["train_rows"] = int(rng.integers(4, out_c + 1))
    layer = gs.make_layer("conv", seed, **opts)
    if seed % 6 == 3 and layer.mask is not None:  # rows with no gradient anywhere
        layer.mask[..., ::3] = False
    return layer


def _update(layer: gs.Layer, seed: int):
    lr = float(10 ** np.random.default_rng(seed).uniform(-3, 0))
    call, values = gs.update_call(layer, lr, True, seed % 2 == 0, 0x2468ACE + seed)
    return call, [np.ascontiguousarray(v) for v in values[:8]]


def _takes(call) -> bool:
    """Whether the spatial variant runs: its scratch exceeds the reference's accumulators."""
    p = call.params
    cols = p.get("train_cols", 0)
    taps = p["filter_h"] * p["filter_w"] * (cols or p["input_c"])
    positions = p["batches"] * p["output_h"] * p["output_w"]
    return scratch_size(call) == (taps * ((positions + 1) // 2) + (positions + 1) // 2 * 8 + 2 * taps) * 4


@pytest.mark.parametrize("seed", range(48))
def test_spatial_update_matches_reference(seed: int) -> None:
    call, values = _update(_layer(seed), seed)
    assert "train_cols" in params_layout(call.kernel).names
    out = dsp_same_as_ref(call, values)
    assert not np.array_equal(out[5], values[5]) or call.params["lr"] < 0.01


def test_the_variant_takes_these_layers() -> None:
    taken = [_takes(_update(_layer(seed), seed)[0]) for seed in range(48)]
    assert sum(taken) >= 36, taken
    # MCUNet's three input-channel slices: 8x8x12 of 288 rows, 4x4x48 of 576 and of 288.
    for h, in_c, out_c, cols in ((8, 48, 288, 12), (4, 96, 576, 48), (4, 96, 288, 48)):
        layer = gs.make_layer(
            "conv",
            5,
            fh=1,
            fw=1,
            h=h,
            w=h,
            n=1,
            padding="VALID",
            sh=1,
            sw=1,
            in_c=in_c,
            out_c=out_c,
            train_cols=cols,
        )
        call, values = _update(layer, 1)
        assert _takes(call)
        dsp_same_as_ref(call, values)


@pytest.mark.emulator
def test_spatial_update_on_the_emulated_cortex_m7(tmp_path) -> None:
    calls = [_update(_layer(seed), seed) for seed in range(12)]
    board = gs.run_on_board(calls, tmp_path)
    assert_board_matches_ref(calls, board)
    host = []
    for call, values in calls:
        mine = copy.deepcopy(values)
        run_kernel(call, mine)
        host.append(mine)
    assert sum(not np.array_equal(h[5], v[5]) for h, (_, v) in zip(host, calls, strict=True)) >= 10


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_weight_step_on_the_emulated_boards_at_every_scale(tmp_path, board_name: str) -> None:
    """dsp.h's assembly weight step (every update kernel's) against the host's reference: steps
    from far below one quantum to saturating, infinite and NaN factors (lr inf / nan), zero
    gradients; conv (both DSP paths), depthwise and fully connected updates."""
    calls = []
    for k, lr in enumerate((1e-4, 0.03, 1.0, 50.0, 1e30, float("inf"), float("nan"))):
        layers = [
            _layer(k),
            gs.make_layer("conv", 40 + k, fh=1, fw=1, h=12, w=12, in_c=9, out_c=6, train_rows=3),
            gs.make_layer("dw", 50 + k, in_c=4, mult=1, train_rows=2),
            gs.make_layer("fc", 60 + k, units=6, train_rows=3),
        ]
        for layer in layers:
            call, values = gs.update_call(layer, lr, True, True, 0x13579BD + k)
            calls.append((call, [np.ascontiguousarray(v) for v in values[:8]]))
    board = gs.run_on_board(calls, tmp_path, board_name)
    moved = 0
    for (call, values), got in zip(calls, board, strict=True):
        want = run_variant(call, copy.deepcopy(values), "ref")
        for k, (w, b) in enumerate(zip(want, got, strict=True)):
            np.testing.assert_array_equal(b, w, err_msg=f"{call.kernel} lr {call.params['lr']} operand {k}")
        moved += not np.array_equal(want[5], values[5])
    assert moved >= 20


def _run_guarded(call, values: list[np.ndarray], variant: str) -> bool:
    """X_<variant>_run with the scratch followed by sentinel bytes; whether they survived."""
    import ctypes

    from pytools.model.kernels import host_lib

    values = [v.copy() for v in values]
    ptrs = (ctypes.c_void_p * len(values))(*(v.ctypes.data if v.size else None for v in values))
    n = scratch_size(call)
    scratch = np.full(n + 256, 0xA5, np.uint8)
    fn = getattr(host_lib(), f"{call.kernel}_{variant}_run")
    fn.restype = None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
    fn(call.packed_params(), ptrs, scratch.ctypes.data)
    return bool(np.all(scratch[n:] == 0xA5))


@pytest.mark.parametrize("seed", range(12))
def test_the_update_kernels_stay_inside_their_scratch(seed: int) -> None:
    """Every DSP update path (conv spatial and paired, fully connected as a 1x1 conv over its
    batch, which may take the spatial variant) writes only the scratch its size function asks
    for."""
    fc = gs.make_layer("fc", 900 + seed, batches=1 + seed % 6, units=8 + seed, train_rows=4 + seed % 5)
    for layer in (_layer(seed), fc):
        call, values = _update(layer, seed)
        assert _run_guarded(call, values, "dsp"), call.kernel
        assert _run_guarded(call, values, "ref"), call.kernel


BIAS_SWEEP_C = (
    r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "conv2d_s8_grad_update_dsp.h"
"""
    + xorshift64_c(0x2545F4914F6CDD1D)
    + r"""

/* dsp_step_bias against conv_grad_step_bias: steps at every scale (fractions, halves exactly,
 * around 2^24, 2^31 and 2^32), infinities and NaN, biases at the int32 limits. */
int main(int argc, char **argv) {
    const long n = argc > 1 ? atol(argv[1]) : 1000;
    long bad = 0, checks = 0;
    for (long i = 0; i < n; ++i, ++checks) {
        int32_t b = (int32_t)(rnd() >> 32);
        if (i % 7 == 0) b = i % 2 ? INT32_MAX - (int32_t)(rnd() % 3) : INT32_MIN + (int32_t)(rnd() % 3);
        float v = ldexpf((float)((int64_t)(rnd() % 2000001) - 1000000) / 1000000.0f, (int)(rnd() % 36));
        if (i % 11 == 0) v = (float)((int64_t)(rnd() % 201) - 100) + (i % 2 ? 0.5f : -0.5f);
        if (i % 13 == 0) v = (i % 2 ? 1.0f : -1.0f) * ldexpf(1.0f, 31 + (int)(rnd() % 2));
        if (i % 101 == 0) v = INFINITY;
        if (i % 103 == 0) v = -INFINITY;
        if (i % 107 == 0) v = NAN;
        const int32_t a = conv_grad_step_bias(b, v), d = dsp_step_bias(b, v);
        if (a != d && bad++ < 10) printf("b %d v %.9g: %d vs %d\n", b, (double)v, a, d);
    }
    printf("%ld %ld\n", checks, bad);
    return bad != 0;
}
"""
)


def test_fast_bias_step_is_bit_identical(tmp_path) -> None:
    """conv2d_s8_grad_update_dsp.h's dsp_step_bias (every DSP update's bias step) against the
    reference's conv_grad_step_bias, compiled with the host compiler (the board runs it in the
    update calls above, lr up to inf and NaN)."""
    checks, bad = run_c_sweep(tmp_path, BIAS_SWEEP_C, 2_000_000)
    assert bad == 0 and checks == 2_000_000


def _bias_call(seed: int):
    rng = np.random.default_rng(93_000 + seed)
    c = 8 * int(rng.integers(1, 9))
    big = seed % 3 == 0  # 2 x 13 x 13 = 338 positions
    size = dict(h=13, w=13, n=2, sh=1, sw=1, padding="SAME") if big else {}
    rows = int(rng.integers(1, c + 1))
    kind = ("conv", "dw", "fc")[seed % 3]
    if kind == "conv":
        layer = gs.make_layer("conv", seed, fh=1, fw=1, dh=1, dw=1, out_c=c, train_bias_rows=rows, **size)
    elif kind == "dw":
        layer = gs.make_layer("dw", seed, fh=7, fw=7, in_c=c // 2, mult=2, train_rows=0, train_bias_rows=rows)
    else:
        layer = gs.make_layer("fc", seed, units=c, batches=int(rng.integers(1, 6)), train_bias_rows=rows)
    lr = float(10 ** rng.uniform(-2, 2))
    call, values = gs.update_call(layer, lr, seed % 2 == 0 and layer.w_ram.size > 0, True, 0x55AA + seed)
    return call, [np.ascontiguousarray(v) for v in values[:8]]


@pytest.mark.parametrize("seed", range(12))
def test_bias_sums_by_mask_byte_match_reference(seed: int) -> None:
    """The bias sums 8 channels per mask byte (channels a multiple of 8): masked and not, more
    than 255 positions (the 16-bit lanes flushed), rows that end inside a byte, conv, depthwise
    (any filter: bias-only updates of 7x7 and depth multipliers take the DSP path) and fully
    connected, biases alone and with weights."""
    call, values = _bias_call(seed)
    out = dsp_same_as_ref(call, values)
    assert not np.array_equal(out[6], values[6])


@pytest.mark.emulator
def test_bias_sums_by_mask_byte_on_the_emulated_cortex_m7(tmp_path) -> None:
    calls = [_bias_call(seed) for seed in range(12)]
    board = gs.run_on_board(calls, tmp_path)
    assert_board_matches_ref(calls, board)


def _run_all_guarded(call, values: list[np.ndarray], variant: str) -> list[str]:
    """X_<variant>_run with every operand and the scratch followed by sentinel bytes; the ones
    written past their end."""
    import ctypes

    from pytools.model.kernels import host_lib

    bufs = []
    for v in values:
        raw = np.full(v.nbytes + 64, 0xA5, np.uint8)
        raw[: v.nbytes] = np.frombuffer(np.ascontiguousarray(v).tobytes(), np.uint8)
        bufs.append(raw)
    n = scratch_size(call)
    scratch = np.full(n + 256, 0xA5, np.uint8)
    ptrs = (ctypes.c_void_p * len(bufs))(
        *(b.ctypes.data if v.size else None for b, v in zip(bufs, values, strict=True))
    )
    fn = getattr(host_lib(), f"{call.kernel}_{variant}_run")
    fn.restype = None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
    fn(call.packed_params(), ptrs, scratch.ctypes.data)
    bad = [
        f"operand {k}"
        for k, (b, v) in enumerate(zip(bufs, values, strict=True))
        if np.any(b[v.nbytes :] != 0xA5)
    ]
    return bad + (["scratch"] if np.any(scratch[n:] != 0xA5) else [])


@pytest.mark.parametrize("seed", range(16))
def test_no_kernel_writes_past_its_operands_or_scratch(seed: int) -> None:
    """Every kernel these slices and update paths touch, DSP and reference: forward and input
    gradient with input-channel slices, the spatial and paired updates, the bias sums."""
    from tests.kernels.conv import test_input_channel_slices as cs

    layer = cs._layer(seed)
    calls = [gs.forward_call(layer, trained=True), gs.grad_input_call(layer), _update(layer, seed)]
    calls += [_update(_layer(seed), seed), _bias_call(seed % 12)]
    for call, values in calls:
        for variant in ("dsp", "ref"):
            assert not _run_all_guarded(call, values[: len(call.operands)], variant), (call.kernel, variant)


def _map32_layers() -> list[gs.Layer]:
    """Layers whose rows are 32 words of positions (63 or 64: sums2x2_32's two taps a pass):
    8x8 maps with even and odd tap counts (the odd one's last tap alone), a 3x3 filter with
    padding, a 7x9 map (63 positions, the last lane empty), masks, rows with no gradient, an
    input-channel slice, and trained row counts that leave a last row without a partner."""
    cases = [
        dict(fh=1, fw=1, h=8, w=8, in_c=12, out_c=24, train_rows=24),
        dict(fh=1, fw=1, h=8, w=8, in_c=13, out_c=17, train_rows=11),
        dict(fh=3, fw=3, h=8, w=8, in_c=3, out_c=9, train_rows=9, padding="SAME"),
        dict(fh=1, fw=1, h=7, w=9, in_c=6, out_c=16, train_rows=16),
        dict(fh=1, fw=1, h=8, w=8, in_c=48, out_c=32, train_cols=12),
        dict(fh=1, fw=1, h=8, w=8, in_c=20, out_c=40, train_rows=37),
    ]
    layers = []
    for i, force in enumerate(cases):
        layer = gs.make_layer("conv", 930 + i, n=1, sh=1, sw=1, **({"padding": "VALID"} | force))
        if i % 2 == 1 and layer.mask is not None:
            layer.mask[..., ::4] = False  # rows no gradient reaches
        layers.append(layer)
    return layers


def test_two_tap_sums_on_32_word_rows_match_reference() -> None:
    for i, layer in enumerate(_map32_layers()):
        call, values = _update(layer, 40 + i)
        assert _takes(call)
        out = dsp_same_as_ref(call, values)
        assert not np.array_equal(out[5], values[5])


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_two_tap_sums_on_32_word_rows_on_the_emulated_boards(tmp_path, board_name: str) -> None:
    calls = [_update(layer, 40 + i) for i, layer in enumerate(_map32_layers())]
    board = gs.run_on_board(copy.deepcopy(calls), tmp_path, board_name)
    assert_board_matches_ref(calls, board)
