"""Input gradients of ADD with a broadcast input, SUB, MAXIMUM and MINIMUM
(binary_s8_grad_input, lowered from the forward's broadcast geometry) against TensorFlow's
GradientTape on the float op of the dequantized int8 inputs.

Each derivative is 0 or +-1: G_y summed over the dimensions the input is broadcast along,
negated for SUB's second input, and for MAXIMUM / MINIMUM given to the input that won, with
TensorFlow's tie rule (MaximumGrad: input 1 where a >= b; MinimumGrad: input 1 where a <= b;
input 2 the rest). The inputs are drawn from a few values so that ties are common, and a
negative check shows the other tie rule fails. The int32 sums are exact (checked bit for bit
against numpy); the error is the int8 requantization's: test_misc_grads' tolerance.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pytools.model.ir import Tensor
from tests.kernels.elementwise.test_grad_mul import CASES, _case, _sum_to
from tests.kernels.grad_op_support import grad_graph, run_grad
from tests.kernels.support import quant
from tests.kernels.test_misc_grads import assert_close, assert_fails, close, rand_grad, requantize_ref

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # after the log level is set

KINDS = ("ADD", "SUB", "MAXIMUM", "MINIMUM")
TF_OPS = {"ADD": tf.add, "SUB": tf.subtract, "MAXIMUM": tf.maximum, "MINIMUM": tf.minimum}


def _selected(kind: str, k: int, a: np.ndarray, b: np.ndarray, flip_ties: bool = False) -> np.ndarray:
    """Where input k gets the gradient (as the output's shape)."""
    if kind in ("ADD", "SUB"):
        return np.ones(np.broadcast_shapes(a.shape, b.shape), bool)
    first = a >= b if kind == "MAXIMUM" else a <= b
    if flip_ties:
        first = a > b if kind == "MAXIMUM" else a < b
    return first if k == 0 else ~first


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", range(len(CASES) + 5))
def test_binary_grad_input(kind: str, case: int) -> None:
    rng = np.random.default_rng(1600 + 31 * case + KINDS.index(kind))
    sa, sb = _case(case, rng)
    out_shape = tuple(np.broadcast_shapes(sa, sb))
    if kind in ("MAXIMUM", "MINIMUM"):  # one quantization for all three (the forward needs it)
        qa = qb = qo = (0.05, int(rng.integers(-20, 20)))
        values = np.array([-100, -3, 0, 4, 90], np.int8)  # few values: many ties
        a_q, b_q = rng.choice(values, size=sa), rng.choice(values, size=sb)
    else:
        qa = (float(np.float32(10 ** rng.uniform(-2, -1))), int(rng.integers(-50, 50)))
        qb = (float(np.float32(10 ** rng.uniform(-2, -1))), int(rng.integers(-50, 50)))
        qo = (0.2, 0)
        a_q = rng.integers(-128, 128, sa).astype(np.int8)
        b_q = rng.integers(-128, 128, sb).astype(np.int8)
    gy, s_y = rand_grad(rng, out_shape)
    a_real = (np.float32(qa[0]) * (a_q.astype(np.float32) - np.float32(qa[1]))).astype(np.float32)
    b_real = (np.float32(qb[0]) * (b_q.astype(np.float32) - np.float32(qb[1]))).astype(np.float32)
    ta, tb = tf.constant(a_real), tf.constant(b_real)
    gy_real = (np.float32(s_y) * gy.astype(np.float32)).astype(np.float32)
    with tf.GradientTape() as tape:
        tape.watch([ta, tb])
        y = TF_OPS[kind](ta, tb)
    refs = [r.numpy() for r in tape.gradient(y, [ta, tb], output_gradients=tf.constant(gy_real))]

    for k, shape in enumerate((sa, sb)):
        if kind == "ADD" and shape == out_shape:
            continue  # autodiff passes G_y itself there (no kernel)
        g, op = grad_graph(
            kind,
            [Tensor(0, "a", sa, "int8", quant(*qa)), Tensor(0, "b", sb, "int8", quant(*qb))],
            Tensor(0, "y", out_shape, "int8", quant(*qo)),
            f"{kind}_GRAD_INPUT",
            ["gy", "sy", f"in{k}", f"in{1 - k}"] if kind in ("MAXIMUM", "MINIMUM") else ["gy", "sy"],
            shape,
            options={"activation": "NONE"},
            grad_options={"input": k},
        )
        gx, s_x = run_grad(g, op, {0: a_q, 1: b_q, 3: gy, 4: np.array([s_y], np.float32)})
        sign = -1 if kind == "SUB" and k == 1 else 1
        sel = _selected(kind, k, a_q, b_q)
        acc = sign * _sum_to(np.where(sel, gy.astype(np.int64), 0), shape)
        np.testing.assert_array_equal(gx, requantize_ref(acc))  # the kernel's arithmetic, exactly
        ours = s_x * gx.astype(np.float64)
        assert_close(ours, refs[k])
        if kind in ("MAXIMUM", "MINIMUM"):
            other_rule = s_y * sign * _sum_to(np.where(_selected(kind, k, a_q, b_q, True), gy, 0), shape)
            if not close(other_rule, refs[k]):
                assert_fails(ours, other_rule, "the other tie rule")
        if kind == "SUB" and k == 1:
            assert_fails(ours, -refs[k], "SUB's second input not negated")
