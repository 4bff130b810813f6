"""MUL's input gradients (mul_s8_grad_input, lowered from MUL's broadcast geometry) against
TensorFlow's GradientTape on the float product of the dequantized int8 inputs.

y = a * b, so G_a = G_y * b and G_b = G_y * a, summed over the dimensions an input is
broadcast along (a squeeze-excite scale [1, 1, 1, C] against [1, H, W, C] sums over the
image). The kernel's int32 sums are exact (checked bit for bit against numpy), so the only
error is the int8 requantization of G_x with scale max|G_x| / 127: the tolerance is
test_misc_grads' (max error <= 0.52 / 127 of max|ref|, and its cosine floor). Negative
checks: the other input's zero point forgotten, and a broadcast input given only the first
product instead of the sum, each fail that tolerance.
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

# (shape a, shape b): squeeze-excite both ways round, equal shapes, a scalar, broadcasting
# on both sides at once, rank 2 and 3.
CASES = [
    ((1, 6, 5, 8), (1, 1, 1, 8)),
    ((1, 1, 1, 4), (1, 7, 7, 4)),
    ((2, 3, 4, 5), (2, 3, 4, 5)),
    ((1, 5, 5, 3), (1,)),
    ((1, 4, 1, 6), (1, 1, 5, 6)),
    ((3, 10), (10,)),
    ((4, 1, 6), (4, 5, 1)),
]


def _case(i: int, rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if i < len(CASES):
        return CASES[i]
    rank = int(rng.integers(1, 5))
    out = tuple(int(d) for d in rng.integers(1, 7, rank))
    a = tuple(d if rng.random() < 0.6 else 1 for d in out)
    b = tuple(d if rng.random() < 0.6 else 1 for d in out)
    b = b[int(rng.integers(0, rank)) :] or (1,)  # b may have lower rank (aligned on the right)
    return a, b


def _tf_grads(a: np.ndarray, b: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ta, tb = tf.constant(a, tf.float32), tf.constant(b, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([ta, tb])
        y = ta * tb
    ga, gb = tape.gradient(y, [ta, tb], output_gradients=tf.constant(gy, tf.float32))
    return ga.numpy(), gb.numpy()


def _sum_to(v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """v summed over the dimensions broadcast from shape (numpy's rules)."""
    lead = v.ndim - len(shape)
    v = v.sum(axis=tuple(range(lead))) if lead else v
    axes = tuple(k for k, d in enumerate(shape) if d == 1 and v.shape[k] != 1)
    return v.sum(axis=axes, keepdims=True).reshape(shape)


@pytest.mark.parametrize("case", range(len(CASES) + 13))
def test_mul_grad_input(case: int) -> None:
    rng = np.random.default_rng(1200 + case)
    sa, sb = _case(case, rng)
    out_shape = np.broadcast_shapes(sa, sb)
    qa = (float(np.float32(10 ** rng.uniform(-2.5, -0.5))), int(rng.integers(-128, 128)))
    qb = (float(np.float32(10 ** rng.uniform(-2.5, -0.5))), int(rng.integers(-128, 128)))
    a_q = rng.integers(-128, 128, sa).astype(np.int8)
    b_q = rng.integers(-128, 128, sb).astype(np.int8)
    gy, s_y = rand_grad(rng, out_shape)
    a_real = (np.float32(qa[0]) * (a_q.astype(np.float32) - np.float32(qa[1]))).astype(np.float32)
    b_real = (np.float32(qb[0]) * (b_q.astype(np.float32) - np.float32(qb[1]))).astype(np.float32)
    ref_a, ref_b = _tf_grads(a_real, b_real, (s_y * gy.astype(np.float64)).astype(np.float32))

    for k, (shape, ref) in enumerate(((sa, ref_a), (sb, ref_b))):
        g, op = grad_graph(
            "MUL",
            [
                Tensor(0, "a", sa, "int8", quant(*qa)),
                Tensor(0, "b", sb, "int8", quant(*qb)),
            ],
            Tensor(0, "y", tuple(out_shape), "int8", quant(0.05, 0)),
            "MUL_GRAD_INPUT",
            ["gy", "sy", f"in{1 - k}"],
            shape,
            options={"activation": "NONE"},
            grad_options={"input": k},
        )
        values = {0: a_q, 1: b_q, 3: gy, 4: np.array([s_y], np.float32)}
        gx, s_x = run_grad(g, op, values)

        other_q, other_zp, other_s = (b_q, qb[1], qb[0]) if k == 0 else (a_q, qa[1], qa[0])
        acc = _sum_to(gy.astype(np.int64) * (other_q.astype(np.int64) - other_zp), shape)
        np.testing.assert_array_equal(gx, requantize_ref(acc))  # the kernel's arithmetic, exactly
        m = int(np.max(np.abs(acc), initial=0))
        assert s_x == pytest.approx(m * np.float32(s_y * np.float32(other_s)) / 127, rel=1e-6)
        ours = s_x * gx.astype(np.float64)
        assert_close(ours, ref)
        # Plausible bugs must fail the same tolerance.
        scale = s_y * other_s
        no_zp = scale * _sum_to(gy.astype(np.float64) * other_q, shape)
        if not close(no_zp, ref):
            assert_fails(ours, no_zp, "the other input's zero point forgotten")
        if shape != tuple(out_shape):
            first = scale * (gy.astype(np.float64) * (other_q.astype(np.float64) - other_zp))
            first = first[tuple(slice(0, d) for d in (1,) * (first.ndim - len(shape)) + shape)].reshape(shape)
            if not close(first, ref):
                assert_fails(ours, first, "a broadcast input not summed")


def test_the_negative_checks_bite() -> None:
    """On the squeeze-excite case both planted bugs are far outside the tolerance."""
    rng = np.random.default_rng(1200)
    sa, sb = CASES[0]
    b_q = rng.integers(-128, 128, sb).astype(np.int64)
    gy = rng.integers(-127, 128, np.broadcast_shapes(sa, sb)).astype(np.int64)
    right = _sum_to(gy * (b_q - 40), sa)
    assert not close(_sum_to(gy * b_q, sa).astype(float), right.astype(float))
    grad_b = _sum_to(gy * 3, sb).astype(float)
    assert not close((gy[:, :1, :1, :] * 3).reshape(sb).astype(float), grad_b)


def test_a_broadcast_too_wide_for_int32_is_refused() -> None:
    g, op = grad_graph(
        "MUL",
        [
            Tensor(0, "a", (1, 1, 1, 1), "int8", quant(0.1, 0)),
            Tensor(0, "b", (1, 300, 300, 1), "int8", quant(0.1, 0)),
        ],
        Tensor(0, "y", (1, 300, 300, 1), "int8", quant(0.1, 0)),
        "MUL_GRAD_INPUT",
        ["gy", "sy", "in1"],
        (1, 1, 1, 1),
        options={"activation": "NONE"},
        grad_options={"input": 0},
    )
    from pytools.model.ir import ModelError
    from pytools.model.lowering import lower

    with pytest.raises(ModelError, match="int32 accumulator holds at most"):
        lower(g, op)
