"""conv2d_s8_grad_input_2pass against conv2d_s8_grad_input (itself checked against
TensorFlow): the same int8 input gradient and scale, bit for bit, reference and DSP variants,
on the host and the emulated Cortex-M7 and M4, for any keep (the pixels whose accumulators it
keeps; the rest computed twice), with the output over its scratch as the planner may put it,
and with input-channel slices."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pytools.model.kernels import KernelCall, scratch_size
from tests.kernels import grad_support as gs
from tests.kernels.conv.support import assert_board_matches_ref, run_variant

# 1x1 maps to 8x8 (1, 4, 9, 16, ... 64 pixels: blocks of 8 whole and partial), channel counts odd,
# even, not a multiple of 4, past one chunk of 32 output channels.
SHAPES = [
    dict(h=1, w=1, in_c=5, out_c=3),
    dict(h=2, w=2, in_c=7, out_c=33),
    dict(h=3, w=3, in_c=6, out_c=10),
    dict(h=4, w=4, in_c=13, out_c=4),
    dict(h=5, w=3, in_c=24, out_c=31),
    dict(h=8, w=8, in_c=192, out_c=32),  # MobileNetV2's 8x8 32 -> 192
    dict(h=7, w=6, in_c=9, out_c=70),
    dict(h=6, w=6, in_c=40, out_c=17),
]


def _layer(i: int, **force: Any) -> gs.Layer:
    shape = SHAPES[i % len(SHAPES)]
    return gs.make_layer("conv", 900 + i, fh=1, fw=1, sh=1, sw=1, **{**shape, **force})


def _two_pass(call: KernelCall, keep: int) -> KernelCall:
    return KernelCall(call.kernel + "_2pass", {**call.params, "keep": keep}, call.operands)


def _pixels(call: KernelCall) -> int:
    p = call.params
    return p["batches"] * p["input_h"] * p["input_w"]


def _keeps(n: int) -> list[int]:
    return sorted({0, 1, n // 3, n - 1, n} - {-1})


def _one_pass(call: KernelCall, values: list[np.ndarray]) -> list[np.ndarray]:
    return run_variant(call, values, "ref")


@pytest.mark.parametrize("i", range(24))
def test_two_pass_equals_one_pass_for_every_keep(i: int) -> None:
    layer = _layer(i, **({"density": 0.0, "has_mask": True} if i == 23 else {}))
    call, values = gs.grad_input_call(layer)
    want = _one_pass(call, values)
    for keep in _keeps(_pixels(call)):
        two = _two_pass(call, keep)
        for variant in ("ref", "dsp"):
            got = run_variant(two, values, variant)
            np.testing.assert_array_equal(got[6], want[6], err_msg=f"{variant} keep={keep}")
            assert got[7].tobytes() == want[7].tobytes(), (variant, keep)  # the scale, bit for bit
    assert np.any(want[6]) or i == 23


@pytest.mark.parametrize("i", range(6))
def test_two_pass_with_input_channel_slices(i: int) -> None:
    """Trained input-channel slices: even ones on the DSP path, odd ones on the reference."""
    shape = SHAPES[(i + 2) % len(SHAPES)]
    layer = _layer(i + 2, train_cols=max(1, shape["in_c"] // 2 - (i % 2)))
    call, values = gs.grad_input_call(layer)
    want = _one_pass(call, values)
    for keep in _keeps(_pixels(call)):
        for variant in ("ref", "dsp"):
            got = run_variant(_two_pass(call, keep), values, variant)
            np.testing.assert_array_equal(got[6], want[6], err_msg=f"{variant} keep={keep}")
            assert got[7].tobytes() == want[7].tobytes()


@pytest.mark.parametrize("variant", ["ref", "dsp"])
@pytest.mark.parametrize("i", range(8))
def test_two_pass_output_over_its_scratch(i: int, variant: str) -> None:
    """The planner may put the int8 output at the scratch's start (OUTPUT_OVER_SCRATCH)."""
    from tests.test_scratch_planning import _run_over_scratch

    call, values = gs.grad_input_call(_layer(i))
    want = _one_pass(call, values)
    n = _pixels(call)
    for keep in _keeps(n):
        got = _run_over_scratch(_two_pass(call, keep), values, variant, 6)
        np.testing.assert_array_equal(got[6], want[6], err_msg=f"{variant} keep={keep}")
        assert got[7].tobytes() == want[7].tobytes()


