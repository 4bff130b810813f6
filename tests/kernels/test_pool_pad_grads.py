"""Input gradients of MAX_POOL_2D and PAD (max_pool_s8_grad_input, pad_s8_grad_input)
against TensorFlow's GradientTape on the float ops, fed the dequantized int8 inputs.

Max pooling routes each output's gradient to its window's maximum. int8 activations tie
often, and TensorFlow gives a tied window's gradient to its first maximum (row-major);
the inputs here are drawn from a few values so that most windows tie, and a negative
check shows that the last maximum would fail. With non-overlapping windows the result is
exact; with overlapping ones several gradients add up in int32 and are requantized, within
half an int8 quantum. PAD's gradient is a crop: exact.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pytools.model.ir import Tensor
from tests.kernels.test_misc_grads import (
    assert_close,
    assert_fails,
    close,
    lowered_params,
    rand_grad,
    requantize_ref,
    run,
    scalar,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # after the log level is set

SCALE, ZERO = 0.05, 3  # lowered_params' activation quantization


def _pool_out(size: int, f: int, s: int, padding: str) -> int:
    return (size + s - 1) // s if padding == "SAME" else (size + s - f) // s


# (n, h, w, c, fh, fw, sh, sw, padding): the usual 2x2/2, odd sizes with SAME's partial
# windows, overlapping 3x3/1 and 3x3/2 windows, asymmetric filters and strides.
CASES = [
    (1, 8, 8, 3, 2, 2, 2, 2, "VALID"),
    (1, 9, 7, 4, 2, 2, 2, 2, "SAME"),
    (2, 7, 7, 2, 3, 3, 1, 1, "SAME"),
    (1, 9, 9, 3, 3, 3, 2, 2, "VALID"),
    (1, 6, 10, 2, 2, 4, 1, 3, "SAME"),
    (1, 5, 5, 1, 5, 5, 1, 1, "VALID"),
]


def _case(i: int, rng: np.random.Generator) -> tuple:
    if i < len(CASES):
        return CASES[i]
    h, w = int(rng.integers(2, 12)), int(rng.integers(2, 12))
    padding = str(rng.choice(["SAME", "VALID"]))
    fh, fw = int(rng.integers(1, min(h, 4) + 1)), int(rng.integers(1, min(w, 4) + 1))
    return (
        int(rng.integers(1, 3)),
        h,
        w,
        int(rng.integers(1, 5)),
        fh,
        fw,
        int(rng.integers(1, 4)),
        int(rng.integers(1, 4)),
        padding,
    )


def np_max_pool_grad(x: np.ndarray, gy: np.ndarray, p: dict, last: bool = False) -> np.ndarray:
    """int32 sums of G_y at each window's first (or, as a planted bug, last) maximum."""
    acc = np.zeros(x.shape, np.int64)
    for b in range(p["batches"]):
        for oy in range(p["output_h"]):
            y0 = oy * p["stride_h"] - p["pad_h"]
            ys = range(max(0, y0), min(p["input_h"], y0 + p["filter_h"]))
            for ox in range(p["output_w"]):
                x0 = ox * p["stride_w"] - p["pad_w"]
                xs = range(max(0, x0), min(p["input_w"], x0 + p["filter_w"]))
                for c in range(p["channels"]):
                    window = [(x[b, y, xx, c], y, xx) for y in ys for xx in xs]
                    if not window:
                        continue
                    top = max(v for v, _, _ in window)
                    hits = [(y, xx) for v, y, xx in window if v == top]
                    y, xx = hits[-1] if last else hits[0]
                    acc[b, y, xx, c] += gy[b, oy, ox, c]
    return acc


