"""grad_broadcast in the conv gradient kernels (a global average pool's gradient as one row per
image, pytools/train/mean_grad_broadcast.py): conv2d_s8_grad_input, its two-pass variant and
conv2d_s8_grad_update reading G_y as [batches, 1, 1, output_c] give, bit for bit, what the
same kernels give for the broadcast materialised ([batches, h, w, output_c], the row at every
pixel), with clamp masks that zero some pixels: the reference and DSP variants on the host, and
the firmware build on the emulated Cortex-M7 and M4. The layers take each DSP path: the 1x1
chunks (identity map and strided), the one-pixel path, the sink of the two-pass variant
(output_c <= 32), k x k scatter; the update's spatial path (whole mask bytes and not), 1x1
pairs, k x k (4 rows at a time and row by row), bias sums over chunks and images."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from pytools.model.kernels import KernelCall, Operand
from tests.kernels import grad_support as gs
from tests.kernels.conv.support import run_variant

# make_layer's forced fields: every layer masked at ~60 % density (some pixels of a channel
# zeroed, others not), two images where the path allows it.
GRAD_INPUT = [
    dict(fh=1, fw=1, sh=1, sw=1, h=4, w=4, in_c=20, out_c=70, n=1),  # identity, 3 chunks
    dict(fh=1, fw=1, sh=1, sw=1, h=4, w=4, in_c=22, out_c=20, n=2),  # one chunk (2-pass sink)
    dict(fh=1, fw=1, sh=1, sw=1, h=1, w=1, in_c=24, out_c=40, n=1),  # the one-pixel path
    dict(fh=1, fw=1, sh=2, sw=2, h=7, w=7, in_c=9, out_c=33, n=2, padding="VALID"),  # strided
    dict(fh=3, fw=3, sh=1, sw=1, h=5, w=5, in_c=7, out_c=33, n=2, padding="SAME"),  # k x k
    dict(fh=3, fw=3, sh=2, sw=2, h=6, w=6, in_c=4, out_c=12, n=1, padding="SAME", per_channel=False),
    dict(fh=1, fw=1, sh=1, sw=1, h=3, w=3, in_c=16, out_c=36, n=1, train_cols=8),  # DSP cols
    dict(fh=1, fw=1, sh=1, sw=1, h=3, w=3, in_c=15, out_c=9, n=2, train_cols=5),  # ref cols
]
UPDATE = [
    dict(fh=1, fw=1, sh=1, sw=1, h=4, w=4, in_c=12, out_c=16, n=1),  # spatial, whole mask bytes
    dict(fh=1, fw=1, sh=1, sw=1, h=4, w=4, in_c=12, out_c=13, n=2),  # spatial, row by row
    dict(fh=1, fw=1, sh=1, sw=1, h=12, w=12, in_c=10, out_c=24, n=2),  # 1x1 pairs
    dict(fh=3, fw=3, sh=1, sw=1, h=9, w=9, in_c=5, out_c=10, n=2, padding="SAME"),  # kxk 4 rows
    dict(fh=3, fw=3, sh=1, sw=1, h=12, w=12, in_c=9, out_c=8, n=1, padding="VALID"),  # row by row
    dict(fh=3, fw=3, sh=2, sw=1, h=10, w=10, in_c=9, out_c=8, n=1, padding="VALID"),  # spatial kxk
    dict(fh=1, fw=1, sh=1, sw=1, h=17, w=17, in_c=3, out_c=8, n=2, train_rows=0),  # 289 > 255
    dict(fh=1, fw=1, sh=1, sw=1, h=4, w=4, in_c=6, out_c=1280, n=1, train_rows=0),  # MBV2's Conv_1
]


def _layer(seed: int, shape: dict[str, Any]) -> gs.Layer:
    """A masked layer whose upstream gradient is one row per image, materialised."""
    force = dict(has_mask=True, density=0.6, **shape)
    if "train_rows" not in force and "train_cols" not in force:
        force["train_rows"] = shape["out_c"]
    force.setdefault("train_bias_rows", shape["out_c"])
    layer = gs.make_layer("conv", 4200 + seed, **force)
    row = layer.g_q[:, :1, :1, :]  # the first pixel's gradients (some zero) for every pixel
    g = np.ascontiguousarray(np.broadcast_to(row, layer.g_q.shape))
    return dataclasses.replace(layer, g_q=g)


def _folded(call: KernelCall, values: list[np.ndarray]) -> tuple[KernelCall, list[np.ndarray]]:
    """The same call with grad_broadcast: G_y as [batches, 1, 1, output_c]."""
    g = values[0]
    row = np.ascontiguousarray(g[:, :1, :1, :])
    assert np.array_equal(np.broadcast_to(row, g.shape), g), "not a broadcast"
    values = [row, *values[1:]]
    return KernelCall(
        call.kernel, {**call.params, "grad_broadcast": 1}, [Operand(data=v) for v in values]
    ), values


def _two_pass(call: KernelCall, keep: int) -> KernelCall:
    return KernelCall(call.kernel + "_2pass", {**call.params, "keep": keep}, call.operands)


def _masks_some_pixels(layer: gs.Layer) -> None:
    """The mask zeroes some pixels of a channel and keeps others (else the test is weaker)."""
    assert layer.mask is not None
    per_channel = layer.mask.reshape(-1, layer.mask.shape[-1])
    if len(per_channel) == 1:
        return  # one output pixel (the one-pixel path): nothing to zero apart
    assert np.any(per_channel.any(axis=0) & ~per_channel.all(axis=0))


@pytest.mark.parametrize("i", range(len(GRAD_INPUT)))
def test_grad_input_broadcast_equals_materialised(i: int) -> None:
    layer = _layer(i, GRAD_INPUT[i])
    _masks_some_pixels(layer)
    call, values = gs.grad_input_call(layer)
    want = run_variant(call, values, "ref")
    assert np.any(want[6]), "no gradient reached the input"
    bcall, bvalues = _folded(call, values)
    for variant in ("ref", "dsp"):
        got = run_variant(bcall, bvalues, variant)
        np.testing.assert_array_equal(got[6], want[6], err_msg=variant)
        assert got[7].tobytes() == want[7].tobytes(), variant  # the scale, bit for bit
    p = call.params
    identity = p["stride_h"] == p["stride_w"] == 1 and p["filter_h"] == p["filter_w"] == 1
    if identity:  # the two-pass variant takes it: every keep
        n = p["batches"] * p["input_h"] * p["input_w"]
        for keep in sorted({0, 1, n // 3, n}):
            for variant in ("ref", "dsp"):
                got = run_variant(_two_pass(bcall, keep), bvalues, variant)
                np.testing.assert_array_equal(got[6], want[6], err_msg=f"{variant} keep={keep}")
                assert got[7].tobytes() == want[7].tobytes()


def _update(seed: int, shape: dict[str, Any]) -> tuple[KernelCall, list[np.ndarray], gs.Layer]:
    layer = _layer(seed, shape)
    weights = layer.train_rows > 0
    call, values = gs.update_call(layer, 0.05, weights, True, 0x2468ACE + seed)
    return call, values[:8], layer


@pytest.mark.parametrize("i", range(len(UPDATE)))
def test_update_broadcast_equals_materialised(i: int) -> None:
    call, values, layer = _update(i, UPDATE[i])
    _masks_some_pixels(layer)
    want = run_variant(call, values, "ref")
    assert not np.array_equal(want[6], values[6]), "no bias moved"
    if layer.train_rows:
        assert not np.array_equal(want[5], values[5]), "no weight moved"
    bcall, bvalues = _folded(call, values)
    for variant in ("ref", "dsp"):
        got = run_variant(bcall, bvalues, variant)
        for k in (5, 6, 7):  # weights, biases, generator state
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{variant} operand {k}")


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_broadcast_on_the_emulated_board(tmp_path, monkeypatch, board_name: str) -> None:
    """The firmware build's objects (KERNELS_DSP=1) on QEMU, G_y one row per image, against
    the host's reference on the materialised broadcast."""
    monkeypatch.setattr(gs, "HARNESS_KERNELS", [*gs.HARNESS_KERNELS, "conv2d_s8_grad_input_2pass"])
    calls, wants, outs = [], [], []
    for i, shape in enumerate(GRAD_INPUT):
        call, values = gs.grad_input_call(_layer(i, shape))
        want = run_variant(call, values, "ref")
        bcall, bvalues = _folded(call, values)
        calls.append((bcall, bvalues))
        wants.append(want)
        outs.append((6, 7))
        if shape["fh"] == 1 and shape["sh"] == 1:
            calls.append((_two_pass(bcall, i % 3), bvalues))
            wants.append(want)
            outs.append((6, 7))
    for i, shape in enumerate(UPDATE):
        call, values, _ = _update(i, shape)
        calls.append(_folded(call, values))
        wants.append(run_variant(call, values, "ref"))
        outs.append((5, 6, 7))
    board = gs.run_on_board(calls, tmp_path, board_name)
    for (call, _), want, got, ks in zip(calls, wants, board, outs, strict=True):
        for k in ks:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{call.kernel} operand {k}")


@pytest.mark.parametrize("i", [0, 3, 4])
def test_float_gradient_kernels_take_the_broadcast_too(i: int) -> None:
    """The float-gradient option's kernels (*_f32, the same parameters): the same outputs from
    the row as from the materialised broadcast."""
    from tests.kernels.test_float_grads import _as_float

    for call, values, outs in (
        (*gs.grad_input_call(_layer(i, GRAD_INPUT[i])), (6,)),
        (*_update(i, UPDATE[i])[:2], (5, 6, 7)),
    ):
        grads = (0, 6) if outs == (6,) else (0,)
        fcall, fvalues = _as_float(call, values, grads=grads)
        want = run_variant(fcall, fvalues, "")  # the f32 kernels have one variant
        bcall, bvalues = _folded(fcall, fvalues)
        got = run_variant(bcall, bvalues, "")
        assert bcall.kernel.endswith("_f32")
        for k in outs:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{bcall.kernel} operand {k}")
