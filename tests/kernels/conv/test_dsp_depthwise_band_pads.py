"""The 3x3 variant's band copy keeps its padding from one channel group to the next where one
band holds the whole map (depthwise_conv2d_s8_3x3_dsp.c: only the first group, and a group
straddling train_rows, whose taps overwrite the copy's start, write it), against the reference
kernel bit for bit on the host: maps of one band at stride 1 and 2 (SAME: padding rows and
columns; VALID: none), groups before and after a straddling one, a last partial group, two
batches (the next batch keeps the padding too), and an input zero point far from 0 (a stale
input value left in the padding would change the outputs)."""

from __future__ import annotations

import ctypes
import dataclasses

import numpy as np
import pytest

from pytools.model.lowering import lower
from tests.kernels.conv.support import conv_options
from tests.kernels.conv.test_conv_kernels import _graph
from tests.kernels.conv.test_dsp_depthwise_channel_pairs import _pairs
from tests.kernels.conv.test_dsp_kernels import TRAINED, _operands, _run
from tests.kernels.support import quant

# (batches, h, w, channels, stride, padding, train_rows): one band each (band copy, not pairs).
CASES = [
    (1, 4, 4, 28, 1, "SAME", 0),
    (2, 4, 4, 30, 1, "SAME", 13),  # groups 0..8 keep, 12..15 straddles, then keep again
    (1, 4, 4, 24, 1, "SAME", 6),
    (2, 8, 8, 20, 2, "SAME", 9),  # 8 wide at stride 2: a padding row and column
    (1, 7, 5, 17, 2, "SAME", 0),
    (2, 6, 6, 16, 1, "VALID", 2),
    (1, 5, 7, 21, 1, "SAME", 11),
]


def _call(i: int, out_scale: float | None = None):
    n, h, w, c, stride, padding, rows = CASES[i]
    rng = np.random.default_rng(4100 + i)
    scales = (0.02 * 10 ** rng.uniform(-0.5, 0.3, c)).astype(np.float32)
    wts = rng.integers(-127, 128, (1, 3, 3, c), dtype=np.int8)
    bias = (rng.integers(-3000, 3000, c).astype(np.int32), quant(list(0.02 * scales), 0))
    out_q = quant(out_scale or float(rng.uniform(0.05, 0.2)), int(rng.integers(-20, 20)))
    size = (lambda k: -(-k // stride)) if padding == "SAME" else (lambda k: -(-(k - 2) // stride))
    g = _graph(
        "DEPTHWISE_CONV_2D",
        (n, h, w, c),
        quant(0.02, 100),  # input offset -100: a stale input word in the padding would show
        wts,
        quant(list(scales), 0, 3),
        bias,
        (n, size(h), size(w), c),
        out_q,
        conv_options(padding, stride, "RELU6" if i % 2 else "NONE", depth_multiplier=1),
    )
    call = lower(g, g.ops[0])
    arrays = _operands(g, call, rng)
    if rows:
        trained_w = arrays[1].reshape(-1, c)[:, :rows].astype(np.int16) + rng.integers(-3, 4, (9, rows))
        params = dict(call.params, train_rows=rows, train_bias_rows=rows)
        call = dataclasses.replace(call, params=params)
        w_idx, b_idx = TRAINED[call.kernel]
        arrays[w_idx] = np.ascontiguousarray(np.clip(trained_w, -127, 127).astype(np.int8))
        arrays[b_idx] = rng.integers(-20000, 20000, rows).astype(np.int32)
    return call, arrays


def _band(call) -> int:
    """The band (output rows) the 3x3 variant's copy holds for the layer (0: not the variant)."""
    from pytools.model.kernels import host_lib

    fn = host_lib().depthwise_conv2d_s8_3x3_dsp_band
    fn.restype = ctypes.c_int32
    fn.argtypes = [ctypes.c_char_p]
    return int(fn(call.packed_params()))


def test_channels_off_the_fast_requantization_match_reference() -> None:
    """Real multipliers from about 0.3 to 2 (an output scale of 4e-4): groups with a channel
    whose shift is 0 or a left shift, off requant_fast.h's path (dw_rq_load's range tests), and
    groups all on it, in one layer (the padding kept across both kinds of group)."""
    for i in (0, 1, 3):
        call, arrays = _call(i, out_scale=4e-4)
        shifts = arrays[4] if arrays[4].size == call.params["input_c"] else None
        assert shifts is not None and (shifts >= 0).any() and (shifts == -1).any(), arrays[4]
        ref = _run(call, arrays, "ref")
        assert (ref == 127).any() and (ref < 127).any()  # saturated and not
        np.testing.assert_array_equal(_run(call, arrays, "dsp"), ref)


def test_the_cases_take_the_band_copy_in_one_band() -> None:
    for i in range(len(CASES)):
        call, _ = _call(i)
        assert _band(call) >= call.params["output_h"] and not _pairs(call), CASES[i]


@pytest.mark.parametrize("i", range(len(CASES)))
def test_band_padding_kept_across_groups_matches_reference(i: int) -> None:
    call, arrays = _call(i)
    ref = _run(call, arrays, "ref")
    dsp = _run(call, arrays, "dsp")
    assert np.unique(ref).size > 20  # the outputs spread
    np.testing.assert_array_equal(dsp, ref)


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"])
def test_band_padding_kept_is_bit_exact_on_the_emulated_board(tmp_path, board_name: str) -> None:
    """The same cases (and those off the fast requantization) on the Cortex-M7 and Cortex-M4
    builds: the band's rows in one call of the blocks of assembly (d3_rows, every row of a
    band), against the reference on the host."""
    from tests.kernels import grad_support as gs

    calls = [_call(i) for i in range(len(CASES))] + [_call(i, out_scale=4e-4) for i in (0, 1, 3)]
    board = gs.run_on_board(calls, tmp_path, board_name)
    for (call, arrays), got in zip(calls, board, strict=True):
        np.testing.assert_array_equal(got[-1], _run(call, arrays, "ref"), err_msg=str(call.params))
