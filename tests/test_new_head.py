"""`--new-head N` (pytools/train/new_head.py): the output layer replaced by an N-class one,
trained by the scheme on the host twin, and exported as a new .tflite that TFLite's
reference kernels run bit-exact with our engine."""

from __future__ import annotations

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.export import read_state
from pytools.model.ir import ModelError
from pytools.model.oracle import run_tflite
from pytools.model.tflite_import import import_tflite
from pytools.pretrain.zoo import ZOO, zoo_model
from pytools.train.compile_train import compile_training
from pytools.train.evaluate import evaluate
from pytools.train.new_head import export_graph, replace_head
from pytools.train.scheme import load_scheme
from pytools.train.trainer import Trainer
from tests.kernels.support import run_ours
from tests.test_no_stuck_runs import model

__all__ = ["model"]  # the fixture

BOARD = load_board("mps2_an500")


def test_a_new_three_class_head_trains_and_exports() -> None:
    model = zoo_model("mlp")
    g = import_tflite(model, "mlp")
    g3, note = replace_head(g, 3, seed=1)
    print("\n" + note)
    assert "10 -> 3 outputs" in note
    assert g3.tensor(g3.outputs[0]).shape[-1] == 3 and g.tensor(g.outputs[0]).shape[-1] == 10
    ct = compile_training(g3, load_scheme("bias=2,-1=1,-2=0.5"), BOARD, "mlp3", link=False, lr=0.02)
    xf, y10 = ZOO["mlp"].data(900, 5)
    y = y10 % 3  # a new 3-class task on the same inputs
    t = g3.tensor(g3.inputs[0])
    xq = np.clip(np.round(xf / float(t.quant.scale[0])) + int(t.quant.zero_point[0]), -128, 127)
    xq = xq.astype(t.dtype).reshape((len(y), *t.shape))
    tr = Trainer(ct)
    before = evaluate(tr, xq[600:], y[600:])["accuracy"]
    for _ in range(3):
        for i in range(600):
            tr.step(xq[i], int(y[i]))
    after = evaluate(tr, xq[600:], y[600:])["accuracy"]
    print(f"3-class head on held-out samples: accuracy {before:.2f} -> {after:.2f}")
    assert after >= 0.6 and after > before + 0.2

    # Exported: a new flatbuffer with the trained head, bit-exact in TFLite's reference kernels.
    out = export_graph(g3, ct, read_state(ct, tr.backend))
    exported = import_tflite(out, "mlp3")
    assert exported.tensor(exported.outputs[0]).shape[-1] == 3
    ours_preds, tfl_preds = [], []
    for i in range(600, 640):
        ours = run_ours(exported, [xq[i]])[0]
        ref = run_tflite(out, [xq[i]])[0]
        np.testing.assert_array_equal(ours, ref)
        ours_preds.append(int(np.argmax(ours)))
        tfl_preds.append(tr.predict(xq[i]))
    assert np.mean(np.array(ours_preds) == np.array(tfl_preds)) >= 0.95  # ties aside


def test_new_head_on_a_conv_reshape_head_and_refusals(model) -> None:
    """MCUNet's shape of head (CONV_2D 1x1 -> RESHAPE -> SOFTMAX, tests/test_no_stuck_runs.py):
    the conv, the RESHAPE's shape and the SOFTMAX all take the new class count."""
    g = import_tflite(model, "m")
    g5, note = replace_head(g, 5)
    assert "CONV_2D" in note and [g5.tensor(op.outputs[0]).shape[-1] for op in g5.ops[2:]] == [5, 5, 5]
    ct = compile_training(g5, load_scheme("bias=1,-1=1"), BOARD, "m5", link=False)
    assert ct.train.graph.tensor(ct.train.logits).shape[-1] == 5
    x = np.zeros(g5.tensor(g5.inputs[0]).shape, np.int8)
    exported = export_graph(g5, ct, read_state(ct, Trainer(ct).backend))
    np.testing.assert_array_equal(run_ours(g5, [x])[0], run_tflite(exported, [x])[0])
    with pytest.raises(ModelError, match="at least 2 classes"):
        replace_head(g, 1)
