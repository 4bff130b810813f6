"""The loss heads on un-clamped int32 values (LOGITS_S32, SOFTMAX_XENT_S32,
SIGMOID_XENT_S32, MSE_S32) against their oracles.

LOGITS_S32 must be the output layer's own requantized integers before the int8 clamp: where
the layer's int8 output (bit-exact with TFLite's reference kernels, tests/kernels) is not
saturated they are equal, bit for bit; beyond it they follow the float64 requantization
(round(acc * s_in s_w / s_out) + z, within one quantum of TFLite's Q31 arithmetic for a conv).

The losses' values and gradients are compared with TensorFlow's GradientTape on the real
values (tf.nn.sparse_softmax_cross_entropy_with_logits, sigmoid_cross_entropy_with_logits,
mean squared error), with test_misc_grads' tolerances: the gradient within half an int8
quantum of max|G| (plus float slack) and a cosine floor; the loss within 1e-5 relative.
Negative checks: a plausible bug applied to the reference must fail the same tolerance.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pytools.model.ir import Graph, Op, Tensor
from tests.kernels.support import quant, run_ours
from tests.kernels.test_misc_grads import assert_close, assert_fails, check_against_tf, f64_xent, run, scalar

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # after the log level is set

# ---- LOGITS_S32 ---------------------------------------------------------------------------


def _layer_graph(
    kind: str, rng: np.random.Generator, per_channel: bool, big: bool, depth_max: int = 40, batch: int = 1
) -> Graph:
    """FULLY_CONNECTED (of batch rows) or a whole-input CONV_2D, then LOGITS_S32 on the same layer."""
    units = int(rng.integers(1, 12))
    if kind == "FULLY_CONNECTED":
        depth = int(rng.integers(1, depth_max))
        x_shape, w_shape, y_shape = (batch, depth), (units, depth), (batch, units)
        options = {"activation": "NONE"}
    else:
        h, w, c = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 9))
        x_shape, w_shape, y_shape = (1, h, w, c), (units, h, w, c), (1, 1, 1, units)
        options = {"activation": "NONE", "padding": "VALID", "stride_h": 1, "stride_w": 1}
    s_in, z_in = float(np.float32(rng.uniform(0.01, 0.1))), int(rng.integers(-20, 20))
    s_w = rng.uniform(0.002, 0.02, units if per_channel else 1).astype(np.float32)
    # A tight output scale (big) saturates many outputs: the case the int32 values exist for.
    s_out = float(np.float32(rng.uniform(0.0005, 0.002) if big else rng.uniform(0.05, 0.2)))
    z_out = int(rng.integers(-30, 30))
    axis = 0
    tensors = [
        Tensor(0, "x", x_shape, "int8", quant(s_in, z_in)),
        Tensor(
            1,
            "w",
            w_shape,
            "int8",
            quant(list(s_w), 0, axis),
            rng.integers(-127, 128, w_shape).astype(np.int8),
        ),
        Tensor(
            2,
            "b",
            (units,),
            "int32",
            quant(list(s_in * s_w.astype(np.float64)), 0),
            rng.integers(-3000, 3000, units).astype(np.int32),
        ),
        Tensor(3, "y", y_shape, "int8", quant(s_out, z_out)),
        Tensor(4, "y32", y_shape, "int32", quant(s_out, z_out)),
    ]
    ops = [Op(0, kind, [0, 1, 2], [3], options), Op(1, "LOGITS_S32", [0], [4], {"forward": 0})]
    return Graph(tensors, ops, [0], [3, 4])


@pytest.mark.parametrize("kind", ["FULLY_CONNECTED", "CONV_2D"])
@pytest.mark.parametrize("seed", range(12))
def test_logits_s32_are_the_layer_before_its_clamp(kind, seed):
    rng = np.random.default_rng(900 + seed)
    g = _layer_graph(kind, rng, per_channel=seed % 2 == 0, big=seed % 3 != 0)
    x = rng.integers(-128, 128, g.tensor(0).shape).astype(np.int8)
    y8, y32 = run_ours(g, [x])
    assert np.array_equal(np.clip(y32, -128, 127), y8.astype(np.int32))  # the layer, then its clamp
    # Beyond the clamp: the real-valued requantization (float64), to one quantum.
    w, b = g.tensor(1), g.tensor(2)
    acc = (
        w.data.reshape(w.shape[0], -1).astype(np.int64)
        @ (x.reshape(-1).astype(np.int64) - int(g.tensor(0).quant.zero_point[0]))
    ) + b.data
    real = (
        np.float64(g.tensor(0).quant.scale[0])
        * w.quant.scale.astype(np.float64)
        / np.float64(g.tensor(3).quant.scale[0])
    )
    ref = np.round(acc * real) + int(g.tensor(3).quant.zero_point[0])
    assert np.max(np.abs(y32.reshape(-1) - ref)) <= 1
    if seed % 3 != 0:
        assert np.any(np.abs(y32) > 127), "the case must saturate the int8 output"


@pytest.mark.parametrize("kind", ["FULLY_CONNECTED", "CONV_2D"])
@pytest.mark.parametrize("seed", range(16))
def test_logits_s32_dsp_variant_matches_the_reference(kind, seed):
    """logits_s32_dsp.c (two rows per input word, odd row counts, depth tails, two batch rows)
    against logits_s32.c, bit for bit, through the host library's selector. The emulated
    board's training tests run it against the host twin's reference."""
    from tests.kernels.conv.test_dsp_kernels import dsp_on_host

    rng = np.random.default_rng(1700 + seed)
    g = _layer_graph(
        kind, rng, per_channel=seed % 2 == 0, big=seed % 3 != 0, depth_max=300, batch=1 + seed % 2
    )
    x = rng.integers(-128, 128, g.tensor(0).shape).astype(np.int8)
    with dsp_on_host(False):
        ref = run_ours(g, [x])[1]
    with dsp_on_host(True):
        dsp = run_ours(g, [x])[1]
    np.testing.assert_array_equal(dsp, ref)


# ---- the losses ---------------------------------------------------------------------------


def _head(kernel: str, q: np.ndarray, second: np.ndarray, params: dict):
    b = q.shape[0]
    loss, gs = scalar(), scalar()
    pred = np.full(b, -7, np.int32)
    g = np.full(q.size, 99, np.int8)
    run(kernel, params, [np.ascontiguousarray(q, np.int32), second, loss, pred, g, gs])
    return float(loss[0]), pred, float(gs[0]) * g.reshape(q.shape).astype(np.float64)


def _tape(fn, x: np.ndarray) -> tuple[float, np.ndarray]:
    xt = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = fn(xt)
    return float(loss.numpy()), tape.gradient(loss, xt).numpy().astype(np.float64)


@pytest.mark.parametrize("seed", range(8))
def test_softmax_xent_s32_against_tf(seed):
    rng = np.random.default_rng(1000 + seed)
    b, k = int(rng.integers(1, 4)), int(rng.choice([2, 3, 10, 100]))
    scale = float(np.float32(rng.uniform(0.001, 0.01)))  # margins up to 60: exp stays in range
    zp = int(rng.integers(-128, 128))
    q = rng.integers(-3000, 3000, (b, k)).astype(np.int32)  # far past the int8 range
    labels = rng.integers(0, k, b).astype(np.int32)
    loss, pred, g = _head(
        "softmax_xent_s32", q, labels, dict(batches=b, classes=k, input_scale=scale, label_smoothing=0.0)
    )
    x = (np.float32(scale) * (q - zp).astype(np.float32)).astype(np.float32)
    # TF's loss; the gradient against float64, which agrees with TF's to 2.5e-7 and resolves
    # confident rows that TF's float32 p - 1 rounds to 0 (test_misc_grads.check_against_tf).
    check_against_tf(loss, g, x, labels, 0.0)
    assert np.array_equal(pred, np.argmax(q, axis=1))
    _, ref_g = _tape(
        lambda t: tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=t)), x
    )
    # The int8 head on the clamped logits is not the same loss (the reason for this kernel).
    q8 = np.clip(q, -128, 127).astype(np.int8)
    x8 = (np.float32(scale) * (q8.astype(np.float32) - zp)).astype(np.float32)
    if not np.array_equal(x8, x):
        clamped_loss, clamped_g = _tape(
            lambda t: tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=t)),
            x8,
        )
        assert abs(clamped_loss - loss) > 1e-4 or not np.allclose(clamped_g, ref_g, atol=1e-3)


@pytest.mark.parametrize("seed", range(4))
def test_softmax_xent_s32_f32_is_the_same_head_in_float(seed):
    """The float-gradient option's head: the same loss and prediction as softmax_xent_s32,
    and the float gradient G (scale 1 / batches) to float rounding of float64's."""
    rng = np.random.default_rng(1300 + seed)
    b, k = int(rng.integers(1, 4)), int(rng.choice([2, 10]))
    q = rng.integers(-2000, 2000, (b, k)).astype(np.int32)
    labels = rng.integers(0, k, b).astype(np.int32)
    params = dict(batches=b, classes=k, input_scale=0.01, label_smoothing=0.0)
    loss, pred, _ = _head("softmax_xent_s32", q, labels, params)
    loss_f, gs = scalar(), scalar()
    pred_f, g = np.zeros(b, np.int32), np.zeros(q.size, np.float32)
    run("softmax_xent_s32_f32", params, [q, labels, loss_f, pred_f, g, gs])
    assert float(loss_f[0]) == loss and np.array_equal(pred_f, pred)
    x = (np.float32(0.01) * q.astype(np.float32)).astype(np.float32)
    _, g64 = f64_xent(x, labels, 0.0)
    np.testing.assert_allclose(float(gs[0]) * g.reshape(b, k), g64, rtol=0, atol=1e-6)


