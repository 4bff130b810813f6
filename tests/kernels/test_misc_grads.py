"""The small training kernels (clamp masks, gradient sums, pooling/MEAN input gradients and
the softmax cross-entropy loss head) against TensorFlow's float gradients.

A gradient is int8 values g and a float32 scale s (firmware/kernels/grad.h); a kernel's
result s * g is compared with tf.GradientTape on the float op, fed the dequantized inputs.
The int8 requantization with scale max|G| / 127 bounds the error by half a quantum, so the
checks are:
  max|ours - ref| <= MAX_REL * max|ref|    with MAX_REL = 0.52 / 127 (half a quantum plus
                                          slack for float rounding): the sharp criterion;
  cosine(ours, ref) >= 1 - 4 * E, where E is the 1 - cosine that rounding noise of
                       variance quantum^2 / 12 per element gives (min_cos): a floor that
                       follows the vector, about 0.9999 for pooling gradients, 0.996 for a
                       1000-class softmax gradient dominated by one entry.
Each family also has negative checks: a plausible bug (a wrong divisor, a shifted or
transposed window, a missing mask, a wrong label, a missing 1/batches) applied to the
reference must fail the same tolerance, so the tolerance is tight enough to catch it.
Masks and grad_apply_mask are exact, checked bit for bit against numpy; MEAN's gradient is
exact up to float rounding (1e-6); the loss head is also checked against float64, which is
sharper than TF's float32 for confident predictions (see check_against_tf).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pytools.model.ir import Graph, Op, Tensor
from pytools.model.kernels import KernelCall, Operand, run_kernel
from pytools.model.lowering import lower
from tests.kernels.support import quant

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # after the log level is set

MAX_REL = 0.52 / 127  # half an int8 quantum of max|G|, plus float slack


# ---- helpers ----------------------------------------------------------------------------


def run(kernel: str, params: dict, arrays: list[np.ndarray]) -> None:
    """Runs a kernel on arrays given in operand order (outputs are written in place)."""
    call = KernelCall(kernel, params, [Operand(data=a) for a in arrays])
    run_kernel(call, arrays)


def scalar(v: float = 0.0) -> np.ndarray:
    return np.array([v], dtype=np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else float(np.array_equal(a, b))


def errors(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max|ours - ref| / max|ref|, cosine)."""
    ref = np.asarray(ref, np.float64)
    err = float(np.max(np.abs(np.asarray(ours, np.float64) - ref), initial=0.0))
    top = float(np.max(np.abs(ref), initial=0.0))
    return (err / top if top > 0 else err), cosine(ours, ref)


def min_cos(ref: np.ndarray) -> float:
    """The cosine floor for an int8 requantization of ref: rounding to a quantum
    q = max|ref| / 127 adds noise of variance q^2 / 12 per element, so 1 - cos is about
    n q^2 / (24 |ref|^2); the floor allows 4 times that."""
    ref = np.asarray(ref, np.float64).ravel()
    top, norm2 = np.max(np.abs(ref), initial=0.0), float(ref @ ref)
    if norm2 == 0:
        return 1.0
    return 1.0 - 4.0 * ref.size * (top / 127) ** 2 / (24.0 * norm2)


def close(
    ours: np.ndarray, ref: np.ndarray, max_rel: float = MAX_REL, cos_floor: float | None = None
) -> bool:
    rel, cos = errors(ours, ref)
    return rel <= max_rel and cos >= (min_cos(ref) if cos_floor is None else cos_floor)


def assert_close(
    ours: np.ndarray, ref: np.ndarray, max_rel: float = MAX_REL, cos_floor: float | None = None
) -> None:
    rel, cos = errors(ours, ref)
    floor = min_cos(ref) if cos_floor is None else cos_floor
    assert rel <= max_rel and cos >= floor, (
        f"max rel error {rel:.3g} (<= {max_rel:.3g}), cos {cos:.6f} (>= {floor:.6f})"
    )


def assert_fails(ours: np.ndarray, buggy: np.ndarray, what: str, max_rel: float = MAX_REL) -> None:
    """A negative check: the reference with a plausible bug must be outside the tolerance."""
    assert not close(ours, buggy, max_rel), f"tolerance misses '{what}': rel, cos = {errors(ours, buggy)}"


