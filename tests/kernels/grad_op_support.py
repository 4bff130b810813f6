"""Support for the input-gradient tests of issue 12's operators (test_grad_mul.py,
test_grad_activations.py, test_grad_movement.py): a forward operator and its gradient
operator in one graph, lowered by the real lowerings (the forward's geometry, the gradient's
tables) and run by the C kernel on the host, as the training compiler runs them."""

from __future__ import annotations

from typing import Any

import numpy as np

from pytools.model.ir import Graph, Op, Tensor
from pytools.model.kernels import KernelCall
from pytools.model.lowering import lower


def grad_graph(
    kind: str,
    fwd_inputs: list[Tensor],
    fwd_output: Tensor,
    grad_kind: str,
    grad_inputs: list[str],
    gx_shape: tuple[int, ...],
    options: dict[str, Any] | None = None,
    grad_options: dict[str, Any] | None = None,
    scale_out: bool = True,
) -> tuple[Graph, Op]:
    """A graph holding the forward op (index 0) and its gradient op (index 1), whose inputs
    are named: "gy", "sy" (the output gradient and its scale) or "in<k>" (forward input k),
    and whose outputs are G_x (and its scale unless scale_out is False)."""
    tensors = [*fwd_inputs, fwd_output]
    for i, t in enumerate(tensors):
        t.index = i

    def new(name: str, shape: tuple[int, ...], dtype: str) -> int:
        tensors.append(Tensor(len(tensors), name, shape, dtype, None))
        return len(tensors) - 1

    gy = new("gy", tuple(fwd_output.shape), "int8")
    sy = new("sy", (1,), "float32")
    gx = new("gx", tuple(gx_shape), "int8")
    outs = [gx, new("sx", (1,), "float32")] if scale_out else [gx]
    named = {"gy": gy, "sy": sy} | {f"in{k}": t.index for k, t in enumerate(fwd_inputs)}
    fwd = Op(0, kind, [t.index for t in fwd_inputs], [fwd_output.index], dict(options or {}))
    grad = Op(1, grad_kind, [named[n] for n in grad_inputs], outs, {"forward": 0, **(grad_options or {})})
    return Graph(tensors, [fwd, grad], [fwd_inputs[0].index], [fwd_output.index]), grad


def lowered(g: Graph, op: Op) -> KernelCall:
    return lower(g, op)


def operand_arrays(call: KernelCall, values: dict[int, np.ndarray]) -> list[np.ndarray]:
    """The kernel's operands in its order: graph tensors from values, derived constants as
    the lowering made them."""
    return [values[o.tensor] if o.tensor is not None else o.data for o in call.operands]


def run_grad(g: Graph, op: Op, values: dict[int, np.ndarray]) -> tuple[np.ndarray, float]:
    """Lowers the gradient op and runs its C kernel; (G_x, its scale). values holds the
    forward tensors and gy, sy by tensor index; G_x and its scale are made here."""
    from pytools.model.kernels import run_kernel

    gx = np.zeros(g.tensor(op.outputs[0]).shape, np.int8)
    sx = np.full(1, np.nan, np.float32)  # a kernel that forgets to write it is caught
    values = {**values, op.outputs[0]: gx}
    if len(op.outputs) > 1:
        values[op.outputs[1]] = sx
    call = lowered(g, op)
    arrays = [np.ascontiguousarray(a) for a in operand_arrays(call, values)]
    run_kernel(call, arrays)
    out = arrays[[o.tensor for o in call.operands].index(op.outputs[0])]
    return out, float(sx[0])
