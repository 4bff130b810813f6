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
from tests.kernels.grad_support import grad_input_call, make_layer, update_call
from tests.kernels.test_misc_grads import _xent, run, scalar, tf_xent

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FLOAT_EXACT = 2**24  # integers up to this are exact in float32


def _as_float(call: KernelCall, values: list[np.ndarray], grads: tuple[int, ...]) -> tuple[KernelCall, list]:
    """The same call on the _f32 kernel, with the gradient operands as float32."""
    values = list(values)
    for i in grads:
        values[i] = np.ascontiguousarray(values[i], dtype=np.float32)
    operands = [Operand(data=v) for v in values[: len(call.operands)]]
    return KernelCall(call.kernel + "_f32", call.params, operands), values


@pytest.mark.parametrize("kind", ["conv", "fc"])
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
    # and the int8 kernel lands within half of its quantum of it
    run_kernel(call, values)
    q = float(values[7][0]) * values[6].astype(np.float64)
    assert np.abs(q - ref).max() <= 0.52 * np.abs(ref).max() / 127 + 1e-12


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
