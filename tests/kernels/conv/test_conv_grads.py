"""Backward and update kernels of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, and the
forward kernels' trained slice, against TensorFlow autodiff of the dequantized float layer.

For each random layer (seeded: shapes, strides, SAME/VALID, dilations, depth multipliers,
zero points, per-channel scales over 2.5 decades, masks with zeros, partial slices, RAM slices
that differ from flash), TensorFlow differentiates L = sum(G_z * z) in float64, z the layer on
the real-valued x, W, b and G_z the dequantized masked upstream gradient, giving dL/dx,
dL/dW_q and dL/db_q (so also dL/dW_real, dL/db_real). Tolerances, and why they catch bugs:

- *_grad_input (int8 with a dynamic scale): every element within 0.55 output steps of the
  reference (step = max|dL/dx| / 127; requantization alone is 0.5 step, the fixed-point
  folding of the channel scales adds < 0.01 step), the scale within 1% of max|dL/dx| / 127, and
  cosine >= 0.99. A transposed/flipped filter, an ignored mask, ignored per-channel scales or
  the flash weights read instead of the trained RAM rows move elements by many steps: each
  such variant is run and must fail the same check (asserted whenever the variant changes the
  reference by > 20%, and in dedicated cases where it always does).
- *_grad_update: QAS makes the step dW_q = -lr * G_Wq * s_W^-2 (method.md section 3, with G_Wq
  from TensorFlow); the kernels' stochastic rounding draws from grad.h's xorshift32, whose
  draws the test replays, so the new weights must equal clip(W + floor(step + u)) at >= 99.9%
  of elements (all so far) and be within 1 of W + step everywhere (saturated at +-127); the
  mean rounding error over >= 2,000 weights is < 0.05 step for positive and negative steps
  separately (round-to-nearest fails this); with steps of up to 100 the weight changes have
  cosine >= 0.999 with the steps; new biases are within 0.5 (+1e-5 relative) of
  b + (-lr * G_bq * s_W^-2 * s_x^-2), saturating at the int32 limits. An off-by-one slice, an
  ignored mask or a missing QAS factor fail these checks, and are run to show it.
- Forward kernels with train_rows / train_bias_rows equal, bit for bit, the inference kernel
  running the same layer with the trained rows substituted.
- The same calls run on the emulated Cortex-M7 (the firmware build's kernel objects) and give
  bit-identical results.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from pytools.model.kernels import run_kernel, scratch_size
from tests.kernels import grad_support as gs
from tests.kernels.grad_support import Layer, Reference

SEEDS = range(30)
MATERIAL = 0.2  # a wrong variant "matters" when it moves the reference by > 20% (L2)


@pytest.fixture(scope="module")
def tf() -> Any:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    return tensorflow


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b||."""
    nb = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / nb if nb else (0.0 if not np.any(a) else np.inf)


def _channel_shape(layer: Layer, ndim: int) -> tuple[int, ...]:
    """Broadcast shape of a per-output-channel vector against the full weight array."""
    if layer.kind == "dw":
        return (1, 1, 1, -1)
    return (-1,) + (1,) * (ndim - 1)


# --- grad_input -----------------------------------------------------------------------------


def _check_grad_input(tf: Any, layer: Layer) -> tuple[np.ndarray, float, Reference]:
    q, scale = gs.run_grad_input(layer)
    ref = gs.tf_reference(tf, layer)
    cos, err, scale_err = gs.grad_input_errors(q, scale, ref.dx)
    assert gs.grad_input_ok(q, scale, ref.dx, layer.kind), (
        f"cosine {cos:.5f}, max error {err:.3f} steps, scale off {scale_err:.2e}"
    )
    return q, scale, ref


def _wrong_grad_inputs(tf: Any, layer: Layer, ref: Reference) -> dict[str, np.ndarray]:
    """The references a buggy kernel would match, for the variants that matter here."""
    out = {}
    for variant in ("flip", "no_mask", "no_channel_scales"):
        if variant == "no_mask" and layer.mask is None:
            continue
        dx = gs.tf_reference(tf, layer, variant).dx
        if _rel(dx, ref.dx) > MATERIAL:
            out[variant] = dx
    return out


