"""Input gradients of STRIDED_SLICE, SLICE, DEPTH_TO_SPACE and SPACE_TO_DEPTH against
TensorFlow's GradientTape.

All four move values without computing, so their gradients move the output gradient back
with its scale: a slice's G_x is G_y scattered into zeros at the positions the forward took
(strided_slice_grad_input; any steps, negative ones, masks, shrunk axes), DEPTH_TO_SPACE's is
SPACE_TO_DEPTH of G_y and vice versa (the forward kernels on the gradient). The result is
exact: s_y * G_x equals TensorFlow's float gradient to float rounding. Randomized shapes and
slices; the lowering is the real one (slicing.py resolves the forward's geometry). Where TF
and TFLite disagree (begin_mask on a shrunk axis) the gradient is held to the forward kernel
instead, as its adjoint.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pytools.model.ir import ModelError, Tensor
from tests.kernels.grad_op_support import grad_graph, run_grad
from tests.kernels.support import quant
from tests.kernels.test_misc_grads import rand_grad

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # after the log level is set

Q = quant(0.05, 3)


def _tape(fn, shape: tuple[int, ...], gy: np.ndarray, s_y: float) -> np.ndarray:
    x = tf.constant(np.zeros(shape, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    assert tuple(y.shape) == gy.shape
    g = tf.constant(np.float32(s_y) * gy.astype(np.float32))
    return tape.gradient(y, x, output_gradients=g).numpy()


def _ints(name: str, values: list[int]) -> Tensor:
    return Tensor(0, name, (len(values),), "int32", None, np.array(values, np.int32))


def _check(kind: str, consts: list[Tensor], shape, out_shape, gy, s_y, ref, options=None) -> np.ndarray:
    g, op = grad_graph(
        kind,
        [Tensor(0, "x", shape, "int8", Q), *consts],
        Tensor(0, "y", out_shape, "int8", Q),
        f"{kind}_GRAD_INPUT",
        ["gy"],
        shape,
        options=options,
        scale_out=False,
    )
    gx, _ = run_grad(g, op, {len(consts) + 2: gy})
    np.testing.assert_allclose(np.float32(s_y) * gx.astype(np.float32), ref, rtol=1e-6, atol=0)
    return gx


@pytest.mark.parametrize("seed", range(24))
def test_strided_slice_grad_input(seed: int) -> None:
    rng = np.random.default_rng(1700 + seed)
    while True:  # a non-empty slice (TFLite's int8 kernels take no empty tensors)
        rank = int(rng.integers(1, 6))
        shape = tuple(int(d) for d in rng.integers(1, 7, rank))
        n = int(rng.integers(1, rank + 1))  # TFLite: dimensions past n are taken whole
        strides = [int(rng.choice([-3, -2, -1, 1, 1, 2, 3])) for _ in range(n)]
        begin = [int(rng.integers(-shape[k], shape[k])) for k in range(n)]
        end = [int(rng.integers(-shape[k] - 1, shape[k] + 2)) for k in range(n)]
        bm, em = int(rng.integers(0, 2**n)), int(rng.integers(0, 2**n))
        sm = int(rng.integers(0, 2**n)) if rng.random() < 0.3 else 0
        strides = [1 if sm >> k & 1 else st for k, st in enumerate(strides)]  # TF: shrink takes step 1
        # On a shrunk axis TF ignores begin_mask, TFLite's reference kernel (the forward's
        # oracle) applies it: [2, 1]:[3, 4] with begin_mask 1, shrink 1 on a 4x5 arange gives
        # row 2 in TF, row 0 in TFLite. The gradient follows the forward; TF cannot judge that.
        bm &= ~sm
        y = tf.strided_slice(
            np.zeros(shape, np.float32), begin, end, strides, begin_mask=bm, end_mask=em, shrink_axis_mask=sm
        )
        if y.shape.num_elements():
            break
    out_shape = tuple(y.shape)
    gy, s_y = rand_grad(rng, out_shape)
    ref = _tape(
        lambda x: tf.strided_slice(x, begin, end, strides, begin_mask=bm, end_mask=em, shrink_axis_mask=sm),
        shape,
        gy,
        s_y,
    )
    consts = [_ints("begin", begin), _ints("end", end), _ints("strides", strides)]
    options = {"begin_mask": bm, "end_mask": em, "shrink_axis_mask": sm}
    gx = _check("STRIDED_SLICE", consts, shape, out_shape, gy, s_y, ref, options)
    # Every value of G_y lands once and nothing else is written: a kernel that left stale
    # bytes or dropped a row is caught here even where G_y holds zeros.
    assert np.count_nonzero(gx) == np.count_nonzero(gy)


@pytest.mark.parametrize("seed", range(12))
def test_slice_grad_input(seed: int) -> None:
    rng = np.random.default_rng(1800 + seed)
    rank = int(rng.integers(1, 6))
    shape = tuple(int(d) for d in rng.integers(1, 7, rank))
    begin = [int(rng.integers(0, d)) for d in shape]
    size = [
        -1 if rng.random() < 0.25 else int(rng.integers(1, d - b + 1))
        for d, b in zip(shape, begin, strict=True)
    ]
    out_shape = tuple(d - b if s == -1 else s for d, b, s in zip(shape, begin, size, strict=True))
    gy, s_y = rand_grad(rng, out_shape)
    ref = _tape(lambda x: tf.slice(x, begin, size), shape, gy, s_y)
    gx = _check("SLICE", [_ints("begin", begin), _ints("size", size)], shape, out_shape, gy, s_y, ref)
    assert np.count_nonzero(gx) == np.count_nonzero(gy)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("kind", ["DEPTH_TO_SPACE", "SPACE_TO_DEPTH"])
def test_block_rearrangement_grad_input(kind: str, seed: int) -> None:
    rng = np.random.default_rng((1900 if kind == "DEPTH_TO_SPACE" else 2000) + seed)
    bs = int(rng.integers(2, 4))  # TensorFlow's minimum is 2
    b, h, w, c = (int(d) for d in rng.integers(1, 4, 4))
    if kind == "DEPTH_TO_SPACE":
        shape, out_shape = (b, h, w, c * bs * bs), (b, h * bs, w * bs, c)
        fn = lambda x: tf.nn.depth_to_space(x, bs)  # noqa: E731
    else:
        shape, out_shape = (b, h * bs, w * bs, c), (b, h, w, c * bs * bs)
        fn = lambda x: tf.nn.space_to_depth(x, bs)  # noqa: E731
    gy, s_y = rand_grad(rng, out_shape)
    ref = _tape(fn, shape, gy, s_y)
    gx = _check(kind, [], shape, out_shape, gy, s_y, ref, {"block_size": bs})
    if w > 1:  # the same bytes in the forward's order (a plain reshape; equal where w is 1) differ
        assert not np.array_equal(gx, gy.reshape(shape))


def test_a_slice_that_rescales_is_refused() -> None:
    """The gradient keeps G_y's scale only if input and output mean the same reals."""
    shape = (2, 4)
    g, op = grad_graph(
        "SLICE",
        [Tensor(0, "x", shape, "int8", Q), _ints("begin", [0, 1]), _ints("size", [2, 2])],
        Tensor(0, "y", (2, 2), "int8", quant(0.1, 3)),
        "SLICE_GRAD_INPUT",
        ["gy"],
        shape,
        scale_out=False,
    )
    with pytest.raises(ModelError, match="must share quantization"):
        run_grad(g, op, {4: np.ones((2, 2), np.int8)})