def rand_grad(rng: np.random.Generator, shape) -> tuple[np.ndarray, float]:
    """An int8 gradient as the conventions make it: values in -127..127 reaching +-127."""
    g = rng.integers(-127, 128, shape).astype(np.int8)
    g.flat[int(rng.integers(0, g.size))] = 127 if rng.random() < 0.5 else -127
    return g, float(np.float32(np.exp(rng.uniform(np.log(1e-6), np.log(1e-1)))))


def requantize_ref(acc: np.ndarray) -> np.ndarray:
    """grad_requantize_s32's values: round(acc * 127 / max|acc|), halves away from zero."""
    acc = acc.astype(np.int64)
    m = int(np.max(np.abs(acc), initial=0))
    if m == 0:
        return np.zeros(acc.shape, np.int8)
    num = np.abs(acc) * 127
    return (np.sign(acc) * ((num + m // 2) // m)).astype(np.int8)


def lowered_params(kind: str, x_shape, y_shape, options: dict, extra: list[Tensor] = ()) -> dict:
    """The forward kernel's parameters from the real lowering of a one-op graph."""
    q = quant(0.05, 3)
    tensors = [Tensor(0, "x", tuple(x_shape), "int8", q), *extra, Tensor(0, "y", tuple(y_shape), "int8", q)]
    for i, t in enumerate(tensors):
        t.index = i
    op = Op(0, kind, [t.index for t in tensors[:-1]], [tensors[-1].index], options)
    graph = Graph(tensors, [op], [0], [tensors[-1].index])
    return dict(lower(graph, op).params)


# ---- clamp_mask_s8 and grad_apply_mask: exact ---------------------------------------------


MASK_RANGES = [(-128, 127), (-5, 127), (-128, 40), (-20, 30), (0, 0), (10, 11)]


@pytest.mark.parametrize("seed", range(8))
def test_clamp_mask_exact(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 7, 8, 9, 64, 1000, 1003]))
    act_min, act_max = MASK_RANGES[seed % len(MASK_RANGES)]
    y = rng.integers(-128, 128, n).astype(np.int8)
    y[: min(n, 4)] = [act_min, act_max, -128, 127][: min(n, 4)]  # the edges themselves
    nbytes = (n + 7) // 8
    buf = np.full(nbytes + 8, 0xA5, np.uint8)  # guard bytes on both sides
    mask = buf[4 : 4 + nbytes]
    run("clamp_mask_s8", {"size": n, "act_min": act_min, "act_max": act_max}, [y, mask])
    bits = (y.astype(np.int32) > act_min) & (y.astype(np.int32) < act_max)
    assert np.array_equal(mask, np.packbits(bits, bitorder="little"))  # LSB first, tail bits 0
    assert np.all(buf[:4] == 0xA5) and np.all(buf[4 + nbytes :] == 0xA5)


@pytest.mark.parametrize("seed", range(6))
def test_grad_apply_mask_exact(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.choice([1, 5, 8, 13, 256, 999]))
    g, _ = rand_grad(rng, n)
    mask = rng.integers(0, 256, (n + 7) // 8).astype(np.uint8)  # bits past n are garbage
    bits = np.unpackbits(mask, bitorder="little")[:n].astype(bool)
    expect = np.where(bits, g, 0).astype(np.int8)

    out = np.zeros(n, np.int8)
    run("grad_apply_mask", {"size": n}, [g, mask, out])
    assert np.array_equal(out, expect)
    inplace = g.copy()  # the output aliasing the input
    run("grad_apply_mask", {"size": n}, [inplace, mask, inplace])
    assert np.array_equal(inplace, expect)
    assert not np.array_equal(g, expect) or bits.all()  # the mask did something


# ---- grad_add ------------------------------------------------------------------------------


def _grad_add(a, s_a, b, s_b, out=None) -> tuple[np.ndarray, float]:
    out = np.zeros_like(a) if out is None else out
    s_out = scalar()
    run("grad_add", {"size": a.size}, [a, scalar(s_a), b, scalar(s_b), out, s_out])
    return out, float(s_out[0])


@pytest.mark.parametrize("seed", range(10))
def test_grad_add(seed):
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(1, 2000))
    a, s_a = rand_grad(rng, n)
    b, _ = rand_grad(rng, n)
    ratio = [1.0, 0.7, 3.0, 1e-3, 1e3, 0.99, 1.37, 1e-6, 64.0, 0.125][seed]
    s_b = float(np.float32(s_a * ratio))
    ref = np.float64(s_a) * a + np.float64(s_b) * b  # the exact real sum
    out, s_out = _grad_add(a, s_a, b, s_b)
    # Half an output quantum, plus the 22-bit fixed point (< 2.3e-5 * max scale).
    err = np.max(np.abs(s_out * out.astype(np.float64) - ref))
    assert err <= 0.5 * s_out * (1 + 1e-5) + 2.3e-5 * max(s_a, s_b), (err, s_out)
    assert s_out == pytest.approx(np.max(np.abs(ref)) / 127, rel=1e-5)
    assert_close(s_out * out, ref)
    # Bit for bit the arithmetic grad_add.h states (float32 steps as C rounds them).
    s_max = np.float32(max(s_a, s_b))
    m_a, m_b = (
        int(np.float32(np.float32(s) / s_max) * np.float32(2**22) + np.float32(0.5)) for s in (s_a, s_b)
    )
    assert np.array_equal(out, requantize_ref(a.astype(np.int64) * m_a + b.astype(np.int64) * m_b))
    # In place (the output aliasing input a) gives the same bits.
    alias = a.copy()
    out2, s_out2 = _grad_add(alias, s_a, b, s_b, out=alias)
    assert np.array_equal(out2, out) and s_out2 == s_out
    if abs(ratio - 1) > 0.05:
        raw = a.astype(np.int64) + b  # bug: scales ignored (int8 values summed)
        assert_fails(s_out * out, raw * (np.max(np.abs(ref)) / np.max(np.abs(raw))), "scales ignored")
        swapped = np.float64(s_b) * a + np.float64(s_a) * b  # bug: scales swapped
        assert_fails(s_out * out, swapped, "scales swapped")


def test_grad_add_equal_scales_is_exact():
    rng = np.random.default_rng(5)
    a, s = rand_grad(rng, 777)
    b, _ = rand_grad(rng, 777)
    out, s_out = _grad_add(a, s, b, s)
    acc = a.astype(np.int64) + b
    assert np.array_equal(out, requantize_ref(acc))
    assert s_out == np.float32(
        np.float32(np.float32(np.max(np.abs(acc)) * 2**22) * np.float32(s / 2**22)) / 127
    )


def test_grad_add_zero_scales():
    rng = np.random.default_rng(6)
    a, s = rand_grad(rng, 50)
    b, _ = rand_grad(rng, 50)
    out, s_out = _grad_add(a, s, b, 0.0)  # b is a zero gradient: the sum is a, re-rounded
    assert np.array_equal(out, a) and s_out == pytest.approx(s, rel=1e-6)
    out, s_out = _grad_add(a, 0.0, b, 0.0)
    assert not out.any() and s_out == 0.0


# ---- avg_pool_s8_grad_input ------------------------------------------------------------------


def _pool_out(size: int, f: int, s: int, padding: str) -> int:
    return (size + s - 1) // s if padding == "SAME" else (size + s - f) // s


def np_avg_pool_grad(gy: np.ndarray, p: dict, count_padding=False, shift=0) -> np.ndarray:
    """Float reference of the input gradient, with optional bugs for the negative checks:
    count_padding divides by the full filter area, shift moves every window down a row."""
    gx = np.zeros((p["batches"], p["input_h"], p["input_w"], p["channels"]))
    for oy in range(p["output_h"]):
        y0 = oy * p["stride_h"] - p["pad_h"] + shift
        ys = range(max(0, y0), min(p["input_h"], y0 + p["filter_h"]))
        for ox in range(p["output_w"]):
            x0 = ox * p["stride_w"] - p["pad_w"]
            xs = range(max(0, x0), min(p["input_w"], x0 + p["filter_w"]))
            count = p["filter_h"] * p["filter_w"] if count_padding else len(ys) * len(xs)
            if count:
                gx[:, ys.start : ys.stop, xs.start : xs.stop, :] += gy[:, oy : oy + 1, ox : ox + 1, :] / count
    return gx


# (n, h, w, c, fh, fw, sh, sw, padding): power-of-two counts, SAME with partial windows,
# overlapping windows, the global pool, asymmetric filters.
POOL_CASES = [
    (1, 8, 8, 3, 2, 2, 2, 2, "VALID"),
    (2, 7, 7, 4, 3, 3, 1, 1, "SAME"),
    (1, 9, 6, 2, 3, 3, 2, 2, "SAME"),
    (1, 7, 7, 8, 7, 7, 1, 1, "VALID"),
    (1, 10, 10, 2, 5, 5, 1, 1, "SAME"),
    (2, 5, 9, 3, 2, 4, 2, 3, "SAME"),
    (1, 6, 6, 5, 4, 2, 1, 2, "VALID"),
    (1, 11, 11, 1, 3, 3, 3, 3, "SAME"),
]


def _random_pool_case(rng: np.random.Generator) -> tuple:
    n, h, w, c = (
        int(rng.integers(1, 3)),
        int(rng.integers(1, 13)),
        int(rng.integers(1, 13)),
        int(rng.integers(1, 6)),
    )
    padding = str(rng.choice(["SAME", "VALID"]))
    fh, fw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    if padding == "VALID":
        fh, fw = min(fh, h), min(fw, w)
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    return n, h, w, c, fh, fw, sh, sw, padding


def _pool_grad_case(case: tuple, rng: np.random.Generator):
    n, h, w, c, fh, fw, sh, sw, padding = case
    oh, ow = _pool_out(h, fh, sh, padding), _pool_out(w, fw, sw, padding)
    opts = {"padding": padding, "filter_h": fh, "filter_w": fw, "stride_h": sh, "stride_w": sw}
    fwd = lowered_params("AVERAGE_POOL_2D", (n, h, w, c), (n, oh, ow, c), {**opts, "activation": "NONE"})
    params = {k: v for k, v in fwd.items() if k not in ("act_min", "act_max")}
    gy, s_y = rand_grad(rng, (n, oh, ow, c))
    return params, gy, s_y


def _run_pool_grad(params: dict, gy: np.ndarray, s_y: float) -> tuple[np.ndarray, float]:
    gx = np.zeros((params["batches"], params["input_h"], params["input_w"], params["channels"]), np.int8)
    s_x = scalar()
    run("avg_pool_s8_grad_input", params, [gy, scalar(s_y), gx, s_x])
    return gx, float(s_x[0])


def tf_avg_pool_grad(params: dict, gy_real: np.ndarray, padding: str) -> np.ndarray:
    x = tf.zeros((params["batches"], params["input_h"], params["input_w"], params["channels"]))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.nn.avg_pool2d(
            x, (params["filter_h"], params["filter_w"]), (params["stride_h"], params["stride_w"]), padding
        )
    return tape.gradient(y, x, output_gradients=tf.constant(gy_real, tf.float32)).numpy()


@pytest.mark.parametrize("case", range(len(POOL_CASES) + 10))
def test_avg_pool_grad_input(case):
    rng = np.random.default_rng(300 + case)
    cfg = POOL_CASES[case] if case < len(POOL_CASES) else _random_pool_case(rng)
    params, gy, s_y = _pool_grad_case(cfg, rng)
    gy_real = s_y * gy.astype(np.float64)
    ref = tf_avg_pool_grad(params, gy_real, cfg[-1])
    ours_q, s_x = _run_pool_grad(params, gy, s_y)
    ours = s_x * ours_q.astype(np.float64)
    np.testing.assert_allclose(
        np_avg_pool_grad(gy_real, params), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max()
    )
    assert_close(ours, ref)
    assert s_x == pytest.approx(np.abs(ref).max() / 127, rel=1e-5)

    # Negative checks, where the bug changes the reference beyond the tolerance.
    bugs = {
        "count includes padding": np_avg_pool_grad(gy_real, params, count_padding=True),
        "window shifted one row": np_avg_pool_grad(gy_real, params, shift=1),
    }
    if params["input_h"] == params["input_w"]:
        bugs["H and W transposed"] = ref.transpose(0, 2, 1, 3)
    for what, buggy in bugs.items():
        if not close(buggy, ref, 2 * MAX_REL):
            assert_fails(ours, buggy, what)
    if case < len(POOL_CASES):  # the chosen cases exercise their bugs for sure
        has_partial = cfg[-1] == "SAME" and any(
            (o * s - p < 0 or o * s - p + f > size)
            for size, f, s, p, out in [
                (
                    params["input_h"],
                    params["filter_h"],
                    params["stride_h"],
                    params["pad_h"],
                    params["output_h"],
                ),
                (
                    params["input_w"],
                    params["filter_w"],
                    params["stride_w"],
                    params["pad_w"],
                    params["output_w"],
                ),
            ]
            for o in range(out)
        )
        assert not close(bugs["window shifted one row"], ref, 2 * MAX_REL)
        if has_partial:
            assert not close(bugs["count includes padding"], ref, 2 * MAX_REL)


def test_avg_pool_grad_chain_with_mask():
    """Forward avg_pool_s8 with RELU6 -> clamp_mask_s8 -> grad_apply_mask -> the pooling
    gradient, against TF's pooling gradient of G_y * mask; without the mask it must fail."""
    rng = np.random.default_rng(11)
    n, h, w, c = 1, 9, 9, 6
    opts = {"padding": "SAME", "filter_h": 3, "filter_w": 3, "stride_h": 2, "stride_w": 2}
    fwd = lowered_params("AVERAGE_POOL_2D", (n, h, w, c), (n, 5, 5, c), {**opts, "activation": "RELU6"})
    x = rng.integers(-128, 128, (n, h, w, c)).astype(np.int8)
    y = np.zeros((n, 5, 5, c), np.int8)
    run("avg_pool_s8", fwd, [x, y])
    mask = np.zeros((y.size + 7) // 8, np.uint8)
    run("clamp_mask_s8", {"size": y.size, "act_min": fwd["act_min"], "act_max": fwd["act_max"]}, [y, mask])
    bits = ((y > fwd["act_min"]) & (y < fwd["act_max"])).reshape(y.shape)
    assert 0.2 < bits.mean() < 0.9  # the clamp is active on both sides of the case

    params = {k: v for k, v in fwd.items() if k not in ("act_min", "act_max")}
    gy, s_y = rand_grad(rng, y.shape)
    gz = np.zeros_like(gy)
    run("grad_apply_mask", {"size": gy.size}, [gy, mask, gz])
    ours_q, s_x = _run_pool_grad(params, gz, s_y)
    ref = tf_avg_pool_grad(params, s_y * gy * bits, "SAME")
    assert_close(s_x * ours_q.astype(np.float64), ref)
    unmasked_q, s_u = _run_pool_grad(params, gy, s_y)  # bug: mask not applied
    assert_fails(s_u * unmasked_q.astype(np.float64), ref, "missing mask")


# ---- mean_s8_grad_input -----------------------------------------------------------------------


MEAN_CASES = [  # (shape, axes, keep_dims)
    ((1, 7, 7, 16), [1, 2], True),
    ((2, 4, 4, 8), [1, 2], False),
    ((3, 5, 3, 2), [1, 2], True),
    ((1, 1, 1, 10), [1, 2], False),
    ((2, 6, 5, 3), [2, 1], False),
    ((2, 3, 4, 5), [1], True),
    ((2, 3, 4, 5), [3], False),
    ((4, 6), [0], False),
    ((2, 3, 4), [-1, 0], True),
]


@pytest.mark.parametrize("case", range(len(MEAN_CASES)))
def test_mean_grad_input(case):
    rng = np.random.default_rng(400 + case)
    shape, axes, keep_dims = MEAN_CASES[case]
    rank = len(shape)
    red = {a % rank for a in axes}
    out_shape = (
        [1 if k in red else d for k, d in enumerate(shape)]
        if keep_dims
        else [d for k, d in enumerate(shape) if k not in red]
    )
    axis_t = Tensor(0, "axis", (len(axes),), "int32", None, np.asarray(axes, np.int32))
    params = lowered_params("MEAN", shape, out_shape, {"keep_dims": keep_dims}, [axis_t])
    params = {k: v for k, v in params.items() if k.startswith(("dim", "reduce")) or k == "count"}
    gy, s_y = rand_grad(rng, out_shape)
    gx = np.zeros(shape, np.int8)
    s_x = scalar()
    run("mean_s8_grad_input", params, [gy, scalar(s_y), gx, s_x])
    ours = float(s_x[0]) * gx.astype(np.float64)

    x = tf.zeros(shape)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_mean(x, axis=axes, keepdims=keep_dims)
    ref = tape.gradient(y, x, output_gradients=tf.constant(s_y * gy, tf.float32)).numpy()
    # Exact representation: only float rounding separates ours from TF's.
    assert_close(ours, ref, max_rel=1e-6, cos_floor=1 - 1e-9)
    count = int(np.prod([shape[k] for k in red]))
    assert float(s_x[0]) == np.float32(np.float32(s_y) / np.float32(count))
    # Negative checks: a divisor missing one averaged dimension, a shifted broadcast.
    # (Exact kernel, so they are held to the same tight tolerance.)
    if count > 1:  # divided by one averaged dimension only (or, with one, not at all)
        one_axis = max(shape[k] for k in red) if len(red) > 1 else 1
        assert_fails(ours, ref * count / one_axis, "wrong count", max_rel=1e-6)
    kept = [k for k in range(rank) if k not in red and shape[k] > 1]
    if kept:
        assert_fails(ours, np.roll(ref, 1, axis=kept[-1]), "shifted broadcast", max_rel=1e-6)


# ---- softmax_xent_s8 -----------------------------------------------------------------------------


def _xent(q: np.ndarray, labels: np.ndarray, scale: float, eps: float = 0.0, guard: int = 0):
    b, k = q.shape
    loss, gs = scalar(), scalar()
    pbuf = np.full(b + 2 * guard, -7, np.int32)
    gbuf = np.full(b * k + 2 * guard, 99, np.int8)
    pred, g = pbuf[guard : guard + b], gbuf[guard : guard + b * k]
    params = {"batches": b, "classes": k, "input_scale": scale, "label_smoothing": eps}
    run("softmax_xent_s8", params, [q, labels.astype(np.int32), loss, pred, g, gs])
    if guard:
        assert np.all(pbuf[:guard] == -7) and np.all(pbuf[guard + b :] == -7)
        assert np.all(gbuf[:guard] == 99) and np.all(gbuf[guard + b * k :] == 99)
    return float(loss[0]), pred.copy(), float(gs[0]) * g.reshape(b, k).astype(np.float64)


def _targets(labels: np.ndarray, k: int, eps: float) -> np.ndarray:
    return (1 - eps) * np.eye(k)[labels] + eps / k


def tf_xent(logits: np.ndarray, labels: np.ndarray, eps: float) -> tuple[float, np.ndarray]:
    x = tf.constant(logits, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        if eps == 0:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x))
        else:
            t = tf.constant(_targets(labels, logits.shape[1], eps), tf.float32)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=t, logits=x))
    return float(loss.numpy()), tape.gradient(loss, x).numpy()