def test_softmax_xent_s32_unsticks_both_logits_at_the_ceiling():
    """Both logits past +127: the int8 head sees a tie (loss ln 2); this one sees the margin."""
    q = np.array([[400, 200]], np.int32)
    loss, pred, g = _head(
        "softmax_xent_s32",
        q,
        np.array([1], np.int32),
        dict(batches=1, classes=2, input_scale=0.01, label_smoothing=0.0),
    )
    assert pred.tolist() == [0]
    assert loss == pytest.approx(np.log1p(np.exp(2.0)), rel=1e-6)
    assert g[0, 0] > 0.8 and g[0, 1] < -0.8


SIGMOID_CASES = [(1, 1), (4, 1), (1, 5), (3, 10), (2, 1)]


@pytest.mark.parametrize("case", range(len(SIGMOID_CASES)))
def test_sigmoid_xent_s32_against_tf(case):
    rng = np.random.default_rng(1100 + case)
    b, k = SIGMOID_CASES[case]
    scale = float(np.float32(rng.uniform(0.005, 0.05)))
    zp = int(rng.integers(-128, 128))
    q = rng.integers(-4000, 4000, (b, k)).astype(np.int32)
    labels = rng.integers(0, 2 if k == 1 else k, b).astype(np.int32)
    params = dict(batches=b, outputs=k, input_scale=scale, input_zero_point=zp)
    loss, pred, g = _head("sigmoid_xent_s32", q, labels, params)
    x = (np.float32(scale) * (q - zp).astype(np.float32)).astype(np.float32)
    t = labels[:, None].astype(np.float32) if k == 1 else np.eye(k, dtype=np.float32)[labels]
    ref_loss, ref_g = _tape(
        lambda v: tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=v)), x
    )
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    assert_close(g, ref_g)
    expect = (x[:, 0] > 0).astype(np.int32) if k == 1 else np.argmax(q, axis=1)
    assert np.array_equal(pred, expect)
    sig = 1 / (1 + np.exp(-x.astype(np.float64)))
    assert_fails(g, (sig - (1 - t)) / x.size, "targets inverted")
    if k > 1:
        assert_fails(g, (sig - t) / b, "mean over rows only")


