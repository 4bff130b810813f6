"""The depthwise k x k DSP variant (firmware/kernels/depthwise_conv2d_s8_kxk_dsp.c: 5x5, 7x7
and other filters beyond 3x3, depth multiplier 1, dilation 1) against the reference kernel
bit for bit on the host (the portable twins of dsp.h), against TFLite's reference, and on the
emulated Cortex-M7 (real SMLABB/SMLATT) against TFLite's reference.

The cases are the layers it takes: square and oblong filters, strides 1 to 3, SAME, VALID
and explicit padding before the first row and column with any padding after (a folded PAD,
option "explicit_pad"), maps from a single window to several tiles of the copy in both
directions, channel counts with and without a partial group of four, trained slices, and
every fused activation.
"""

from __future__ import annotations

import numpy as np
import pytest

from pytools.model.lowering import lower
from tests.kernels.conv.support import depthwise_chain
from tests.kernels.conv.test_conv_kernels import Case, _graph
from tests.kernels.conv.test_dsp_kernels import _compare, _operands, _run, dsp_on_host
from tests.kernels.support import check_bit_exact, quant

ACTIVATIONS = ("NONE", "RELU", "RELU6")


def _case(
    seed: int,
    explicit: bool = False,
    large: bool = False,
    tflite: bool = False,
    filt: tuple[int, int] | None = None,
) -> Case:
    rng = np.random.default_rng(47000 + seed + (1000 if explicit else 0) + (2000 if large else 0))
    fh, fw = filt or [(5, 5), (7, 7), (5, 5), (7, 7), (5, 3), (1, 7), (4, 4)][seed % 7]
    stride = int(rng.choice([1, 2, 2, 3]))
    c = int(rng.choice([int(rng.integers(1, 30)), 16, 24, 48]))
    lo, hi = (max(fh, fw), max(fh, fw) + 12) if not large else (30, 70)
    h, w = int(rng.integers(lo, hi)), int(rng.integers(lo, hi))
    activation = str(rng.choice(ACTIVATIONS))
    per_channel = bool(rng.random() < 0.8)
    bound = {"NONE": 3.0, "RELU": 3.0, "RELU6": 6.0}[activation]
    in_s = 0.02
    spread = np.sqrt(fh * fw) * 73 * 74 * in_s
    scales = (bound / spread * 10 ** rng.uniform(-0.5, 0.3, c if per_channel else 1)).astype(np.float32)
    wts = rng.integers(-127, 128, (1, fh, fw, c), dtype=np.int8)
    bias = (rng.integers(-3000, 3000, c).astype(np.int32), quant(list(in_s * scales), 0))
    zp = int(rng.integers(-128, 128)) if activation == "NONE" else int(rng.integers(-128, 0))
    out_q = quant(float(bound / max(127 - zp, 64) * rng.uniform(0.6, 1.2)), zp)
    options = {
        "stride_h": stride,
        "stride_w": stride,
        "dilation_h": 1,
        "dilation_w": 1,
        "depth_multiplier": 1,
        "activation": activation,
    }
    if explicit and not tflite:
        # A folded PAD: pad_top/pad_left before, anything from 0 to fh-1 after.
        pt, pl = int(rng.integers(0, fh)), int(rng.integers(0, fw))
        pb, pr = int(rng.integers(0, fh)), int(rng.integers(0, fw))
        oh = (h + pt + pb - fh) // stride + 1
        ow = (w + pl + pr - fw) // stride + 1
        options["padding"] = "VALID"
        options["explicit_pad"] = (pt, pl)
    else:
        padding = str(rng.choice(["SAME", "VALID"]))
        options["padding"] = padding
        oh, ow = (
            -(-n // stride) if padding == "SAME" else -(-(n - k + 1) // stride) for n, k in ((h, fh), (w, fw))
        )
    in_q = quant(in_s, int(rng.integers(-128, 128)))
    w_q = quant(list(scales), 0, 3)
    g = _graph("DEPTHWISE_CONV_2D", (1, h, w, c), in_q, wts, w_q, bias, (1, oh, ow, c), out_q, options)
    return Case(g, out_q, activation)


def test_the_variant_takes_the_cases() -> None:
    """The cases are layers it takes: filters beyond 3x3, depth multiplier 1, dilation 1."""
    for seed in range(14):
        for explicit in (False, True):
            p = lower(_case(seed, explicit).graph, _case(seed, explicit).graph.ops[0]).params
            assert max(p["filter_h"], p["filter_w"]) > 3 and p["depth_multiplier"] == 1
            assert p["dilation_h"] == p["dilation_w"] == 1
            if explicit:
                assert "explicit_pad" in _case(seed, explicit).graph.ops[0].options


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("explicit", [False, True])
@pytest.mark.parametrize("seed", range(28))
def test_depthwise_kxk_dsp_matches_reference(seed: int, explicit: bool, trained: bool) -> None:
    _compare(_case(seed, explicit), seed, trained)


@pytest.mark.parametrize("explicit", [False, True])
@pytest.mark.parametrize("seed", range(7))
def test_depthwise_kxk_large_maps_match_reference(seed: int, explicit: bool) -> None:
    """Maps of several tiles of the copy in both directions."""
    _compare(_case(seed, explicit, large=True), seed, seed % 2 == 0)


@pytest.mark.parametrize("seed", range(7))
def test_depthwise_kxk_is_bit_exact_with_tflite(seed: int) -> None:
    with dsp_on_host():
        check_bit_exact(_case(seed, large=seed % 2 == 1, tflite=True).graph, np.random.default_rng(seed))


# Filters too tall for the pair variant's weight sets (filter_h * (filter_w / 2 + 1) > 28):
# the 16-bit-lane k x k variant (depthwise_conv2d_s8_kxk_dsp.c) takes them.
TALL = [(12, 4), (16, 3), (9, 5), (13, 3), (7, 6)]


def _takes(variant: str, call) -> bool:
    import ctypes

    from pytools.model.kernels import host_lib

    fn = getattr(host_lib(), f"depthwise_conv2d_s8_{variant}_dsp_takes")
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_char_p]
    return bool(fn(call.packed_params()))


