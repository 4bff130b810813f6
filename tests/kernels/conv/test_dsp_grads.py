"""The optimized gradient kernels (firmware/kernels/*_grad_*_dsp.c) against the reference ones,
bit for bit.

On the host the library exports both X_ref_run and X_dsp_run (dsp.h's portable twins of the
instructions), so they are compared directly on randomized layers (tests/kernels/grad_support.py's
make_layer: odd channel counts and tails, strides, paddings, masks, per-channel and per-tensor
scales, trained RAM rows that differ from flash and straddle the kernels' channel blocks). On the
emulated Cortex-M7 the firmware build's objects (the assembly paths) run the same calls and must
give what the host's reference gives. The reference kernels themselves are checked against
TensorFlow in test_conv_grads.py.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import pytest

from pytools.model.kernels import KernelCall, host_lib, run_kernel
from tests.kernels import grad_support as gs
from tests.kernels.conv.support import (
    assert_board_matches_ref,
    dsp_same_as_ref,
    run_c_sweep,
    run_variant,
    xorshift64_c,
)


def _pointwise(seed: int, **force: Any) -> gs.Layer:
    """A 1x1 convolution (the optimized path): channel counts across the kernel's 4-channel
    and 16-channel blocks, up to 12x12 pixels (several 32-pair tiles), strides 1-2, SAME and
    VALID, masks, trained rows anywhere."""
    rng = np.random.default_rng(50_000 + seed)
    opts: dict[str, Any] = dict(fh=1, fw=1, dh=1, dw=1)
    opts["in_c"] = int(rng.integers(1, 70))
    opts["out_c"] = int(rng.integers(1, 150))
    if seed % 3 == 0:
        opts["h"], opts["w"] = int(rng.integers(6, 13)), int(rng.integers(6, 13))
    if seed % 4 == 0:
        opts["sh"] = opts["sw"] = 1
    opts.update(force)
    return gs.make_layer("conv", seed, **opts)


@pytest.mark.parametrize("seed", range(80))
def test_conv2d_grad_input_1x1_dsp_matches_reference(seed: int) -> None:
    call, values = gs.grad_input_call(_pointwise(seed))
    out = dsp_same_as_ref(call, values)
    assert out[7][0] > 0 or not np.any(out[6])


@pytest.mark.emulator
def test_training_with_two_pass_depthwise_on_the_board_matches_the_host_twin() -> None:
    """mobilenet_tiny with a scheme whose depthwise input gradients run in two passes (as
    MobileNetV2's do), through residual ADDs and clamp masks: the optimized two-pass kernel,
    ADD and clamp masks on the board against the host twin's reference kernels."""
    from pytools.pretrain.zoo import zoo_model

    _board_matches_twin(zoo_model("mobilenet_tiny"), "mobilenet_tiny", "bias=12,-1=1,-4=0.5,-7=0.25", 12, 3)


@pytest.mark.parametrize("seed", range(30))
def test_conv2d_grad_input_other_filters_dsp_matches_reference(seed: int) -> None:
    """Other filters run the reference inside the optimized entry point: still identical."""
    call, values = gs.grad_input_call(gs.make_layer("conv", seed))
    dsp_same_as_ref(call, values)


def test_conv2d_grad_input_dsp_edge_cases() -> None:
    """Per-tensor scales, no mask, every row trained, none trained, one channel each way, and
    gradients large enough that the accumulator shift is nonzero."""
    cases = [
        dict(per_channel=False),
        dict(has_mask=False),
        dict(train_rows=0),
        dict(in_c=1, out_c=1),
        dict(in_c=3, out_c=200, h=3, w=3),
        dict(in_c=67, out_c=17, h=12, w=12, sh=1, sw=1, padding="VALID"),
        dict(in_c=64, out_c=256, h=2, w=2),
    ]
    for i, force in enumerate(cases):
        layer = _pointwise(1000 + i, **force)
        call, values = gs.grad_input_call(layer)
        out = dsp_same_as_ref(call, values)
        assert np.any(out[6]), force


def test_the_random_layers_are_informative() -> None:
    """The compared gradients spread over many values (all-zero gradients would match anything)."""
    spread = []
    for seed in range(40):
        call, values = gs.grad_input_call(_pointwise(seed))
        g = run_variant(call, values, "dsp")[6]
        spread.append(np.unique(g).size >= 16)
    assert np.mean(spread) >= 0.8


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_grad_kernels_on_the_emulated_cortex_m7_match_the_host_reference(tmp_path, board_name: str) -> None:
    """The firmware build's objects (KERNELS_DSP=1: the assembly) on QEMU mps2-an500, and the
    Cortex-M4 build's on mps2-an386, against the host's reference kernels, bit for bit."""
    calls = []
    for seed in range(12):
        calls.append(gs.grad_input_call(_pointwise(seed)))
    calls.append(gs.grad_input_call(_pointwise(99, in_c=64, out_c=256, h=4, w=4)))
    calls.append(gs.grad_input_call(_pointwise(98, per_channel=False, in_c=20, out_c=40)))
    board = gs.run_on_board(calls, tmp_path, board_name)
    assert_board_matches_ref(calls, board)
    assert sum(bool(np.any(g[6])) for g in board) >= len(calls) - 1


def test_the_host_dispatch_runs_the_optimized_gradient_kernels_when_asked() -> None:
    """X_run follows kernels_dsp_host for the gradient kernels too."""
    flag = ctypes.c_int.in_dll(host_lib(), "kernels_dsp_host")
    call, values = gs.grad_input_call(_pointwise(7))
    ref = run_variant(call, values, "ref")
    old = flag.value
    try:
        flag.value = 1
        mine = [v.copy() for v in values]
        run_kernel(call, mine)
    finally:
        flag.value = old
    np.testing.assert_array_equal(mine[6], ref[6])


def _depthwise(seed: int, **force: Any) -> gs.Layer:
    """A depthwise layer: multiplier 1 (the optimized path) mostly, up to 300 channels (several
    128-channel blocks), 1x1 to 5x5 filters, strides, dilations, SAME and VALID."""
    rng = np.random.default_rng(60_000 + seed)
    opts: dict[str, Any] = dict(mult=1 if seed % 5 else int(rng.integers(1, 4)))
    opts["in_c"] = int(rng.integers(1, 300)) if seed % 3 == 0 else int(rng.integers(1, 40))
    opts.update(force)
    return gs.make_layer("dw", seed, **opts)


@pytest.mark.parametrize("seed", range(60))
def test_depthwise_grad_input_dsp_matches_reference(seed: int) -> None:
    call, values = gs.grad_input_call(_depthwise(seed))
    dsp_same_as_ref(call, values)


@pytest.mark.emulator
def test_depthwise_grad_input_on_the_emulated_cortex_m7(tmp_path) -> None:
    calls = [gs.grad_input_call(_depthwise(seed)) for seed in range(10)]
    board = gs.run_on_board(calls, tmp_path)
    assert_board_matches_ref(calls, board)
    assert sum(bool(np.any(g[6])) for g in board) >= len(calls) - 1


GRAD_REQUANT_SWEEP_C = (
    r"""
#include <stdio.h>
#include <stdlib.h>
#include "dsp.h"
#include "grad.h"
"""
    + xorshift64_c(0x2545F4914F6CDD1D)
    + r"""

/* Arrays of n values: random magnitudes at every scale, the extremes, and values whose
 * quotient acc * 127 / max lies exactly on a rounding tie or one unit beside it. */
int main(int argc, char **argv) {
    const long rounds = argc > 1 ? atol(argv[1]) : 1000;
    static int32_t acc[512];
    static int8_t a[512], b[512];
    long bad = 0, checks = 0;
    for (long r = 0; r < rounds; ++r) {
        const int n = 1 + (int)(rnd() % 512);
        const int bits = 1 + (int)(rnd() % 31);
        for (int i = 0; i < n; ++i) acc[i] = (int32_t)(rnd() >> 32) >> (32 - bits);
        if (r % 7 == 0) acc[rnd() % n] = INT32_MIN;
        if (r % 7 == 1) acc[rnd() % n] = INT32_MAX;
        /* ties: with M = max|acc|, acc * 127 + M / 2 = k * M (+-1) */
        uint32_t m = 0;
        for (int i = 0; i < n; ++i) {
            const uint32_t v = acc[i] < 0 ? 0u - (uint32_t)acc[i] : (uint32_t)acc[i];
            if (v > m) m = v;
        }
        for (int i = 0; i < n && m > 0; i += 3) {
            const uint64_t k = rnd() % 128, target = k * m - m / 2 + (rnd() % 3) - 1;
            const uint64_t v = target / 127;
            if (v <= m) acc[i] = (rnd() & 1) ? (int32_t)v : -(int32_t)v;
        }
        const float sa = grad_requantize_s32(acc, (size_t)n, 0.37f, a);
        const float sb = dsp_grad_requantize_s32(acc, (size_t)n, 0.37f, b);
        for (int i = 0; i < n; ++i, ++checks)
            if (a[i] != b[i] && bad++ < 10) printf("acc %d: %d vs %d\n", acc[i], a[i], b[i]);
        if (sa != sb && bad++ < 10) printf("scale %g vs %g\n", sa, sb);
    }
    printf("%ld %ld\n", checks, bad);
    return bad != 0;
}
"""
)


def test_fast_gradient_requantization_is_bit_identical(tmp_path) -> None:
    """dsp.h's dsp_grad_requantize_s32 (float estimate, exact 64-bit correction) against grad.c's
    grad_requantize_s32 (64-bit division): random arrays at every magnitude, INT32_MIN/MAX, and
    values on and beside the rounding ties, compiled with the host compiler."""
    checks, bad = run_c_sweep(tmp_path, GRAD_REQUANT_SWEEP_C, 20000, ("-Wextra", "-Werror"))
    assert bad == 0 and checks > 4_000_000


def _update(layer: gs.Layer, seed: int) -> tuple[KernelCall, list[np.ndarray]]:
    lr = float(10 ** np.random.default_rng(seed).uniform(-3, 0))  # steps of a few to many quanta
    call, values = gs.update_call(layer, lr, True, seed % 4 != 0, 0x1234567 + seed)
    return call, [np.ascontiguousarray(v) for v in values[:8]]


@pytest.mark.parametrize("seed", range(60))
def test_conv2d_grad_update_1x1_dsp_matches_reference(seed: int) -> None:
    """New weights, biases and generator state identical (the stochastic rounding draws in the
    same order), on 1x1 layers with every kind of trained slice and mask."""
    call, values = _update(_pointwise(seed), seed)
    out = dsp_same_as_ref(call, values)
    assert not np.array_equal(out[5], values[5]) or values[5].size == 0 or call.params["lr"] < 0.01


@pytest.mark.parametrize("seed", range(20))
def test_conv2d_grad_update_other_filters_dsp_matches_reference(seed: int) -> None:
    dsp_same_as_ref(*_update(gs.make_layer("conv", 300 + seed), seed))


@pytest.mark.emulator
def test_conv2d_grad_update_on_the_emulated_cortex_m7(tmp_path) -> None:
    calls = [_update(_pointwise(seed, train_rows=3), seed) for seed in range(10)]
    board = gs.run_on_board(calls, tmp_path)
    assert_board_matches_ref(calls, board)
    assert sum(not np.array_equal(g[5], v[5]) for g, (_, v) in zip(board, calls, strict=True)) >= 8


@pytest.mark.parametrize("seed", range(40))
def test_fully_connected_grads_dsp_match_reference(seed: int) -> None:
    """Fully connected input gradient and update (run as 1x1 convolutions; a weight zero point
    takes the reference): every operand identical, the generator state included."""
    force: dict[str, Any] = {"depth": int(np.random.default_rng(seed).integers(1, 300))} if seed % 2 else {}
    layer = gs.make_layer("fc", seed, **force)
    dsp_same_as_ref(*gs.grad_input_call(layer))
    dsp_same_as_ref(*_update(layer, seed))


@pytest.mark.emulator
def test_fully_connected_grads_on_the_emulated_cortex_m7(tmp_path) -> None:
    calls = []
    for seed in range(6):
        layer = gs.make_layer("fc", 500 + seed, per_channel=True, train_rows=2)
        calls += [gs.grad_input_call(layer), _update(layer, seed)]
    board = gs.run_on_board(calls, tmp_path)
    assert_board_matches_ref(calls, board)


def _sparse_window_calls() -> list[tuple[KernelCall, list[np.ndarray]]]:
    """1x1 input gradients whose output gradient is zero but for a few entries, so that whole
    32-channel windows of a tile are dead and the live ones hold a single nonzero gradient at
    the tile's last pixel, its first, or a window's last channel (window_live); one of them
    masked off (a zero term). 70 output channels: windows of 32, 32 and 6."""
    calls = []
    for i, (hw, spots) in enumerate([(6, [(35, 40), (0, 69)]), (7, [(48, 5)]), (4, [(15, 63), (3, 31)])]):
        layer = _pointwise(1500 + i, h=hw, w=hw, sh=1, sw=1, padding="VALID", out_c=70, in_c=21, n=1)
        call, values = gs.grad_input_call(layer, has_mask=False)
        g = np.zeros_like(values[0])
        flat = g.reshape(-1, g.shape[-1])
        for pixel, channel in spots:
            flat[pixel % flat.shape[0], channel] = 77
        values[0] = g
        calls.append((call, values))
    return calls


def test_sparse_windows_dsp_match_reference() -> None:
    for call, values in _sparse_window_calls():
        out = dsp_same_as_ref(call, values)
        assert np.count_nonzero(out[6]) >= 8, call.params


def _one_pixel_layers() -> list[gs.Layer]:
    """Input gradients with a single output pixel (grad_input_1x1_one): fully connected layers
    with a batch of one (MobileNetV2's 1280 -> 10: chunks of 32 rows, depths with a tail of 1-3
    input channels, odd row counts, trained rows straddling a chunk, per-tensor scales, no mask)
    and 1x1 convolutions over a 1x1 output map (stride 2 over 2x2 and 3x3 inputs, SAME: the
    one output reads input pixel (0, 0); the rest keeps a zero gradient)."""
    fc = [
        dict(batches=1, depth=1280, units=10),
        dict(batches=1, depth=37, units=1),
        dict(batches=1, depth=66, units=33, train_rows=31),
        dict(batches=1, depth=5, units=70, train_rows=40),
        dict(batches=1, depth=130, units=7, per_channel=False),
        dict(batches=1, depth=8, units=64, has_mask=False),
    ]
    layers = [gs.make_layer("fc", 700 + i, **f) for i, f in enumerate(fc)]
    conv = [
        dict(n=1, h=1, w=1, in_c=19, out_c=45),
        dict(n=1, h=2, w=2, in_c=6, out_c=9, sh=2, sw=2, padding="SAME"),
        dict(n=1, h=3, w=3, in_c=13, out_c=40, sh=3, sw=3, padding="VALID", train_rows=35),
    ]
    layers += [gs.make_layer("conv", 720 + i, fh=1, fw=1, dh=1, dw=1, **f) for i, f in enumerate(conv)]
    return layers


def test_one_pixel_input_gradients_dsp_match_reference() -> None:
    """grad_input_1x1_one against the reference, and the cases are informative: a gradient
    spread over many values (an all-zero one would match anything)."""
    for layer in _one_pixel_layers():
        call, values = gs.grad_input_call(layer)
        assert int(np.prod(values[0].shape[:-1])) == 1  # one output pixel
        out = dsp_same_as_ref(call, values)
        assert np.unique(out[6]).size >= min(8, out[6].shape[-1]), call.params


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_one_pixel_and_sparse_window_grad_inputs_on_the_emulated_boards(tmp_path, board_name: str) -> None:
    calls = [gs.grad_input_call(layer) for layer in _one_pixel_layers()] + _sparse_window_calls()
    board = gs.run_on_board(calls, tmp_path, board_name)
    assert_board_matches_ref(calls, board)


@pytest.mark.parametrize("seed", range(60))
def test_depthwise_grad_update_dsp_matches_reference(seed: int) -> None:
    """Depthwise update: weights, biases and generator state identical; multiplier 1 (the
    4-channel blocks, tails of 1-3 channels, trained slices of any width) mostly, 1x1 to 5x5
    filters, strides, dilations, SAME and VALID, masks."""
    call, values = _update(_depthwise(seed), seed)
    out = dsp_same_as_ref(call, values)
    assert not np.array_equal(out[5], values[5]) or values[5].size == 0 or call.params["lr"] < 0.01


@pytest.mark.emulator
def test_depthwise_grad_update_on_the_emulated_cortex_m7(tmp_path) -> None:
    calls = [_update(_depthwise(s, mult=1, in_c=9 + s, train_rows=5 + s), s) for s in range(10)]
    board = gs.run_on_board(calls, tmp_path)
    assert_board_matches_ref(calls, board)
    assert sum(not np.array_equal(g[5], v[5]) for g, (_, v) in zip(board, calls, strict=True)) >= 8


def _kxk(seed: int, **force: Any) -> gs.Layer:
    """A convolution with a filter larger than 1x1 (2x2 to 5x5, square or not): odd channel
    counts across the 4-channel groups, strides 1-3, dilations, SAME and VALID, masks, trained
    rows anywhere (none, some, all)."""
    rng = np.random.default_rng(70_000 + seed)
    opts: dict[str, Any] = {}
    opts["fh"], opts["fw"] = (int(v) for v in rng.choice([2, 3, 3, 3, 5, 1], 2))
    if opts["fh"] == opts["fw"] == 1:
        opts["fw"] = 3
    opts["in_c"] = int(rng.integers(1, 40))
    opts["out_c"] = int(rng.integers(1, 40))
    if seed % 3 == 0:
        opts["sh"] = opts["sw"] = 1
    elif seed % 3 == 1:
        opts["sh"] = opts["sw"] = 2
    rows = int(rng.integers(1, 1_000))
    opts.update(force)
    if seed % 5 == 0 and "train_rows" not in force:
        opts["train_rows"] = 1 + rows % opts["out_c"]
    return gs.make_layer("conv", 80_000 + seed, **opts)


@pytest.mark.parametrize("seed", range(60))
def test_conv2d_grad_update_kxk_dsp_matches_reference(seed: int) -> None:
    """Filters larger than 1x1: new weights, biases and generator state identical."""
    call, values = _update(_kxk(seed), seed)
    assert call.params["filter_h"] * call.params["filter_w"] > 1
    out = dsp_same_as_ref(call, values)
    assert not np.array_equal(out[5], values[5]) or values[5].size == 0 or call.params["lr"] < 0.01


@pytest.mark.emulator
def test_conv2d_grad_update_kxk_on_the_emulated_cortex_m7(tmp_path) -> None:
    calls = [_update(_kxk(s, train_rows=1 + s % 3, out_c=3 + s), s) for s in range(10)]
    board = gs.run_on_board(calls, tmp_path)
    assert_board_matches_ref(calls, board)
    assert sum(not np.array_equal(g[5], v[5]) for g, (_, v) in zip(board, calls, strict=True)) >= 8


@pytest.mark.parametrize("seed", range(60))
def test_conv2d_grad_input_kxk_dsp_matches_reference(seed: int) -> None:
    """Filters larger than 1x1: the int8 input gradient and its scale identical."""
    call, values = gs.grad_input_call(_kxk(seed))
    assert call.params["filter_h"] * call.params["filter_w"] > 1
    out = dsp_same_as_ref(call, values)
    assert out[7][0] > 0 or not np.any(out[6])


def test_conv2d_grad_input_kxk_dsp_edge_cases() -> None:
    """Per-tensor scales, no mask, no trained rows, one channel each way, more output channels
    than a 16-channel chunk with a large sum of weights (nonzero shift), 5x5 on a tiny image."""
    cases = [
        dict(per_channel=False),
        dict(has_mask=False),
        dict(train_rows=0),
        dict(in_c=1, out_c=1),
        dict(in_c=3, out_c=37, fh=3, fw=3, sh=2, sw=2),
        dict(in_c=64, out_c=200, fh=3, fw=3, h=5, w=5, sh=1, sw=1),
        dict(in_c=5, out_c=7, fh=5, fw=5, h=4, w=4, padding="SAME"),
    ]
    for i, force in enumerate(cases):
        call, values = gs.grad_input_call(_kxk(2000 + i, **force))
        out = dsp_same_as_ref(call, values)
        assert np.any(out[6]), force


@pytest.mark.emulator
def test_conv2d_grad_input_kxk_on_the_emulated_cortex_m7(tmp_path) -> None:
    calls = [gs.grad_input_call(_kxk(s)) for s in range(10)]
    calls.append(gs.grad_input_call(_kxk(99, in_c=32, out_c=60, fh=3, fw=3, h=5, w=5, sh=1, sw=1)))
    board = gs.run_on_board(calls, tmp_path)
    assert_board_matches_ref(calls, board)
    assert sum(bool(np.any(g[6])) for g in board) >= len(calls) - 1


STEP_SWEEP_C = (
    r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "conv2d_s8_grad_update.h"
#include "dsp.h"
"""
    + xorshift64_c(0x9E3779B97F4A7C15)
    + r"""

/* Rows of weights stepped by conv_grad_step_weight one by one and by dsp_step_weights (strided
 * like the depthwise update): factors at every scale (steps of a fraction of a quantum to far
 * past the 256 cap), infinite and NaN factors, accumulators up to INT32_MIN / INT32_MAX, weights
 * at the saturation edges. */
int main(int argc, char **argv) {
    const long rounds = argc > 1 ? atol(argv[1]) : 1000;
    static int32_t acc[4 * 300];
    static int8_t wa[300 * 3], wb[300 * 3];
    long bad = 0, checks = 0;
    for (long r = 0; r < rounds; ++r) {
        const size_t n = 1 + rnd() % 300, ws = 1 + rnd() % 3, as = 1 + rnd() % 4;
        const int bits = 1 + (int)(rnd() % 31);
        for (size_t i = 0; i < n * as; ++i) acc[i] = (int32_t)(rnd() >> 32) >> (32 - bits);
        if (r % 5 == 0) acc[0] = INT32_MIN, acc[(n - 1) * as] = INT32_MAX;
        for (size_t i = 0; i < n * ws; ++i)
            wa[i] = wb[i] = (int8_t)(rnd() % 2 ? rnd() : (rnd() % 2 ? 127 : -127));
        float f = ldexpf((float)(rnd() % 1000) / 1000.0f - 0.5f, -(int)(rnd() % 40));
        if (r % 97 == 0) f = INFINITY;
        if (r % 89 == 0) f = NAN;
        if (r % 83 == 0) f = -INFINITY;
        uint32_t sa = (uint32_t)rnd() | 1u, sb = sa;
        for (size_t i = 0; i < n; ++i)
            wa[i * ws] = conv_grad_step_weight(wa[i * ws], f * (float)acc[i * as], &sa);
        dsp_step_weights(wb, ws, acc, as, n, f, &sb);
        for (size_t i = 0; i < n * ws; ++i, ++checks)
            if (wa[i] != wb[i] && bad++ < 10) printf("w %zu: %d vs %d\n", i, wa[i], wb[i]);
        if (sa != sb && bad++ < 10) printf("state %u vs %u\n", sa, sb);
    }
    printf("%ld %ld\n", checks, bad);
    return bad != 0;
}
"""
)


def test_fast_weight_step_is_bit_identical(tmp_path) -> None:
    """dsp.h's dsp_step_weights against conv_grad_step_weight (conv2d_s8_grad_update.h, grad.c's
    generator) weight by weight: same weights and same generator state, over factors at every
    scale, inf and NaN, extreme accumulators and strides, compiled with the host compiler."""
    checks, bad = run_c_sweep(tmp_path, STEP_SWEEP_C, 20000, ("-Wextra",))
    assert bad == 0 and checks > 3_000_000


@pytest.mark.parametrize("seed", range(8))
def test_bias_updates_over_many_positions_dsp_match_reference(seed: int) -> None:
    """The bias sums in 16-bit lanes flushed every 255 positions, channel chunks of 64 and
    tails: two 16x16 images (512 positions), up to 150 channels, biases only and with weights,
    masked and not, depthwise and 1x1 and 3x3 convolutions."""
    rng = np.random.default_rng(90_000 + seed)
    c = int(rng.integers(60, 151))
    big = dict(n=2, h=16, w=16, sh=1, sw=1, padding="SAME", has_mask=seed % 2 == 0, train_bias_rows=c)
    layers = [
        _depthwise(seed, mult=1, in_c=c, train_rows=int(rng.integers(0, 5)), **big),
        _pointwise(seed, in_c=5, out_c=c, train_rows=int(rng.integers(0, 3)), **big),
        _kxk(seed, fh=3, fw=3, in_c=3, out_c=c, train_rows=int(rng.integers(0, 3)), **big),
    ]
    for layer in layers:
        call, values = _update(layer, 1 + seed % 3)
        assert call.params["train_bias_rows"] == c and call.params["update_bias"] == 1
        out = dsp_same_as_ref(call, values)
        assert not np.array_equal(out[6], values[6])


def _board_matches_twin(tflite: bytes, name: str, scheme: str, steps: int, trained: int) -> None:
    """`steps` training steps on the emulated board (its firmware: the optimized kernels) and on
    the host twin (the reference kernels): every loss and all trained state bit-identical, and at
    least `trained` trained weight tensors moved."""
    import os
    import uuid

    from pytools import emulator
    from pytools.build.builder import build_firmware
    from pytools.link.client import Link
    from pytools.model.board_runner import BoardModel
    from pytools.model.host_twin import io_tensors, tensor_table
    from pytools.model.tflite_import import import_tflite
    from pytools.train.compile_train import compile_training
    from pytools.train.scheme import load_scheme
    from pytools.train.trainer import Trainer

    board_spec = __import__("pytools.boards", fromlist=["load_board"]).load_board("mps2_an500")
    ct = compile_training(import_tflite(tflite, name), load_scheme(scheme), board_spec, name, True, 0.05)
    g = ct.train.graph
    x = g.tensor(g.inputs[0])
    rng = np.random.default_rng(7)
    classes = g.tensor(ct.train.logits).shape[-1]
    data = [
        (rng.integers(-128, 128, x.shape, dtype=np.int8), int(rng.integers(classes))) for _ in range(steps)
    ]
    twin = Trainer(ct)
    twin_losses = [twin.step(a, y) for a, y in data]
    emu_name = f"test-dsp2-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    elf = build_firmware(board_spec, ct.compiled.blob, ct.compiled.arena).elf
    emu = emulator.start(board_spec, elf, name=emu_name)
    try:
        with Link.open(emu.url) as link:
            ins, outs = io_tensors(ct.compiled.blob)
            board = Trainer(ct, BoardModel(link, tensor_table(ct.compiled.blob), ins, outs))
            board_losses = [board.step(a, y) for a, y in data]
            board_state = board.state()
    finally:
        emulator.stop(emu_name)
    twin_state = twin.state()
    assert board_losses == twin_losses
    assert board_state.keys() == twin_state.keys()
    for k in twin_state:
        np.testing.assert_array_equal(board_state[k], twin_state[k], err_msg=k)
    initial = Trainer(ct).state()
    moved = [k for k in twin_state if "trained" in k and not np.array_equal(initial[k], twin_state[k])]
    assert len(moved) >= trained, moved


@pytest.mark.emulator
def test_training_kxk_convs_on_the_board_matches_the_host_twin() -> None:
    """hapt_cnn1d with every layer trained: the (1, k) convolutions' input gradients and
    updates (strides 2, padding), end to end, board (optimized) against host twin (reference)."""
    from pathlib import Path

    model = (Path(__file__).resolve().parents[3] / "models" / "hapt_cnn1d.tflite").read_bytes()
    _board_matches_twin(model, "hapt_cnn1d", "bias=5,-1=1,-2=1,-3=1,-4=1,-5=1", 12, 5)


@pytest.mark.emulator
def test_training_depthwise_and_stem_on_the_board_matches_the_host_twin() -> None:
    """mobilenet_tiny with a depthwise layer's weights (half its channels), the 3x3 stem's and
    the head trained: the depthwise and k x k updates end to end."""
    from pytools.pretrain.zoo import zoo_model

    _board_matches_twin(
        zoo_model("mobilenet_tiny"), "mobilenet_tiny", "bias=15,-1=1,-4=0.5,-7=1,-15=1", 12, 4
    )


@pytest.mark.parametrize("seed", range(30))
def test_conv2d_grad_update_narrow_kxk_dsp_matches_reference(seed: int) -> None:
    """Fewer than 8 input channels (the 4-rows-per-pass path): 1-7 channels, trained row counts
    with tails of 1-3 rows, strides, dilations, padding, masks."""
    dsp_same_as_ref(*_update(_narrow(seed), seed))


def _narrow(seed: int) -> gs.Layer:
    rng = np.random.default_rng(95_000 + seed)
    return _kxk(seed, in_c=int(rng.integers(1, 8)), out_c=int(rng.integers(1, 20)))


def test_the_narrow_kxk_updates_are_informative() -> None:
    """Most of those layers do move their weights (a no-op update would match anything)."""
    moved = []
    for seed in range(30):
        call, values = _update(_narrow(seed), seed)
        out = run_variant(call, values, "dsp")
        moved.append(call.params["train_rows"] > 0 and not np.array_equal(out[5], values[5]))
    assert np.mean(moved) >= 0.6, np.mean(moved)


# --- depthwise_conv2d_s8_grad_input_2pass -------------------------------------------------

# The channel-plane engine's bounds (depthwise_conv2d_s8_grad_input_planes.h): int16 entries of
# the g' plane, packed tap pairs of all stride phases.
DWP_PLANE, DWP_WORDS = 1024, 64


def _two_pass(layer: gs.Layer) -> tuple[KernelCall, list[np.ndarray]]:
    call, values = gs.grad_input_call(layer)
    return KernelCall(call.kernel + "_2pass", call.params, call.operands), values


def _fast_two_pass(call: KernelCall) -> bool:
    """Whether the optimized two-pass kernel takes its own path (dwp_setup; else it calls the
    reference)."""
    p = call.params
    sh, sw = p["stride_h"], p["stride_w"]
    if not (
        p["depth_multiplier"] == 1
        and p["dilation_h"] == p["dilation_w"] == 1
        and sh <= 2
        and sw <= 2
        and p["pad_h"] >= 0
        and p["pad_w"] >= 0
        and p["input_w"] <= 64
    ):
        return False
    kh = [-(-(p["filter_h"] - py) // sh) for py in range(sh)]
    kw = [-(-(p["filter_w"] - px) // sw) for px in range(sw)]
    words = sum(h * ((w + 1) // 2) for h in kh for w in kw)
    max_y = (p["input_h"] - 1 + p["pad_h"]) // sh
    max_x = (p["input_w"] - 1 + p["pad_w"]) // sw
    ph = max(kh) - 1 + max(max_y + 1, p["output_h"])
    pw = max(kw) - 1 + max(max_x + 1, p["output_w"]) + 6
    return max(kw) <= 8 and words <= DWP_WORDS and ph * pw <= DWP_PLANE


def _dw_small(seed: int) -> gs.Layer:
    """A depthwise layer whose gradient plane fits the optimized path, mostly: inputs up to
    12x12, 1x1 to 5x5 filters, strides 1-2 (3 and dilations: the reference fallback), SAME and
    VALID, masks, trained rows, up to 300 channels; every 7th seed a larger plane."""
    rng = np.random.default_rng(70_000 + seed)
    fh, fw = (int(v) for v in rng.choice([1, 3, 3, 3, 5], 2))
    opts: dict[str, Any] = dict(mult=1 if seed % 9 else 2, fh=fh, fw=fw)
    opts["h"] = int(rng.integers(fh, 13 - fh if seed % 7 else 20))
    opts["w"] = int(rng.integers(fw, 13 - fw if seed % 7 else 20))
    opts["in_c"] = int(rng.integers(1, 300)) if seed % 3 == 0 else int(rng.integers(1, 40))
    if seed % 4 == 0:
        opts["sh"] = opts["sw"] = 1
    elif seed % 5:
        opts["sh"], opts["sw"] = (int(v) for v in rng.integers(1, 3, 2))
        opts["dh"] = opts["dw"] = 1
    if seed == 5:
        opts["density"] = 0.0
    return gs.make_layer("dw", seed, **opts)


@pytest.mark.parametrize("seed", range(60))
def test_depthwise_grad_input_2pass_dsp_matches_reference(seed: int) -> None:
    call, values = _two_pass(_dw_small(seed))
    dsp_same_as_ref(call, values)


def test_depthwise_grad_input_2pass_cases_take_the_optimized_path() -> None:
    """Most random cases above run the optimized path itself, with nonzero gradients, and the
    paper model's shapes (8x8x192 3x3 SAME at strides 1 and 2) do too."""
    calls = [_two_pass(_dw_small(seed)) for seed in range(60)]
    fast = [c for c in calls if _fast_two_pass(c[0])]
    assert len(fast) >= 40
    assert sum(bool(np.any(run_variant(c, v, "dsp")[6])) for c, v in fast) >= len(fast) - 3
    for sh in (1, 2):
        shape = dict(h=8, w=8, in_c=192, mult=1, fh=3, fw=3, sh=sh, sw=sh, padding="SAME")
        layer = gs.make_layer("dw", 900 + sh, **shape)
        call, values = _two_pass(layer)
        assert _fast_two_pass(call)
        assert np.any(dsp_same_as_ref(call, values)[6])


def _dw_kxk(seed: int) -> gs.Layer:
    """5x5 and 7x7 depthwise layers (3 and 4 tap pairs; at stride 2 phases of 2 pairs and
    odd widths): MCUNet's shapes (8x8 and 4x4 maps, 7x7/2 from 8x8) and random ones, masks,
    trained rows."""
    rng = np.random.default_rng(71_000 + seed)
    k = 5 if seed % 2 == 0 else 7
    opts: dict[str, Any] = dict(mult=1, fh=k, fw=k, padding=str(rng.choice(["SAME", "VALID"])))
    if seed < 4:  # MCUNet-5FPS's trained depthwise layers
        h, c, st = [(8, 160, 1), (8, 288, 2), (4, 576, 1), (4, 288, 1)][seed]
        opts.update(h=h, w=h, in_c=c, sh=st, sw=st, padding="SAME")
    else:
        opts["sh"] = opts["sw"] = int(rng.integers(1, 3))
        lo = k if opts["padding"] == "VALID" else 1
        opts["h"], opts["w"] = int(rng.integers(lo, 13)), int(rng.integers(lo, 13))
        opts["in_c"] = int(rng.integers(1, 70))
    return gs.make_layer("dw", seed, **opts)


@pytest.mark.parametrize("seed", range(24))
def test_depthwise_grad_input_2pass_kxk_dsp_matches_reference(seed: int) -> None:
    call, values = _two_pass(_dw_kxk(seed))
    dsp_same_as_ref(call, values)


def test_depthwise_grad_input_2pass_kxk_cases_take_the_optimized_path() -> None:
    calls = [_two_pass(_dw_kxk(seed)) for seed in range(24)]
    assert all(_fast_two_pass(c) for c, _ in calls[:4])  # MCUNet's shapes
    fast = [c for c in calls if _fast_two_pass(c[0])]
    assert len(fast) >= 20
    assert sum(bool(np.any(run_variant(c, v, "dsp")[6])) for c, v in fast) >= len(fast) - 2


@pytest.mark.emulator
def test_depthwise_grad_input_2pass_on_the_emulated_cortex_m7(tmp_path, monkeypatch) -> None:
    kernel = "depthwise_conv2d_s8_grad_input_2pass"
    monkeypatch.setattr(gs, "HARNESS_KERNELS", [*gs.HARNESS_KERNELS, kernel])
    calls = [_two_pass(_dw_small(seed)) for seed in range(12)]
    calls.append(_two_pass(gs.make_layer("dw", 903, h=8, w=8, in_c=192, mult=1, fh=3, fw=3, sh=1, sw=1)))
    calls += [_two_pass(_dw_kxk(seed)) for seed in (0, 1, 4, 5, 6, 7)]  # 5x5 and 7x7
    board = gs.run_on_board(calls, tmp_path)
    assert_board_matches_ref(calls, board)
    assert sum(bool(np.any(g[6])) for g in board) >= len(calls) - 2


# --- grad_add (grad_add_dsp.c: the division-free requantization) -------------------------


def _grad_add_call(seed: int) -> tuple[KernelCall, list[np.ndarray]]:
    """Two int8 gradients with scales far apart, equal, or one zero (seed % 7 == 0: both)."""
    from pytools.model.kernels import Operand

    rng = np.random.default_rng(80_000 + seed)
    n = int(rng.choice([1, 5, 64, 896, 2048, 3001]))
    a = rng.integers(-128, 128, n).astype(np.int8)
    b = rng.integers(-128, 128, n).astype(np.int8)
    s_a = np.float32(10 ** rng.uniform(-4, 0))
    s_b = [s_a, np.float32(10 ** rng.uniform(-4, 0)), np.float32(0.0)][seed % 3]
    if seed % 7 == 0:
        s_a = s_b = np.float32(0.0)
    values = [a, np.array([s_a], np.float32), b, np.array([s_b], np.float32)]
    values += [np.zeros(n, np.int8), np.zeros(1, np.float32)]
    return KernelCall("grad_add", {"size": n}, [Operand(data=v) for v in values]), values


@pytest.mark.parametrize("seed", range(30))
def test_grad_add_dsp_matches_reference(seed: int) -> None:
    call, values = _grad_add_call(seed)
    out = dsp_same_as_ref(call, values)  # the float scale too, bit for bit (array_equal on float32)
    assert out[5].tobytes() == run_variant(call, values, "dsp")[5].tobytes()


@pytest.mark.emulator
def test_grad_add_on_the_emulated_cortex_m7(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(gs, "HARNESS_KERNELS", [*gs.HARNESS_KERNELS, "grad_add"])
    calls = [_grad_add_call(seed) for seed in range(12)]
    board = gs.run_on_board(calls, tmp_path)
    for (call, values), got in zip(calls, board, strict=True):
        want = run_variant(call, values, "ref")
        for k, (w, b) in enumerate(zip(want, got, strict=True)):
            np.testing.assert_array_equal(b, w, err_msg=f"grad_add operand {k} on the board")
    assert sum(bool(np.any(g[4])) for g in board) >= 8


# --- The 1x1 input gradient's packed terms (conv2d_s8_grad_input_dsp.c's load_terms): every g'
# fits a 16-bit lane (the shift is at least CONV_GRAD_MIN_SHIFT_16), so one SMLAD pass takes
# any layer; the cases below stress the extremes (|g| = 128 at the widest channel), chunks
# short of 32 channels and dead channels. The helpers recompute the reference's terms
# (conv2d_s8_grad_input.h: m, shift, g').

MIN_SHIFT = 15  # conv2d_s8_grad_input.h's CONV_GRAD_MIN_SHIFT_16


def _round_nonneg(v: np.ndarray) -> np.ndarray:
    t = np.floor(v).astype(np.int64)
    return t + ((v - t.astype(np.float32)) >= np.float32(0.5))


def _ref_terms(call: KernelCall, values: list[np.ndarray]) -> np.ndarray:
    """The reference's g' (int64, masked) of a 1x1 call: [pixels, output_c]."""
    p = call.params
    g = values[0].reshape(-1, int(p["output_c"])).astype(np.int64)
    if p["has_mask"]:
        bits = np.unpackbits(values[2], bitorder="little")[: g.size].reshape(g.shape)
        g = g * bits
    scales = values[5].astype(np.float32)
    m = _round_nonneg((scales / scales.max()).astype(np.float32) * np.float32(2**23))
    if not p["per_channel"]:
        m = np.full(int(p["output_c"]), m[0])
    tr = int(p["train_rows"])
    w = values[3].reshape(int(p["output_c"]), -1).astype(np.int64).copy()
    if tr:
        w[:tr] = values[4].reshape(tr, -1)[:tr]
    aw = np.abs(w)
    b0 = int((aw * 128 * m[:, None]).sum(0).max())
    w1 = int(aw.sum(0).max())
    shift = MIN_SHIFT
    while shift < 30 and (b0 >> shift) + 1 + (w1 + 1) // 2 > 2**31 - 1:
        shift += 1
    v = g * m[None, :]
    if shift == 0:
        return v
    half = 1 << (shift - 1)
    return np.where(v >= 0, (v + half) >> shift, -((half - v) >> shift))


def _sparse_wide(seed: int, in_c: int, out_c: int, wide: int) -> tuple[KernelCall, list[np.ndarray]]:
    """A 1x1 layer whose gradients are small (|g| <= 3) but for `wide` large ones per image:
    terms at both ends of the 16-bit range among many small ones."""
    layer = _pointwise(seed, in_c=in_c, out_c=out_c, h=4, w=4, sh=1, sw=1, padding="VALID")
    call, values = gs.grad_input_call(layer)
    rng = np.random.default_rng(seed)
    g = rng.integers(-3, 4, values[0].shape).astype(np.int8)
    flat = g.reshape(-1)
    flat[rng.choice(flat.size, min(wide, flat.size), replace=False)] = rng.choice(
        [-128, -127, 127], min(wide, flat.size)
    )
    values[0] = g
    return call, values


def _dead_channels(seed: int) -> tuple[KernelCall, list[np.ndarray]]:
    """Output channels whose gradient is zero at every pixel (a chunk drops them)."""
    call, values = gs.grad_input_call(_pointwise(seed, out_c=90, in_c=21, h=5, w=5))
    rng = np.random.default_rng(seed)
    g = values[0].copy()
    g[..., rng.random(g.shape[-1]) < 0.6] = 0
    values[0] = g
    return call, values


def _split_cases() -> list[tuple[KernelCall, list[np.ndarray]]]:
    cases = [
        _sparse_wide(7000 + i, in_c, out_c, wide)
        for i, (in_c, out_c, wide) in enumerate(
            [(112, 300, 0), (112, 300, 3), (112, 300, 40), (13, 70, 2), (33, 64, 5), (70, 33, 200), (5, 2, 6)]
        )
    ]
    cases += [_dead_channels(7100 + i) for i in range(4)]
    return cases


def test_conv2d_grad_input_1x1_split_terms_dsp_matches_reference() -> None:
    for call, values in _split_cases():
        out = dsp_same_as_ref(call, values)
        assert np.any(out[6])


def test_the_recomputed_terms_are_the_references() -> None:
    """_ref_terms (what the path coverage below is judged by) reproduces the reference's output
    on the stride-1 VALID cases: G_x = round_half_away(127 * acc / max |acc|), acc = g' . W."""
    for call, values in _split_cases()[:7]:
        p = call.params
        t = _ref_terms(call, values)
        w = values[3].reshape(int(p["output_c"]), -1).astype(np.int64).copy()
        tr = int(p["train_rows"])
        if tr:
            w[:tr] = values[4].reshape(tr, -1)[:tr]
        acc = t @ w
        big = int(np.abs(acc).max())
        q = np.sign(acc) * ((np.abs(acc) * 127 + big // 2) // big)
        ref = run_variant(call, values, "ref")[6]
        np.testing.assert_array_equal(q.reshape(ref.shape), ref)


def test_every_term_fits_a_16_bit_lane() -> None:
    """What the one-pass SMLAD gather relies on: the reference's terms fit int16 on every
    compared layer, the extremes included (|g| = 128 at the widest channel gives -2^15), and
    the cases reach both ends of the range."""
    lo = hi = 0
    calls = [gs.grad_input_call(_pointwise(s)) for s in range(80)] + _split_cases()
    for call, values in calls:
        t = _ref_terms(call, values)
        assert t.min() >= -(2**15) and t.max() <= 2**15 - 1
        lo, hi = min(lo, int(t.min())), max(hi, int(t.max()))
    assert lo <= -(2**14) and hi >= 2**14, (lo, hi)


@pytest.mark.emulator
def test_conv2d_grad_input_1x1_split_terms_on_the_emulated_cortex_m7(tmp_path) -> None:
    """The packed-term cases through the firmware build's assembly (gather_m7)."""
    calls = _split_cases()
    board = gs.run_on_board(calls, tmp_path)
    assert_board_matches_ref(calls, board)
