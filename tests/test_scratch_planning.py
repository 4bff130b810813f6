"""Scratch through the planner (issue 14, item 3) and the planner's exact overlaps.

- Every kernel's buffers come from X_scratch_size and the arena: run_kernel gives a kernel
  exactly that many bytes and a guard behind them (the kernel tests of every DSP variant run
  through it); here, that the guard does catch a kernel writing past a smaller size.
- An int8 output over its own operator's int32 accumulators (compiler.OUTPUT_OVER_SCRATCH):
  the same bits, reference and DSP variants, as with separate buffers.
- A patched stage's output over the consumed rows of its input (compiler.overlap_ties): the
  twin's outputs are TFLite's, and the arena is smaller than without the overlap.
- Ties in the planner: tied buffers at their offset, every other pair apart.
"""

from __future__ import annotations

import ctypes
import random

import numpy as np
import pytest

import pytools.model.kernels as kernels
from pytools.boards import load_board
from pytools.model.compiler import OUTPUT_OVER_SCRATCH, compile_graph, output_over_scratch_operand
from pytools.model.host_twin import HostTwin
from pytools.model.kernels import KernelCall, host_lib, run_kernel, scratch_size
from pytools.model.lowering.patch import Patching, patch_stages
from pytools.model.oracle import run_tflite
from pytools.model.planner import ALIGN, Buffer, Tie, align_up, plan_arena
from pytools.model.tflite_import import import_tflite
from pytools.pretrain.zoo import zoo_model
from tests.kernels import grad_support as gs
from tests.kernels.conv.test_dsp_kernels import _compare, _conv1x1_case, dsp_on_host

BOARD = load_board("mps2_an500")


# --- scratch sizes: the guard ---------------------------------------------------------------


def test_run_kernel_catches_a_kernel_writing_past_its_scratch_size(monkeypatch) -> None:
    """With the GEMM variant's buffer planned 8 bytes short, the guard behind the scratch is
    overwritten and run_kernel says so; with the C size, the same call passes."""
    _compare(_conv1x1_case(3), 3, False)  # passes with the planned size
    real = kernels.scratch_size
    monkeypatch.setattr(kernels, "scratch_size", lambda call: real(call) - 8)
    with pytest.raises(RuntimeError, match=r"past the \d+ bytes conv2d_s8_scratch_size gives"):
        _compare(_conv1x1_case(3), 3, False)


def test_dsp_buffers_are_planned_scratch_sized_per_layer() -> None:
    """conv2d_s8's DSP buffer is in its scratch and follows the layer: a small 1x1 layer plans
    less than the 6 KB the variant kept on the stack, a large one at most that."""
    small, large = _conv1x1_case(3), _conv1x1_case(4)
    from pytools.model.lowering import lower

    sizes = [scratch_size(lower(c.graph, c.graph.ops[0])) for c in (small, large)]
    assert all(0 < s <= 6144 for s in sizes), sizes


# --- an output over its own scratch ---------------------------------------------------------


def _run_over_scratch(call: KernelCall, values: list[np.ndarray], variant: str, k: int) -> list[np.ndarray]:
    """X_<variant>_run with operand k (the int8 output) at the start of the scratch."""
    values = [v.copy() for v in values]
    n = scratch_size(call)
    scratch = np.full(n + 64, 0x5A, np.uint8)
    assert values[k].nbytes <= n
    ptrs = [v.ctypes.data if v.size else None for v in values]
    ptrs[k] = scratch.ctypes.data
    arr = (ctypes.c_void_p * len(values))(*ptrs)
    fn = getattr(host_lib(), f"{call.kernel}_{variant}_run")
    fn.restype = None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
    fn(call.packed_params(), arr, scratch.ctypes.data)
    assert (scratch[n:] == 0x5A).all()
    values[k] = scratch[: values[k].nbytes].view(np.int8).reshape(values[k].shape).copy()
    return values


@pytest.mark.parametrize("variant", ["ref", "dsp"])
@pytest.mark.parametrize("kind", ["conv", "dw"])
@pytest.mark.parametrize("seed", range(12))
def test_an_output_over_its_scratch_keeps_every_bit(kind: str, seed: int, variant: str) -> None:
    layer = gs.make_layer(kind, 7_000 + seed, **({"fh": 1, "fw": 1} if kind == "conv" and seed % 2 else {}))
    call, values = gs.grad_input_call(layer)
    assert call.kernel in OUTPUT_OVER_SCRATCH
    k = output_over_scratch_operand(call.kernel)
    assert k is not None and values[k].dtype == np.int8
    want = [v.copy() for v in values]
    run_kernel(call, want, variant)
    got = _run_over_scratch(call, values, variant, k)
    for j, (w, g) in enumerate(zip(want, got, strict=True)):
        np.testing.assert_array_equal(g, w, err_msg=f"{call.kernel}_{variant} operand {j}")
    assert np.any(want[k]) or seed % 5 == 0  # the gradients compared are not all zero


