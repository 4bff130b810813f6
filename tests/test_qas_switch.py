"""The scheme switch `qas = false`: the update without quantization-aware scaling.

One SGD step of the digits model's classifier (scheme "bias=1,-1=1"), from the same state
and sample, on the host twin, with and without QAS. The oracle is the formula of
docs/training.md / method.md section 3, evaluated here in numpy from the forward pass's own
int8 tensors (the classifier's input and the logits, read back after a forward-only run):

    G       = softmax(logits_real) - onehot(label)           (dL/d logits_real)
    g_q     = round(G / s_g),  s_g = max|G| / 127             (grad.h's representation)
    with QAS:    dW_q[c, i] = -lr * s_g * s_x / s_W[c] * g_q[c] * (x_q[i] - z_x)
                 db_q[c]    = -lr * s_g / (s_W[c] * s_x) * g_q[c]
    without:     dW_q[c, i] = -lr * s_g * s_x * s_W[c] * g_q[c] * (x_q[i] - z_x)   (= -lr dL/dW_q)
                 db_q[c]    = -lr * s_g * s_W[c] * s_x * g_q[c]                    (= -lr dL/db_q)

Biases round to nearest (checked to within 1 for the kernel's own exp and factor order);
weights round stochastically (each within 1 of the formula, and unbiased on average).
"""

from __future__ import annotations

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.model.tflite_import import import_tflite
from pytools.pretrain import digits
from pytools.pretrain.zoo import quantize_input
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme, parse_scheme_text
from pytools.train.trainer import Trainer


def _step(scheme: str, lr: float, sample: int) -> dict[str, np.ndarray]:
    """One step; returns the state before and after, the classifier's input, the logits."""
    model = digits.pretrained_model()
    g = import_tflite(model, digits.NAME)
    ct = compile_training(g, parse_scheme_text(scheme), load_board("mps2_an500"), "d", link=False, lr=lr)
    tr = Trainer(ct)
    s = digits.split()
    x = quantize_input(model, s.finetune.x[sample])
    label = int(s.finetune.y[sample])
    head = next(op for op in reversed(g.ops) if op.kind == "FULLY_CONNECTED")
    wide = next(op.outputs[0] for op in ct.train.graph.ops if op.kind == "LOGITS_S32")
    tr.predict(x)  # forward and loss head only: nothing is updated
    out = {
        "x": tr._tensor(ct.compiled.plan_ids[head.inputs[0]]).reshape(-1).astype(np.int64),
        # The loss reads the head's un-clamped values (LOGITS_S32; predict runs it).
        "logits": tr._tensor(ct.compiled.plan_ids[wide]).reshape(-1).astype(np.int64),
    }
    before = tr.state()
    tr.step(x, label)
    after = tr.state()
    w_name = next(n for n in before if n.endswith("/trained") and before[n].dtype == np.int8)
    b_name = next(n for n in before if n.endswith("/trained") and before[n].dtype == np.int32)
    out["w"] = before[w_name].astype(np.int64)
    out["dw"] = after[w_name].astype(np.int64) - before[w_name]
    out["db"] = after[b_name].astype(np.int64) - before[b_name]
    out["label"] = np.array(label)
    w, xq, yq = (g.tensor(t).quant for t in (head.inputs[1], head.inputs[0], head.outputs[0]))
    out["s_w"] = np.asarray(w.scale, np.float64)
    out["s_x"], out["z_x"] = float(xq.scale[0]), int(xq.zero_point[0])
    out["s_y"], out["z_y"] = float(yq.scale[0]), int(yq.zero_point[0])
    return out


def _expected(o: dict[str, np.ndarray], lr: float, qas: bool) -> tuple[np.ndarray, np.ndarray]:
    z = o["s_y"] * (o["logits"] - o["z_y"])
    p = np.exp(z - z.max())
    grad = p / p.sum()
    grad[int(o["label"])] -= 1.0
    s_g = np.abs(grad).max() / 127
    g_q = np.round(grad / s_g)
    s_w, s_x = o["s_w"], o["s_x"]
    if qas:
        fw, fb = -lr * s_g * s_x / s_w, -lr * s_g / (s_w * s_x)
    else:
        fw, fb = -lr * s_g * s_x * s_w, -lr * s_g * s_w * s_x
    dw = fw[:, None] * g_q[:, None] * (o["x"] - o["z_x"])[None, :]
    return dw, fb * g_q


@pytest.mark.parametrize(
    ("qas", "lr_w", "lr_b"),
    # Learning rates at which both move by many int8 steps: without QAS the same lr moves the
    # weights s_W^2 times less and the biases s_W^2 * s_x^2 times less.
    [(True, 0.05, 0.05), (False, 2000.0, 1e5)],
)
def test_update_follows_the_formula(qas: bool, lr_w: float, lr_b: float) -> None:
    scheme = "bias=1,-1=1" + ("" if qas else ",qas=0")
    o = _step(scheme, lr_w, sample=5)
    dw = _expected(o, lr_w, qas)[0]
    assert np.abs(dw).max() >= 3, "the check needs weights that move by several steps"
    unsat = np.abs(o["w"] + dw) < 126  # saturation at +-127 aside
    assert unsat.mean() > 0.9
    assert np.all(np.abs(o["dw"] - dw)[unsat] < 1.0 + 1e-6)
    assert abs(np.mean((o["dw"] - dw)[unsat])) < 0.05  # stochastic rounding is unbiased
    o = _step(scheme, lr_b, sample=5)
    db = _expected(o, lr_b, qas)[1]
    assert np.abs(db).max() >= 20, "the check needs biases that move by many steps"
    assert np.abs(o["db"] - db).max() <= 1.0, (o["db"], db)


def test_qas_changes_the_step_by_the_scales() -> None:
    """The same lr with and without QAS: the bias steps differ by s_W^2 * s_x^2 per channel,
    the weight steps by s_W^2, as the formula says; without QAS at this lr the weights barely move."""
    lr = 0.05
    a, b = _step("bias=1,-1=1", lr, 5), _step("bias=1,-1=1,qas=0", lr, 5)
    dw_q, db_q = _expected(a, lr, True)
    dw_n, db_n = _expected(b, lr, False)
    assert np.allclose(db_n, db_q * a["s_w"] ** 2 * a["s_x"] ** 2)
    assert np.allclose(dw_n, dw_q * (a["s_w"] ** 2)[:, None])
    assert np.abs(a["db"]).max() >= 20
    assert np.abs(b["db"]).max() <= 1  # tiny updates round to nothing
    assert np.count_nonzero(b["dw"]) < 0.05 * np.count_nonzero(a["dw"])


def test_scheme_option(tmp_path) -> None:
    assert parse_scheme_text("bias=2,-1=1").qas
    assert not parse_scheme_text("bias=2,-1=1,qas=false").qas
    f = tmp_path / "s.toml"
    f.write_text("bias_layers = 2\nqas = false\n[weights]\n-1 = 1.0\n")
    s = load_scheme(str(f))
    assert (s.bias_layers, s.weights, s.qas) == (2, {-1: 1.0}, False)
    assert "without QAS" in s.describe()
    f.write_text("bias_layers = 2\nqas = 0\n")
    with pytest.raises(Exception, match="qas must be true or false"):
        load_scheme(str(f))