def test_sigmoid_xent_s32_bad_labels():
    q = np.array([[50], [-20], [70]], np.int32)
    loss, pred, g = _head(
        "sigmoid_xent_s32",
        q,
        np.array([1, 2, 0], np.int32),
        dict(batches=3, outputs=1, input_scale=0.1, input_zero_point=0),
    )
    assert np.isnan(loss) and g[1, 0] == 0 and pred.tolist() == [1, 0, 1]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target_float", [0, 1])
def test_mse_s32_against_tf(seed, target_float):
    rng = np.random.default_rng(1200 + seed)
    b, n = int(rng.integers(1, 3)), int(rng.choice([1, 7, 640]))
    scale, zp = float(np.float32(rng.uniform(0.01, 0.1))), int(rng.integers(-50, 50))
    q = rng.integers(-300, 300, (b, n)).astype(np.int32)
    ts, tz = float(np.float32(rng.uniform(0.01, 0.1))), int(rng.integers(-50, 50))
    if target_float:
        target = rng.normal(0, 3, (b, n)).astype(np.float32)
        real_t = target
    else:
        target = rng.integers(-128, 128, (b, n)).astype(np.int8)
        real_t = (np.float32(ts) * (target.astype(np.float32) - tz)).astype(np.float32)
    params = dict(
        batches=b,
        size=n,
        input_scale=scale,
        input_zero_point=zp,
        target_float=target_float,
        target_scale=ts,
        target_zero_point=tz,
    )
    loss, pred, g = _head("mse_s32", q, target, params)
    x = (np.float32(scale) * (q - zp).astype(np.float32)).astype(np.float32)
    ref_loss, ref_g = _tape(lambda v: tf.reduce_mean(tf.square(v - real_t)), x)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert not pred.any()
    assert_close(g, ref_g)
    d = x.astype(np.float64) - real_t
    assert_fails(g, d / x.size, "missing factor 2")
    if n > 1:
        assert_fails(g, 2 * np.roll(d, 1, axis=1) / x.size, "target shifted by one")


def test_mse_s32_nan_target_trains_nothing():
    q = np.array([[10, 20, 30]], np.int32)
    t = np.array([[0.0, np.nan, 1.0]], np.float32)
    params = dict(
        batches=1,
        size=3,
        input_scale=0.1,
        input_zero_point=0,
        target_float=1,
        target_scale=1.0,
        target_zero_point=0,
    )
    loss, _, g = _head("mse_s32", q, t, params)
    assert np.isnan(loss) and not g.any()
