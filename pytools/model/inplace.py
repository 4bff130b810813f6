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
    """Indices of the operators that could run in place: int8 DEPTHWISE_CONV_2D at stride 1,
    the output's shape the input's, the input an activation (not a constant, state, graph input
    or graph output) that no later operator reads."""
    last_read: dict[int, int] = {}
    for op in graph.ops:
        for t in op.inputs:
            if t >= 0:
                last_read[t] = op.index
    ends = set(graph.inputs) | set(graph.outputs)
    found = []
    for op in graph.ops:
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
            and last_read.get(x.index) == op.index
        ):
            found.append(op.index)
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


def in_place_where_it_helps(graph: Graph, compile_step: Callable[[], Compiled], compiled: Compiled) -> Compiled:
    """compiled (graph compiled by compile_step) with its depthwise layers in place where that
    makes the arena smaller. All candidates are tried at once (two layers at the same peak
    only pay together); if the arena shrinks, each is then given back, smallest first, where
    the arena does not grow without it. Otherwise the graph is left as it was and compiled
    returned: the same plan. graph's operators are replaced (the options of a chosen one name
    its band rows), never changed in place."""
    chosen = in_place_candidates(graph)
    if not chosen:
        return compiled
    plain = {i: graph.ops[i] for i in chosen}
    for i in chosen:
        op = graph.ops[i]
        graph.ops[i] = dataclasses.replace(op, options={**op.options, IN_PLACE_OPTION: band_rows(graph, op)})
    trial = compile_step()
    if trial.arena >= compiled.arena:
        for i, op in plain.items():
            graph.ops[i] = op
        return compiled
    for i in sorted(chosen, key=lambda i: graph.tensor(graph.ops[i].outputs[0]).nbytes):
        kept = graph.ops[i]
        graph.ops[i] = plain[i]
        without = compile_step()
        if without.arena <= trial.arena:
            trial = without
        else:
            graph.ops[i] = kept
    return trial
