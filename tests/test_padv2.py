"""PADV2 (PAD with its pad value as a third input, what TensorFlow's converter writes for
tf.pad(..., constant_values=c) with c != 0): imported as PAD, run bit-exact with TFLite's
reference kernels on the host twin; a PADV2 padding with real 0.0 becomes a plain PAD (and
folds into the convolution after it)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.model.compiler import compile_graph
from pytools.model.host_twin import HostTwin
from pytools.model.oracle import run_tflite
from pytools.model.tflite_import import import_tflite

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BOARD = load_board("mps2_an500")


def _op_names(model: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    return [d["op_name"] for d in it._get_ops_details()]


def _model(value: float) -> bytes:
    import tensorflow as tf

    rng = np.random.default_rng(5)
    inp = tf.keras.Input((10, 9, 4), batch_size=1)
    x = tf.keras.layers.Lambda(lambda t: tf.pad(t, [[0, 0], [1, 2], [2, 0], [0, 0]], constant_values=value))(
        inp
    )
    x = tf.keras.layers.Conv2D(6, 3, strides=2, padding="valid")(x)
    model = tf.keras.Model(inp, x)
    rep = rng.uniform(-1, 1, (16, 10, 9, 4)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[None]] for x in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.mark.parametrize("value", [0.5, 0.0])
def test_padv2_runs_bit_exact_with_tflite(value: float) -> None:
    model = _model(value)
    names = _op_names(model)
    g = import_tflite(model, "padv2")
    pad = [op for op in g.ops if op.kind == "PAD"]
    assert len(pad) == 1
    if value:
        assert "PADV2" in names, names  # the converter wrote PADV2: the case this is about
        assert len(pad[0].inputs) == 3  # its pad value kept: not the zero point
    else:
        assert len(pad[0].inputs) == 2  # real 0.0: a plain PAD
    twin = HostTwin(compile_graph(g, BOARD, "padv2").blob)
    rng = np.random.default_rng(2)
    for _ in range(5):
        x = rng.integers(-128, 128, (1, 10, 9, 4), dtype=np.int8)
        ref = run_tflite(model, [x])[0]
        assert np.unique(ref).size > 3
        np.testing.assert_array_equal(twin.invoke([x])[0], ref)
