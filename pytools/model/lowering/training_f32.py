"""Lowering of the float-gradient build option's operators (docs/training.md, "Float
gradients"): each `<OP>_F32` in ops.def is `<OP>` with float32 gradients. Its kernel
(`<kernel>_f32`) takes the same parameters and operands as the int8 one, so the int8
operator's own lowering fills them and only the kernel changes."""

from __future__ import annotations

from pytools.model.ir import Graph, Op
from pytools.model.kernels import KernelCall, op_defs
from pytools.model.lowering import lower, lowers


def _as_float(base_kind: str):  # noqa: ANN202 - a lowering
    def lower_f32(g: Graph, op: Op) -> KernelCall:
        call = lower(g, Op(op.index, base_kind, op.inputs, op.outputs, op.options))
        return KernelCall(call.kernel + "_f32", call.params, call.operands)

    return lower_f32


for _kind, _op in op_defs().items():
    if _kind.endswith("_F32") and _op.kernel.endswith("_f32"):
        lowers(_kind)(_as_float(_kind.removesuffix("_F32")))
