"""The pretrained backbones committed under models/ (made by `invoke pretrain`):

- the engine runs each bit-exactly: the host twin's int8 outputs equal TFLite's reference
  interpreter's on 300 held-out samples of real data;
- each is what the transfer tasks expect: int8 input of the data set's sample shape, a final
  FULLY_CONNECTED + SOFTMAX over the data set's classes, only operators with backward kernels;
- each classifies held-out real data well (labels are the oracle) and as its .json says;
- a sparse training step for each compiles and fits the emulated board with room to spare.

Training itself is not re-run here (minutes of TensorFlow); `invoke pretrain` does that.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import datasets
from pytools.boards import load_board
from pytools.model.compiler import compile_graph
from pytools.model.host_twin import HostTwin
from pytools.model.tflite_import import import_tflite
from pytools.pretrain import backbones
from pytools.pretrain.zoo import io_dtypes, op_names

N_CHECK = 300  # held-out samples compared with TFLite's reference interpreter
# Held-out accuracy floors, well below what was measured (models/README.md) and far above chance.
FLOORS = {"fashion_mbv2": 0.85, "hapt_cnn1d": 0.88}


def _model(name: str) -> bytes:
    return backbones.model_path(name).read_bytes()


def _info(name: str) -> dict:
    return json.loads((backbones.MODELS / f"{name}.json").read_text())


def _held_out_sample(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    spec = backbones.BACKBONES[name]
    held = datasets.load_split(spec.dataset, spec.split).held_out
    idx = np.sort(np.random.default_rng(7).choice(len(held), n, replace=False))
    return held.x[idx], held.y[idx]


@pytest.mark.parametrize("name", list(backbones.BACKBONES))
def test_backbone_is_the_classifier_the_transfer_expects(name: str) -> None:
    model = _model(name)
    spec = backbones.BACKBONES[name]
    mod = datasets.module(spec.dataset)
    backbones.check(name, model)  # only ALLOWED_OPS, final Dense + Softmax, int8 in/out
    assert io_dtypes(model) == (["int8"], ["int8"])
    assert set(op_names(model)) <= backbones.ALLOWED_OPS
    g = import_tflite(model, name)
    assert g.tensor(g.inputs[0]).shape == (1, *mod.SHAPE)
    assert g.tensor(g.outputs[0]).shape == (1, mod.CLASSES)
    assert _info(name)["input_shape"] == [1, *mod.SHAPE]


@pytest.mark.parametrize("name", list(backbones.BACKBONES))
def test_backbone_is_bit_exact_with_tflite_on_held_out_data(name: str) -> None:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    model = _model(name)
    x, y = _held_out_sample(name, N_CHECK)
    xq = datasets.quantize(x, *backbones._input_quant(model))
    twin = HostTwin(compile_graph(import_tflite(model, name), load_board("mps2_an500"), name).blob)
    ref = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    ref.allocate_tensors()
    i_in, i_out = ref.get_input_details()[0]["index"], ref.get_output_details()[0]["index"]
    hits = 0
    for k, xi in enumerate(xq):
        ref.set_tensor(i_in, xi[None])
        ref.invoke()
        want = ref.get_tensor(i_out).copy()
        got = twin.invoke([xi])[0]
        np.testing.assert_array_equal(got, want, err_msg=f"{name}: held-out sample {k}")
        hits += int(np.argmax(want) == y[k])
    acc = hits / N_CHECK
    assert acc >= FLOORS[name], f"{name}: TFLite int8 accuracy {acc:.3f} on {N_CHECK} held-out samples"
    # the recorded full held-out accuracy agrees with this sample's (binomial sd < 0.03)
    assert abs(acc - _info(name)["int8_accuracy"]) < 0.06


@pytest.mark.parametrize("name", list(backbones.BACKBONES))
def test_a_sparse_training_step_fits_the_board(name: str) -> None:
    from pytools.train.compile_train import compile_training
    from pytools.train.scheme import parse_scheme_text

    board = load_board("mps2_an500")
    graph = import_tflite(_model(name), name)
    # biases of the last 4 layers, the new head, and half of the layer before it
    ct = compile_training(graph, parse_scheme_text("bias=4,-1=1,-2=0.5"), board, name, True, 0.01)
    assert not ct.link_error, ct.link_error
    assert ct.compiled.arena < board.memory.ram_size // 2, f"{name}: training arena {ct.compiled.arena:,} B"
    ram = ct.image.regions["RAM"]
    assert ram.used < 0.6 * ram.size, f"{name}: SRAM {ram.used:,} of {ram.size:,} B (linker)"