@pytest.mark.parametrize("kind", gs.KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_grad_input_matches_tensorflow(tf: Any, kind: str, seed: int) -> None:
    layer = gs.make_layer(kind, seed)
    q, scale, ref = _check_grad_input(tf, layer)
    # The tolerance would catch these bugs: the wrong references fail the same check.
    for variant, dx in _wrong_grad_inputs(tf, layer, ref).items():
        assert not gs.grad_input_ok(q, scale, dx, layer.kind), f"a kernel with bug '{variant}' would pass"


def _must_catch(tf: Any, layer: Layer) -> list[str]:
    """Runs the kernel deliberately misconfigured (mask off; trained RAM rows ignored) and the
    correct kernel against wrong references; every one must fail. Returns what was caught."""
    q, scale, ref = _check_grad_input(tf, layer)
    caught = []
    for variant, dx in _wrong_grad_inputs(tf, layer, ref).items():
        assert not gs.grad_input_ok(q, scale, dx, layer.kind), variant
        caught.append(variant)
    if layer.mask is not None:
        qm, sm = gs.run_grad_input(layer, has_mask=False)
        assert not gs.grad_input_ok(qm, sm, ref.dx, layer.kind), "kernel with the mask off passed"
        caught.append("kernel mask off")
    if layer.train_rows:
        flash_only = gs.without_training(layer)
        if _rel(gs.tf_reference(tf, flash_only).dx, ref.dx) > MATERIAL:
            qf, sf = gs.run_grad_input(flash_only)
            wrong = "kernel reading flash for the trained rows passed"
            assert not gs.grad_input_ok(qf, sf, ref.dx, layer.kind), wrong
            caught.append("kernel ignores RAM rows")
    return caught


@pytest.mark.parametrize("kind", gs.KINDS)
def test_grad_input_tolerances_catch_bugs(tf: Any, kind: str) -> None:
    """Layers where every bug variant matters: each must be caught."""
    force: dict[str, Any] = dict(per_channel=True, has_mask=True, density=0.6)
    if kind == "fc":
        force.update(batches=3, depth=40, units=24)
    else:
        force.update(fh=3, fw=3, sh=1, sw=1, dh=1, dw=1, h=7, w=7, n=1, in_c=6)
        force.update(out_c=12) if kind == "conv" else force.update(mult=2)
    layer = gs.make_layer(kind, 0, **force, train_rows=5)
    # RAM rows far from flash, so reading the wrong copy matters.
    layer.w_ram[...] = -np.sign(gs.trained_rows_of(layer, layer.w_flash)) * 90
    caught = _must_catch(tf, layer)
    assert set(caught) == {
        "flip",
        "no_mask",
        "no_channel_scales",
        "kernel mask off",
        "kernel ignores RAM rows",
    }


def test_grad_input_cannot_overflow_int32(tf: Any) -> None:
    """Worst case for the accumulators: full-scale weights and gradients of one sign over
    3x3x256 output channels (and 1000 fully connected rows), sums that would overflow int32
    ~2^17-fold at full Q23 precision; the per-call shift keeps them in range and the result
    within the usual half output step."""
    layer = gs.make_layer("conv", 1, in_c=4, out_c=256, fh=3, fw=3, sh=1, sw=1, dh=1, dw=1, h=5, w=5, n=1)
    layer.w_flash[...] = 127
    layer.w_ram[...] = 127
    layer.g_q[...] = 127
    _check_grad_input(tf, layer)
    fc = gs.make_layer("fc", 1, batches=2, depth=8, units=1000, per_channel=False, z_w=-10)
    fc.w_flash[...] = -127
    fc.w_ram[...] = -127
    fc.g_q[...] = -127
    _check_grad_input(tf, fc)


def test_grad_input_zero_gradient_gives_zero_scale() -> None:
    layer = gs.make_layer("conv", 2)
    layer.g_q[...] = 0
    q, scale = gs.run_grad_input(layer)
    assert scale == 0.0 and not q.any()


# --- grad_update ----------------------------------------------------------------------------

RNG_STATE = 0x1234567


def _qas_steps(layer: Layer, ref: Reference, lr: float, variant: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The int8 weight steps of the trained slice and the int32 bias steps QAS prescribes
    (method.md section 3): -lr * G_Wq * s_W^-2 and -lr * G_bq * s_W^-2 * s_x^-2.

    variant: "slice" (rows one further: an off-by-one slice), "no_qas" (plain SGD on the
    integers, -lr * G_Wq), "no_mask" (needs ref computed without the mask)."""
    s_w = layer.s_w_full.astype(np.float64)
    cs = _channel_shape(layer, ref.dw_q.ndim)
    g_w = ref.dw_q * s_w.reshape(cs) ** -2.0
    g_b = ref.db_q * s_w**-2.0 * layer.s_x**-2.0
    if variant == "no_qas":
        g_w, g_b = ref.dw_q, ref.db_q
    shift = 1 if variant == "slice" else 0
    w_rows = gs.trained_rows_of(layer, g_w, shift)
    b_rows = g_b[shift : shift + layer.train_bias_rows]
    return -lr * w_rows, -lr * b_rows


def _update_matches(
    layer: Layer, res: gs.UpdateResult, step_w: np.ndarray | None, step_b: np.ndarray | None
) -> bool:
    """The new weights are W + step stochastically rounded with the replayed draws (at >= 99.9%
    of elements, within 1 everywhere), saturated to +-127; the new biases b + round(step).
    A step of None: that part must be unchanged."""
    if step_w is None:
        step_w = np.zeros(layer.w_ram.shape)
        if not np.array_equal(res.w, layer.w_ram):
            return False
    if step_b is None:
        step_b = np.zeros(layer.b_ram.shape)
    if step_w.shape != layer.w_ram.shape or step_b.shape != layer.b_ram.shape:
        return False
    ok = True
    if layer.w_ram.size and np.any(step_w):
        u = gs.draw_layout(layer)
        exact = np.clip(layer.w_ram + np.floor(step_w + u), -127, 127)
        near = np.clip(layer.w_ram + step_w, -127, 127)
        ok &= bool(np.mean(res.w == exact) >= 0.999)
        ok &= bool(np.all(np.abs(res.w - near) < 1.0 + 1e-6))
    if layer.b_ram.size:
        want = np.clip(layer.b_ram.astype(np.float64) + step_b, -(2.0**31), 2.0**31 - 1)
        ok &= bool(np.all(np.abs(res.b - want) <= 0.5 + 1e-5 * np.abs(step_b) + 1e-6))
    return ok


def _lr_for(layer: Layer, ref: Reference, peak_step: float) -> float:
    """A learning rate making the largest weight step peak_step (bias step 1000 if no weights)."""
    step_w, step_b = _qas_steps(layer, ref, 1.0)
    if step_w.size and np.abs(step_w).max() > 0:
        return float(np.float32(peak_step / np.abs(step_w).max()))
    if step_b.size and np.abs(step_b).max() > 0:
        return float(np.float32(1000 / np.abs(step_b).max()))
    return 0.01


def _assert_qas_is_method_md(layer: Layer, ref: Reference) -> None:
    """G~ = G_Wq * s_W^-2 with G_Wq = s_W * dL/dW_real (method.md), i.e. dL/dW_real / s_W:
    TensorFlow's two gradients agree with that chain rule (likewise for the bias)."""
    s_w = layer.s_w_full.astype(np.float64)
    cs = _channel_shape(layer, ref.dw_q.ndim)
    np.testing.assert_allclose(ref.dw_q, s_w.reshape(cs) * ref.dw_real, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(ref.db_q, s_w * layer.s_x * ref.db_real, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("kind", gs.KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_update_matches_tensorflow_with_qas(tf: Any, kind: str, seed: int) -> None:
    layer = gs.make_layer(kind, seed)
    ref = gs.tf_reference(tf, layer)
    _assert_qas_is_method_md(layer, ref)
    lr = _lr_for(layer, ref, 3.0)
    res = gs.run_update(layer, lr, rng_state=RNG_STATE)
    step_w, step_b = _qas_steps(layer, ref, lr)
    assert _update_matches(layer, res, step_w, step_b)
    # Nothing outside the slices is written, and the generator advanced once per weight.
    assert res.guards_intact
    assert res.rng_state == gs.xorshift32(RNG_STATE, layer.w_ram.size)[1]

    # The checks would catch these bugs (whenever they change the steps materially).
    wrong = {"no_qas": _qas_steps(layer, ref, lr, "no_qas")}
    if layer.channels > max(layer.train_rows, layer.train_bias_rows):
        wrong["slice"] = _qas_steps(layer, ref, lr, "slice")
    if layer.mask is not None:
        wrong["no_mask"] = _qas_steps(layer, gs.tf_reference(tf, layer, "no_mask"), lr)
    steps = np.concatenate([step_w.ravel(), step_b.ravel()])
    for variant, (w_bad, b_bad) in wrong.items():
        if _rel(np.concatenate([w_bad.ravel(), b_bad.ravel()]), steps) > MATERIAL:
            assert not _update_matches(layer, res, w_bad, b_bad), f"a kernel with bug '{variant}' would pass"


@pytest.mark.parametrize("kind", gs.KINDS)
def test_update_checks_catch_bugs(tf: Any, kind: str) -> None:
    """A layer where every bug matters: a wrong slice, no mask, no QAS; and the kernel run
    with its mask off."""
    force: dict[str, Any] = dict(
        per_channel=True, has_mask=True, density=0.6, train_rows=3, train_bias_rows=3
    )
    if kind == "fc":
        force.update(batches=4, depth=30, units=8)
    else:
        force.update(fh=3, fw=3, sh=1, sw=1, dh=1, dw=1, h=6, w=6, n=1, in_c=4)
        force.update(out_c=8) if kind == "conv" else force.update(mult=2)
    layer = gs.make_layer(kind, 3, **force)
    ref = gs.tf_reference(tf, layer)
    lr = _lr_for(layer, ref, 3.0)
    res = gs.run_update(layer, lr)
    assert _update_matches(layer, res, *_qas_steps(layer, ref, lr))
    for variant in ("slice", "no_qas"):
        assert not _update_matches(layer, res, *_qas_steps(layer, ref, lr, variant)), variant
    assert not _update_matches(layer, res, *_qas_steps(layer, gs.tf_reference(tf, layer, "no_mask"), lr))
    unmasked = gs.run_update(layer, lr, has_mask=False)
    assert not _update_matches(layer, unmasked, *_qas_steps(layer, ref, lr))


@pytest.mark.parametrize("kind", gs.KINDS)
def test_stochastic_rounding_is_unbiased(tf: Any, kind: str) -> None:
    """Steps of at most half a quantum over >= 2,000 weights: the mean error of the rounded
    update is < 0.05 step for the positive and the negative steps separately (round to
    nearest would leave every weight unchanged: a mean error of ~0.2 step)."""
    force: dict[str, Any] = dict(has_mask=False, per_channel=False)
    if kind == "fc":
        force.update(batches=3, depth=100, units=24, train_rows=24)
    elif kind == "conv":
        force.update(fh=3, fw=3, sh=1, sw=1, dh=1, dw=1, h=6, w=6, n=1, in_c=16, out_c=16, train_rows=16)
    else:
        force.update(fh=5, fw=5, sh=1, sw=1, dh=1, dw=1, h=8, w=8, n=2, in_c=30, mult=3, train_rows=90)
    layer = gs.make_layer(kind, 4, **force)
    layer.w_ram[...] = np.clip(layer.w_ram, -100, 100)  # no saturation
    ref = gs.tf_reference(tf, layer)
    lr = _lr_for(layer, ref, 0.5)
    res = gs.run_update(layer, lr)
    step, _ = _qas_steps(layer, ref, lr)
    assert step.size >= 2000
    err = res.w - layer.w_ram - step
    assert np.all(np.abs(err) < 1)
    for side in (step > 0.05, step < -0.05):
        assert side.sum() >= 500
        assert abs(err[side].mean()) < 0.05, err[side].mean()
        nearest = np.round(step[side]) - step[side]
        assert abs(nearest.mean()) > 0.05  # the check tells the two roundings apart


@pytest.mark.parametrize("kind", gs.KINDS)
def test_update_large_steps_follow_the_gradient(tf: Any, kind: str) -> None:
    """Steps up to 100 quanta from small weights (no saturation): the weight changes have
    cosine >= 0.999 with -lr * G~ (TensorFlow), the bias changes likewise."""
    force: dict[str, Any] = dict(train_rows=5, train_bias_rows=5)
    if kind == "fc":
        force.update(batches=4, depth=50, units=9)
    else:
        force.update(n=1, h=7, w=7, in_c=5, fh=3, fw=3)
        force.update(out_c=7) if kind == "conv" else force.update(mult=2)
    layer = gs.make_layer(kind, 5, **force)
    layer.w_ram[...] = np.clip(layer.w_ram, -20, 20)
    ref = gs.tf_reference(tf, layer)
    lr = _lr_for(layer, ref, 100.0)
    res = gs.run_update(layer, lr)
    step_w, step_b = _qas_steps(layer, ref, lr)
    assert gs.cosine(res.w.astype(np.float64) - layer.w_ram, step_w) >= 0.999
    assert gs.cosine(res.b.astype(np.float64) - layer.b_ram, step_b) >= 0.999
    assert _update_matches(layer, res, step_w, step_b)


@pytest.mark.parametrize("kind", gs.KINDS)
def test_update_saturates(tf: Any, kind: str) -> None:
    """Weights pushed past +-127 stop there (never -128); biases stop at the int32 limits."""
    force: dict[str, Any] = dict(train_rows=4, train_bias_rows=4)
    if kind == "fc":
        force.update(batches=2, depth=60, units=6)
    else:
        force.update(n=1, h=6, w=6, in_c=6, fh=3, fw=3)
        force.update(out_c=6) if kind == "conv" else force.update(mult=1)
    layer = gs.make_layer(kind, 6, **force)
    ref = gs.tf_reference(tf, layer)
    lr = _lr_for(layer, ref, 60.0)
    step_w, step_b = _qas_steps(layer, ref, lr)
    layer.w_ram[...] = np.where(step_w > 0, 120, -120)
    layer.b_ram[...] = np.where(step_b > 0, 2**31 - 2, -(2**31) + 2)
    res = gs.run_update(layer, lr)
    big = np.abs(step_w) > 8
    assert big.sum() >= 10
    assert np.all(res.w[big] == np.where(step_w[big] > 0, 127, -127))
    assert res.w.min() >= -127
    past = np.abs(step_b) >= 2.5
    assert past.sum() >= 2
    assert np.all(res.b[past] == np.where(step_b[past] > 0, 2**31 - 1, -(2**31)))
    assert _update_matches(layer, res, step_w, step_b)


@pytest.mark.parametrize("kind", gs.KINDS)
def test_bias_only_update(tf: Any, kind: str) -> None:
    """update_weights = 0: no input is read (passed NULL), no scratch is asked for, the weights
    and the generator are untouched; the bias follows QAS. And update_bias = 0 leaves the bias."""
    layer = gs.make_layer(kind, 7, train_rows=2 if kind != "dw" else 1)
    layer.train_bias_rows = layer.channels
    layer.b_ram = np.arange(layer.channels, dtype=np.int32) * 100
    ref = gs.tf_reference(tf, layer)
    lr = float(np.float32(1000 / np.abs(_qas_steps(layer, ref, 1.0)[1]).max()))
    call, _ = gs.update_call(layer, lr, False, True, RNG_STATE)
    assert scratch_size(call) == 0
    step_w, step_b = _qas_steps(layer, ref, lr)
    assert np.abs(step_b).max() > 100
    res = gs.run_update(layer, lr, update_weights=False)
    assert res.rng_state == RNG_STATE and res.guards_intact
    assert _update_matches(layer, res, None, step_b)
    res = gs.run_update(layer, lr, update_weights=True, update_bias=False)
    assert np.array_equal(res.b, layer.b_ram) and res.guards_intact
    assert _update_matches(layer, res, step_w, np.zeros(layer.b_ram.shape))


# --- Forward kernels with a trained slice ----------------------------------------------------


@pytest.mark.parametrize("kind", gs.KINDS)
@pytest.mark.parametrize("seed", range(12))
def test_forward_reads_the_trained_slice(kind: str, seed: int) -> None:
    """train_rows / train_bias_rows: the rows below them come from the RAM operands; the output
    equals, bit for bit, inference of the layer with those rows substituted."""
    layer = gs.make_layer(kind, 100 + seed)
    if layer.train_rows == 0 and layer.channels > 1:
        layer = gs.make_layer(kind, 100 + seed, train_rows=layer.channels // 2 + 1)
    trained = gs.run_forward(layer, trained=True)
    plain = gs.run_forward(layer, trained=False)
    np.testing.assert_array_equal(trained, plain)
    # ... and the RAM rows are really used: flash-only inference differs when they differ.
    flash = gs.run_forward(gs.without_training(layer), trained=True)
    if not np.array_equal(layer.w_effective(), layer.w_flash) or layer.train_bias_rows:
        assert not np.array_equal(flash, trained)


# --- On the Cortex-M7 -----------------------------------------------------------------------


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_same_results_on_the_emulated_cortex_m7(tmp_path, board_name: str) -> None:
    """Every kernel, a couple of cases each, on QEMU mps2-an500 (the firmware build's objects),
    and on the Cortex-M4 (mps2-an386, its build's objects): outputs, updated weights, biases and
    generator state identical to the host's."""
    calls = []
    for kind in gs.KINDS:
        for seed in (0, 1):
            layer = gs.make_layer(kind, 200 + seed, train_rows=2, train_bias_rows=2)
            calls.append(gs.grad_input_call(layer))
            call, values = gs.update_call(layer, 0.05 * (seed + 1), True, True, RNG_STATE + seed)
            calls.append((call, values[:8]))
            calls.append(gs.forward_call(layer, trained=True))
    host = []
    for call, values in calls:
        mine = copy.deepcopy(values)
        run_kernel(call, mine)
        host.append(mine)
    board = gs.run_on_board(calls, tmp_path, board_name)
    for (call, _), h, b in zip(calls, host, board, strict=True):
        for k, (hv, bv) in enumerate(zip(h, b, strict=True)):
            assert np.array_equal(hv, bv), f"{call.kernel} operand {k} differs on the board"
    # Not vacuous: the gradients and updates did something.
    assert any(
        np.any(h[6]) for (c, _), h in zip(calls, host, strict=True) if c.kernel.endswith("_grad_input")
    )
