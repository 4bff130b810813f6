"""The test model zoo and the TFLite Micro oracle.

Each zoo model builds (TensorFlow, once per machine, then from build/test_models), holds the
operators it is meant to exercise and no operator the engine lacks, and gives bit-identical
outputs in TFLite's reference kernels (ai-edge-litert) and in TFLite Micro. The TFLM arena
sizes are checked against bounds computed from the model's own tensors, and against TFLM's
numbers for the third-party models of ../shared/models.
"""

from __future__ import annotations

import numpy as np
import pytest
import tflite

from pytools.model import tflm
from pytools.model.ir import SUPPORTED_OPS
from pytools.model.oracle import run_tflite
from pytools.paths import SHARED_MODELS
from pytools.pretrain.zoo import (
    ZOO,
    cache_key,
    io_dtypes,
    op_names,
    quantize_input,
    zoo_model,
    zoo_names,
    zoo_path,
)

# TFLM's numbers for the shared models (tflite-micro as pinned in requirements.txt, 64-bit
# host): (total, activations). The activations (head) are the same on a Cortex-M; the
# persistent tail holds pointers and is smaller there.
SHARED = {
    "pretrainedResnet_quant.tflite": (55_984, 49_152),
    "vww_96_int8.tflite": (103_680, 73_728),
}


@pytest.fixture(scope="module", params=zoo_names())
def zoo(request: pytest.FixtureRequest) -> tuple[str, bytes]:
    return request.param, zoo_model(request.param)


def shared_model(name: str) -> bytes:
    path = SHARED_MODELS / name
    if not path.is_file():
        pytest.skip(f"{path} absent: the third-party models live outside the repository, in ../shared/models")
    return path.read_bytes()


def random_inputs(model: bytes, n: int, seed: int) -> list[np.ndarray]:
    """n random inputs for the model's (single) input: all int8 values, or floats that also
    go beyond the calibrated range (so QUANTIZE saturates)."""
    g = tflite.Model.GetRootAsModel(model, 0).Subgraphs(0)
    shape = tuple(g.Tensors(g.Inputs(0)).ShapeAsNumpy())
    rng = np.random.default_rng(seed)
    if io_dtypes(model)[0] == ["int8"]:
        return [rng.integers(-128, 128, shape, dtype=np.int8) for _ in range(n)]
    return [rng.uniform(-0.5, 1.5, shape).astype(np.float32) for _ in range(n)]


def activation_bounds(model: bytes) -> tuple[int, int]:
    """(lower, upper) bounds on any plan of the activations: the tensors one operator reads
    and writes are alive together; no plan needs more than every tensor side by side (16-byte
    aligned), plus int32 scratch of the size of each MEAN's output (TFLM's reduce kernel)."""
    m = tflite.Model.GetRootAsModel(model, 0)
    g = m.Subgraphs(0)
    itemsize = {tflite.TensorType.INT8: 1, tflite.TensorType.INT32: 4, tflite.TensorType.FLOAT32: 4}

    def nbytes(i: int) -> int:
        t = g.Tensors(i)
        return int(np.prod(t.ShapeAsNumpy())) * itemsize[t.Type()]

    def is_activation(i: int) -> bool:
        return i >= 0 and m.Buffers(g.Tensors(i).Buffer()).DataLength() == 0

    acts = [i for i in range(g.TensorsLength()) if is_activation(i)]
    upper = sum(-(-nbytes(i) // 16) * 16 for i in acts)
    lower = 0
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        live = {i for i in (*op.InputsAsNumpy(), *op.OutputsAsNumpy()) if is_activation(int(i))}
        lower = max(lower, sum(nbytes(int(i)) for i in live))
    means = [g.Operators(k) for k in range(g.OperatorsLength()) if op_names(model)[k] == "MEAN"]
    upper += sum(4 * nbytes(int(op.Outputs(0))) for op in means)
    return lower, upper


def check_arena(model: bytes) -> dict[str, int]:
    a = tflm.tflm_arena_bytes(model)
    assert a["total"] == a["activations"] + a["persistent"]
    parts = {k: v for k, v in a.items() if k not in ("total", "activations", "persistent", "minimum")}
    assert all(v >= 0 for v in parts.values()), a
    assert sum(parts.values()) == a["persistent"], a
    lower, upper = activation_bounds(model)
    assert lower <= a["activations"] <= upper, (lower, upper, a)
    # The smallest arena that works: TFLM's total, give or take the tail's 16-byte alignment
    # against the arena's end, or more for tiny models whose Prepare temporaries exceed
    # the activation plan.
    assert a["total"] - 16 < a["minimum"] <= a["total"] + 1024, a
    assert tflm.arena_fits(model, a["minimum"]) and not tflm.arena_fits(model, a["minimum"] - 1)
    return a


def test_zoo_model_is_cached_and_holds_its_operators(zoo: tuple[str, bytes]) -> None:
    name, model = zoo
    spec = ZOO[name]
    assert zoo_path(name).read_bytes() == model
    ops = op_names(model)
    assert set(spec.ops) <= set(ops), ops
    assert set(ops) <= set(SUPPORTED_OPS), ops
    assert io_dtypes(model) == ([spec.io_dtype], [spec.io_dtype])
    assert 2_000 < len(model) < 150_000
    g = tflite.Model.GetRootAsModel(model, 0).Subgraphs(0)
    shape = tuple(g.Tensors(g.Inputs(0)).ShapeAsNumpy())
    assert shape[0] == 1 and (shape[1:3] <= (32, 32) if len(shape) == 4 else len(shape) == 2), shape
    if spec.io_dtype == "float32":  # float I/O: quantized inside, from the first to the last op
        assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"


def test_cache_keys_are_per_model() -> None:
    keys = [cache_key(n) for n in zoo_names()]
    assert len(set(keys)) == len(keys) and all(len(k) == 16 for k in keys)
    assert keys == [cache_key(n) for n in zoo_names()]


def test_zoo_model_is_bit_exact_in_tflite_and_tflm(zoo: tuple[str, bytes]) -> None:
    name, model = zoo
    x, _ = ZOO[name].data(4, 3)  # samples like the training data, and random ones
    inputs = [quantize_input(model, xi) for xi in x] + random_inputs(model, 4, seed=len(name))
    outputs = set()
    for xi in inputs:
        (ref,) = run_tflite(model, [xi])
        (got,) = tflm.run_tflm(model, [xi])
        assert got.dtype == ref.dtype and got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)
        outputs.add(ref.tobytes())
    assert len(outputs) > 1  # the inputs do reach the output


def test_zoo_model_tflm_arena(zoo: tuple[str, bytes]) -> None:
    _, model = zoo
    a = check_arena(model)
    x = random_inputs(model, 1, seed=0)
    np.testing.assert_array_equal(  # the model runs in exactly that arena, and the same
        tflm.run_tflm(model, x, arena_size=a["minimum"])[0], run_tflite(model, x)[0]
    )


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_model_tflm_arena(name: str) -> None:
    model = shared_model(name)
    a = check_arena(model)
    assert (a["total"], a["activations"]) == SHARED[name], a


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_model_is_bit_exact_in_tflite_and_tflm(name: str) -> None:
    model = shared_model(name)
    for xi in random_inputs(model, 2, seed=1):
        np.testing.assert_array_equal(tflm.run_tflm(model, [xi])[0], run_tflite(model, [xi])[0])


def test_tflm_reports_a_too_small_arena() -> None:
    model = zoo_model("mlp")
    with pytest.raises(tflm.TflmError, match="could not allocate"):
        tflm.run_tflm(model, random_inputs(model, 1, seed=0), arena_size=1024)