def test_two_pass_scratch_is_bounded_by_keep() -> None:
    """The scratch grows with keep by 4 bytes per kept accumulator, from the output's bytes
    plus a block at keep 0; the whole-input accumulators at most one block more than the
    one-pass kernel's."""
    call, _ = gs.grad_input_call(_layer(5))  # 8x8, 32 -> 192
    p = call.params
    kc, n = p["input_c"], _pixels(call)
    sizes = [scratch_size(_two_pass(call, k)) for k in range(n + 1)]
    assert sizes == sorted(sizes)
    assert sizes[n] - sizes[n - 1] == 4 * kc
    assert sizes[0] == sizes[n // 4]  # the output's bytes: a region of n / 4 pixels' int32
    assert sizes[0] < scratch_size(call) - 28 * 1024  # 51,328 B one-pass; ~20.6 KB
    assert sizes[n] <= scratch_size(call) + 8 * kc * 4


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_two_pass_on_the_emulated_board(tmp_path, monkeypatch, board_name: str) -> None:
    """The firmware build's objects (KERNELS_DSP=1) on QEMU against the host's one-pass
    reference, and the two-pass reference."""
    kernel = "conv2d_s8_grad_input_2pass"
    monkeypatch.setattr(gs, "HARNESS_KERNELS", [*gs.HARNESS_KERNELS, kernel])
    calls = []
    wants = []
    for i in range(len(SHAPES)):
        call, values = gs.grad_input_call(_layer(40 + i, **({"train_cols": 4} if i == 4 else {})))
        n = _pixels(call)
        wants.append(_one_pass(call, values))
        calls.append((_two_pass(call, [0, n // 2, n, 1, n - 1, 3, n // 4, 2][i]), values))
    board = gs.run_on_board(calls, tmp_path, board_name)
    assert_board_matches_ref(calls, board)
    for want, got in zip(wants, board, strict=True):
        np.testing.assert_array_equal(got[6], want[6])
        assert got[7].tobytes() == want[7].tobytes()
    assert sum(bool(np.any(g[6])) for g in board) >= len(calls) - 1


@pytest.mark.parametrize("dead", ["first", "last"])
def test_two_pass_sink_tile_without_gradient(dead: str) -> None:
    """output_c <= 32 takes the DSP sink path in 32-pixel tiles: a tile whose gradients are all
    zero (window_live) hands zeros to the sink while another tile's are not, so pass 2 runs
    (max|acc| > 0) and must still write that tile's output (over its scratch too)."""
    from tests.test_scratch_planning import _run_over_scratch

    layer = _layer(5, h=8, w=8, in_c=22, out_c=20)  # 64 pixels: two tiles; in_c % 4 != 0
    call, values = gs.grad_input_call(layer)
    g = values[0].reshape(-1, 20)
    rows = slice(0, 32) if dead == "first" else slice(32, 64)
    g[rows] = 0
    want = _one_pass(call, values)
    assert np.any(want[6]) and not np.any(want[6].reshape(-1, 22)[rows])
    for keep in (0, 5):
        two = _two_pass(call, keep)
        for variant in ("ref", "dsp"):
            got = run_variant(two, values, variant)
            np.testing.assert_array_equal(got[6], want[6], err_msg=f"{variant} keep={keep}")
            assert got[7].tobytes() == want[7].tobytes()
            got = _run_over_scratch(two, values, variant, 6)
            np.testing.assert_array_equal(got[6], want[6], err_msg=f"{variant} keep={keep}")
