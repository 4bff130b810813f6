"""Exact graph rewrites that remove copies before lowering: PAD folded into the convolution
that reads it.

A model exported from PyTorch (MIT's MCUNet among them) pads symmetrically, so its stride-2
convolutions arrive as PAD -> CONV_2D / DEPTHWISE_CONV_2D (VALID): TFLite's converter fuses a
PAD into the convolution only when it equals SAME padding (Keras' MobileNetV2 has none left),
and a symmetric pad of a stride-2 layer on an even input is not SAME. Run as it is, the PAD is
a copy of its whole input, alive beside it: at MCUNet's first stride-2 depthwise it decided
the peak (131 KB in, 139 KB out).

`fold_pads` rewrites such a pair into the convolution alone, reading the PAD's input with an
explicit padding before its first row and column (option "explicit_pad", the same one patches
use, pytools/model/lowering/conv.py). It is exact:

- TFLite's PAD fills with its output's zero point, and PAD keeps its input's quantization,
  so every padded value is the input's zero point;
- the convolution computes sum((x - zp_in) * w): a padded value contributes 0, exactly as a
  position the kernel skips as outside the input (TFLite's own implicit padding, and ours);
- the output keeps its size, so the rows after the input (the PAD's bottom and right) are
  positions the kernel's bounds check drops, whatever their count.

Backward needs nothing new: the gradient and update kernels take their geometry from the
forward layer's lowering, so the input gradient is the unpadded input's (the padded positions'
gradients, which PAD's backward would crop away, are never computed).

Not folded, because it would not be exact: a PAD into AVERAGE_POOL_2D (TFLite's average
divides by the in-bounds count only, an explicit PAD's zeros count) or MAX_POOL_2D (the
padded zero point takes part in the maximum); a PAD whose output is read by more than one
operator, or is a graph output; a PAD of the batch or channel dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytools.model.ir import Graph, ModelError, Op
from pytools.model.lowering import lower

FOLDS_INTO = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclass
class Folded:
    graph: Graph
    index_map: dict[int, int]  # operator of the original graph -> operator of the folded one
    folded: list[tuple[int, int]]  # (PAD, consumer) operator pairs of the original graph

    def describe(self) -> str:
        if not self.folded:
            return "no PAD folded"
        pairs = ", ".join(f"#{p}->#{c}" for p, c in self.folded)
        return f"{len(self.folded)} PAD folded into the convolution after it ({pairs})"


def _spatial_pads(graph: Graph, op: Op) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of a 4-D PAD that pads only rows and columns with its
    input's zero point, else None."""
    if op.kind != "PAD" or len(op.inputs) < 2 or len(op.outputs) != 1:
        return None
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        return None  # a constant pad value (PADV2 form)
    x, pads_t, out = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]), graph.tensor(op.outputs[0])
    if pads_t.data is None or x.data is not None or len(x.shape) != 4:
        return None  # paddings unknown at compile time, or a constant padded (left as it is)
    if x.dtype != "int8" or out.dtype != "int8":
        return None
    if x.quant is None or out.quant is None or x.quant.per_channel or out.quant.per_channel:
        return None
    if float(x.quant.scale[0]) != float(out.quant.scale[0]):
        return None
    if int(x.quant.zero_point[0]) != int(out.quant.zero_point[0]):
        return None
    pads = [int(v) for v in pads_t.data.reshape(-1)]
    if len(pads) != 8 or min(pads) < 0 or any(pads[k] for k in (0, 1, 6, 7)):
        return None
    return pads[2], pads[3], pads[4], pads[5]


def _fold_one(graph: Graph, pad: Op, conv: Op, pads: tuple[int, int, int, int]) -> dict | None:
    """The consumer's new options, or None when the pair cannot be folded exactly."""
    if "patch_pad" in conv.options or "explicit_pad" in conv.options:
        return None
    try:
        window = lower(graph, conv).params  # its geometry on the padded input
    except ModelError:
        return None  # let the unfolded graph report it
    top, _, left, _ = pads
    pad_h, pad_w = window["pad_h"] + top, window["pad_w"] + left
    x = graph.tensor(pad.inputs[0])
    h, w = x.shape[1], x.shape[2]
    # Every output position must read at least one real input row and column (the kernels'
    # explicit-padding contract, as for patches); an output made of padding alone would be
    # the bias only, which no sane model has.
    if (window["output_h"] - 1) * window["stride_h"] - pad_h >= h:
        return None
    if (window["output_w"] - 1) * window["stride_w"] - pad_w >= w:
        return None
    eff_h = (window["filter_h"] - 1) * window["dilation_h"] + 1
    eff_w = (window["filter_w"] - 1) * window["dilation_w"] + 1
    if pad_h >= eff_h or pad_w >= eff_w:
        return None  # a first output row of padding alone
    return {**conv.options, "explicit_pad": (pad_h, pad_w)}


def fold_pads(graph: Graph) -> Folded:
    """The graph with every exactly foldable PAD -> CONV_2D / DEPTHWISE_CONV_2D pair made
    one convolution (module docstring). Tensors keep their indices; operators are renumbered
    (index_map says where each one went; a folded PAD maps to its consumer)."""
    readers: dict[int, list[Op]] = {}
    for op in graph.ops:
        for t in op.inputs:
            if t >= 0:
                readers.setdefault(t, []).append(op)
    new_options: dict[int, dict] = {}
    new_input: dict[int, int] = {}
    dropped: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for op in graph.ops:
        pads = _spatial_pads(graph, op)
        if pads is None:
            continue
        y = op.outputs[0]
        users = readers.get(y, [])
        if y in graph.outputs or len(users) != 1:
            continue
        conv = users[0]
        if conv.kind not in FOLDS_INTO or conv.inputs[0] != y or y in conv.inputs[1:]:
            continue
        options = _fold_one(graph, op, conv, pads)
        if options is None:
            continue
        new_options[conv.index], new_input[conv.index] = options, op.inputs[0]
        dropped.add(op.index)
        pairs.append((op.index, conv.index))
    if not pairs:
        return Folded(graph, {op.index: op.index for op in graph.ops}, [])
    ops: list[Op] = []
    index_map: dict[int, int] = {}
    for op in graph.ops:
        if op.index in dropped:
            continue
        inputs = list(op.inputs)
        if op.index in new_input:
            inputs[0] = new_input[op.index]
        index_map[op.index] = len(ops)
        ops.append(
            Op(len(ops), op.kind, inputs, list(op.outputs), new_options.get(op.index, dict(op.options)))
        )
    for p, c in pairs:
        index_map[p] = index_map[c]
    folded = Graph(
        list(graph.tensors), ops, list(graph.inputs), list(graph.outputs), graph.name, graph.description
    )
    return Folded(folded, index_map, pairs)