def test_output_over_scratch_names_operands_the_kernels_have() -> None:
    for kernel in OUTPUT_OVER_SCRATCH:
        assert output_over_scratch_operand(kernel) is not None
    assert output_over_scratch_operand("conv2d_s8") is None


# --- a patched stage's output over its consumed input ----------------------------------------


@pytest.mark.parametrize("stages", [[Patching(0, 7, 3)], [Patching(0, 2, 3), Patching(3, 9, 2)]])
def test_a_patched_stage_output_overlaps_its_input_and_stays_exact(stages: list[Patching]) -> None:
    model = zoo_model("mobilenet_tiny")
    graph = patch_stages(import_tflite(model, "mobilenet_tiny"), stages).graph
    with_overlap = compile_graph(graph, BOARD, "patched")
    without = compile_graph(graph, BOARD, "patched", overlap=False)
    assert with_overlap.arena < without.arena
    twin = HostTwin(with_overlap.blob)
    rng = np.random.default_rng(11)
    with dsp_on_host():
        for _ in range(3):
            x = rng.integers(-128, 128, (1, 32, 32, 3), dtype=np.int8)
            np.testing.assert_array_equal(twin.invoke([x])[0], run_tflite(model, [x])[0])


# --- the planner's ties ----------------------------------------------------------------------


def _check(buffers: list[Buffer], ties: list[Tie], offsets: dict[str, int], arena: int) -> None:
    tied = {frozenset((t.leader, t.follower)) for t in ties}
    for t in ties:
        assert offsets[t.follower] - offsets[t.leader] == t.offset
    for b in buffers:
        assert offsets[b.name] % ALIGN == 0 and offsets[b.name] >= 0
        assert offsets[b.name] + b.size <= arena
    for i, a in enumerate(buffers):
        for b in buffers[i + 1 :]:
            if a.overlaps_in_time(b) and frozenset((a.name, b.name)) not in tied:
                a0, b0 = offsets[a.name], offsets[b.name]
                assert a0 + align_up(a.size) <= b0 or b0 + align_up(b.size) <= a0, (a, b, a0, b0)


def test_a_tie_overlaps_two_live_buffers_by_its_offset() -> None:
    x, y = Buffer("x", 4096, 0, 5), Buffer("y", 2048, 3, 9)
    other = Buffer("z", 1024, 0, 9)
    ties = [Tie("x", "y", -1024)]
    offsets, arena = plan_arena([x, y, other], ties=ties)
    _check([x, y, other], ties, offsets, arena)
    assert arena == 1024 + 4096 + 1024  # y hangs 1 KB below x; z beside them
    assert plan_arena([x, y, other])[1] == 4096 + 2048 + 1024


@pytest.mark.parametrize("seed", range(30))
def test_random_plans_with_ties_keep_every_untied_pair_apart(seed: int) -> None:
    rng = random.Random(seed)
    bufs = []
    for i in range(rng.randrange(2, 40)):
        first = rng.randrange(0, 30)
        bufs.append(Buffer(f"b{i}", rng.randrange(1, 5000), first, first + rng.randrange(0, 6)))
    names = [b.name for b in bufs]
    ties = []
    for _ in range(rng.randrange(1, 4)):
        a, b = rng.sample(names, 2)
        if not any(b in (t.leader, t.follower) or a == t.follower for t in ties):
            ties.append(Tie(a, b, ALIGN * rng.randrange(-200, 200)))
    offsets, arena = plan_arena(bufs, ties=ties)
    _check(bufs, ties, offsets, arena)


def test_contradicting_or_unaligned_ties_are_refused() -> None:
    bufs = [Buffer("a", 64, 0, 1), Buffer("b", 64, 0, 1)]
    with pytest.raises(ValueError, match="not aligned"):
        plan_arena(bufs, ties=[Tie("a", "b", 8)])
    with pytest.raises(ValueError, match="contradicts"):
        plan_arena(bufs, ties=[Tie("a", "b", 16), Tie("b", "a", 16)])


# --- the reserved thread stack ----------------------------------------------------------------


def test_a_high_water_near_the_reserved_stack_fails_loudly() -> None:
    from pytools.bench.memory import STACK_MARGIN, check_stack
    from pytools.errors import ToolError

    size = BOARD.memory.stack_size
    check_stack(int(size * STACK_MARGIN) - 1, size, BOARD.name)
    with pytest.raises(ToolError, match="raise stack_size"):
        check_stack(int(size * STACK_MARGIN) + 1, size, BOARD.name)
