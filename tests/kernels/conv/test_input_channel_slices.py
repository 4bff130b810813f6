"""Input-channel slices of CONV_2D (train_cols, firmware/kernels/conv2d_train.def): the first
train_cols input channels of every output channel live in RAM ([output_c, fh, fw, train_cols]),
as MIT's 49kb scheme trains MCUNet's expansion convs.

- The forward kernel (reference and every DSP variant: narrow 1x1, GEMM, direct) equals, bit
  for bit, the inference kernel on the layer with those weights substituted, and really reads
  the RAM copy.
- The input gradient and the update match TensorFlow's GradientTape of the dequantized layer
  with those weights (the update only over the trained columns, from the trained input
  channels alone: all the forward pass keeps); an off-by-one slice fails the same check.
- The DSP update is bit-identical with the reference; on the emulated Cortex-M7 the firmware
  build's objects give what the host gives.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from pytools.model.kernels import KernelCall, run_kernel
from tests.kernels import grad_support as gs
from tests.kernels.conv.support import dsp_same_as_ref, run_variant
from tests.kernels.conv.test_conv_grads import RNG_STATE, _lr_for, _qas_steps, _update_matches


@pytest.fixture(scope="module")
def tf() -> Any:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    return tensorflow


def _layer(seed: int, **force: Any) -> gs.Layer:
    """A conv with an input-channel slice: 1x1 (MCUNet's case; sizes that take the narrow,
    the GEMM and the direct forward variants) or any filter, odd channel counts, any ratio."""
    rng = np.random.default_rng(77_000 + seed)
    opts: dict[str, Any] = {}
    if seed % 2 == 0:
        opts.update(fh=1, fw=1, dh=1, dw=1, sh=1, sw=1, padding="VALID")
        opts["in_c"] = int(rng.choice([8, 16, 24, 48, 96, 13, 5]))
        opts["out_c"] = int(rng.choice([4, 8, 12, 36, 7, 3]))
        opts["h"] = opts["w"] = int(rng.choice([4, 8, 3]))
    else:
        opts["in_c"] = int(rng.integers(2, 30))
    opts.update(force)
    in_c = opts.get("in_c") or gs.make_layer("conv", seed, **opts).x_q.shape[-1]
    opts.setdefault("train_cols", int(rng.choice([1, max(1, in_c // 4), max(1, in_c // 2), in_c])))
    return gs.make_layer("conv", seed, **opts)


@pytest.mark.parametrize("seed", range(16))
def test_forward_reads_the_trained_columns(seed: int) -> None:
    layer = _layer(seed)
    call, values = gs.forward_call(layer, trained=True)
    assert call.params["train_cols"] == layer.train_cols
    ref = run_variant(call, values, "ref")[-1]
    dsp = run_variant(call, values, "dsp")[-1]
    np.testing.assert_array_equal(ref, gs.run_forward(layer, trained=False))
    np.testing.assert_array_equal(dsp, ref)
    flash = gs.run_forward(gs.without_training(layer), trained=True)
    if not np.array_equal(layer.w_effective(), layer.w_flash):
        assert not np.array_equal(flash, ref), "the RAM columns are not read"


@pytest.mark.parametrize("seed", range(12))
def test_grad_input_matches_tensorflow(tf: Any, seed: int) -> None:
    layer = _layer(seed, has_mask=seed % 3 != 0)
    ref = gs.tf_reference(tf, layer)
    call, values = gs.grad_input_call(layer)
    out = dsp_same_as_ref(call, values)  # the selector and the reference: the same bits
    assert gs.grad_input_ok(out[6], float(out[7][0]), ref.dx, "conv")
    # Reading the flash columns instead fails the same check where it matters.
    flash = gs.tf_reference(tf, gs.without_training(layer))
    if np.linalg.norm(flash.dx - ref.dx) > 0.2 * np.linalg.norm(ref.dx):
        assert not gs.grad_input_ok(out[6], float(out[7][0]), flash.dx, "conv")


@pytest.mark.parametrize("seed", range(16))
def test_update_matches_tensorflow_with_qas(tf: Any, seed: int) -> None:
    layer = _layer(seed)
    ref = gs.tf_reference(tf, layer)
    lr = _lr_for(layer, ref, 3.0)
    res = gs.run_update(layer, lr, rng_state=RNG_STATE)
    step_w, step_b = _qas_steps(layer, ref, lr)
    assert step_w.shape == layer.w_ram.shape == (*layer.w_flash.shape[:3], layer.train_cols)
    assert _update_matches(layer, res, step_w, step_b)
    assert res.guards_intact
    assert res.rng_state == gs.xorshift32(RNG_STATE, layer.w_ram.size)[1]
    assert not np.array_equal(res.w, layer.w_ram)
    # The columns one further (an off-by-one slice) fail the check.
    if layer.train_cols < layer.w_flash.shape[3]:
        w_bad, _ = _qas_steps(layer, ref, lr, "slice")
        if np.linalg.norm(w_bad - step_w) > 0.2 * np.linalg.norm(step_w):
            assert not _update_matches(layer, res, w_bad, step_b)


@pytest.mark.parametrize("seed", range(24))
def test_grad_input_1x1_dsp_matches_reference(seed: int) -> None:
    """The DSP 1x1 path with composed rows (even train_cols): chunks of 32 output channels,
    several of them, strides, masks, odd tails of input channels."""
    rng = np.random.default_rng(78_000 + seed)
    in_c = int(rng.choice([8, 12, 48, 96, 30, 70]))
    layer = gs.make_layer(
        "conv",
        700 + seed,
        fh=1,
        fw=1,
        dh=1,
        dw=1,
        in_c=in_c,
        out_c=int(rng.choice([33, 64, 100, 7])),
        h=int(rng.integers(2, 9)),
        w=int(rng.integers(2, 9)),
        train_cols=2 * int(rng.integers(1, in_c // 2 + 1)),
    )
    call, values = gs.grad_input_call(layer)
    out = dsp_same_as_ref(call, values)
    assert out[6].any()


def _update(layer: gs.Layer, seed: int) -> tuple[KernelCall, list[np.ndarray]]:
    lr = float(10 ** np.random.default_rng(seed).uniform(-3, 0))
    call, values = gs.update_call(layer, lr, True, seed % 3 != 0, RNG_STATE + seed)
    return call, [np.ascontiguousarray(v) for v in values[:8]]


@pytest.mark.parametrize("seed", range(24))
def test_update_dsp_matches_reference(seed: int) -> None:
    call, values = _update(_layer(seed), seed)
    out = dsp_same_as_ref(call, values)
    assert not np.array_equal(out[5], values[5]) or call.params["lr"] < 0.01


@pytest.mark.emulator
def test_input_channel_slices_on_the_emulated_cortex_m7(tmp_path) -> None:
    calls = []
    for seed in range(6):
        layer = _layer(seed, train_bias_rows=2)
        calls.append(gs.forward_call(layer, trained=True))
        calls.append(gs.grad_input_call(layer))
        calls.append(_update(layer, seed))
    for seed in range(4):  # the DSP input gradient's composed rows (1x1, even train_cols)
        layer = _layer(2 * seed, in_c=48, out_c=36, train_cols=12 * (seed + 1))
        calls.append(gs.grad_input_call(layer))
    host = []
    for call, values in calls:
        mine = copy.deepcopy(values)
        run_kernel(call, mine)
        host.append(mine)
    board = gs.run_on_board(calls, tmp_path)
    for (call, _), h, b in zip(calls, host, board, strict=True):
        for k, (hv, bv) in enumerate(zip(h, b, strict=True)):
            np.testing.assert_array_equal(bv, hv, err_msg=f"{call.kernel} operand {k} on the board")
    assert (
        sum(
            not np.array_equal(h[5], v[5])
            for h, (c, v) in zip(host, calls, strict=True)
            if c.kernel.endswith("_update")
        )
        >= 5
    )


@pytest.mark.parametrize("seed", range(8))
def test_float_gradient_kernels_take_input_channel_slices(seed: int) -> None:
    """The float-gradient option's kernels (*_f32) on a column slice: the update equals the int8
    update bit for bit on an int8-exact gradient; the input gradient agrees with the int8 one
    (tests/kernels/test_float_grads.py's oracles)."""
    from tests.kernels.test_float_grads import FLOAT_EXACT, _as_float, _within_int8

    layer = _layer(seed)
    if layer.g_q.size // layer.g_q.shape[-1] * 128 * 255 >= FLOAT_EXACT:
        pytest.skip("the weight-gradient sum may leave float32's exact integers")
    call, values = gs.update_call(layer, 0.37, True, True, 0x2468ACE)
    run_kernel(call, values[:8])
    fcall, fvalues = _as_float(*gs.update_call(layer, 0.37, True, True, 0x2468ACE), grads=(0,))
    run_kernel(fcall, fvalues[:8])
    for k in (5, 6, 7):
        np.testing.assert_array_equal(fvalues[k], values[k], err_msg=f"operand {k}")
    assert not np.array_equal(values[5], layer.w_ram.reshape(-1))
    call, values = gs.grad_input_call(layer)
    fcall, fvalues = _as_float(call, values, grads=(0, 6))
    run_kernel(fcall, fvalues)
    ours = fvalues[6].astype(np.float64)
    run_kernel(call, values)
    _within_int8(ours, values[6], float(values[7][0]), gs.GRAD_INPUT_MAX_ERROR_STEPS["conv"])
