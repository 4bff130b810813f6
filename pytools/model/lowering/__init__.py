"""Lowering: one IR operator -> the KernelCall the runtime executes.

Each op family registers its lowering with @lowers("OP_NAME") in a module of this package;
the function computes the kernel's parameters (TFLite's exact fixed-point multipliers and
shifts, paddings, activation ranges) and lists the operands in the kernel's order. It
raises ModelError, naming the operator, for anything the kernel cannot do.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from pytools.model.ir import Graph, ModelError, Op
from pytools.model.kernels import KernelCall

Lowering = Callable[[Graph, Op], KernelCall]
_LOWERINGS: dict[str, Lowering] = {}
_LOADED: list[bool] = []  # set once every module has registered (one may register before)


def lowers(*kinds: str) -> Callable[[Lowering], Lowering]:
    def register(fn: Lowering) -> Lowering:
        for k in kinds:
            _LOWERINGS[k] = fn
        return fn

    return register


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    _LOADED.append(True)


def lower(graph: Graph, op: Op) -> KernelCall:
    if not _LOADED:
        _load_all()
    fn = _LOWERINGS.get(op.kind)
    if fn is None:
        raise ModelError(f"{op.where()}: no kernel for {op.kind}")
    return fn(graph, op)
