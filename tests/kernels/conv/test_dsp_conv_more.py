"""conv2d_s8_dsp.c's dense-patch gather (the MobileNetV2 stem's 3x3/2 over 3 channels, and
other small patches over channels not a multiple of 4) and its wide 1x1 paths: bit-identical
with conv2d_s8_ref_run on the host (randomized shapes, padding, strides, dilations, batches,
trained slices) and with TFLite on the emulated board, with the stem's cost bar."""

from __future__ import annotations

import numpy as np
import pytest

from tests.kernels.conv.support import conv_options
from tests.kernels.conv.test_conv_kernels import Case, _graph, _out_size
from tests.kernels.conv.test_dsp_kernels import _compare, _compile, _on_board, dsp_on_host
from tests.kernels.support import check_bit_exact, quant


def _dense_case(seed: int) -> Case:
    """A small patch (taps x channels <= 256) over 1-7 channels, not a multiple of 4: the dense
    gather. Padding SAME puts some patches across the border (the per-tap fallback), VALID
    keeps all inside (the run copy); dilations and strides move both."""
    rng = np.random.default_rng(11000 + seed)
    in_c = int(rng.choice([1, 2, 3, 3, 3, 5, 6, 7]))
    fh, fw = int(rng.integers(1, 5)), int(rng.integers(2, 5))
    while fh * fw * in_c > 256:
        fh -= 1
    stride = int(rng.integers(1, 4))
    dil = int(rng.choice([1, 1, 1, 2]))
    padding = str(rng.choice(["SAME", "VALID"]))
    n = int(rng.integers(1, 3))
    h, w = int(rng.integers((fh - 1) * dil + 1, 24)), int(rng.integers((fw - 1) * dil + 1, 24))
    out_c = int(rng.integers(1, 20))
    per_channel = bool(rng.random() < 0.8)
    scales = (10 ** rng.uniform(-3, -1.5, out_c if per_channel else 1)).astype(np.float32)
    wts = rng.integers(-127, 128, (out_c, fh, fw, in_c), dtype=np.int8)
    in_q = quant(0.02, int(rng.integers(-128, 128)))
    bias = (rng.integers(-5000, 5000, out_c).astype(np.int32), quant(list(0.02 * scales), 0))
    oh, ow = _out_size(padding, h, fh, stride, dil), _out_size(padding, w, fw, stride, dil)
    out_scale = float(0.02 * np.median(scales) * np.sqrt(fh * fw * in_c) * 73 * 74 / 25)
    act = str(rng.choice(["NONE", "RELU6", "RELU"]))
    out_q = quant(out_scale, int(rng.integers(-50, 50)))
    options = conv_options(padding, stride, act, dil)
    g = _graph(
        "CONV_2D",
        (n, h, w, in_c),
        in_q,
        wts,
        quant(list(scales), 0, 0),
        bias,
        (n, oh, ow, out_c),
        out_q,
        options,
    )
    return Case(g, out_q, act)


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("seed", range(60))
def test_dense_patch_dsp_matches_reference(seed: int, trained: bool) -> None:
    _compare(_dense_case(seed), seed, trained)


@pytest.mark.parametrize("seed", range(0, 60, 6))
def test_dense_patch_dsp_is_bit_exact_with_tflite(seed: int) -> None:
    with dsp_on_host():
        check_bit_exact(_dense_case(seed).graph, np.random.default_rng(seed))


def test_the_dense_cases_are_informative() -> None:
    """Both sides of the gather are exercised: patches wholly inside (VALID) and across the
    border (SAME with a filter wider than 1), and dilated ones."""
    cases = [_dense_case(s).graph.ops[0].options for s in range(60)]
    assert sum(o["padding"] == "VALID" for o in cases) >= 15
    assert sum(o["padding"] == "SAME" for o in cases) >= 15
    assert sum(o["dilation_w"] == 2 for o in cases) >= 5


def _stem_graph(h: int, w: int, cout: int, seed: int = 0, padding: str = "VALID"):
    """MobileNetV2's stem inside a patch: 3x3/2 VALID over 3 channels, RELU6 on an output
    scale of 6 / 255 (as the model's: the activation range is all of int8); SAME: no
    activation."""
    rng = np.random.default_rng(seed)
    wts = rng.integers(-127, 128, (cout, 3, 3, 3), dtype=np.int8)
    # ~1.5 real units per accumulator std (0.02 * sqrt(27) * 74 * 73 quanta of w * x)
    scales = (10 ** rng.uniform(-3.8, -3.4, cout)).astype(np.float32)
    bias = (rng.integers(-5000, 5000, cout).astype(np.int32), quant(list(0.02 * scales), 0))
    act = "RELU6" if padding == "VALID" else "NONE"
    out_q = quant(6 / 255, -128) if act == "RELU6" else quant(0.012, 5)
    options = {"padding": padding, "stride_h": 2, "stride_w": 2, "activation": act}
    oh, ow = _out_size(padding, h, 3, 2, 1), _out_size(padding, w, 3, 2, 1)
    return _graph(
        "CONV_2D",
        (1, h, w, 3),
        quant(0.02, -3),
        wts,
        quant(list(scales), 0, 0),
        bias,
        (1, oh, ow, cout),
        out_q,
        options,
    )