def f64_xent(logits: np.ndarray, labels: np.ndarray, eps: float) -> tuple[float, np.ndarray]:
    """The same loss and gradient in float64 (the same float32 logits)."""
    x = logits.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    lse = m[:, 0] + np.log(e.sum(axis=1))
    t = _targets(labels, x.shape[1], eps)
    loss = float(np.mean(lse - (t * x).sum(axis=1)))
    return loss, (e / e.sum(axis=1, keepdims=True) - t) / x.shape[0]


def check_against_tf(loss: float, g: np.ndarray, logits: np.ndarray, labels: np.ndarray, eps: float) -> None:
    """Loss within 1e-5 relative of TF's (plus 2.5e-7 absolute: TF's float32 log(sum)
    cannot resolve a loss below ulp(1) = 1.2e-7) and of float64 (2e-6 relative: ours uses
    log1p, no floor needed); G within the int8 tolerance of the float64 gradient, which
    agrees with TF's float32 one to 2.5e-7 absolute (TF's p - 1 rounds to ulp(1) / 2:
    a confident prediction's whole gradient can be below that, so float64 is the sharper
    reference)."""
    ref_loss, ref_g = tf_xent(logits, labels, eps)
    loss64, g64 = f64_xent(logits, labels, eps)
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=2.5e-7)
    assert loss == pytest.approx(loss64, rel=2e-6)
    np.testing.assert_allclose(ref_g, g64, rtol=0, atol=2.5e-7)
    assert_close(g, g64)


