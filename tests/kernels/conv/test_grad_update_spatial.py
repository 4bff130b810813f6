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
from tests.kernels.conv.test_dsp_grads import _run, _same


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
    return scratch_size(call) == (taps * ((positions + 1) // 2) + (positions + 1) // 2 * 2 + 2 * taps) * 4


@pytest.mark.parametrize("seed", range(48))
def test_spatial_update_matches_reference(seed: int) -> None:
    call, values = _update(_layer(seed), seed)
    assert "train_cols" in params_layout(call.kernel).names
    out = _same(call, values)
    assert not np.array_equal(out[5], values[5]) or call.params["lr"] < 0.01


def test_the_variant_takes_these_layers() -> None:
    taken = [_takes(_update(_layer(seed), seed)[0]) for seed in range(48)]
    assert sum(taken) >= 36, taken
    # MCUNet's three input-channel slices: 8x8x12 of 288 rows, 4x4x48 of 576 and of 288.
    for h, in_c, out_c, cols in ((8, 48, 288, 12), (4, 96, 576, 48), (4, 96, 288, 48)):
        layer = gs.make_layer("conv", 5, fh=1, fw=1, h=h, w=h, n=1, padding="VALID", sh=1, sw=1,
                              in_c=in_c, out_c=out_c, train_cols=cols)
        call, values = _update(layer, 1)
        assert _takes(call)
        _same(call, values)


@pytest.mark.emulator
def test_spatial_update_on_the_emulated_cortex_m7(tmp_path) -> None:
    calls = [_update(_layer(seed), seed) for seed in range(12)]
    board = gs.run_on_board(calls, tmp_path)
    for (call, values), got in zip(calls, board, strict=True):
        want = _run(call, copy.deepcopy(values), "ref")
        for k, (w, b) in enumerate(zip(want, got, strict=True)):
            np.testing.assert_array_equal(b, w, err_msg=f"{call.kernel} operand {k} on the board")
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
            gs.make_layer("dw", 50 + k, train_rows=2),
            gs.make_layer("fc", 60 + k, train_rows=3),
        ]
        for layer in layers:
            call, values = gs.update_call(layer, lr, True, True, 0x13579BD + k)
            calls.append((call, [np.ascontiguousarray(v) for v in values[:8]]))
    board = gs.run_on_board(calls, tmp_path, board_name)
    moved = 0
    for (call, values), got in zip(calls, board, strict=True):
        want = _run(call, copy.deepcopy(values), "ref")
        for k, (w, b) in enumerate(zip(want, got, strict=True)):
            np.testing.assert_array_equal(b, w, err_msg=f"{call.kernel} lr {call.params['lr']} operand {k}")
        moved += not np.array_equal(want[5], values[5])
    assert moved >= 20
