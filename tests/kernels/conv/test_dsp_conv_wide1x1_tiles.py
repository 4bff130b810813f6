"""The wide 1x1 variant (conv2d_s8_1x1_wide_dsp.c: pointwise convolutions over more than 512
input channels, 4 widened pixels times int8 filter rows unpacked on the fly) at its edges: the
inner loop's tails (groups of 4 input channels modulo 4: 516, 520, 524 and 576 channels), last
tiles of 1 to 3 pixels, batches, odd and single output channels, a clamped activation, per-tensor
quantization, channels off requant_fast.h's fast path (left shifts), trained rows and trained
input-channel slices. Bit for bit against the reference kernel on the host, against TFLite's
reference, and on the emulated Cortex-M7 (its assembly) against TFLite's reference."""

from __future__ import annotations

import numpy as np
import pytest

from tests.kernels import grad_support as gs
from tests.kernels.conv.support import run_variant
from tests.kernels.conv.test_conv_kernels import Case
from tests.kernels.conv.test_dsp_conv_wide1x1 import board_and_tflite, pointwise_case
from tests.kernels.conv.test_dsp_kernels import _compare, dsp_on_host
from tests.kernels.support import check_bit_exact

# Groups of 4 channels: 129, 130, 131, 144 (the assembly's 4-group loop leaves 1, 2, 3, 0).
DEPTHS = (516, 520, 524, 576)


def _case(
    seed: int,
    in_c: int | None = None,
    shape: tuple[int, int, int] | None = None,
    out_c: int | None = None,
    activation: str | None = None,
    gain: bool = False,
) -> Case:
    """shape: (batches, h, w); gain: every third channel's scale x 2000, so its multiplier is
    above 1/2 (a left shift: the reference's requantization, not requant_fast.h's)."""
    rng = np.random.default_rng(53000 + seed)
    in_c = in_c or int(rng.choice(DEPTHS))
    out_c = out_c or int(rng.integers(1, 24))
    n, h, w = shape or (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    per_channel = gain or bool(rng.random() < 0.8)
    activation = activation or str(rng.choice(["NONE", "RELU6", "RELU"]))
    scales = (10 ** rng.uniform(-3.5, -2.5, out_c if per_channel else 1)).astype(np.float32)
    # |w| ~ 73 and |x - zp| ~ 74 on average: the sums spread over about +-40 output steps.
    out_scale = float(0.02 * np.median(scales) * np.sqrt(in_c) * 73 * 74 / 40)
    if gain:
        scales[::3] *= 2000.0
    return pointwise_case(rng, (n, h, w), in_c, out_c, scales, out_scale, activation)


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("seed", range(24))
def test_wide_tiles_dsp_matches_reference(seed: int, trained: bool) -> None:
    _compare(_case(seed, gain=seed % 4 == 3), seed, trained)


@pytest.mark.parametrize("pixels", range(1, 10))
def test_every_last_tile_dsp_matches_reference(pixels: int) -> None:
    """1 to 9 pixels: last tiles of 1, 2, 3 and 4 pixels, after 0 to 2 whole tiles."""
    for k, in_c in enumerate(DEPTHS):
        _compare(_case(100 + pixels, in_c, (1, 1, pixels), 5 + k), pixels, k % 2 == 1)


def test_the_tile_cases_are_informative() -> None:
    """Most outputs spread over many values; the gain cases really leave the fast path (a
    multiplier above 1/2) and still spread."""
    outs = [_compare(_case(seed), seed, False) for seed in range(24)]
    spread = [np.unique(o).size >= 8 for o in outs if o.size >= 32]
    assert len(spread) >= 6 and np.mean(spread) >= 0.75, spread
    case = _case(3, 576, (1, 3, 3), 12, "NONE", gain=True)
    from pytools.model.lowering import lower

    call = lower(case.graph, case.graph.ops[0])
    shifts = [o.data for o in call.operands if o.data is not None and o.data.dtype == np.int32][1]
    assert (shifts >= 0).any() and (shifts < 0).any(), shifts
    assert np.unique(_compare(case, 3, False)).size >= 8


@pytest.mark.parametrize("seed", range(3))
def test_wide_tiles_dsp_is_bit_exact_with_tflite(seed: int) -> None:
    with dsp_on_host():
        check_bit_exact(_case(seed, gain=seed == 2).graph, np.random.default_rng(seed))


@pytest.mark.parametrize("seed", range(6))
def test_wide_input_channel_slices_dsp_matches_reference(seed: int) -> None:
    """MIT's scheme trains the first input channels of a layer (train_cols): the rows the
    variant reads are composed from RAM and flash, one channel at a time."""
    rng = np.random.default_rng(54000 + seed)
    in_c = int(rng.choice(DEPTHS))
    opts = dict(fh=1, fw=1, dh=1, dw=1, sh=1, sw=1, padding="VALID", in_c=in_c)
    opts |= dict(out_c=int(rng.integers(2, 12)), h=int(rng.integers(1, 4)), w=int(rng.integers(1, 4)))
    layer = gs.make_layer("conv", seed, train_cols=int(rng.choice([4, in_c // 4, in_c // 2])), **opts)
    call, values = gs.forward_call(layer, trained=True)
    ref = run_variant(call, values, "ref")[-1]
    np.testing.assert_array_equal(run_variant(call, values, "dsp")[-1], ref)
    np.testing.assert_array_equal(ref, gs.run_forward(layer, trained=False))


@pytest.mark.emulator
def test_wide_tiles_are_bit_exact_on_the_emulated_board() -> None:
    """The assembly's tails (1, 2, 3 groups), last tiles of 1 to 3 pixels, two batches, a
    clamped activation and left-shift channels, on the emulated Cortex-M7 against TFLite."""
    cases = [
        (516, (1, 1, 3), 7, "NONE", False),
        (520, (2, 1, 3), 10, "RELU6", False),
        (524, (1, 2, 3), 9, "NONE", True),
        (576, (1, 1, 1), 1, "NONE", False),
    ]
    for k, (in_c, shape, out_c, act, gain) in enumerate(cases):
        g = _case(200 + k, in_c, shape, out_c, act, gain).graph
        for got, want in board_and_tflite(g, f"wide1x1_tiles_{k}", 8 + k):
            if want.size >= 16:
                assert np.unique(want).size >= 4
            np.testing.assert_array_equal(got, want)
