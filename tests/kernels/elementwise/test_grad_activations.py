"""Input gradients of the int8 functions of one variable (LOGISTIC, TANH, HARD_SWISH, RELU,
RELU6, RELU_N1_TO_1, LEAKY_RELU: unary_s8_grad_input with the derivative table the
lowering builds) against TensorFlow's GradientTape on the float op, fed the dequantized
int8 input.

The kernel multiplies G_y by the table entry of each input byte, exactly in int32 (checked
bit for bit against numpy), then requantizes to int8 with scale max|G_x| / 127. The table
holds the float derivative to 23 bits (a relative error of 6e-8 of its largest entry), so
the error is the int8 requantization's: the tolerance is test_misc_grads' (max error
<= 0.52 / 127 of max|ref| and its cosine floor). The quantizations are drawn so that the
kinks (0 for the RELUs, 6 for RELU6, +-1 for RELU_N1_TO_1, -3 and 3 for hard swish) fall on
int8 values, where TensorFlow's choice of side decides; a negative check shows that the
other side at RELU's kink fails, and so would a derivative taken at the output instead of
the input (the RELU6 gradient read as "y < 6").
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pytools.model.ir import Tensor
from tests.kernels.grad_op_support import grad_graph, run_grad
from tests.kernels.support import quant
from tests.kernels.test_misc_grads import assert_close, assert_fails, close, rand_grad, requantize_ref

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # after the log level is set

KINDS = ("LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU")
# The output quantization the forward lowering would need (the gradient does not read it).
OUT_Q = {"LOGISTIC": (1 / 256, -128), "TANH": (1 / 128, 0)}
# Real values the quantization puts on the int8 grid: the function's kinks.
KINKS = {"HARD_SWISH": 3.0, "RELU6": 6.0, "RELU_N1_TO_1": 1.0}


def _tf(kind: str, x: tf.Tensor, alpha: float) -> tf.Tensor:
    if kind == "LOGISTIC":
        return tf.sigmoid(x)
    if kind == "TANH":
        return tf.tanh(x)
    if kind == "HARD_SWISH":  # Keras' hard_swish, which the converter turns into HARD_SWISH
        return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)
    if kind == "RELU":
        return tf.nn.relu(x)
    if kind == "RELU6":
        return tf.nn.relu6(x)
    if kind == "RELU_N1_TO_1":  # the converter's pattern for it: a clip to [-1, 1]
        return tf.minimum(tf.maximum(x, -1.0), 1.0)
    return tf.nn.leaky_relu(x, alpha)


def _quantization(kind: str, rng: np.random.Generator) -> tuple[float, int]:
    if kind in KINKS and rng.random() < 0.7:
        steps = int(rng.integers(10, 60))  # the kink is this many steps from the zero point
        scale = float(np.float32(KINKS[kind] / steps))
        zp = int(rng.integers(-128 + steps, 128 - steps))
        return scale, zp
    return float(np.float32(10 ** rng.uniform(-2.3, -0.7))), int(rng.integers(-100, 100))


def _run(kind: str, shape: tuple[int, ...], q: tuple[float, int], x_q, gy, s_y, alpha=0.2):
    x = Tensor(0, "x", shape, "int8", quant(*q))
    y = Tensor(0, "y", shape, "int8", quant(*OUT_Q.get(kind, (0.05, 0))))
    opts = {"alpha": alpha} if kind == "LEAKY_RELU" else {}
    g, op = grad_graph(kind, [x], y, f"{kind}_GRAD_INPUT", ["gy", "sy", "in0"], shape, options=opts)
    return run_grad(g, op, {0: x_q, 2: gy, 3: np.array([s_y], np.float32)}), g, op


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(6))
def test_unary_grad_input(kind: str, seed: int) -> None:
    rng = np.random.default_rng(1300 + 17 * seed + KINDS.index(kind))
    shape = tuple(int(d) for d in rng.integers(1, 9, int(rng.integers(1, 5))))
    q = _quantization(kind, rng)
    alpha = float(np.float32(rng.uniform(0.01, 0.5)))
    x_q = rng.integers(-128, 128, shape).astype(np.int8)
    x_q.flat[0] = np.int8(q[1])  # real 0 is there
    if kind in KINKS:
        x_q.flat[-1] = np.int8(np.clip(q[1] + round(KINKS[kind] / q[0]), -128, 127))
    gy, s_y = rand_grad(rng, shape)
    (gx, s_x), g, op = _run(kind, shape, q, x_q, gy, s_y, alpha)

    from pytools.model.lowering import lower

    call = lower(g, op)
    table = next(o.data for o in call.operands if o.data is not None)
    acc = gy.astype(np.int64) * table[x_q.astype(np.uint8)].astype(np.int64)
    np.testing.assert_array_equal(gx, requantize_ref(acc))  # the kernel's arithmetic, exactly

    x_real = (np.float32(q[0]) * (x_q.astype(np.float32) - np.float32(q[1]))).astype(np.float32)
    tx = tf.constant(x_real)
    with tf.GradientTape() as tape:
        tape.watch(tx)
        y = _tf(kind, tx, alpha)
    gy_real = (np.float32(s_y) * gy.astype(np.float32)).astype(np.float32)
    ref = tape.gradient(y, tx, output_gradients=tf.constant(gy_real)).numpy()
    ours = s_x * gx.astype(np.float64)
    assert_close(ours, ref)

    # The other side of a kink (where the quantization puts one on the grid) must fail.
    if kind in ("RELU", "RELU6", "LEAKY_RELU"):
        at_zero = x_real == 0
        wrong = ref.astype(np.float64).copy()
        wrong[at_zero] = gy_real[at_zero] * (1.0 if kind != "LEAKY_RELU" else alpha + 1.0)
        if not close(wrong, ref):
            assert_fails(ours, wrong, "the derivative's other side at 0")


def test_relu_kink_decides() -> None:
    """RELU at 0: TensorFlow gives 0, and a kernel giving 1 there would be caught."""
    shape = (16,)
    x_q = np.full(shape, 5, np.int8)  # all exactly at real 0 (zero point 5)
    gy = np.full(shape, 100, np.int8)
    (gx, s_x), _, _ = _run("RELU", shape, (0.1, 5), x_q, gy, 0.01)
    assert not gx.any()
    x_q[::2] = 6  # real 0.1 > 0: passes
    (gx, s_x), _, _ = _run("RELU", shape, (0.1, 5), x_q, gy, 0.01)
    np.testing.assert_array_equal(gx, np.where(x_q == 6, 127, 0))
    assert s_x == pytest.approx(100 * 0.01 / 127, rel=1e-6)


def test_saturated_logistic_keeps_small_derivatives() -> None:
    """A LOGISTIC whose inputs all sit deep in saturation (|x| ~ 9..12) still gets the
    derivative's shape right: the table's 23 bits resolve 1e-5 of its peak."""
    rng = np.random.default_rng(5)
    shape = (64,)
    q = (0.1, 0)
    x_q = rng.integers(90, 121, shape).astype(np.int8) * rng.choice([-1, 1], shape).astype(np.int8)
    gy, s_y = rand_grad(rng, shape)
    (gx, s_x), _, _ = _run("LOGISTIC", shape, q, x_q, gy, s_y)
    x = 0.1 * x_q.astype(np.float64)
    sig = 1 / (1 + np.exp(-x))
    ref = s_y * gy * sig * (1 - sig)
    assert_close(s_x * gx.astype(np.float64), ref)
