"""The float-gradient build option's kernels (firmware/kernels/*_f32.c).

Oracles: the int8 kernels (themselves checked against TensorFlow): on a gradient that int8
holds exactly (g = s * g_q), a float update must equal the int8 update bit for bit
(weights, biases and the generator's state); TensorFlow's softmax cross-entropy gradient;
float64 numpy for the fully-connected input gradient and the mask.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pytools.model.kernels import KernelCall, Operand, run_kernel
from tests.kernels.grad_support import GRAD_INPUT_MAX_ERROR_STEPS, grad_input_call, make_layer, update_call
from tests.kernels.test_misc_grads import (
    _pool_grad_case,
    _xent,
    lowered_params,
    rand_grad,
    run,
    scalar,
    tf_xent,
)
from tests.kernels.test_pool_pad_grads import _pad_params

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FLOAT_EXACT = 2**24  # integers up to this are exact in float32


def _as_float(call: KernelCall, values: list[np.ndarray], grads: tuple[int, ...]) -> tuple[KernelCall, list]:
    """The same call on the _f32 kernel, with the gradient operands as float32."""
    values = list(values)
    for i in grads:
        values[i] = np.ascontiguousarray(values[i], dtype=np.float32)
    operands = [Operand(data=v) for v in values[: len(call.operands)]]
    return KernelCall(call.kernel + "_f32", call.params, operands), values


@pytest.mark.parametrize("kind", ["conv", "dw", "fc"])
@pytest.mark.parametrize("seed", range(12))
def test_float_update_equals_the_int8_update_on_an_int8_gradient(kind: str, seed: int) -> None:
    layer = make_layer(kind, seed)
    positions = layer.g_q.size // layer.channels
    if positions * 128 * 255 >= FLOAT_EXACT:
        pytest.skip("the weight-gradient sum may leave float32's exact integers")
    for weights, bias in ((True, True), (False, True), (True, False)):
        call, values = update_call(layer, 0.37, weights, bias, 0x2468ACE)
        run_kernel(call, values[:8])
        fcall, fvalues = _as_float(*update_call(layer, 0.37, weights, bias, 0x2468ACE), grads=(0,))
        run_kernel(fcall, fvalues[:8])
        for k in (5, 6, 7):  # trained weights, trained bias, generator state
            np.testing.assert_array_equal(fvalues[k], values[k], err_msg=f"operand {k}")
        assert np.all(fvalues[8][values[5].size :] == 0x5A)  # nothing written past the slice
    assert layer.w_ram.size == 0 or not np.array_equal(values[5], layer.w_ram.reshape(-1))  # moved


@pytest.mark.parametrize("seed", range(12))
def test_float_fully_connected_input_gradient(seed: int) -> None:
    layer = make_layer("fc", seed)
    call, values = grad_input_call(layer)
    fcall, fvalues = _as_float(call, values, grads=(0, 6))
    run_kernel(fcall, fvalues)
    w = layer.w_flash.astype(np.float64).copy()
    w[: layer.train_rows] = layer.w_ram
    g = layer.s_g * layer.g_q.astype(np.float64)
    if layer.mask is not None:
        g = g * layer.mask
    ref = (g * layer.s_w_full.astype(np.float64)) @ (w - layer.z_w)
    assert float(fvalues[7][0]) == 1.0
    np.testing.assert_allclose(fvalues[6], ref, rtol=2e-5, atol=2e-6 * max(1e-30, np.abs(ref).max()))
    # and the int8 kernel lands within half of its quantum of it (plus its 16-bit terms' share)
    run_kernel(call, values)
    q = float(values[7][0]) * values[6].astype(np.float64)
    steps = GRAD_INPUT_MAX_ERROR_STEPS["fc"]
    assert np.abs(q - ref).max() <= steps * np.abs(ref).max() / 127 + 1e-12


@pytest.mark.parametrize("seed", range(10))
def test_float_softmax_xent(seed: int) -> None:
    rng = np.random.default_rng(700 + seed)
    b, k = int(rng.integers(1, 5)), int(rng.integers(2, 30))
    q = rng.integers(-128, 128, (b, k)).astype(np.int8)
    labels = rng.integers(0, k, b).astype(np.int32)
    scale, eps = float(np.float32(10 ** rng.uniform(-2, -0.3))), float(rng.choice([0.0, 0.1]))
    loss8, pred8, _ = _xent(q, labels, scale, eps)
    loss, pred, g, gs = scalar(), np.zeros(b, np.int32), np.zeros((b, k), np.float32), scalar()
    params = {"batches": b, "classes": k, "input_scale": scale, "label_smoothing": eps}
    run("softmax_xent_s8_f32", params, [q, labels, loss, pred, g, gs])
    assert float(loss[0]) == loss8 and np.array_equal(pred, pred8)  # the int8 head's own
    ref_loss, ref = tf_xent(scale * q.astype(np.float32), labels, eps)
    assert float(loss[0]) == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(float(gs[0]) * g, ref, atol=2e-6)


def test_float_grad_apply_mask() -> None:
    rng = np.random.default_rng(5)
    g = rng.normal(size=1000).astype(np.float32)
    bits = rng.random(1000) < 0.6
    out = np.zeros(1000, np.float32)
    run("grad_apply_mask_f32", {"size": 1000}, [g, np.packbits(bits, bitorder="little"), out])
    np.testing.assert_array_equal(out, np.where(bits, g, 0).astype(np.float32))


def _within_int8(ours: np.ndarray, q: np.ndarray, s_q: float, steps: float = 0.52) -> None:
    """The float result against the int8 kernel's (itself checked against TensorFlow): the
    int8 one rounds to a quantum of max|G| / 127, so they agree within `steps` of it."""
    quantum = np.abs(ours).max() / 127
    assert np.abs(ours - s_q * q.astype(np.float64)).max() <= steps * quantum + 1e-30


@pytest.mark.parametrize("kind", ["conv", "dw"])
@pytest.mark.parametrize("seed", range(10))
def test_float_conv_input_gradients_agree_with_int8(kind: str, seed: int) -> None:
    layer = make_layer(kind, seed)
    call, values = grad_input_call(layer)
    fcall, fvalues = _as_float(call, values, grads=(0, 6))
    run_kernel(fcall, fvalues)
    ours, scale = fvalues[6].astype(np.float64), float(fvalues[7][0])  # before the int8 run
    run_kernel(call, values)  # (shares the scale operand)
    assert scale == 1.0
    _within_int8(ours, values[6], float(values[7][0]), GRAD_INPUT_MAX_ERROR_STEPS[kind])


def _unary(kernel: str, params: dict, gy: np.ndarray, s_y: float, x_shape, pre=()) -> tuple:
    """(float result * its scale, int8 result, int8 scale) of kernel and kernel_f32."""
    gx, s_x = np.zeros(x_shape, np.int8), scalar()
    run(kernel, params, [*pre, gy, scalar(s_y), gx, s_x])
    fx, fs = np.zeros(x_shape, np.float32), scalar()
    run(kernel + "_f32", params, [*pre, gy.astype(np.float32), scalar(s_y), fx, fs])
    return float(fs[0]) * fx.astype(np.float64), gx, float(s_x[0])


@pytest.mark.parametrize("seed", range(6))
def test_float_pool_mean_pad_gradients_agree_with_int8(seed: int) -> None:
    rng = np.random.default_rng(40 + seed)
    case = (1, 9, 7, 3, 3, 3, 2, 2, "SAME")
    params, gy, s_y = _pool_grad_case(case, rng)
    x_shape = (1, 9, 7, 3)
    ours, q, s_q = _unary("avg_pool_s8_grad_input", params, gy, s_y, x_shape)
    _within_int8(ours, q, s_q)
    x = rng.choice(np.array([-3, 0, 9], np.int8), size=x_shape)
    mp = dict(params)
    ours, q, s_q = _unary("max_pool_s8_grad_input", mp, gy, s_y, x_shape, pre=(x,))
    _within_int8(ours, q, s_q)
    mean = lowered_params(
        "MEAN",
        (1, 6, 5, 4),
        (1, 1, 1, 4),
        {"keep_dims": True},
        extra=[_axes(np.array([1, 2], np.int32))],
    )
    g4, s4 = rand_grad(rng, (1, 1, 1, 4))
    fields = ("dim0", "dim1", "dim2", "dim3", "reduce0", "reduce1", "reduce2", "reduce3", "count")
    ours, q, s_q = _unary("mean_s8_grad_input", {k: mean[k] for k in fields}, g4, s4, (1, 6, 5, 4))
    np.testing.assert_allclose(ours, s_q * q.astype(np.float64), rtol=1e-6)  # a broadcast: exact
    pad, out_shape = _pad_params((1, 4, 5, 2), [(0, 0), (1, 0), (0, 2), (0, 1)])
    gp, sp = rand_grad(rng, out_shape)
    ours, q, s_q = _unary("pad_s8_grad_input", pad, gp, sp, (1, 4, 5, 2))
    np.testing.assert_array_equal(ours, s_q * q.astype(np.float64))  # a crop: exact


def _axes(values: np.ndarray):
    from pytools.model.ir import Tensor

    return Tensor(0, "axes", values.shape, "int32", None, values)


def test_float_grad_add() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=500).astype(np.float32), rng.normal(size=500).astype(np.float32)
    out, s = np.zeros(500, np.float32), scalar()
    run("grad_add_f32", {"size": 500}, [a, scalar(0.5), b, scalar(2.0), out, s])
    np.testing.assert_array_equal(out, (np.float32(0.5) * a + np.float32(2.0) * b).astype(np.float32))
    assert float(s[0]) == 1.0