def test_the_variants_split_the_cases() -> None:
    """5x5, 7x7 and the other filters of the cases above take the pair variant; the tall ones
    the 16-bit-lane one (both stay tested)."""
    for seed in range(7):
        call = lower(_case(seed).graph, _case(seed).graph.ops[0])
        assert _takes("kxk_pair", call), call.params
    for seed, filt in enumerate(TALL):
        call = lower(_case(seed, filt=filt).graph, _case(seed, filt=filt).graph.ops[0])
        pair = call.params["filter_h"] * (call.params["filter_w"] // 2 + 1) <= 28
        assert _takes("kxk_pair", call) == pair and _takes("kxk", call), call.params


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("seed", range(10))
def test_depthwise_kxk_tall_filters_match_reference(seed: int, trained: bool) -> None:
    filt = TALL[seed % len(TALL)]
    _compare(_case(seed, seed % 2 == 1, large=seed >= 5, filt=filt), seed, trained)


def test_the_kxk_cases_are_informative() -> None:
    """The outputs spread (a saturated output would match anything)."""
    spread = []
    for seed in range(28):
        case = _case(seed, seed % 2 == 0)
        g = case.graph
        call = lower(g, g.ops[0])
        out = _run(call, _operands(g, call, np.random.default_rng(seed)), "dsp")
        spread.append(np.unique(out).size >= 12)
    assert np.mean(spread) >= 0.8, spread


@pytest.mark.emulator
def test_depthwise_kxk_is_bit_exact_on_the_emulated_board() -> None:
    """5x5 and 7x7 layers (stride 1 and 2, SAME, a partial channel group) on the Cortex-M7
    build, against TFLite's reference."""
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_export import write_tflite
    from tests.kernels.conv.test_dsp_kernels import _compile, _on_board
    from tests.test_models import random_inputs

    graph = depthwise_chain(24, 22, 18, KXK_CHAIN, scale_spread=(-0.3, 0.3))
    compiled = _compile(graph, "dw_kxk_chain")
    inputs = random_inputs(compiled.blob, np.random.default_rng(5), 2)
    expected = [run_tflite(write_tflite(graph), [x])[0] for x in inputs]
    outs, _ = _on_board(compiled, True, inputs)
    for got, want in zip(outs, expected, strict=True):
        assert np.unique(want).size > 20
        np.testing.assert_array_equal(got, want)


# 7x7/2 SAME, 5x5/1 SAME, 7x7/1 VALID, 5x5/2 SAME depthwise layers in a row.
KXK_CHAIN = (
    (7, 2, "SAME", "RELU6", 6.0),
    (5, 1, "SAME", "NONE", 3.0),
    (7, 1, "VALID", "RELU", 3.0),
    (5, 2, "SAME", "RELU6", 6.0),
)


@pytest.mark.slow
@pytest.mark.emulator
def test_mcunet_forward_with_dsp_kernels_is_bit_exact_on_the_emulated_board() -> None:
    """MCUNet-5FPS (5x5 and 7x7 depthwise layers, folded PADs as explicit padding, a 4x4x576
    pointwise conv) on the Cortex-M7 build against TFLite's reference."""
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_import import load_tflite
    from pytools.pretrain.mcunet import mcunet_path
    from tests.kernels.conv.test_dsp_kernels import _compile, _on_board

    path = mcunet_path()
    compiled = _compile(load_tflite(path), path.stem)
    x = np.random.default_rng(0).integers(-128, 128, (1, 128, 128, 3), dtype=np.int8)
    (got,), _ = _on_board(compiled, True, [x])
    want = run_tflite(path.read_bytes(), [x])[0]
    np.testing.assert_array_equal(got, want)
