"""The conv gradient lowerings check the output gradient they read against grad_broadcast: the
kernels read as many gradients as their parameters say (the layer's output, or one row per
image with grad_broadcast), so a graph where the option and G_y's shape disagree (a reader that
lost the option after pytools/train/mean_grad_broadcast.py folded its gradient, the option on a
full gradient, or on a kernel without it) is refused at compile time instead of being planned
to read past G_y's bytes."""

from __future__ import annotations

import pytest

from pytools.model.ir import ModelError
from pytools.model.lowering import lower
from pytools.model.tflite_import import import_tflite
from pytools.pretrain.zoo import zoo_model
from pytools.train.autodiff import build_training_graph
from pytools.train.mean_grad_broadcast import fold_mean_grad_broadcast
from pytools.train.scheme import load_scheme

NAME = "mobilenet_tiny"  # ... CONV_2D (1x1, ReLU6) -> MEAN -> FULLY_CONNECTED -> SOFTMAX
SCHEME = "bias=4,-1=1,-3=0.25"  # the conv before the MEAN trains weights (a slice) and bias


@pytest.fixture
def graph():
    tb = build_training_graph(import_tflite(zoo_model(NAME), NAME), load_scheme(SCHEME), lr=0.05)
    return tb.graph


def _readers(g, folded: bool):
    (op,) = [op for op in g.ops if op.kind == "MEAN_GRAD_INPUT"]
    if folded:
        assert fold_mean_grad_broadcast(g) == [op.index]
    readers = [r for r in g.ops if op.outputs[0] in r.inputs]
    assert {r.kind for r in readers} == {"CONV_2D_GRAD_INPUT", "CONV_2D_GRAD_UPDATE"}
    return readers


def test_a_folded_gradient_lowers_with_its_option(graph) -> None:
    for r in _readers(graph, folded=True):
        assert lower(graph, r).params["grad_broadcast"] == 1


def test_a_reader_without_the_option_on_a_folded_gradient_is_refused(graph) -> None:
    for r in _readers(graph, folded=True):
        r.options.pop("grad_broadcast")
        with pytest.raises(ModelError, match=r"reads an output gradient shaped \(1, 1, 1, "):
            lower(graph, r)
        r.options["grad_broadcast"] = True


def test_the_option_on_a_full_gradient_or_a_kernel_without_it_is_refused(graph) -> None:
    for r in _readers(graph, folded=False):
        assert lower(graph, r).params["grad_broadcast"] == 0
        r.options["grad_broadcast"] = True
        with pytest.raises(ModelError, match="as one row per image"):
            lower(graph, r)
        r.options.pop("grad_broadcast")
    deeper = build_training_graph(import_tflite(zoo_model(NAME), NAME), load_scheme("bias=12"), lr=0.05).graph
    dw = next(op for op in deeper.ops if op.kind == "DEPTHWISE_CONV_2D_GRAD_INPUT")
    lower(deeper, dw)
    dw.options["grad_broadcast"] = True
    with pytest.raises(ModelError, match="as one row per image"):
        lower(deeper, dw)