XENT_CASES = [  # (batches, classes, scale, label smoothing)
    (1, 2, 0.1, 0.0),
    (1, 10, 0.05, 0.0),
    (1, 10, 0.2, 0.1),
    (3, 10, 0.08, 0.0),
    (1, 100, 0.03, 0.0),
    (2, 100, 0.5, 0.2),  # logit differences beyond 87: exp underflows
    (1, 1000, 0.02, 0.0),
    (4, 37, 0.01, 0.05),
    (1, 5, 1.0, 0.0),
    (2, 3, 0.002, 0.0),  # nearly uniform
]


@pytest.mark.parametrize("case", range(len(XENT_CASES)))
def test_softmax_xent(case):
    rng = np.random.default_rng(500 + case)
    b, k, scale, eps = XENT_CASES[case]
    scale = float(np.float32(scale))
    zp = int(rng.integers(-128, 128))
    q = rng.integers(-128, 128, (b, k)).astype(np.int8)
    labels = rng.integers(0, k, b).astype(np.int32)
    logits = (np.float32(scale) * (q.astype(np.float32) - np.float32(zp))).astype(np.float32)

    loss, pred, g = _xent(q, labels, scale, eps, guard=3)
    assert np.array_equal(pred, np.argmax(q, axis=1))  # first maximum
    check_against_tf(loss, g, logits, labels, eps)

    # Negative checks: gradients a plausible bug would produce.
    _, g64 = f64_xent(logits, labels, eps)
    probs = g64 * b + _targets(labels, k, eps)
    assert_fails(g, (probs - _targets((labels + 1) % k, k, eps)) / b, "label off by one")
    assert_fails(g, probs / b, "one-hot not subtracted")
    if b > 1:
        assert_fails(g, g64 * b, "missing 1/batches")
    if eps > 0:
        assert_fails(g, f64_xent(logits, labels, 0.0)[1], "smoothing ignored")


