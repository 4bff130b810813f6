"""Per-op checks: the same IR graph runs in TFLite's reference interpreter and through our
lowering + C kernels (compiled for the host), and the outputs must be equal bit for bit."""

from __future__ import annotations

import numpy as np

from pytools.model.ir import Graph, Quant, Tensor
from pytools.model.kernels import run_kernel
from pytools.model.lowering import lower
from pytools.model.oracle import run_tflite
from pytools.model.tflite_export import write_tflite


def quant(scale: float | list[float], zero_point: int | list[int] = 0, axis: int = 0) -> Quant:
    s = np.atleast_1d(np.asarray(scale, dtype=np.float32))
    z = np.atleast_1d(np.asarray(zero_point, dtype=np.int64))
    if z.size == 1 and s.size > 1:
        z = np.zeros(s.size, dtype=np.int64) + z[0]
    return Quant(s, z, axis)


def run_ours(graph: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """A minimal host interpreter: each op lowered and run by its C kernel, in order."""
    values: dict[int, np.ndarray] = dict(zip(graph.inputs, inputs, strict=True))
    for op in graph.ops:
        call = lower(graph, op)
        arrays = []
        for operand in call.operands:
            if operand.data is not None:
                arrays.append(np.ascontiguousarray(operand.data))
                continue
            t: Tensor = graph.tensor(operand.tensor)
            if operand.is_output:
                values[t.index] = np.zeros(t.shape, dtype=t.dtype)
                arrays.append(values[t.index])
            elif t.data is not None:
                arrays.append(np.ascontiguousarray(t.data, dtype=t.dtype))
            else:
                arrays.append(np.ascontiguousarray(values[t.index]))
        run_kernel(call, arrays)
    return [values[i] for i in graph.outputs]


def random_input(t: Tensor, rng: np.random.Generator) -> np.ndarray:
    if t.dtype == "int8":
        return rng.integers(-128, 128, t.shape, dtype=np.int8)
    if t.dtype == "float32":
        return rng.normal(0, 2, t.shape).astype(np.float32)
    raise ValueError(f"no random input for {t.dtype}")


def check_bit_exact(graph: Graph, rng: np.random.Generator, trials: int = 2) -> list[np.ndarray]:
    """Runs both on random inputs; asserts equality; returns our outputs of the last trial."""
    model = write_tflite(graph)
    ours: list[np.ndarray] = []
    for _ in range(trials):
        inputs = [random_input(graph.tensor(i), rng) for i in graph.inputs]
        ref = run_tflite(model, inputs)
        ours = run_ours(graph, inputs)
        for k, (a, b) in enumerate(zip(ours, ref, strict=True)):
            assert a.dtype == b.dtype and a.shape == b.shape, (k, a.dtype, b.dtype, a.shape, b.shape)
            if not np.array_equal(a, b):
                diff = np.argwhere(a != b)
                raise AssertionError(
                    f"output {k}: {len(diff)} of {a.size} elements differ; first at {diff[0].tolist()}: "
                    f"ours {a[tuple(diff[0])]} vs TFLite {b[tuple(diff[0])]}"
                )
    return ours
