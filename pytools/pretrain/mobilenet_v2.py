"""The benchmark model: Keras' own MobileNetV2(alpha=0.35) at 128x128, full int8; cached.

This is the paper's MbV2-w0.35 at its resolution (method.md section 6), built exactly as
keras.applications builds it (weights=None), with the recipe of ../shared/docs/toolchain.md:

- the Input has batch_size=1 (a free batch brings SHAPE/STRIDED_SLICE/PACK into the export);
- the BatchNorm statistics are re-estimated on real-looking images first. An untrained
  MobileNetV2's logits sit near 1e-8, so the int8 logit scale collapses and TFLite Micro's
  SOFTMAX aborts. Each BatchNorm layer gets momentum 0 and the network runs once in training
  mode on a batch, so every moving mean and variance becomes that batch's (BN recalibration);
  operators, MACs and parameters do not change;
- full-int8 export (pytools.pretrain.zoo.export_tflite: Optimize.DEFAULT + representative dataset +
  TFLITE_BUILTINS_INT8, int8 input and output).

The classifier has CLASSES (10) outputs, as a transfer-learning head would (the paper trains
downstream heads); Keras' 1000-class head alone would be 1.28 MB of int8 weights, more than
the board's 1 MB of flash, and would say nothing about training. The images are the zoo's
structured synthetic images (pytools.pretrain.zoo.synthetic_images) at 128x128, scaled to [-1, 1] as
MobileNetV2's preprocessing expects.

The bytes are cached as build/test_models/mobilenet_v2_035_128-<key>.tflite, keyed like the
zoo (this file's builder source, the zoo helpers it uses, TensorFlow/Keras/numpy versions).

    mobilenet_v2_path()  -> Path of the cached .tflite (built on first use, ~1 min with TF)
    mobilenet_v2()       -> its bytes
    samples(n, seed)     -> n labelled images in the model's input range (float), for training
    python -m pytools.pretrain.mobilenet_v2   builds it and prints its operators, MACs and size
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pytools.pretrain.zoo import (
    CACHE,
    CLASSES,
    cached_build,
    export_tflite,
    import_tf,
    op_names,
    source_key,
    synthetic_images,
)

NAME = "mobilenet_v2_035_128"
SIZE = 128
ALPHA = 0.35
CALIBRATION = 64  # images for the BatchNorm statistics
REPRESENTATIVE = 100  # images for the int8 calibration


def _keras_model() -> Any:
    """keras.applications.MobileNetV2(alpha=0.35, 128x128x3, weights=None), batch 1, 10 classes."""
    import_tf()
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(1234)
    inp = keras.Input((SIZE, SIZE, 3), batch_size=1)
    return keras.applications.MobileNetV2(
        input_tensor=inp, alpha=ALPHA, weights=None, include_top=True, classes=CLASSES
    )


def _data(n: int, seed: int) -> np.ndarray:
    """n structured 128x128x3 images in [-1, 1] (MobileNetV2's input range)."""
    x, _ = synthetic_images(n, SIZE, SIZE, 3, seed)
    return (2.0 * x - 1.0).astype(np.float32)


def samples(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n labelled 128x128x3 images in [-1, 1] (the zoo's 10 synthetic classes), for training."""
    x, y = synthetic_images(n, SIZE, SIZE, 3, seed)
    return (2.0 * x - 1.0).astype(np.float32), y


def recalibrate_batchnorm(model: Any, x: np.ndarray) -> None:
    """Every BatchNorm's moving statistics := those of one batch (momentum 0, training mode).

    The batch goes through the model in one call, so each layer's statistics are those of
    its input as normalised by the statistics already set below it.
    """
    import keras

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(x, training=True)
    for bn, m in zip(bns, saved, strict=True):
        bn.momentum = m


def _build() -> bytes:
    import_tf()
    import keras

    model = _keras_model()
    # The model's Input has batch 1: recalibrate on a twin with a free batch, same weights.
    free = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), alpha=ALPHA, weights=None, include_top=True, classes=CLASSES
    )
    free.set_weights(model.get_weights())
    recalibrate_batchnorm(free, _data(CALIBRATION, 1))
    model.set_weights(free.get_weights())
    return export_tflite(model, _data(REPRESENTATIVE, 2), "int8")


def cache_key() -> str:
    params = (NAME, SIZE, ALPHA, CLASSES, CALIBRATION, REPRESENTATIVE)
    return source_key(
        params,
        (_keras_model, _data, recalibrate_batchnorm, _build, export_tflite, synthetic_images, import_tf),
    )


def check(model: bytes) -> None:
    """Raises unless the model holds only engine-supported operators and its logits are not
    degenerate (the int8 scale of the SOFTMAX input is sane), and TFLite's reference kernels
    run it."""
    import tflite

    from pytools.model.ir import SUPPORTED_OPS
    from pytools.model.oracle import run_tflite

    ops = op_names(model)
    extra = sorted(set(ops) - set(SUPPORTED_OPS))
    if extra or ops[-1] != "SOFTMAX":
        raise RuntimeError(f"{NAME}: operators {sorted(set(ops))}: unsupported {extra}, or no final SOFTMAX")
    g = tflite.Model.GetRootAsModel(model, 0).Subgraphs(0)
    last = g.Operators(g.OperatorsLength() - 1)
    scale = float(g.Tensors(last.Inputs(0)).Quantization().ScaleAsNumpy()[0])
    if not 1e-4 < scale < 10:
        raise RuntimeError(
            f"{NAME}: logit scale {scale:g}: degenerate (recalibrate the BatchNorm statistics)"
        )
    x = np.zeros((1, SIZE, SIZE, 3), np.int8)
    out = run_tflite(model, [x])[0]
    if out.shape != (1, CLASSES):
        raise RuntimeError(f"{NAME}: output shape {out.shape}")


def mobilenet_v2_path() -> Path:
    """The cached .tflite, built (with TensorFlow), checked and cached on first use."""
    return cached_build(NAME, CACHE / f"{NAME}-{cache_key()}.tflite", _build, check)


def mobilenet_v2() -> bytes:
    return mobilenet_v2_path().read_bytes()


if __name__ == "__main__":
    from collections import Counter

    from pytools.bench import graph_macs
    from pytools.model.tflite_import import load_tflite

    p = mobilenet_v2_path()
    ops = op_names(p.read_bytes())
    print(f"{p}: {p.stat().st_size:,} B, {len(ops)} operators: {dict(Counter(ops))}")
    print(f"forward MACs {sum(graph_macs(load_tflite(p)).values()):,}")
