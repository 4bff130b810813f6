"""In-place depthwise convolutions, where they make the planned arena smaller.

A DEPTHWISE_CONV_2D at stride 1 whose output has its input's shape, and whose input no later
operator reads (nor a graph output, nor the step's saved activations: those are read later),
may write its output over its input: the kernel depthwise_conv2d_s8_inplace
(firmware/kernels/depthwise_conv2d_s8_inplace.h) is exact that way, and the compiler ties the
two tensors (compiler.in_place_ties). It is picked only where the planned arena shrinks, so a
step where it does not pay compiles exactly as without it (the same plan bytes).
"""

from __future__ import annotations

import ctypes
import dataclasses
from collections.abc import Callable

from pytools.model.compiler import Compiled
from pytools.model.ir import Graph, Op
from pytools.model.kernels import host_lib
from pytools.model.lowering import lower
from pytools.model.lowering.conv import IN_PLACE_OPTION


def in_place_candidates(graph: Graph) -> list[int]:
    """Positions in graph.ops of the operators that could run in place: int8 DEPTHWISE_CONV_2D
    at stride 1, the output's shape the input's, the input an activation (not a constant,
    state, graph input or graph output) that no later operator reads."""
    last_read: dict[int, int] = {}  # tensor -> the position of the last operator reading it
    for k, op in enumerate(graph.ops):
        for t in op.inputs:
            if t >= 0:
                last_read[t] = k
    ends = set(graph.inputs) | set(graph.outputs)
    found = []
    for k, op in enumerate(graph.ops):
        if op.kind != "DEPTHWISE_CONV_2D" or not op.inputs or not op.outputs:
            continue
        x, y = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
        if (
            int(op.options.get("stride_h", 1)) == 1
            and int(op.options.get("stride_w", 1)) == 1
            and x.shape == y.shape
            and x.dtype == y.dtype == "int8"
            and x.data is None
            and not x.persistent
            and x.index not in ends
            and last_read.get(x.index) == k
        ):
            found.append(k)
    return found


def band_rows(graph: Graph, op: Op) -> int:
    """Output rows per band: 1 (the least scratch) where the DSP build runs the layer in one call
    and the bands serve only the reference build; else about a quarter of the map, so that the
    bands' repeated set-up stays small (MobileNetV2's 16x16x96 in bands of one row cost 1.74x
    the layer, of four rows 1.17x; the emulated Cortex-M7, QEMU counting LDM/STM as one)."""
    probe = dataclasses.replace(op, options={**op.options, IN_PLACE_OPTION: 1})
    direct = host_lib().depthwise_conv2d_s8_inplace_dsp_direct
    direct.restype = ctypes.c_int
    direct.argtypes = [ctypes.c_char_p]
    if direct(lower(graph, probe).packed_params()):
        return 1
    return max(1, -(-graph.tensor(op.outputs[0]).shape[1] // 4))


def in_place_where_it_helps(
    graph: Graph, compile_step: Callable[[], Compiled], compiled: Compiled
) -> Compiled:
    """compiled (graph compiled by compile_step) with its depthwise layers in place where that
    makes the arena smaller. All candidates are tried at once (two layers at the same peak
    only pay together); if the arena shrinks, the fewest of them that keep that arena are
    kept: the largest outputs first (those the peaks hold), as few sizes as reach it, then
    each of those given back, smallest first, where the arena does not grow without it (each
    trial a compile: a handful, not one per candidate). Otherwise the graph is left as it was
    and compiled returned: the same plan. graph's operators are replaced (a chosen one's
    options name its band rows), never changed in place."""
    candidates = in_place_candidates(graph)
    if not candidates:
        return compiled
    plain = {i: graph.ops[i] for i in candidates}
    in_place = {
        i: dataclasses.replace(op, options={**op.options, IN_PLACE_OPTION: band_rows(graph, op)})
        for i, op in plain.items()
    }

    def compile_with(chosen: set[int]) -> Compiled:
        for i in candidates:
            graph.ops[i] = in_place[i] if i in chosen else plain[i]
        return compile_step()

    size = {i: graph.tensor(op.outputs[0]).nbytes for i, op in plain.items()}
    best = compile_with(set(candidates))
    if best.arena >= compiled.arena:
        compile_with(set())  # the graph as it was (compiled is its plan)
        return compiled
    chosen = set(candidates)
    for s in sorted(set(size.values()), reverse=True)[:-1]:  # the largest sizes first
        trial = compile_with({i for i in candidates if size[i] >= s})
        if trial.arena <= best.arena:
            best, chosen = trial, {i for i in candidates if size[i] >= s}
            break
    for i in sorted(chosen, key=lambda i: (size[i], i)):
        trial = compile_with(chosen - {i})
        if trial.arena <= best.arena:
            best, chosen = trial, chosen - {i}
    compile_with(chosen)  # the graph as best was compiled
    return best
