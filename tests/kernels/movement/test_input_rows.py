"""INPUT_ROWS (kernels/input_rows.c): a streamed input's band moves the rows the next band
keeps to its start (lowering/stream.py plans them; the runtime's caller writes the rest).

Oracle: numpy's copy of the kept bytes (a memmove: the source and destination overlap when
the band advances by fewer rows than it keeps), every other byte of the band unchanged, on
random bands and moves; the same calls on the emulated Cortex-M7 and Cortex-M4."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from pytools.model.ir import Graph, Op, Quant, Tensor
from pytools.model.kernels import KernelCall, run_kernel
from pytools.model.lowering import lower
from tests.kernels import grad_support as gs

Q = Quant(np.array([0.02], np.float32), np.array([-3]))


def _call(seed: int) -> tuple[KernelCall, np.ndarray, tuple[int, int]]:
    """A random band and move: (call, band before, (keep_from, keep_len))."""
    rng = np.random.default_rng(seed)
    height, width, depth = (int(v) for v in rng.integers(2, 14, 3))
    rows = int(rng.integers(1, height + 1))
    row = width * depth
    keep_rows = int(rng.integers(0, rows + 1))
    # keep_from: any row start the kept rows fit behind (0: nothing to move); an overlapping
    # move (keep_from < keep_len) comes up often at these sizes.
    keep_from = int(rng.integers(0, rows - keep_rows + 1)) * row if keep_rows else 0
    fetch_rows = int(rng.integers(0, rows - keep_rows + 1))
    x = Tensor(0, "x", (1, height, width, depth), "int8", Q)
    band = Tensor(1, "band", (1, rows, width, depth), "int8", Q)
    options = {
        "keep_from": keep_from,
        "keep_len": keep_rows * row,
        "fetch_offset": int(rng.integers(0, height - fetch_rows + 1)) * row,
        "fetch_len": fetch_rows * row,
    }
    g = Graph([x, band], [Op(0, "INPUT_ROWS", [0, 1], [1], options)], [0], [1])
    before = rng.integers(-128, 128, band.shape, dtype=np.int8)
    return lower(g, g.ops[0]), before, (keep_from, keep_rows * row)


def _expected(before: np.ndarray, keep: tuple[int, int]) -> np.ndarray:
    flat = before.reshape(-1).copy()
    start, n = keep
    flat[:n] = before.reshape(-1)[start : start + n].copy()
    return flat.reshape(before.shape)


@pytest.mark.parametrize("seed", range(40))
def test_input_rows_moves_the_kept_rows_to_the_band_start(seed: int) -> None:
    call, before, keep = _call(seed)
    band = before.copy()
    run_kernel(call, [band])
    np.testing.assert_array_equal(band, _expected(before, keep))


def test_random_cases_move_overlapping_and_disjoint_rows() -> None:
    """The cases above are not vacuous: some move nothing, some overlap, some do not."""
    keeps = [_call(seed)[2] for seed in range(40)]
    assert any(n == 0 for _, n in keeps)
    assert any(0 < start < n for start, n in keeps)  # source and destination overlap
    assert any(start >= n > 0 for start, n in keeps)


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_input_rows_on_the_emulated_boards(tmp_path, board_name: str) -> None:
    cases = [_call(seed) for seed in range(24)]
    calls = [(call, [before.copy()]) for call, before, _ in cases]
    board = gs.run_on_board(copy.deepcopy(calls), tmp_path, board_name)
    for (call, before, keep), got in zip(cases, board, strict=True):
        np.testing.assert_array_equal(got[0], _expected(before, keep), err_msg=str(call.params))