def test_softmax_xent_loss_accuracy():
    """The kernel's own exp and log1p, held to a few ulp: 600 random rows against float64
    on the exact real logits. The loss cannot be better than its conditioning: each
    d_c = s (q_c - q_max) is rounded once (2^-24 relative), which moves the loss by up to
    2^-24 sum_c |p_c - y_c| |d_c|; exp(d) < exp(-87) is dropped (classes * e^-87). Within
    6 times that (measured worst: 3.1 times), a mistake in either polynomial fails."""
    rng = np.random.default_rng(700)
    worst = 0.0
    for i in range(600):
        k = int(rng.choice([2, 3, 10, 100]))
        scale = float(np.float32(np.exp(rng.uniform(np.log(1e-3), np.log(1.0)))))
        q = rng.integers(-128, 128, (1, k)).astype(np.int8)
        label = int(rng.integers(0, k))
        eps = (0.0, 0.1, 0.5)[i % 3]
        loss, _, _ = _xent(q, np.array([label]), scale, eps)
        d = scale * (q[0].astype(np.float64) - q[0].max())
        e = np.exp(d)
        y = _targets(np.array([label]), k, eps)[0]
        ref = np.log1p(np.sum(np.delete(e, np.argmax(q[0])))) - y @ d
        bound = 2.0**-24 * (ref + np.abs(e / e.sum() - y) @ np.abs(d)) + k * np.exp(-87.0)
        worst = max(worst, abs(loss - ref) / bound)
    assert worst <= 6.0, worst


