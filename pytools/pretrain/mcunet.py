"""MCUNet-5FPS at 128x128 (the model MIT's on-device training demo ships), full int8; cached.

Built like the MobileNetV2 row (pytools/pretrain/mobilenet_v2.py): Keras layers, weights
from a seeded initialisation, BatchNorm statistics re-estimated on one batch of the zoo's
structured images (momentum 0, training mode), full-int8 export with int8 input and output,
cached under build/test_models/mcunet_5fps_128-<key>.tflite. It is not MIT's trained model:
the operators, shapes, MACs and parameter counts are the architecture's, the weights are not.

The layer table (BLOCKS) is reconstructed from memory of MIT's mcunet model zoo (the
`mcunet-5fps` ProxylessNAS-space network: MobileNetV2 inverted residual blocks with a kernel
of 3, 5 or 7 and an expansion of 3, 4 or 6 per block), NOT copied from its json, which was not
available here. What pins it to the model the issue measured: the first stride-2 block's
expanded tensor is 64x64x32 and its PAD makes it 66x66x32 (131,072 B in, 139,392 B out: the
issue's peak), 5x5 and 7x7 depthwise layers, a 1x1 projection with 576 input channels, and a
classifier straight after the global average pool (no 1x1 feature-mix layer).

Padding is PyTorch's, as in MIT's export: every k x k layer pads k // 2 on each side. At
stride 1 that is SAME and the converter writes it so; at stride 2 on an even input it is not
SAME, so the model holds an explicit PAD before each stride-2 layer (the stem conv and the
depthwise of each downsampling block), as MIT's .tflite does.

    mcunet_path()  -> Path of the cached .tflite (built on first use, ~1 min with TF)
    mcunet()       -> its bytes
    samples(n, seed) -> n labelled images in the model's input range (float)
    python -m pytools.pretrain.mcunet   builds it and prints its layers, MACs and size
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pytools.pretrain.mobilenet_v2 import recalibrate_batchnorm
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

NAME = "mcunet_5fps_128"
SIZE = 128
STEM = 16  # stem conv 3x3/2, 3 -> 16
FIRST = 8  # the first block: depthwise 3x3 (16) and a 1x1 projection 16 -> 8, no expansion
# (expansion, kernel, output channels, stride) of the inverted residual blocks after it; a
# block with stride 1 and equal channels adds its input (residual).
BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (4, 3, 16, 2),  # 64x64 -> 32x32; expanded 64x64x32, padded to 66x66x32
    (3, 5, 16, 1),
    (3, 7, 24, 2),  # 32 -> 16
    (3, 3, 24, 1),
    (4, 5, 24, 1),
    (6, 7, 40, 2),  # 16 -> 8
    (3, 3, 40, 1),
    (4, 5, 40, 1),
    (4, 3, 48, 1),
    (4, 5, 48, 1),
    (6, 7, 96, 2),  # 8 -> 4
    (6, 5, 96, 1),  # expanded 576: its projection is the 1x1 conv with 576 input channels
    (3, 3, 96, 1),
    (3, 7, 160, 1),
)
CALIBRATION = 64
REPRESENTATIVE = 100


def _keras_model(batch: int | None) -> Any:
    import_tf()
    import keras
    from keras import layers

    def bn_act(x: Any, act: bool = True) -> Any:
        x = layers.BatchNormalization()(x)
        return layers.ReLU(6.0)(x) if act else x

    def spatial(x: Any, k: int, stride: int, filters: int | None) -> Any:
        """A k x k conv (filters) or depthwise (None), padded k // 2 on each side."""
        if stride == 1:
            pad, x = "same", x
        else:
            pad, x = "valid", layers.ZeroPadding2D(k // 2)(x)
        if filters is None:
            return layers.DepthwiseConv2D(k, strides=stride, padding=pad, use_bias=False)(x)
        return layers.Conv2D(filters, k, strides=stride, padding=pad, use_bias=False)(x)

    inp = keras.Input((SIZE, SIZE, 3), batch_size=batch)
    x = bn_act(spatial(inp, 3, 2, STEM))
    x = bn_act(spatial(x, 3, 1, None))
    x = bn_act(layers.Conv2D(FIRST, 1, use_bias=False)(x), act=False)
    for e, k, c, s in BLOCKS:
        shortcut = x
        y = bn_act(layers.Conv2D(e * x.shape[-1], 1, use_bias=False)(x))
        y = bn_act(spatial(y, k, s, None))
        y = bn_act(layers.Conv2D(c, 1, use_bias=False)(y), act=False)
        x = layers.Add()([shortcut, y]) if s == 1 and shortcut.shape[-1] == c else y
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(CLASSES)(x)
    return keras.Model(inp, layers.Softmax()(x), name=NAME)


def _data(n: int, seed: int) -> np.ndarray:
    """n structured 128x128x3 images in [-1, 1]."""
    x, _ = synthetic_images(n, SIZE, SIZE, 3, seed)
    return (2.0 * x - 1.0).astype(np.float32)


def samples(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n labelled 128x128x3 images in [-1, 1] (the zoo's 10 synthetic classes), for training."""
    x, y = synthetic_images(n, SIZE, SIZE, 3, seed)
    return (2.0 * x - 1.0).astype(np.float32), y


def _build() -> bytes:
    import_tf()
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(1234)
    model = _keras_model(1)
    free = _keras_model(None)  # the same layers with a free batch, for the recalibration
    free.set_weights(model.get_weights())
    recalibrate_batchnorm(free, _data(CALIBRATION, 1))
    model.set_weights(free.get_weights())
    return export_tflite(model, _data(REPRESENTATIVE, 2), "int8")


def cache_key() -> str:
    params = (NAME, SIZE, STEM, FIRST, BLOCKS, CLASSES, CALIBRATION, REPRESENTATIVE)
    return source_key(
        params,
        (_keras_model, _data, recalibrate_batchnorm, _build, export_tflite, synthetic_images, import_tf),
    )


def check(model: bytes) -> None:
    """Raises unless the model holds only engine-supported operators, its explicit PADs, a
    non-degenerate logit scale, and TFLite's reference kernels run it."""
    import tflite

    from pytools.model.ir import SUPPORTED_OPS
    from pytools.model.oracle import run_tflite

    ops = op_names(model)
    extra = sorted(set(ops) - set(SUPPORTED_OPS))
    strided = 1 + sum(1 for *_, s in BLOCKS if s == 2)
    if extra or ops[-1] != "SOFTMAX" or ops.count("PAD") != strided:
        raise RuntimeError(
            f"{NAME}: operators {sorted(set(ops))}: unsupported {extra}, no final SOFTMAX, or "
            f"{ops.count('PAD')} PADs where {strided} stride-2 layers pad"
        )
    g = tflite.Model.GetRootAsModel(model, 0).Subgraphs(0)
    last = g.Operators(g.OperatorsLength() - 1)
    scale = float(g.Tensors(last.Inputs(0)).Quantization().ScaleAsNumpy()[0])
    if not 1e-4 < scale < 10:
        raise RuntimeError(
            f"{NAME}: logit scale {scale:g}: degenerate (recalibrate the BatchNorm statistics)"
        )
    out = run_tflite(model, [np.zeros((1, SIZE, SIZE, 3), np.int8)])[0]
    if out.shape != (1, CLASSES):
        raise RuntimeError(f"{NAME}: output shape {out.shape}")


def mcunet_path() -> Path:
    """The cached .tflite, built (with TensorFlow), checked and cached on first use."""
    return cached_build(NAME, CACHE / f"{NAME}-{cache_key()}.tflite", _build, check)


def mcunet() -> bytes:
    return mcunet_path().read_bytes()


if __name__ == "__main__":
    from collections import Counter

    from pytools.bench import graph_macs
    from pytools.model.tflite_import import load_tflite

    p = mcunet_path()
    ops = op_names(p.read_bytes())
    g = load_tflite(p)
    print(f"{p}: {p.stat().st_size:,} B, {len(ops)} operators: {dict(Counter(ops))}")
    print(f"forward MACs {sum(graph_macs(g).values()):,}")
    weights = sum(t.nbytes for t in g.tensors if t.data is not None)
    print(f"constant bytes {weights:,}")
