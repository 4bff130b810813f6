"""Input gradients of CONCATENATION and TRANSPOSE against TensorFlow's GradientTape.

Both move values without computing, so their gradients move the output gradient back: each
CONCATENATION input gets its slice of G_y (the strided_slice kernel), TRANSPOSE's input gets
G_y under the inverse permutation (the transpose kernel), and the scale passes unchanged
(CONCATENATION's int8 inputs share the output's quantization; a slice can only lower
max|G|, so the scale still bounds every value). The result is exact: s_y * G_x equals
TensorFlow's float gradient to float rounding. Negative checks: the neighbouring input's
slice and the forward permutation instead of its inverse differ.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pytools.model.ir import Tensor
from tests.kernels.grad_op_support import grad_graph, run_grad
from tests.kernels.support import quant
from tests.kernels.test_misc_grads import rand_grad

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # after the log level is set

Q = quant(0.05, 3)


@pytest.mark.parametrize("seed", range(16))
def test_concatenation_grad_input(seed: int) -> None:
    rng = np.random.default_rng(1400 + seed)
    rank = int(rng.integers(1, 6))
    base = [int(d) for d in rng.integers(1, 6, rank)]
    axis = int(rng.integers(0, rank))
    n = int(rng.integers(1, 5))
    shapes = []
    for _ in range(n):
        s = list(base)
        s[axis] = int(rng.integers(1, 5))
        shapes.append(tuple(s))
    out_shape = list(base)
    out_shape[axis] = sum(s[axis] for s in shapes)
    gy, s_y = rand_grad(rng, tuple(out_shape))
    xs = [tf.constant(np.zeros(s, np.float32)) for s in shapes]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        y = tf.concat(xs, axis)
    refs = tape.gradient(y, xs, output_gradients=tf.constant(np.float32(s_y) * gy.astype(np.float32)))
    neg_axis = axis - rank if rng.random() < 0.5 else axis  # TFLite allows a negative axis
    inputs = [Tensor(0, f"x{k}", s, "int8", Q) for k, s in enumerate(shapes)]
    for k, s in enumerate(shapes):
        g, op = grad_graph(
            "CONCATENATION",
            [Tensor(0, t.name, t.shape, "int8", Q) for t in inputs],
            Tensor(0, "y", tuple(out_shape), "int8", Q),
            "CONCATENATION_GRAD_INPUT",
            ["gy"],
            s,
            options={"axis": neg_axis, "activation": "NONE"},
            grad_options={"input": k},
            scale_out=False,
        )
        gx, _ = run_grad(g, op, {n + 1: gy})
        np.testing.assert_allclose(
            np.float32(s_y) * gx.astype(np.float32), refs[k].numpy(), rtol=1e-6, atol=0
        )
        if n > 1:  # the neighbour's slice (where one of the same shape exists) is not this one
            j = (k + 1) % n
            if shapes[j] == s:
                assert not np.allclose(np.float32(s_y) * gx.astype(np.float32), refs[j].numpy())


@pytest.mark.parametrize("seed", range(16))
def test_transpose_grad_input(seed: int) -> None:
    rng = np.random.default_rng(1500 + seed)
    rank = int(rng.integers(2, 7))
    shape = tuple(int(d) for d in rng.integers(1, 5, rank))
    perm = [int(p) for p in rng.permutation(rank)]
    out_shape = tuple(shape[p] for p in perm)
    gy, s_y = rand_grad(rng, out_shape)
    x = tf.constant(np.zeros(shape, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.transpose(x, perm)
    ref = tape.gradient(y, x, output_gradients=tf.constant(np.float32(s_y) * gy.astype(np.float32))).numpy()
    perm_t = Tensor(0, "perm", (rank,), "int32", None, np.array(perm, np.int32))
    g, op = grad_graph(
        "TRANSPOSE",
        [Tensor(0, "x", shape, "int8", Q), perm_t],
        Tensor(0, "y", out_shape, "int8", Q),
        "TRANSPOSE_GRAD_INPUT",
        ["gy"],
        shape,
        grad_options={"input": 0},
        scale_out=False,
    )
    gx, _ = run_grad(g, op, {3: gy})
    np.testing.assert_allclose(np.float32(s_y) * gx.astype(np.float32), ref, rtol=1e-6, atol=0)
    if perm != list(np.argsort(perm)):  # a permutation that is not its own inverse
        wrong = np.transpose(gy, perm) if tuple(np.transpose(gy, perm).shape) == shape else None
        if wrong is not None:
            assert not np.array_equal(gx, wrong)