def test_softmax_xent_ties_and_argmax():
    q = np.array([[5, 9, 9, -3], [-128, -128, -128, -128], [1, 2, 3, 3], [7, 7, 7, 7]], np.int8)
    labels = np.array([2, 0, 3, 1], np.int32)
    loss, pred, g = _xent(q, labels, 0.25)
    assert pred.tolist() == [1, 0, 2, 0]
    logits = (np.float32(0.25) * q.astype(np.float32)).astype(np.float32)
    check_against_tf(loss, g, logits, labels, 0.0)


def test_softmax_xent_tiny_loss():
    """A confident, correct prediction: the loss is ~1e-6. Ours keeps full relative
    precision (log1p of the other classes' mass); TF's float32 log(sum) cannot resolve
    below ulp(1) = 1.2e-7, which is why the TF comparison above has abs=2.5e-7."""
    q = np.array([[127, -20, -30, -25, 0, -40]], np.int8)
    labels = np.array([0], np.int32)
    logits = (np.float32(0.1) * q.astype(np.float32)).astype(np.float32)
    loss, pred, g = _xent(q, labels, 0.1)
    exact, g64 = f64_xent(logits, labels, 0.0)
    assert 1e-7 < exact < 1e-5 and pred[0] == 0
    check_against_tf(loss, g, logits, labels, 0.0)  # G ~ 1e-6 keeps its shape in int8
    _, ref_g = tf_xent(logits, labels, 0.0)
    assert not close(ref_g, g64)  # where TF's own float32 gradient does not


