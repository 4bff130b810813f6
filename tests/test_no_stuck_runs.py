"""No stuck runs (issue 12): fine-tuning must not freeze on saturated int8 logits.

Why it froze: the loss was taken from the classifier's int8 output. Once the logits of both
classes sat at +127 (the int8 ceiling), the loss was ln 2 whatever the model computed
beneath, and for a CONV_2D -> RESHAPE head (MCUNet's) the output's clamp mask zeroed the
gradient of every saturated logit: nothing moved again. The fix takes the loss from the
output layer's un-clamped int32 values (LOGITS_S32), exact and without a mask
(pytools/train/losses.py, docs/training.md "No stuck runs").

The task: a small MCUNet-style classifier (conv, global average pool, 1x1 conv head,
RESHAPE, SOFTMAX), built here with TensorFlow and exported full-int8, whose head is
calibrated on logits ten times smaller than it ends up needing, so its output scale is
tight (about 0.004: logits saturate beyond about +0.6). It is fine-tuned on the host twin
(the board's C) to swap its two classes, at lr 0.3, 4 epochs of 300 samples, 10 seeds
(sample orders). A run is stuck when its trained state did not change at all during the
last epoch. The control is the same step with the loss of the saturated int8 output
(`saturated_loss`, what the engine computed before for this head: checked against the
previous engine's losses, equal, when this was written). It froze with both logits at one
int8 bound (loss exactly ln 2) or at opposite bounds (the wrong way round for some samples).
Measured: control stuck in 5 of 10 seeds; the default in 0 of 10.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.model.tflite_import import import_tflite
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme
from pytools.train.trainer import Trainer

BOARD = load_board("mps2_an500")
SEEDS = range(10)
SAMPLES, EPOCHS, LR, SCHEME = 300, 4, 0.3, "bias=2,-1=1"


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two classes told apart by the sign of channel 0's mean."""
    r = np.random.default_rng(seed)
    y = r.integers(0, 2, n)
    x = r.normal(0, 1, (n, 4, 4, 3)).astype(np.float32)
    x[:, :, :, 0] += np.where(y == 1, 0.8, -0.8)[:, None, None]
    return x, y


@pytest.fixture(scope="module")
def model() -> bytes:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pytools.pretrain.zoo import export_tflite, import_tf

    import_tf()
    import keras

    keras.utils.set_random_seed(7)

    def make(batch: int | None) -> keras.Model:
        i = keras.Input((4, 4, 3), batch_size=batch)
        h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(i)
        h = keras.layers.GlobalAveragePooling2D(keepdims=True)(h)
        h = keras.layers.Conv2D(2, 1)(h)
        h = keras.layers.Reshape((2,))(h)
        return keras.Model(i, keras.layers.Softmax()(h))

    m = make(None)
    m.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy())
    x, y = _data(400, 1)
    m.fit(x, y, epochs=3, verbose=0)
    w = m.get_weights()
    w[-2], w[-1] = w[-2] * 0.1, w[-1] * 0.1  # the head calibrated on small logits: a tight scale
    export = make(1)
    export.set_weights(w)
    return export_tflite(export, x[:100], "int8")


def _sweep(model: bytes, saturated_loss: bool) -> list[dict]:
    g = import_tflite(model, "mcunet_style_head")
    assert [op.kind for op in g.ops] == ["CONV_2D", "MEAN", "CONV_2D", "RESHAPE", "SOFTMAX"]
    ct = compile_training(g, load_scheme(SCHEME), BOARD, "m", False, LR, saturated_loss=saturated_loss)
    t = g.tensor(g.inputs[0])
    s, z = float(t.quant.scale[0]), int(t.quant.zero_point[0])
    runs = []
    for seed in SEEDS:
        x, y = _data(SAMPLES, 100 + seed)
        y = 1 - y  # the new task: the classes swapped
        xq = np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)
        tr = Trainer(ct)
        order = np.random.default_rng(seed).permutation(SAMPLES)
        both_at_ceiling = saturated = 0
        for epoch in range(EPOCHS):
            if epoch == EPOCHS - 1:
                before = {k: v for k, v in tr.state().items() if k != "rng"}
            losses = []
            for i in order:
                # the int8 logits this step's forward pass computes (forward_output reads them
                # before the loss head; after the step their bytes may hold a later tensor)
                q = tr.forward_output(xq[i])
                both_at_ceiling += bool(np.all(q == 127) or np.all(q == -128))
                saturated += bool(np.any(q == 127) or np.any(q == -128))
                losses.append(tr.step(xq[i], int(y[i]))[0])
        after = tr.state()
        frozen = all(np.array_equal(before[k], after[k]) for k in before)
        acc = float(np.mean([tr.predict(xq[i]) == y[i] for i in range(SAMPLES)]))
        runs.append(
            dict(
                seed=seed,
                stuck=frozen,
                loss=float(np.mean(losses)),
                acc=acc,
                ceiling=both_at_ceiling,
                saturated=saturated,
            )
        )
    return runs


def test_saturated_logits_no_longer_freeze_fine_tuning(model) -> None:
    control, fixed = _sweep(model, saturated_loss=True), _sweep(model, saturated_loss=False)
    for name, runs in (("int8-output loss (before)", control), ("un-clamped int32 loss", fixed)):
        print(f"\n{name}: stuck in {sum(r['stuck'] for r in runs)} of {len(runs)} seeds")
        for r in runs:
            print(
                f"  seed {r['seed']}: last-epoch loss {r['loss']:.3f}, accuracy {r['acc']:.2f}, "
                f"steps with both int8 logits at one bound: {r['ceiling']}, with one at a bound: "
                f"{r['saturated']}, " + ("STUCK" if r["stuck"] else "moving")
            )
    # The task drives the logits into the int8 bounds, and the old loss freezes there.
    assert sum(r["stuck"] for r in control) >= 3
    assert any(r["loss"] == pytest.approx(np.log(2), abs=1e-6) for r in control if r["stuck"])
    # The fixed step meets saturated int8 logits too (one of them at a bound), and goes on.
    assert sum(r["saturated"] for r in fixed) > 0
    # The fix: no seed freezes, and the swapped task is learned.
    assert not any(r["stuck"] for r in fixed)
    assert np.mean([r["acc"] for r in fixed]) >= 0.9
    assert min(r["acc"] for r in fixed) > max(r["acc"] for r in control if r["stuck"])