@pytest.mark.emulator
def test_stem_on_the_emulated_board() -> None:
    """The stem's patch shapes (and a SAME-padded one: the border fallback) against TFLite, in
    instructions per whole INVOKE (runtime included). 37x39x3 -> 18x19x16 took 353,960
    instructions before the run copy (0.417 MAC/instruction), 208,480 after; bar: 0.65."""
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_export import write_tflite

    for h, w, cout, padding in [(37, 39, 16, "VALID"), (39, 34, 16, "VALID"), (9, 11, 6, "SAME")]:
        graph = _stem_graph(h, w, cout, seed=h + w, padding=padding)
        compiled = _compile(graph, f"stem_{h}x{w}x{cout}")
        x = np.random.default_rng(h).integers(-128, 128, (1, h, w, 3), dtype=np.int8)
        want = run_tflite(write_tflite(graph), [x])[0]
        assert np.unique(want).size > 24  # an informative output
        outs, costs = _on_board(compiled, True, [x])
        np.testing.assert_array_equal(outs[0], want)
        rate = want.size * 27 / costs[0]
        print(f"\nstem {h}x{w}x3 -> {cout}: {costs[0]:,} instructions, {rate:.3f} MAC/instruction")
        if h >= 34:
            assert rate >= 0.65, (h, w, rate)


@pytest.mark.emulator
def test_dense_patches_of_seven_groups_on_the_emulated_board() -> None:
    """Dense patches of 25-28 bytes (7 groups and a zero 8th: the unrolled 7-group block),
    besides the stem: 5x5 over 1 channel, 2x2 over 7 (all 28 lanes used), 3x3 over 3 with
    stride 1; SAME padding (the border's per-tap gather), batches of 2; against TFLite."""
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_export import write_tflite

    for h, w, cin, k, cout, stride in [(11, 9, 1, 5, 10, 1), (8, 9, 7, 2, 6, 2), (7, 10, 3, 3, 8, 1)]:
        rng = np.random.default_rng(k * cin)
        taps = k * k * cin
        wts = rng.integers(-127, 128, (cout, k, k, cin), dtype=np.int8)
        scales = (10 ** rng.uniform(-2.5, -1.5, cout)).astype(np.float32)
        bias = (rng.integers(-50 * taps, 50 * taps, cout).astype(np.int32), quant(list(0.02 * scales), 0))
        out_q = quant(float(0.02 * np.median(scales) * np.sqrt(taps) * 73 * 74 / 25), 5)
        options = {"padding": "SAME", "stride_h": stride, "stride_w": stride, "activation": "NONE"}
        oh, ow = _out_size("SAME", h, k, stride, 1), _out_size("SAME", w, k, stride, 1)
        graph = _graph(
            "CONV_2D",
            (2, h, w, cin),
            quant(0.02, 7),
            wts,
            quant(list(scales), 0, 0),
            bias,
            (2, oh, ow, cout),
            out_q,
            options,
        )
        compiled = _compile(graph, f"dense7_{h}x{w}x{cin}x{k}")
        x = rng.integers(-128, 128, (2, h, w, cin), dtype=np.int8)
        want = run_tflite(write_tflite(graph), [x])[0]
        assert np.mean((want > -128) & (want < 127)) > 0.5 and np.unique(want).size >= 16
        outs, _ = _on_board(compiled, True, [x])
        np.testing.assert_array_equal(outs[0], want)


def _mixed_case(seed: int) -> Case:
    """Wide 1x1 (and 3x3) convolutions, input_c a multiple of 4, with the full activation range
    and a few output channels whose real multiplier is >= 1/2 (off requant_fast.h's fast path):
    the fast channel pairs' own loop (pairs_fast_full) stops at the first such pair and the
    generic loop finishes the layer."""
    rng = np.random.default_rng(13000 + seed)
    k = int(rng.choice([1, 1, 3]))
    in_c = 4 * int(rng.integers(1, 40))
    out_c = int(rng.integers(2, 40))
    h, w = int(rng.integers(k, 8)), int(rng.integers(k, 8))
    scales = (10 ** rng.uniform(-3, -1.5, out_c)).astype(np.float32)
    out_scale = float(0.02 * np.median(scales) * np.sqrt(in_c * k * k) * 73 * 74 / 25)
    slow = rng.choice(out_c, size=int(rng.integers(1, 3)), replace=False)
    scales[slow] = np.float32(out_scale / 0.02 * rng.uniform(0.6, 3.0))  # multiplier 0.6-3
    wts = rng.integers(-127, 128, (out_c, k, k, in_c), dtype=np.int8)
    bias = (rng.integers(-5000, 5000, out_c).astype(np.int32), quant(list(0.02 * scales), 0))
    out_q = quant(out_scale, int(rng.integers(-20, 20)))
    options = {"padding": "SAME", "stride_h": 1, "stride_w": 1, "activation": "NONE"}
    g = _graph(
        "CONV_2D",
        (1, h, w, in_c),
        quant(0.02, -3),
        wts,
        quant(list(scales), 0, 0),
        bias,
        (1, h, w, out_c),
        out_q,
        options,
    )
    return Case(g, out_q, "NONE")


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("seed", range(30))
def test_mixed_fast_path_channels_match_reference(seed: int, trained: bool) -> None:
    _compare(_mixed_case(seed), seed, trained)


@pytest.mark.parametrize("seed", range(0, 30, 5))
def test_mixed_fast_path_channels_are_bit_exact_with_tflite(seed: int) -> None:
    with dsp_on_host():
        check_bit_exact(_mixed_case(seed).graph, np.random.default_rng(seed))


@pytest.mark.emulator
def test_mixed_fast_path_channels_on_the_emulated_board() -> None:
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_export import write_tflite

    for seed in (0, 1, 2):
        graph = _mixed_case(seed).graph
        compiled = _compile(graph, f"mixed_{seed}")
        shape = graph.tensor(0).shape
        x = np.random.default_rng(seed).integers(-128, 128, shape, dtype=np.int8)
        want = run_tflite(write_tflite(graph), [x])[0]
        outs, _ = _on_board(compiled, True, [x])
        np.testing.assert_array_equal(outs[0], want)
