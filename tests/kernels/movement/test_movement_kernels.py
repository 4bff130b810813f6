"""Bit-exactness of the shape and movement kernels (issue 12) against TFLite's reference
kernels (BUILTIN_REF), on randomized seeded cases: TRANSPOSE, CONCATENATION, STRIDED_SLICE,
SLICE, SQUEEZE, EXPAND_DIMS, RESIZE_NEAREST_NEIGHBOR, DEPTH_TO_SPACE and SPACE_TO_DEPTH.

Each case builds a one-op IR graph with random shapes and parameters, runs it through TFLite
and through our lowering + C kernels (host library), and requires identical outputs. The
inputs are random int8 (or float32) values, so a wrong index shows as a wrong value; the
checks that the output is not constant keep a degenerate case from passing vacuously.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pytools.model.ir import ModelError, Tensor
from pytools.model.lowering import lower
from pytools.model.lowering.movement import simplify_transpose
from pytools.model.oracle import run_tflite
from pytools.model.tflite_export import write_tflite
from tests.kernels.support import check_bit_exact, quant, run_ours
from tests.kernels.test_other_kernels import (
    const_i32,
    not_constant,
    one_op,
    rand_scale,
    rand_shape,
    rand_zp,
    t8,
)

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


# ---- STRIDED_SLICE / SLICE ------------------------------------------------------------


def _strided_slice_case(rng: np.random.Generator):
    """Random begin/end/strides (negative indices and steps, out-of-range ends that TFLite
    clamps), masks, and a shrunk axis now and then; the output shape from numpy's slicing
    of an index grid, which follows the same Python semantics."""
    rank = int(rng.integers(1, 6))  # up to 5-D
    shape = rand_shape(rng, rank, 6 if rank < 4 else 4)
    n = int(rng.integers(1, rank + 1))  # TFLite takes dimensions past len(begin) whole
    begin, end, strides = [], [], []
    bm = em = sm = 0
    index: list[object] = []
    for k in range(n):
        size = shape[k]
        if rng.random() < 0.2:  # shrink: one index, possibly negative
            b = int(rng.integers(-size, size))
            begin.append(b)
            end.append(b + 1)
            strides.append(1)
            sm |= 1 << k
            index.append(b)
            continue
        stride = int(rng.choice([1, 1, 2, 3, -1, -2]))
        b = int(rng.integers(-size - 2, size + 2))
        e = int(rng.integers(-size - 2, size + 2))
        use_b, use_e = rng.random() < 0.25, rng.random() < 0.25
        bm |= use_b << k
        em |= use_e << k
        begin.append(b)
        end.append(e)
        strides.append(stride)
        index.append(slice(None if use_b else b, None if use_e else e, stride))
    out_shape = np.empty(shape, np.int8)[tuple(index)].shape
    options = {"begin_mask": bm, "end_mask": em, "shrink_axis_mask": sm}
    return shape, (begin, end, strides), options, out_shape


@pytest.mark.parametrize("seed", range(60))
def test_strided_slice(seed):
    rng = np.random.default_rng(seed)
    while True:  # redraw empty slices: empty tensors are not supported (tested below)
        shape, (begin, end, strides), options, out_shape = _strided_slice_case(rng)
        if 0 not in out_shape:
            break
    dtype, q = _dtype(rng), _q(rng)
    inputs = [_tensor(shape, dtype, q, "x"), const_i32(begin), const_i32(end), const_i32(strides)]
    graph = one_op("STRIDED_SLICE", inputs, _tensor(out_shape, dtype, q, "y"), options)
    (out,) = check_bit_exact(graph, rng)
    if out.size > 4:
        not_constant(out)


def test_strided_slice_refuses_ellipsis_and_empty_slices():
    q = quant(0.1)
    consts = [const_i32([0, 0]), const_i32([2, 2]), const_i32([1, 1])]
    g = one_op("STRIDED_SLICE", [t8((3, 3), q, "x"), *consts], t8((2, 2), q, "y"), {"ellipsis_mask": 1})
    with pytest.raises(ModelError, match=r"STRIDED_SLICE.*ellipsis_mask"):
        lower(g, g.ops[0])
    consts = [const_i32([2]), const_i32([1]), const_i32([1])]
    g = one_op("STRIDED_SLICE", [t8((3,), q, "x"), *consts], t8((0,), q, "y"))
    with pytest.raises(ModelError, match=r"STRIDED_SLICE.*empty"):
        lower(g, g.ops[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_slice(seed):
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 6))
    shape = rand_shape(rng, rank, 6 if rank < 4 else 4)
    begin = [int(rng.integers(0, d)) for d in shape]
    size = [
        int(rng.integers(1, d - b + 1)) if rng.random() < 0.8 else -1
        for d, b in zip(shape, begin, strict=True)
    ]
    out_shape = [d - b if s == -1 else s for d, b, s in zip(shape, begin, size, strict=True)]
    dtype, q = _dtype(rng), _q(rng)
    graph = one_op(
        "SLICE",
        [_tensor(shape, dtype, q, "x"), const_i32(begin), const_i32(size)],
        _tensor(out_shape, dtype, q, "y"),
    )
    (out,) = check_bit_exact(graph, rng)
    if out.size > 4:
        not_constant(out)


def test_slice_rejects_out_of_range():
    q = quant(0.1)
    g = one_op("SLICE", [t8((4, 4), q, "x"), const_i32([1, 2]), const_i32([2, 3])], t8((2, 3), q, "y"))
    with pytest.raises(ModelError, match=r"SLICE.*do not fit"):
        lower(g, g.ops[0])


# ---- SQUEEZE / EXPAND_DIMS ------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_squeeze_and_expand_dims(seed):
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 5))
    shape = [int(d) if rng.random() < 0.6 else 1 for d in rand_shape(rng, rank, 5)]
    if 1 not in shape:
        shape[int(rng.integers(0, rank))] = 1
    ones = [k for k, d in enumerate(shape) if d == 1]
    dims = (
        []
        if rng.random() < 0.3
        else [k - rank if rng.random() < 0.3 else k for k in ones if rng.random() < 0.7]
    )
    drop = set(ones) if not dims else {d % rank for d in dims}
    dtype, q = _dtype(rng), _q(rng)
    squeezed = [d for k, d in enumerate(shape) if k not in drop]
    graph = one_op(
        "SQUEEZE", [_tensor(shape, dtype, q, "x")], _tensor(squeezed, dtype, q, "y"), {"squeeze_dims": dims}
    )
    (out,) = check_bit_exact(graph, rng)
    axis = int(rng.integers(-rank - 1, rank + 1))
    k = axis + rank + 1 if axis < 0 else axis
    graph = one_op(
        "EXPAND_DIMS",
        [_tensor(shape, dtype, q, "x"), const_i32([axis])],
        _tensor([*shape[:k], 1, *shape[k:]], dtype, q, "y"),
    )
    (out,) = check_bit_exact(graph, rng)
    if out.size > 4:
        not_constant(out)


def test_squeeze_rejects_a_dimension_that_is_not_1():
    q = quant(0.1)
    g = one_op("SQUEEZE", [t8((1, 3), q, "x")], t8((1,), q, "y"), {"squeeze_dims": [1]})
    with pytest.raises(ModelError, match=r"SQUEEZE.*dimension 1.*not 1"):
        lower(g, g.ops[0])


# ---- RESIZE_NEAREST_NEIGHBOR ----------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_resize_nearest_neighbor(seed):
    """Up- and down-scaling by ratios whose float32 arithmetic lands near .5 boundaries,
    with each of align_corners / half_pixel_centers."""
    rng = np.random.default_rng(seed)
    b, h, w, c = (
        int(rng.integers(1, 3)),
        int(rng.integers(1, 9)),
        int(rng.integers(1, 9)),
        int(rng.integers(1, 4)),
    )
    oh, ow = int(rng.integers(1, 20)), int(rng.integers(1, 20))
    align, half = [(False, False), (True, False), (False, True)][seed % 3]
    dtype, q = _dtype(rng), _q(rng)
    graph = one_op(
        "RESIZE_NEAREST_NEIGHBOR",
        [_tensor((b, h, w, c), dtype, q, "x"), const_i32([oh, ow])],
        _tensor((b, oh, ow, c), dtype, q, "y"),
        {"align_corners": align, "half_pixel_centers": half},
    )
    (out,) = check_bit_exact(graph, rng)
    if out.size > 4 and h * w > 1:
        not_constant(out)


def test_resize_nearest_neighbor_large_ratios():
    """Sizes where (i + offset) * scale rounds in float32 unlike in exact arithmetic."""
    rng = np.random.default_rng(4)
    q = quant(0.1, 2)
    for (h, w), (oh, ow) in (((7, 3), (97, 61)), ((97, 61), (7, 3)), ((3, 5), (300, 2))):
        for align, half in ((False, False), (True, False), (False, True)):
            graph = one_op(
                "RESIZE_NEAREST_NEIGHBOR",
                [t8((1, h, w, 2), q, "x"), const_i32([oh, ow])],
                t8((1, oh, ow, 2), q, "y"),
                {"align_corners": align, "half_pixel_centers": half},
            )
            check_bit_exact(graph, rng, trials=1)


# ---- DEPTH_TO_SPACE / SPACE_TO_DEPTH ---------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_depth_to_space_and_space_to_depth(seed):
    rng = np.random.default_rng(seed)
    bs = int(rng.integers(1, 4))
    b, h, w, c = (
        int(rng.integers(1, 3)),
        int(rng.integers(1, 5)),
        int(rng.integers(1, 5)),
        int(rng.integers(1, 4)),
    )
    dtype, q = _dtype(rng), _q(rng)
    deep = _tensor((b, h, w, c * bs * bs), dtype, q, "deep")
    wide = _tensor((b, h * bs, w * bs, c), dtype, q, "wide")
    (out,) = check_bit_exact(one_op("DEPTH_TO_SPACE", [deep], wide, {"block_size": bs}), rng)
    if out.size > 4:
        not_constant(out)
    deep = _tensor((b, h, w, c * bs * bs), dtype, q, "deep")
    wide = _tensor((b, h * bs, w * bs, c), dtype, q, "wide")
    (out,) = check_bit_exact(one_op("SPACE_TO_DEPTH", [wide], deep, {"block_size": bs}), rng)
    if out.size > 4:
        not_constant(out)


def test_space_to_depth_rejects_indivisible_input():
    q = quant(0.1)
    g = one_op("SPACE_TO_DEPTH", [t8((1, 3, 4, 1), q, "x")], t8((1, 1, 2, 4), q, "y"), {"block_size": 2})
    with pytest.raises(ModelError, match=r"SPACE_TO_DEPTH.*multiple of block_size 2"):
        lower(g, g.ops[0])


def test_kernels_copy_the_quanta_as_tflite_does():
    """A movement op whose output is quantized unlike its input: TFLite's kernels copy the
    int8 values unchanged (the reals change); so do ours."""
    rng = np.random.default_rng(9)
    x, y = t8((2, 3, 4), quant(0.1, 5), "x"), t8((4, 3, 2), quant(0.37, -20), "y")
    (out,) = check_bit_exact(one_op("TRANSPOSE", [x, const_i32([2, 1, 0])], y), rng)
    data = rng.integers(-128, 128, (2, 3, 4), dtype=np.int8)
    assert np.array_equal(run_ours(one_op("TRANSPOSE", [x, const_i32([2, 1, 0])], y), [data])[0], data.T)
    assert math.prod(out.shape) == 24


# ---- MEAN over any axes of up to 6 dimensions; MAX_POOL_2D windows ----------------------


@pytest.mark.parametrize("seed", range(20))
def test_mean_any_axes_of_5_and_6_dimensions(seed):
    """Rank 5 and 6: adjacent kept or averaged dimensions merge to fit the 4-D kernel."""
    rng = np.random.default_rng(3000 + seed)
    while True:
        rank = int(rng.integers(5, 7))
        shape = rand_shape(rng, rank, 4)
        axes = sorted(int(a) for a in rng.choice(rank, int(rng.integers(1, rank)), replace=False))
        flags = [int(k in axes) for k in range(rank)]
        if 1 + sum(a != b for a, b in itertools.pairwise(flags)) <= 4:  # runs of kept/averaged
            break
    keep = bool(rng.random() < 0.5)
    out_shape = (
        [1 if k in axes else d for k, d in enumerate(shape)]
        if keep
        else [d for k, d in enumerate(shape) if k not in axes]
    )
    qin = quant(rand_scale(rng, 0.01, 0.2), rand_zp(rng))
    qout = quant(rand_scale(rng, 0.005, 0.2), rand_zp(rng))
    graph = one_op(
        "MEAN", [t8(shape, qin, "x"), const_i32(axes)], t8(out_shape or [1], qout, "y"), {"keep_dims": keep}
    )
    if not out_shape:
        graph.tensors[-1].shape = ()
    check_bit_exact(graph, rng)


def test_mean_refuses_what_does_not_merge_to_4_dimensions():
    q = quant(0.1)
    g = one_op("MEAN", [t8((2, 2, 2, 2, 2), q, "x"), const_i32([0, 2, 4])], t8((2, 2), q, "y"))
    with pytest.raises(ModelError, match=r"MEAN.*rank 5"):
        lower(g, g.ops[0])


@pytest.mark.parametrize("seed", range(12))
def test_max_pool_large_windows(seed):
    """Windows up to 9x9, larger than the input under SAME padding, strides up to 5."""
    rng = np.random.default_rng(4000 + seed)
    h, w, c = int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.integers(1, 5))
    fh, fw = (int(v) for v in rng.integers(1, 10, 2))
    sh, sw = (int(v) for v in rng.integers(1, 6, 2))
    padding = "SAME" if seed % 2 or fh > h or fw > w else "VALID"
    oh, ow = (-(-h // sh), -(-w // sw)) if padding == "SAME" else ((h - fh) // sh + 1, (w - fw) // sw + 1)
    q = quant(0.05, rand_zp(rng))
    opts = {"padding": padding, "filter_h": fh, "filter_w": fw, "stride_h": sh, "stride_w": sw}
    graph = one_op("MAX_POOL_2D", [t8((1, h, w, c), q, "x")], t8((1, oh, ow, c), q, "y"), opts)
    check_bit_exact(graph, rng)


# ---- TFLite Micro agrees ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_tflite_micro_agrees(seed):
    """TFLite Micro (what Cortex-M users compare against) gives the same bits as TFLite's
    reference kernels and ours on these operators."""
    run_tflm = pytest.importorskip("pytools.model.tflm").run_tflm
    rng = np.random.default_rng(5000 + seed)
    q = _q(rng)
    shape = rand_shape(rng, 4, 5)
    perm = [int(p) for p in rng.permutation(4)]
    shape[2], shape[3] = max(shape[2], 2), 4
    b, e, s = [0, 0, 1, 0], [1, 5, 5, 4], [1, 1, 2, 1]
    sliced = np.empty(shape, np.int8)[:1, :5, 1:5:2, :4].shape
    graphs = [
        one_op("TRANSPOSE", [t8(shape, q, "x"), const_i32(perm)], t8([shape[p] for p in perm], q, "y")),
        one_op(
            "CONCATENATION", [t8(shape, q, "a"), t8(shape, q, "b")], t8([*shape[:3], 8], q, "y"), {"axis": 3}
        ),
        one_op(
            "STRIDED_SLICE",
            [t8(shape, q, "x"), const_i32(b), const_i32(e), const_i32(s)],
            t8(sliced, q, "y"),
        ),
        one_op(
            "RESIZE_NEAREST_NEIGHBOR",
            [t8(shape, q, "x"), const_i32([7, 3])],
            t8([shape[0], 7, 3, 4], q, "y"),
            {"half_pixel_centers": bool(seed % 2)},
        ),
        one_op(
            "DEPTH_TO_SPACE",
            [t8(shape, q, "x")],
            t8([shape[0], 2 * shape[1], 2 * shape[2], 1], q, "y"),
            {"block_size": 2},
        ),
        one_op("MEAN", [t8(shape, q, "x"), const_i32([0, 3])], t8(shape[1:3], _q(rng), "y")),
    ]
    for graph in graphs:
        x = [rng.integers(-128, 128, graph.tensor(i).shape, dtype=np.int8) for i in graph.inputs]
        ours = run_ours(graph, x)[0]
        np.testing.assert_array_equal(ours, run_tflite(write_tflite(graph), x)[0])
        np.testing.assert_array_equal(ours, run_tflm(write_tflite(graph), x)[0].reshape(ours.shape))


# ---- the optimized TRANSPOSE (transpose_dsp.c) -----------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_transpose_optimized_matches_the_reference(seed):
    """The blocked 4x4 int8 transpose against the reference kernel bit for bit on the host
    (dsp_on_host), on shapes whose inner swap fills whole blocks, partial blocks and none;
    and both against TFLite."""
    from tests.kernels.conv.test_dsp_kernels import dsp_on_host

    rng = np.random.default_rng(6000 + seed)
    rank = int(rng.integers(2, 6))
    shape = rand_shape(rng, rank, 11 if rank < 4 else 6)
    perm = list(range(rank))
    a, b = sorted(int(k) for k in rng.choice(rank, 2, replace=False))
    if seed % 2:  # the innermost swap, with anything outside it
        a, b = rank - 2, rank - 1
        perm[: rank - 2] = [int(k) for k in rng.permutation(rank - 2)]
    perm[a], perm[b] = perm[b], perm[a]
    q = _q(rng)
    graph = one_op("TRANSPOSE", [t8(shape, q, "x"), const_i32(perm)], t8([shape[p] for p in perm], q, "y"))
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    ref = run_ours(graph, [x])[0]
    with dsp_on_host():
        fast = run_ours(graph, [x])[0]
    np.testing.assert_array_equal(fast, ref)
    np.testing.assert_array_equal(ref, run_tflite(write_tflite(graph), [x])[0])