@pytest.mark.parametrize("seed", range(12))
def test_strided_slice_grad_is_the_forwards_adjoint(seed: int) -> None:
    """Where TF cannot judge (begin_mask on a shrunk axis, see above), the gradient is held to
    the forward kernel itself: sum(y * G_y) == sum(x * G_x) for every x (a linear map's
    transpose), with x random, y = the forward kernel's slice of x (bit-exact with TFLite's)."""
    from pytools.model.kernels import run_kernel
    from pytools.model.lowering import lower
    from pytools.model.lowering.slicing import strided_axis

    rng = np.random.default_rng(2100 + seed)
    rank = int(rng.integers(1, 6))
    shape = tuple(int(d) for d in rng.integers(2, 6, rank))
    n = rank
    sm = int(rng.integers(1, 2**n))
    bm = int(rng.integers(0, 2**n)) | sm  # begin_mask set on every shrunk axis
    strides = [1 if sm >> k & 1 else int(rng.choice([-2, -1, 1, 2])) for k in range(n)]
    begin = [int(rng.integers(-shape[k], shape[k])) for k in range(n)]
    end = [int(rng.integers(-shape[k], shape[k] + 1)) for k in range(n)]
    em = (2**n - 1) & ~sm  # every other axis to its end: never empty
    axes = [
        strided_axis(
            d, begin[k], end[k], strides[k], (bool(bm >> k & 1), bool(em >> k & 1), bool(sm >> k & 1))
        )
        for k, d in enumerate(shape)
    ]
    out_shape = tuple(c for k, (_, c) in enumerate(axes) if not sm >> k & 1)
    consts = [_ints("begin", begin), _ints("end", end), _ints("strides", strides)]
    options = {"begin_mask": bm, "end_mask": em, "shrink_axis_mask": sm}
    g, op = grad_graph(
        "STRIDED_SLICE",
        [Tensor(0, "x", shape, "int8", Q), *consts],
        Tensor(0, "y", out_shape, "int8", Q),
        "STRIDED_SLICE_GRAD_INPUT",
        ["gy"],
        shape,
        options=options,
        scale_out=False,
    )
    x = rng.integers(-128, 128, shape).astype(np.int8)
    y = np.zeros(out_shape, np.int8)
    run_kernel(lower(g, g.ops[0]), [x, y])
    gy, _ = rand_grad(rng, out_shape)
    gx, _ = run_grad(g, op, {5: gy})
    lhs = int(np.sum(y.astype(np.int64) * gy.astype(np.int64)))
    rhs = int(np.sum(x.astype(np.int64) * gx.astype(np.int64)))
    assert lhs == rhs
    assert np.count_nonzero(gx) == np.count_nonzero(gy)
