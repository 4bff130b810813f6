"""The 1x1 update's path for a row whose gradient reaches exactly one position
(conv2d_s8_grad_update_dsp.c's `products`: a fully connected layer's batch of 1, or a sparse
gradient) against the reference, bit for bit (new weights, biases, generator state), on the host
twin and on the emulated Cortex-M7 and M4: batches of one at odd depths and with 4-value tails,
batches where each row keeps one nonzero gradient (another position of it masked or zero), rows
with none, and 1x1 convolutions too large for the spatial variant."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from tests.kernels import grad_support as gs
from tests.kernels.conv.support import assert_board_matches_ref, dsp_same_as_ref


def _one_position_rows(layer: gs.Layer) -> gs.Layer:
    """Each output channel keeps its gradient at one position (chosen per channel), zero
    elsewhere; every fifth channel none at all."""
    g = layer.g_q.reshape(-1, layer.g_q.shape[-1]).copy()
    rng = np.random.default_rng(g.size)
    keep = rng.integers(0, g.shape[0], g.shape[1])
    out = np.zeros_like(g)
    for c, q in enumerate(keep):
        if c % 5 != 4:
            out[q, c] = g[q, c] if g[q, c] != 0 else 77
    layer.g_q = out.reshape(layer.g_q.shape)
    return layer


def _layers() -> list[tuple[gs.Layer, float]]:
    cases: list[tuple[gs.Layer, float]] = []
    for i, depth in enumerate((1280, 1283, 3, 37, 250)):
        force: dict[str, Any] = dict(batches=1, depth=depth, units=10, train_rows=10, train_bias_rows=10)
        cases.append(
            (gs.make_layer("fc", 700 + i, per_channel=i % 2 == 0, **force), (0.003, 0.05, 1.0, 30.0, 0.01)[i])
        )
    for i in range(3):  # batches of several samples, one nonzero gradient per row
        layer = gs.make_layer("fc", 720 + i, batches=3 + i, depth=61 + 8 * i, units=7, train_rows=7, z_w=0)
        cases.append((_one_position_rows(layer), 0.1))
    for i in range(3):  # 1x1 convolutions past the spatial variant (81 positions)
        layer = gs.make_layer(
            "conv", 740 + i, fh=1, fw=1, h=9, w=9, sh=1, sw=1, n=1, in_c=13 + 4 * i, out_c=9, train_rows=9
        )
        cases.append((_one_position_rows(layer), 0.2))
    return cases


def _calls() -> list[tuple[Any, list[np.ndarray]]]:
    calls = []
    for k, (layer, lr) in enumerate(_layers()):
        call, values = gs.update_call(layer, lr, True, True, 0x5EED + k)
        calls.append((call, [np.ascontiguousarray(v) for v in values[:8]]))
    return calls


def test_one_position_rows_match_the_reference_on_the_host() -> None:
    moved = 0
    for call, values in _calls():
        out = dsp_same_as_ref(call, values)
        moved += not np.array_equal(out[5], values[5])
    assert moved >= 9


def test_the_cases_have_rows_with_one_position() -> None:
    """The path is taken: rows whose gradient is nonzero at exactly one position, in every case
    (and rows with none in the sparse ones)."""
    for layer, _ in _layers():
        g = layer.g_q.reshape(-1, layer.g_q.shape[-1])
        if layer.mask is not None:
            g = np.where(layer.mask.reshape(g.shape), g, 0)
        per_row = np.count_nonzero(g, axis=0)[: layer.train_rows]
        assert np.any(per_row == 1), layer.kind


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_one_position_rows_on_the_emulated_boards(tmp_path, board_name: str) -> None:
    calls = _calls()
    board = gs.run_on_board(copy.deepcopy(calls), tmp_path, board_name)
    assert_board_matches_ref(calls, board)