def tf_max_pool_grad(x_real: np.ndarray, gy_real: np.ndarray, p: dict, padding: str) -> np.ndarray:
    x = tf.constant(x_real, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.nn.max_pool2d(x, (p["filter_h"], p["filter_w"]), (p["stride_h"], p["stride_w"]), padding)
    return tape.gradient(y, x, output_gradients=tf.constant(gy_real, tf.float32)).numpy()


@pytest.mark.parametrize("case", range(len(CASES) + 14))
def test_max_pool_grad_input(case: int) -> None:
    rng = np.random.default_rng(900 + case)
    n, h, w, c, fh, fw, sh, sw, padding = _case(case, rng)
    oh, ow = _pool_out(h, fh, sh, padding), _pool_out(w, fw, sw, padding)
    opts = {"padding": padding, "filter_h": fh, "filter_w": fw, "stride_h": sh, "stride_w": sw}
    fwd = lowered_params("MAX_POOL_2D", (n, h, w, c), (n, oh, ow, c), {**opts, "activation": "NONE"})
    params = {k: v for k, v in fwd.items() if k not in ("act_min", "act_max")}
    # Few distinct values: most windows hold a tie.
    x = rng.choice(np.array([-128, -7, 0, 5, 127], np.int8), size=(n, h, w, c))
    gy, s_y = rand_grad(rng, (n, oh, ow, c))

    gx, s_x = np.zeros(x.shape, np.int8), scalar()
    run("max_pool_s8_grad_input", params, [x, gy, scalar(s_y), gx, s_x])

    acc = np_max_pool_grad(x, gy, params)
    np.testing.assert_array_equal(gx, requantize_ref(acc))  # the kernel's arithmetic, exactly
    ours = float(s_x[0]) * gx.astype(np.float64)
    x_real = SCALE * (x.astype(np.float64) - ZERO)
    ref = tf_max_pool_grad(x_real, s_y * gy.astype(np.float64), params, padding)
    # The reference model of the routing is TensorFlow's, to float rounding.
    np.testing.assert_allclose(s_y * acc, ref, rtol=1e-5, atol=1e-7 * s_y)
    assert_close(ours, ref)
    if not (fh > sh or fw > sw):  # no overlap: no requantization error at all
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=0)
    buggy = s_y * np_max_pool_grad(x, gy, params, last=True)
    if not close(buggy, ref, 2 * 0.52 / 127):
        assert_fails(ours, buggy, "the last maximum of a tied window")


def test_max_pool_grad_ties_do_decide() -> None:
    """The negative check above must bite somewhere: on the first case a tie rule matters."""
    rng = np.random.default_rng(900)
    n, h, w, c, fh, fw, sh, sw, _ = CASES[0]
    x = rng.choice(np.array([-128, -7, 0, 5, 127], np.int8), size=(n, h, w, c))
    p = {"batches": n, "input_h": h, "input_w": w, "channels": c, "output_h": 4, "output_w": 4}
    p |= {"filter_h": fh, "filter_w": fw, "stride_h": sh, "stride_w": sw, "pad_h": 0, "pad_w": 0}
    gy = rng.integers(1, 127, (n, 4, 4, c))
    assert not np.array_equal(np_max_pool_grad(x, gy, p), np_max_pool_grad(x, gy, p, last=True))


def _pad_params(x_shape: tuple[int, ...], pads: list[tuple[int, int]]) -> tuple[dict, tuple[int, ...]]:
    out_shape = tuple(d + a + b for d, (a, b) in zip(x_shape, pads, strict=True))
    paddings = Tensor(0, "paddings", (len(x_shape), 2), "int32", None, np.array(pads, np.int32))
    fwd = lowered_params("PAD", x_shape, out_shape, {}, extra=[paddings])
    return {k: v for k, v in fwd.items() if k != "pad_value"}, out_shape


@pytest.mark.parametrize("seed", range(12))
def test_pad_grad_input(seed: int) -> None:
    rng = np.random.default_rng(950 + seed)
    rank = int(rng.integers(2, 5))
    x_shape = tuple(int(d) for d in rng.integers(1, 7, rank))
    pads = [(int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(rank)]
    params, out_shape = _pad_params(x_shape, pads)
    gy, s_y = rand_grad(rng, out_shape)
    gx, s_x = np.zeros(x_shape, np.int8), scalar()
    run("pad_s8_grad_input", params, [gy, scalar(s_y), gx, s_x])

    x = tf.constant(np.zeros(x_shape), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.pad(x, pads)
    ref = tape.gradient(y, x, output_gradients=tf.constant(s_y * gy.astype(np.float64), tf.float32)).numpy()
    assert float(s_x[0]) == np.float32(s_y)
    np.testing.assert_allclose(float(s_x[0]) * gx.astype(np.float64), ref, rtol=1e-6, atol=0)
    # a crop one element off is wrong (where the padding leaves room to be off)
    if pads[-1][0] > 0:
        shifted = tuple(slice(a, a + d) for d, (a, _) in zip(x_shape[:-1], pads[:-1], strict=True))
        off = gy[(*shifted, slice(pads[-1][0] - 1, pads[-1][0] - 1 + x_shape[-1]))]
        assert not np.array_equal(gx, off)
