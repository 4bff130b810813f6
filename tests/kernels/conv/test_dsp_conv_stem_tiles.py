"""The stem's GEMM path over several tiles (conv2d_s8_gemm_dsp.c, conv2d_s8_stem_dsp.c): a 3x3
convolution over 3 input channels with more output pixels than one tile holds has every filter
row widened once into the planned buffer (tiles of 32 to 64 pixels beside them), and the
patches of a row that lie inside the image gathered in one run (widen_stem_run), the border's
(SAME padding) one tap at a time. Bit for bit against the reference kernel on the host (odd
and single output channels, batches, strides 1 and 2, dilations, trained rows) and against
TFLite's reference, and on the emulated Cortex-M7 against TFLite."""

from __future__ import annotations

import numpy as np
import pytest

from tests.kernels.conv.support import conv_options
from tests.kernels.conv.test_conv_kernels import Case, _graph, _out_size
from tests.kernels.conv.test_dsp_kernels import _compare, dsp_on_host
from tests.kernels.support import check_bit_exact, quant


def _case(
    seed: int,
    shape: tuple[int, int, int] | None = None,
    cout: int | None = None,
    padding: str | None = None,
    stride: int | None = None,
    dilation: int | None = None,
    act: str | None = None,
) -> Case:
    """shape: (batches, h, w) of the 3-channel input."""
    rng = np.random.default_rng(56000 + seed)
    n, h, w = shape or (int(rng.integers(1, 3)), int(rng.integers(14, 40)), int(rng.integers(14, 40)))
    cout = cout or int(rng.integers(1, 20))
    padding = padding or str(rng.choice(["SAME", "VALID"]))
    stride = stride or int(rng.choice([1, 2, 2]))
    dil = dilation or int(rng.choice([1, 1, 1, 2]))
    act = act or str(rng.choice(["NONE", "RELU6", "RELU"]))
    per_channel = bool(rng.random() < 0.8)
    scales = (10 ** rng.uniform(-3, -1.5, cout if per_channel else 1)).astype(np.float32)
    wts = rng.integers(-127, 128, (cout, 3, 3, 3), dtype=np.int8)
    in_q = quant(0.02, int(rng.integers(-128, 128)))
    bias = (rng.integers(-5000, 5000, cout).astype(np.int32), quant(list(0.02 * scales), 0))
    oh, ow = _out_size(padding, h, 3, stride, dil), _out_size(padding, w, 3, stride, dil)
    out_q = quant(float(0.02 * np.median(scales) * np.sqrt(27) * 73 * 74 / 25), int(rng.integers(-50, 50)))
    options = conv_options(padding, stride, act, dil)
    wq = quant(list(scales), 0, 0)
    g = _graph("CONV_2D", (n, h, w, 3), in_q, wts, wq, bias, (n, oh, ow, cout), out_q, options)
    return Case(g, out_q, act)


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("seed", range(30))
def test_stem_tiles_dsp_matches_reference(seed: int, trained: bool) -> None:
    _compare(_case(seed), seed, trained)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("cout", [1, 2, 15, 16, 40])
def test_stem_row_counts_dsp_matches_reference(cout: int, padding: str) -> None:
    """Few output channels (tiles of 64 beside the rows) to many (40: the rows leave less than
    32 pixels, so each pair's rows are widened per tile again), over 2 x 33 x 35 inputs."""
    _compare(_case(cout, (2, 33, 35), cout, padding, 2, 1), cout, cout % 2 == 1)


def test_the_stem_cases_are_informative() -> None:
    """Most outputs spread over many values, and most cases have more pixels than a tile."""
    cases = [_case(seed) for seed in range(30)]
    outs = [_compare(c, seed, False) for seed, c in enumerate(cases)]
    spread = [np.unique(o).size >= 16 for o in outs]
    assert np.mean(spread) >= 0.75, spread
    pixels = [int(np.prod(o.shape[:3])) for o in outs]
    assert np.mean([n > 64 for n in pixels]) >= 0.75, pixels


@pytest.mark.parametrize("seed", range(3))
def test_stem_tiles_dsp_is_bit_exact_with_tflite(seed: int) -> None:
    with dsp_on_host():
        check_bit_exact(_case(seed).graph, np.random.default_rng(seed))


@pytest.mark.emulator
def test_stem_tiles_are_bit_exact_on_the_emulated_board() -> None:
    """SAME padding (border patches before and after each row's run), two batches, an odd
    channel count, stride 1, and a dilated one, on the emulated Cortex-M7 against TFLite."""
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_export import write_tflite
    from tests.kernels.conv.test_dsp_kernels import _compile, _on_board

    cases = [
        (1, (2, 33, 35), 15, "SAME", 2, 1, "NONE"),
        (2, (1, 30, 17), 16, "VALID", 1, 1, "RELU6"),
        (3, (1, 29, 31), 9, "SAME", 2, 2, "RELU"),
    ]
    for seed, shape, cout, padding, stride, dil, act in cases:
        graph = _case(seed, shape, cout, padding, stride, dil, act).graph
        compiled = _compile(graph, f"stem_tiles_{seed}")
        x = np.random.default_rng(seed).integers(-128, 128, (*shape, 3), dtype=np.int8)
        want = run_tflite(write_tflite(graph), [x])[0]
        assert np.unique(want).size >= 16
        outs, _ = _on_board(compiled, True, [x])
        np.testing.assert_array_equal(outs[0], want)


def _dsp_on_stale_scratch(call, arrays: list[np.ndarray], seed: int) -> np.ndarray:
    """conv2d_s8's DSP variant on the host with its scratch full of random bytes (run_kernel
    zeroes it; in a training step the arena holds whatever the previous operator left)."""
    import ctypes

    from pytools.model.kernels import host_lib, scratch_size

    values = [a.copy() for a in arrays]
    ptrs = (ctypes.c_void_p * len(values))(*(v.ctypes.data for v in values))
    raw = np.random.default_rng(seed).integers(0, 256, scratch_size(call) + 16, dtype=np.uint8)
    scratch = raw[-raw.ctypes.data % 16 :]
    fn = host_lib().conv2d_s8_dsp_run
    fn.restype = None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
    fn(call.packed_params(), ptrs, scratch.ctypes.data)
    return values[-1]


@pytest.mark.parametrize("seed", range(6))
def test_stem_ignores_what_its_scratch_held(seed: int) -> None:
    """widen_stem leaves the patches' 8th group as the scratch held it (the filter rows' 8th
    group is zero, so its products are 0): with random bytes there, the outputs are the
    reference's, bit for bit, hoisted rows or not, ReLU6 over [0, 6] (rq3) or not."""
    from pytools.model.lowering import lower
    from tests.kernels.conv.test_dsp_kernels import _operands, _run

    act = ["RELU6", "NONE"][seed % 2]
    case = _case(seed, (1, 29 + seed, 31), [16, 7, 40][seed % 3], "VALID", 2, 1, act)
    g = case.graph
    if seed % 2 == 0:  # ReLU6 quantized over [0, 6]: rq3
        g.tensors[3].quant = quant(6.0 / 255.0, -128)
    call = lower(g, g.ops[0])
    arrays = _operands(g, call, np.random.default_rng(seed))
    want = _run(call, arrays, "ref")
    np.testing.assert_array_equal(_dsp_on_stale_scratch(call, arrays, seed), want)
    assert np.unique(want).size >= 16
