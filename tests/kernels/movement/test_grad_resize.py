"""RESIZE_NEAREST_NEIGHBOR's input gradient (resize_nearest_neighbor_grad_input) against
TensorFlow's GradientTape on tf.compat.v1.image.resize_nearest_neighbor (the op TFLite's
converter maps to RESIZE_NEAREST_NEIGHBOR, with its align_corners and half_pixel_centers).

Each input pixel's gradient is the sum of the output gradients of the pixels that copy it,
exact in int32 (checked bit for bit against numpy) and requantized to int8 with scale
max|G_x| / 127: test_misc_grads' tolerance. The index maps the lowering computes are held
to the forward kernel itself (it resizes an image of pixel numbers), so the backward routes
exactly where the forward copied; a map one pixel off fails the tolerance.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pytools.model.ir import Tensor
from pytools.model.lowering.training_elementwise import nearest_indices
from tests.kernels.grad_op_support import grad_graph, run_grad
from tests.kernels.support import quant
from tests.kernels.test_misc_grads import assert_close, assert_fails, close, rand_grad, requantize_ref, run

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # after the log level is set

Q = quant(0.05, 3)


def _case(seed: int) -> tuple:
    rng = np.random.default_rng(1700 + seed)
    h, w = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    oh = int(rng.choice([h, 2 * h, 3 * h, max(1, h // 2), int(rng.integers(1, 13))]))
    ow = int(rng.choice([w, 2 * w, max(1, w // 2), int(rng.integers(1, 13))]))
    align = bool(rng.random() < 0.4)
    half = bool(not align and rng.random() < 0.5)
    return rng, (int(rng.integers(1, 3)), h, w, int(rng.integers(1, 5))), (oh, ow), align, half


@pytest.mark.parametrize("seed", range(20))
def test_resize_nearest_neighbor_grad_input(seed: int) -> None:
    rng, (n, h, w, c), (oh, ow), align, half = _case(seed)
    size = Tensor(0, "size", (2,), "int32", None, np.array([oh, ow], np.int32))
    opts = {"align_corners": align, "half_pixel_centers": half}
    g, op = grad_graph(
        "RESIZE_NEAREST_NEIGHBOR",
        [Tensor(0, "x", (n, h, w, c), "int8", Q), size],
        Tensor(0, "y", (n, oh, ow, c), "int8", Q),
        "RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT",
        ["gy", "sy"],
        (n, h, w, c),
        options=opts,
    )
    gy, s_y = rand_grad(rng, (n, oh, ow, c))
    gx, s_x = run_grad(g, op, {3: gy, 4: np.array([s_y], np.float32)})

    rows, cols = nearest_indices(h, oh, align, half), nearest_indices(w, ow, align, half)
    # The maps are where the forward kernel copies from: resize an image of pixel numbers.
    from pytools.model.lowering import lower

    fwd = lower(g, g.ops[0])
    pixels = np.arange(n * h * w * c, dtype=np.int32).reshape(n, h, w, c)
    out = np.zeros((n, oh, ow, c), np.int32)
    run("resize_nearest_neighbor", {**fwd.params, "elem_size": 4}, [pixels, out])
    np.testing.assert_array_equal(out, pixels[:, rows][:, :, cols])

    acc = np.zeros((n, h, w, c), np.int64)
    np.add.at(acc, (slice(None), rows[:, None], cols[None, :]), gy.astype(np.int64))
    np.testing.assert_array_equal(gx, requantize_ref(acc))  # the kernel's arithmetic, exactly

    x = tf.constant(np.zeros((n, h, w, c), np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.compat.v1.image.resize_nearest_neighbor(
            x, (oh, ow), align_corners=align, half_pixel_centers=half
        )
    gy_real = (np.float32(s_y) * gy.astype(np.float32)).astype(np.float32)
    ref = tape.gradient(y, x, output_gradients=tf.constant(gy_real)).numpy()
    ours = s_x * gx.astype(np.float64)
    assert_close(ours, ref)
    if w > 1:  # the columns one pixel off
        off = np.zeros((n, h, w, c), np.float64)
        np.add.at(off, (slice(None), rows[:, None], ((cols + 1) % w)[None, :]), gy_real.astype(np.float64))
        if not close(off, ref):
            assert_fails(ours, off, "columns one pixel off")