def test_softmax_xent_saturated():
    """Margins beyond exp's range: loss 0 and a zero gradient, as TF's float32 gives."""
    q = np.array([[127, -128, -128], [-128, 127, -100]], np.int8)
    labels = np.array([0, 1], np.int32)
    loss, pred, g = _xent(q, labels, 1.0)
    ref_loss, ref_g = tf_xent(q.astype(np.float32), labels, 0.0)
    assert loss == ref_loss == 0.0 and pred.tolist() == [0, 1]
    assert not g.any() and not ref_g.any()


@pytest.mark.parametrize("bad", [-1, 10, 2**31 - 1, -(2**31)])
def test_softmax_xent_bad_label(bad):
    """Out-of-range label: no out-of-bounds access, that row trains nothing, the loss is
    NaN (the flag), the other rows' gradients and every prediction are unaffected."""
    rng = np.random.default_rng(600)
    q = rng.integers(-128, 128, (3, 10)).astype(np.int8)
    labels = np.array([4, bad, 7], np.int32)
    loss, pred, g = _xent(q, labels, 0.1, guard=5)
    assert np.isnan(loss)
    assert np.array_equal(pred, np.argmax(q, axis=1))
    assert not g[1].any()
    logits = (np.float32(0.1) * q.astype(np.float32)).astype(np.float32)
    good = np.array([0, 2])
    _, g64 = f64_xent(logits[good], labels[good], 0.0)
    assert_close(g[good], g64 * 2 / 3)  # the mean still divides by all 3 rows


@pytest.mark.parametrize(
    "scale, eps",
    [(0.0, 0.0), (-0.1, 0.0), (float("nan"), 0.0), (float("inf"), 0.0), (0.1, 1.5), (0.1, float("nan"))],
)
def test_softmax_xent_bad_config(scale, eps):
    """A scale that is not positive and finite or a smoothing outside [0, 1]: handled as
    every label being bad (NaN loss, zero gradient), without undefined float-to-int
    conversions; predictions are still the argmax."""
    q = np.array([[3, -7, 50, 50], [-1, 0, 2, -3]], np.int8)
    loss, pred, g = _xent(q, np.array([2, 1]), scale, eps, guard=2)
    assert np.isnan(loss) and not g.any() and pred.tolist() == [2, 2]
