"""Lowering of the input gradients of STRIDED_SLICE, SLICE, DEPTH_TO_SPACE and SPACE_TO_DEPTH
(issue 12; pytools/train/autodiff.py emits them). All four only move values, so their
gradients move G_y back and keep its scale (inputs: G_y; outputs: G_x):
- STRIDED_SLICE/SLICE_GRAD_INPUT: strided_slice_grad_input scatters G_y into zeros of the
  input's shape at the very positions the forward took (its geometry as slicing.py resolves
  it: begin/end/strides, masks, negative indices, shrunk axes);
- DEPTH_TO_SPACE_GRAD_INPUT: the space_to_depth kernel on G_y with the same block size, and
  SPACE_TO_DEPTH_GRAD_INPUT the depth_to_space kernel (each is the other's inverse
  permutation of the elements).
"""

from __future__ import annotations

from pytools.model.ir import Graph, Op
from pytools.model.kernels import KernelCall, Operand
from pytools.model.lowering import lower, lowers
from pytools.model.lowering._checks import same_quantization

_SLICE_FIELDS = ("in_dim", "out_dim", "start", "step")
_SLICE_RANK = 5  # strided_slice's dimensions


def _moved(g: Graph, fwd_op: Op, kernel: str, params: dict[str, int | float], op: Op) -> KernelCall:
    # G_x keeps G_y's scale only if x and y mean the same reals (y = x, moved).
    same_quantization(fwd_op, g.tensor(fwd_op.inputs[0]), g.tensor(fwd_op.outputs[0]))
    return KernelCall(kernel, params, [Operand(op.inputs[0]), Operand(op.outputs[0], is_output=True)])


@lowers("STRIDED_SLICE_GRAD_INPUT", "SLICE_GRAD_INPUT")
def _slice_grad(g: Graph, op: Op) -> KernelCall:
    fwd_op = g.ops[op.options["forward"]]
    fwd = lower(g, fwd_op).params
    params = {f"{f}{k}": fwd[f"{f}{k}"] for f in _SLICE_FIELDS for k in range(_SLICE_RANK)}
    return _moved(g, fwd_op, "strided_slice_grad_input", params, op)


@lowers("DEPTH_TO_SPACE_GRAD_INPUT", "SPACE_TO_DEPTH_GRAD_INPUT")
def _block_grad(g: Graph, op: Op) -> KernelCall:
    """The other block rearrangement over G_y, whose shape is the forward's output."""
    fwd_op = g.ops[op.options["forward"]]
    bs = int(lower(g, fwd_op).params["block_size"])
    b, h, w, c = g.tensor(fwd_op.outputs[0]).shape
    kernel = "space_to_depth" if fwd_op.kind == "DEPTH_TO_SPACE" else "depth_to_space"
    params = {"elem_size": 1, "batches": b, "input_h": h, "input_w": w, "input_c": c, "block_size": bs}
    return _moved(g, fwd_op, kernel, params, op)
