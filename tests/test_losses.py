"""Losses end to end (`--loss auto|ce|bce|mse`, pytools/train/losses.py): which loss a graph
gets, and that each one trains on the host twin (the board's C).

Models are built here with TensorFlow and exported full-int8 (int8 input and output):
  - an autoencoder of Dense layers like MLPerf Tiny's anomaly detector (64 -> 32 -> 8 -> 32 ->
    64 here), trained with MSE against its input; its step compiles for nucleo_f746zg with a
    sparse scheme, the loss falls on the host twin, and the evaluation's anomaly score
    (reconstruction error) separates anomalous samples from normal ones;
  - a binary classifier ending in FULLY_CONNECTED with 1 output (logits), trained with bce;
  - a classifier ending in logits (Dense 3, no SOFTMAX): auto picks ce on the logits;
  - a regression (Dense 6-16-2) trained with mse against float32 target vectors.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.model.ir import ModelError
from pytools.model.tflite_import import import_tflite
from pytools.train.compile_train import compile_training
from pytools.train.evaluate import evaluate, roc_auc
from pytools.train.losses import choose
from pytools.train.scheme import load_scheme
from pytools.train.trainer import Trainer

EMU = load_board("mps2_an500")
D = 64  # the autoencoder's input size


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pytools.pretrain.zoo import import_tf

    import_tf()
    import keras

    return keras


def _export(model, rep: np.ndarray) -> bytes:
    from pytools.pretrain.zoo import export_tflite as export

    return export(model, rep, "int8")


def _normal(n: int, seed: int) -> np.ndarray:
    """Machine-sound-like vectors: a smooth spectrum from 4 latent factors, plus noise."""
    r = np.random.default_rng(seed)
    basis = np.sin(np.outer(np.arange(1, 5), np.linspace(0, np.pi, D)))
    return (r.normal(0, 1, (n, 4)) @ basis + 0.1 * r.normal(0, 1, (n, D))).astype(np.float32)


# The fine-tuning task: the same machine after a change (its spectrum shifted), which the
# pretrained autoencoder reconstructs poorly.
SHIFT = 0.8 * np.cos(np.linspace(0, 3 * np.pi, D)).astype(np.float32)


def _anomalous(n: int, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    return (_normal(n, seed) + 0.3 * r.normal(0, 1, (n, D))).astype(np.float32)


@pytest.fixture(scope="module")
def autoencoder() -> bytes:
    keras = _keras()
    keras.utils.set_random_seed(3)
    layers = [keras.Input((D,), batch_size=None)]

    def make(batch):
        i = keras.Input((D,), batch_size=batch)
        h = keras.layers.Dense(32, activation="relu")(i)
        h = keras.layers.Dense(8, activation="relu")(h)
        h = keras.layers.Dense(32, activation="relu")(h)
        return keras.Model(i, keras.layers.Dense(D)(h))

    del layers
    m = make(None)
    m.compile(keras.optimizers.Adam(0.003), "mse")
    x = _normal(2000, 1)
    m.fit(x, x, epochs=3, batch_size=32, verbose=0)  # briefly: fine-tuning has work left
    e = make(1)
    e.set_weights(m.get_weights())
    return _export(e, x[:200])


def _quantize(g, x: np.ndarray) -> np.ndarray:
    t = g.tensor(g.inputs[0])
    s, z = float(t.quant.scale[0]), int(t.quant.zero_point[0])
    return np.clip(np.round(x / s) + z, -128, 127).astype(np.int8).reshape((len(x), *t.shape))


def test_autoencoder_trains_with_mse_and_scores_anomalies(autoencoder) -> None:
    g = import_tflite(autoencoder, "ae")
    assert [op.kind for op in g.ops] == ["FULLY_CONNECTED"] * 4
    head = choose(g)
    assert (head.loss, head.target) == ("mse", "input") and "autoencoder" in head.describe()

    # The step compiles and links for the real board, with a sparse scheme.
    scheme = load_scheme("bias=2,-1=1,-2=0.5")
    nucleo = compile_training(g, scheme, load_board("nucleo_f746zg"), "ae", link=True, lr=0.01)
    assert nucleo.image is not None, nucleo.link_error
    kinds = [op.kind for op in nucleo.train.graph.ops[nucleo.train.n_forward :]]
    assert kinds[:2] == ["LOGITS_S32", "MSE_S32"]

    ct = compile_training(g, scheme, EMU, "ae", link=False, lr=0.01)
    tr = Trainer(ct)
    xs = _quantize(g, _normal(300, 7) + SHIFT)
    normal, anomalous = _quantize(g, _normal(100, 8) + SHIFT), _quantize(g, _anomalous(100, 9) + SHIFT)
    held = np.concatenate([normal, anomalous])
    flags = [0] * len(normal) + [1] * len(anomalous)
    before = evaluate(tr, held, flags)
    epochs = [float(np.mean([tr.step(x, 0)[0] for x in xs])) for _ in range(4)]
    after = evaluate(tr, held, flags)
    score_before, score_after = (
        np.mean(before["anomaly_scores"][:100]),
        np.mean(after["anomaly_scores"][:100]),
    )
    print(
        f"\nautoencoder MSE per epoch: {[round(v, 4) for v in epochs]}; held-out normal score "
        f"{score_before:.4f} -> {score_after:.4f}; AUC {before['auc']:.4f} -> {after['auc']:.4f}"
    )
    assert epochs[-1] < 0.9 * epochs[0]
    assert score_after < 0.5 * score_before  # the new normal is learned
    assert after["auc"] >= 0.99 and after["auc"] > before["auc"]  # and anomalies stand out better
    # The anomaly score is the sample's own loss (mse_s32 is checked against TensorFlow).
    x0 = held[-1]
    loss, _ = tr.evaluate(x0, 0)
    assert after["anomaly_scores"][-1] == loss


def test_roc_auc() -> None:
    assert roc_auc(np.array([3.0, 4.0, 1.0, 2.0]), np.array([True, True, False, False])) == 1.0
    assert roc_auc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5


def _binary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    y = r.integers(0, 2, n)
    x = r.normal(0, 1, (n, 12)).astype(np.float32)
    x[:, :3] += np.where(y == 1, 1.0, -1.0)[:, None]
    return x, y


def test_binary_classifier_on_one_logit_trains_with_bce() -> None:
    keras = _keras()
    keras.utils.set_random_seed(5)

    def make(batch):
        i = keras.Input((12,), batch_size=batch)
        h = keras.layers.Dense(16, activation="relu")(i)
        return keras.Model(i, keras.layers.Dense(1)(h))

    m = make(None)
    m.compile(keras.optimizers.Adam(0.01), keras.losses.BinaryCrossentropy(from_logits=True))
    x, y = _binary(400, 1)
    m.fit(x, 1 - y, epochs=2, verbose=0)  # pretrained on the opposite task: much to learn
    e = make(1)
    e.set_weights(m.get_weights())
    g = import_tflite(_export(e, x[:100]), "binary")
    assert choose(g).loss == "mse"  # one linear output: auto takes it for a regression, and says so
    with pytest.raises(ModelError, match="needs at least 2 classes"):
        choose(g, "ce")
    ct = compile_training(g, load_scheme("bias=2,-1=1,-2=1"), EMU, "binary", link=False, lr=0.05, loss="bce")
    assert [op.kind for op in ct.train.graph.ops[ct.train.n_forward :]][:2] == [
        "LOGITS_S32",
        "SIGMOID_XENT_S32",
    ]
    tr = Trainer(ct)
    xq, (xe, ye) = _quantize(g, x), _binary(200, 2)
    xeq = _quantize(g, xe)
    before = evaluate(tr, xeq, ye)
    epochs = [float(np.mean([tr.step(xq[i], int(y[i]))[0] for i in range(len(y))])) for _ in range(3)]
    after = evaluate(tr, xeq, ye)
    acc = (before["accuracy"], after["accuracy"])
    print(f"\nbce per epoch {[round(v, 3) for v in epochs]}; accuracy {acc[0]:.2f} -> {acc[1]:.2f}")
    assert epochs[-1] < 0.7 * epochs[0]
    assert after["accuracy"] >= 0.85 > before["accuracy"]
    # PREDICT's answer is logit > 0 for one sigmoid output.
    assert {tr.predict(xeq[i]) for i in range(20)} == {0, 1}


def test_a_graph_ending_in_logits_trains_with_ce() -> None:
    keras = _keras()
    keras.utils.set_random_seed(6)

    def make(batch):
        i = keras.Input((12,), batch_size=batch)
        h = keras.layers.Dense(16, activation="relu")(i)
        return keras.Model(i, keras.layers.Dense(3)(h))

    r = np.random.default_rng(0)
    y = r.integers(0, 3, 600)
    x = r.normal(0, 1, (600, 12)).astype(np.float32)
    x[np.arange(600), y] += 2.0
    m = make(None)
    m.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x[:50], y[:50], epochs=1, verbose=0)
    e = make(1)
    e.set_weights(m.get_weights())
    g = import_tflite(_export(e, x[:100]), "logits")
    head = choose(g)
    assert head.loss == "ce" and "logits" in head.why
    ct = compile_training(g, load_scheme("bias=2,-1=1"), EMU, "logits", link=False, lr=0.05)
    tr = Trainer(ct)
    xq = _quantize(g, x)
    before = evaluate(tr, xq[:200], y[:200])["accuracy"]
    first = float(np.mean([tr.step(xq[i], int(y[i]))[0] for i in range(300)]))
    last = float(np.mean([tr.step(xq[i], int(y[i]))[0] for i in range(300, 600)]))
    acc = evaluate(tr, xq[:200], y[:200])["accuracy"]
    print(f"\nce on logits: {first:.3f} -> {last:.3f}, accuracy {before:.2f} -> {acc:.2f}")
    assert last < first and acc >= before + 0.1


def test_losses_that_do_not_fit_the_graph_are_refused(autoencoder) -> None:
    from pytools.pretrain.zoo import zoo_model

    clf = import_tflite(zoo_model("mlp"), "mlp")
    with pytest.raises(ModelError, match="does not fit a model ending in SOFTMAX: use ce"):
        choose(clf, "mse")
    with pytest.raises(ModelError, match="unknown loss 'l1'"):
        choose(clf, "l1")
    assert choose(clf).describe().startswith("ce (softmax cross-entropy): the model ends in SOFTMAX")
    ae = import_tflite(autoencoder, "ae")
    with pytest.raises(ModelError, match=r"the float-gradient option has no kernel for MSE_S32 yet"):
        compile_training(ae, load_scheme("bias=1,gradients=float32"), EMU, "ae", link=False)


def test_a_regression_trains_with_mse_against_float_targets() -> None:
    keras = _keras()
    keras.utils.set_random_seed(8)

    def make(batch):
        i = keras.Input((6,), batch_size=batch)
        h = keras.layers.Dense(16, activation="relu")(i)
        return keras.Model(i, keras.layers.Dense(2)(h))

    r = np.random.default_rng(0)
    x = r.normal(0, 1, (800, 6)).astype(np.float32)
    w = r.normal(0, 0.5, (6, 2)).astype(np.float32)
    y = (x @ w).astype(np.float32)
    m = make(None)
    m.compile(keras.optimizers.Adam(0.01), "mse")
    m.fit(x, y, epochs=3, verbose=0)
    e = make(1)
    e.set_weights(m.get_weights())
    g = import_tflite(_export(e, x[:100]), "reg")
    head = choose(g, "mse")
    assert (head.loss, head.target) == ("mse", "vector")
    ct = compile_training(g, load_scheme("bias=2,-1=1"), EMU, "reg", link=False, lr=0.01, loss="mse")
    target = ct.train.graph.tensor(ct.train.label)
    assert (target.dtype, target.shape) == ("float32", (1, 2))
    y2 = y + np.float32(0.5)  # the new task: every target shifted
    xq = _quantize(g, x)
    tr = Trainer(ct)
    before = evaluate(tr, xq[600:], y2[600:])["mean_loss"]
    for i in range(600):
        tr.step(xq[i], y2[i].reshape(1, 2))
    after = evaluate(tr, xq[600:], y2[600:])["mean_loss"]
    print(f"\nregression MSE on held-out samples: {before:.4f} -> {after:.4f}")
    assert after < 0.5 * before
