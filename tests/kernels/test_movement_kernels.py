"""Bit-exactness of the shape and movement kernels (issue 12) against TFLite's reference
kernels (BUILTIN_REF), on randomized seeded cases: TRANSPOSE, CONCATENATION, STRIDED_SLICE,
SLICE, SQUEEZE, EXPAND_DIMS, RESIZE_NEAREST_NEIGHBOR, DEPTH_TO_SPACE and SPACE_TO_DEPTH.

Each case builds a one-op IR graph with random shapes and parameters, runs it through TFLite
and through our lowering + C kernels (host library), and requires identical outputs. The
inputs are random int8 (or float32) values, so a wrong index shows as a wrong value; the
checks that the output is not constant keep a degenerate case from passing vacuously.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytools.model.ir import ModelError, Tensor
from pytools.model.lowering import lower
from pytools.model.lowering.movement import simplify_transpose
from pytools.model.oracle import run_tflite
from pytools.model.tflite_export import write_tflite
from tests.kernels.support import check_bit_exact, quant, run_ours
from tests.kernels.test_other_kernels import const_i32, not_constant, one_op, rand_scale, rand_shape, rand_zp, t8

SEEDS = range(30)


def _q(rng: np.random.Generator):
    return quant(rand_scale(rng, 0.01, 0.5), rand_zp(rng))


def _tensor(shape, dtype: str, q, name: str) -> Tensor:
    return Tensor(0, name, tuple(int(d) for d in shape), dtype, q if dtype == "int8" else None)


def _dtype(rng: np.random.Generator) -> str:
    return "float32" if rng.random() < 0.15 else "int8"


# ---- TRANSPOSE ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_transpose(seed):
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 7))  # TFLite's TRANSPOSE takes up to 6 dimensions
    shape = rand_shape(rng, rank, 5 if rank < 5 else 3)
    perm = [int(p) for p in rng.permutation(rank)]
    dtype, q = _dtype(rng), _q(rng)
    x = _tensor(shape, dtype, q, "x")
    y = _tensor([shape[p] for p in perm], dtype, q, "y")
    (out,) = check_bit_exact(one_op("TRANSPOSE", [x, const_i32(perm)], y), rng)
    if out.size > 4:
        not_constant(out)


def test_transpose_nchw_both_ways_and_simplification():
    rng = np.random.default_rng(1)
    q = quant(0.1, -3)
    for shape, perm in (((1, 6, 5, 7), [0, 3, 1, 2]), ((1, 7, 6, 5), [0, 2, 3, 1]), ((2, 3, 4), [0, 1, 2])):
        y = t8([shape[p] for p in perm], q, "y")
        check_bit_exact(one_op("TRANSPOSE", [t8(shape, q, "x"), const_i32(perm)], y), rng)
    # Adjacent dimensions that stay together merge; size-1 dimensions go.
    assert simplify_transpose([1, 6, 5, 7], [0, 3, 1, 2]) == ([30, 7], [1, 0])
    assert simplify_transpose([2, 3, 4], [0, 1, 2]) == ([24], [0])
    assert simplify_transpose([1, 1], [1, 0]) == ([], [])


def test_transpose_rejects_bad_permutation():
    q = quant(0.1)
    g = one_op("TRANSPOSE", [t8((2, 3), q, "x"), const_i32([0, 0])], t8((2, 2), q, "y"))
    with pytest.raises(ModelError, match=r"TRANSPOSE.*not a permutation"):
        lower(g, g.ops[0])


# ---- CONCATENATION --------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_concatenation(seed):
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 6))
    shape = rand_shape(rng, rank, 5)
    axis = int(rng.integers(-rank, rank))
    n = int(rng.integers(1, 6))
    dtype, q = _dtype(rng), _q(rng)
    xs = []
    for k in range(n):
        s = list(shape)
        s[axis] = int(rng.integers(1, 5))
        xs.append(_tensor(s, dtype, q, f"x{k}"))
    out_shape = list(shape)
    out_shape[axis] = sum(x.shape[axis] for x in xs)
    graph = one_op("CONCATENATION", xs, _tensor(out_shape, dtype, q, "y"), {"axis": axis})
    (out,) = check_bit_exact(graph, rng)
    not_constant(out)


def test_concatenation_same_tensor_twice():
    rng = np.random.default_rng(2)
    q = quant(0.05, 4)
    graph = one_op("CONCATENATION", [t8((1, 3, 3, 2), q, "a")], t8((1, 3, 3, 4), q, "y"), {"axis": -1})
    graph.ops[0].inputs = [0, 0]
    not_constant(check_bit_exact(graph, rng)[0])


def test_concatenation_refuses_what_tflite_refuses():
    """TFLite (and TFLite Micro) refuse int8 inputs quantized unlike the output: so do we,
    saying what to do. The oracle's own refusal is checked too, so this cannot go stale."""
    a, b = t8((1, 2, 3), quant(0.1, 3), "a"), t8((1, 2, 2), quant(0.05, -7), "b")
    g = one_op("CONCATENATION", [a, b], t8((1, 2, 5), quant(0.1, 3), "y"), {"axis": 2})
    with pytest.raises(ModelError, match=r"CONCATENATION.*input 1 'b'.*quantized unlike.*QUANTIZE"):
        lower(g, g.ops[0])
    with pytest.raises(Exception, match="scale"):
        run_tflite(write_tflite(g), [np.zeros((1, 2, 3), np.int8), np.zeros((1, 2, 2), np.int8)])
    g = one_op("CONCATENATION", [t8((2, 3), quant(0.1), "a")], t8((3, 3), quant(0.1), "y"), {"axis": 1})
    with pytest.raises(ModelError, match=r"CONCATENATION.*does not fit the output"):
        lower(g, g.ops[0])
