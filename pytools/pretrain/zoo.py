"""Small full-int8 .tflite models built with TensorFlow, for tests; cached on disk.

Each zoo model is a little Keras model trained briefly (seconds) on synthetic but
structured images (so logits and activation ranges are not degenerate: an untrained
model's logits collapse to ~1e-8 and TFLite-Micro's SOFTMAX then aborts), exported with the
full-int8 recipe (Optimize.DEFAULT + representative dataset + TFLITE_BUILTINS_INT8; int8 or
float32 input/output, batch 1), then checked before it is cached: it holds the operators it
is meant to exercise and only operators of pytools.model.ir.SUPPORTED_OPS, and in TFLite's
reference kernels (pytools.model.oracle) it classifies unseen samples well above chance.

TensorFlow is imported only to build a model that is not cached yet (~10 s import, a few
seconds per model). The bytes are cached as build/test_models/<name>-<key>.tflite, where the
key hashes the builder's source, the shared helpers' source and the TensorFlow / Keras /
numpy versions: the suite pays for TensorFlow once per machine and again only when a builder
changes. Builds are seeded (keras.utils.set_random_seed, op determinism, oneDNN off), so a
rebuild on the same machine gives the same bytes; another CPU may round float training
differently, which is why tests never compare bytes, only behaviour.

    zoo_names()         -> ["cnn_int8_io", "cnn_float_io", "mlp", "mobilenet_tiny", "movement_tiny",
                            "pad_fold", "se_net"]
    zoo_model(name)     -> .tflite bytes (built and cached on first use)
    ZOO[name].ops       -> the operators the model must contain
    op_names(model)     -> the model's operators in execution order (builtin names)

Add a new helper that builders use to BUILD_SOURCES, so that editing it invalidates the cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytools.paths import BUILD

CACHE = BUILD / "test_models"
CLASSES = 10


@dataclass(frozen=True)
class ZooModel:
    name: str
    make: Callable[[int | None], Any]  # batch size -> the Keras model (imports TensorFlow)
    data: Callable[[int, int], tuple[np.ndarray, np.ndarray]]  # (n, seed) -> float inputs, labels
    io_dtype: str  # "int8" or "float32": the model's input and output type
    ops: tuple[str, ...]  # builtin operators the model must contain
    epochs: int
    lr: float  # Adam learning rate
    summary: str


# ---------------------------------------------------------------- reading a .tflite (no TF)


def op_names(model: bytes) -> list[str]:
    """The operators of subgraph 0 in execution order, as TFLite builtin names."""
    import tflite

    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if isinstance(v, int)}
    m = tflite.Model.GetRootAsModel(model, 0)
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        codes.append(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()))
    g = m.Subgraphs(0)
    return [names[codes[g.Operators(i).OpcodeIndex()]] for i in range(g.OperatorsLength())]


def io_dtypes(model: bytes) -> tuple[list[str], list[str]]:
    """numpy dtype names of the model's inputs and outputs."""
    import tflite

    types = {v: k.lower() for k, v in vars(tflite.TensorType).items() if isinstance(v, int)}
    g = tflite.Model.GetRootAsModel(model, 0).Subgraphs(0)
    ins = [types[g.Tensors(g.Inputs(i)).Type()] for i in range(g.InputsLength())]
    outs = [types[g.Tensors(g.Outputs(i)).Type()] for i in range(g.OutputsLength())]
    return ins, outs


# ---------------------------------------------------------------- data (numpy only, seeded)


def _blur(x: np.ndarray, sigma: float, axes: tuple[int, ...]) -> np.ndarray:
    """Separable Gaussian blur with wrap-around edges."""
    r = max(1, round(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    for ax in axes:
        acc = np.zeros_like(x)
        for i, w in zip(range(-r, r + 1), k, strict=True):
            acc += w * np.roll(x, i, axis=ax)
        x = acc
    return x


def synthetic_images(n: int, h: int, w: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images in [0, 1], shape (n, h, w, c), in CLASSES classes, and their labels.

    Each class has a smooth random pattern and an oriented grating (direction, period and
    colour of its own; the same for every seed). A sample is its class pattern shifted by up
    to 2 pixels plus its grating at a random phase, with random contrast and brightness and
    smooth and pixel noise: a small CNN (local orientation, then a global average) and an MLP
    (the pattern's layout) both learn the classes, neither perfectly.
    """
    crng = np.random.default_rng([h, w, c])
    patterns = _blur(crng.standard_normal((CLASSES, h, w, c)), 1.5, (1, 2))
    patterns /= patterns.std(axis=(1, 2, 3), keepdims=True)
    angle = np.pi * np.arange(CLASSES) / CLASSES
    period = np.where(np.arange(CLASSES) % 2, 4.0, 7.0)
    colour = crng.uniform(0.3, 1.0, (CLASSES, c))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    yy, xx = np.mgrid[0:h, 0:w]
    x = np.empty((n, h, w, c))
    for i, k in enumerate(y):
        phase = (xx * np.cos(angle[k]) + yy * np.sin(angle[k])) * 2 * np.pi / period[k] + rng.uniform(0, 7)
        x[i] = np.roll(patterns[k], tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
        x[i] += np.sin(phase)[:, :, None] * colour[k]
    x = x * rng.uniform(0.6, 1.4, (n, 1, 1, 1)) + rng.uniform(-0.5, 0.5, (n, 1, 1, 1))
    x += 0.5 * _blur(rng.standard_normal(x.shape), 1.5, (1, 2)) + 0.2 * rng.standard_normal(x.shape)
    return np.clip(0.5 + 0.2 * x, 0.0, 1.0).astype(np.float32), y.astype(np.int64)


def _features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 64-feature vectors (8x8 one-channel images, flattened and standardised)."""
    x, y = synthetic_images(n, 8, 8, 1, seed)
    x = x.reshape(n, 64)
    return ((x - 0.5) / 0.2).astype(np.float32), y


# ---------------------------------------------------------------- TensorFlow side


def import_tf() -> Any:
    """TensorFlow, imported quietly and made deterministic."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    return tf


def train_keras(
    make: Callable[[int | None], Any], x: np.ndarray, y: np.ndarray, epochs: int, lr: float
) -> Any:
    """Trains make(None) (free batch) briefly, returns make(1) (batch 1) with its weights.

    A batch of 1 in the exported model keeps Flatten/Reshape static (a dynamic batch brings
    SHAPE/STRIDED_SLICE/PACK ops); training needs a free batch.
    """
    import_tf()
    import keras

    keras.backend.clear_session()  # layer names (they end up in the .tflite) restart from 0
    keras.utils.set_random_seed(1234)
    model = make(None)
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(),
    )
    model.fit(x, y, batch_size=32, epochs=epochs, shuffle=True, verbose=0)
    export = make(1)
    export.set_weights(model.get_weights())
    return export


def export_tflite(model: Any, rep: np.ndarray, io: str) -> bytes:
    """Full-int8 conversion; int8 (or float32) input and output."""
    tf = import_tf()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rep[i : i + 1]] for i in range(len(rep)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io == "int8":
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    with warnings.catch_warnings():  # about int8 input statistics: the calibration sets them
        warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
        return bytes(conv.convert())


def _cnn(
    batch: int | None, shape: tuple[int, int, int], width: int, kernel: int, padding: str, name: str
) -> Any:
    """Conv(ReLU6) -> DW(ReLU) -> residual Add -> AvgPool 2 -> MaxPool 3/2 SAME -> ZeroPad 1 ->
    Conv 1x1 (ReLU) -> Reshape (h*w, c) -> global average (MEAN over axis 1) -> Dense -> Softmax.

    The Reshape comes before the mean: the converter folds a Reshape that follows a
    GlobalAveragePooling2D into MEAN (keep_dims false) or into FULLY_CONNECTED.
    """
    from keras import Input, Model, layers

    inp = Input(shape, batch_size=batch)
    a = layers.Conv2D(width, kernel, padding=padding, activation="relu6")(inp)
    b = layers.DepthwiseConv2D(3, padding="same", activation="relu")(a)
    x = layers.Add()([a, b])
    x = layers.AveragePooling2D(2)(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.ZeroPadding2D(1)(x)
    x = layers.Conv2D(2 * width, 1, activation="relu")(x)
    x = layers.Reshape((x.shape[1] * x.shape[2], 2 * width))(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dense(CLASSES)(x)
    out = layers.Softmax()(x)
    return Model(inp, out, name=name)


def _cnn_int8_io(batch: int | None) -> Any:
    return _cnn(batch, (32, 32, 3), 12, 3, "same", "cnn_int8_io")


def _cnn_float_io(batch: int | None) -> Any:
    return _cnn(batch, (28, 28, 1), 8, 5, "valid", "cnn_float_io")


def _images_32x32x3(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return synthetic_images(n, 32, 32, 3, seed)


def _images_28x28x1(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return synthetic_images(n, 28, 28, 1, seed)


def _mlp(batch: int | None) -> Any:
    from keras import Input, Model, layers

    inp = Input((64,), batch_size=batch)
    x = layers.Flatten()(inp)
    x = layers.Dense(32, activation="relu")(x)
    x = layers.Dense(CLASSES)(x)
    return Model(inp, layers.Softmax()(x), name="mlp")


def _mobilenet_tiny(batch: int | None) -> Any:
    """MobileNetV2-style: stem Conv 3x3 -> 4 inverted residual blocks -> Conv 1x1 -> GAP -> Dense."""
    from keras import Input, Model, layers

    def bn_act(x: Any, act: bool = True) -> Any:
        x = layers.BatchNormalization(momentum=0.9)(x)
        return layers.ReLU(6.0)(x) if act else x

    def block(x: Any, expand: int, out: int, stride: int) -> Any:
        inp = x
        x = bn_act(layers.Conv2D(expand * x.shape[-1], 1, use_bias=False)(x))
        # SAME: keras.applications.MobileNetV2's ZeroPadding2D((0, 1), (0, 1)) + VALID for
        # stride 2 is the same arithmetic, and the converter folds it into SAME anyway.
        x = bn_act(layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x))
        x = bn_act(layers.Conv2D(out, 1, use_bias=False)(x), act=False)
        return layers.Add()([inp, x]) if stride == 1 and inp.shape[-1] == out else x

    inp = Input((32, 32, 3), batch_size=batch)
    x = bn_act(layers.Conv2D(16, 3, padding="same", use_bias=False)(inp))
    x = block(x, 4, 24, 2)  # 16x16x24
    x = block(x, 4, 24, 1)  # residual
    x = block(x, 4, 32, 2)  # 8x8x32
    x = block(x, 4, 32, 1)  # residual
    x = bn_act(layers.Conv2D(64, 1, use_bias=False)(x))
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(CLASSES)(x)
    return Model(inp, layers.Softmax()(x), name="mobilenet_tiny")


def _movement_tiny(batch: int | None) -> Any:
    """The shape and movement operators as TensorFlow's converter writes them: ShuffleNet's
    channel shuffle (RESHAPE to 5-D, TRANSPOSE, RESHAPE), a concatenation, space-to-depth and
    nearest-neighbour resizes, a crop and a strided slice, and a slice, between convolutions so
    that the moved values matter. (NOT_IN_THE_ZOO says why DEPTH_TO_SPACE, SQUEEZE and
    EXPAND_DIMS are not here.)"""
    import tensorflow as tf
    from keras import Input, Model, layers

    inp = Input((32, 32, 3), batch_size=batch)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inp)  # 16x16x16
    s = layers.Reshape((16, 16, 4, 4))(x)
    s = layers.Permute((1, 2, 4, 3))(s)
    s = layers.Reshape((16, 16, 16))(s)
    b = layers.DepthwiseConv2D(3, padding="same", activation="relu")(s)
    x = layers.Concatenate()([s, b])  # 16x16x32
    x = layers.Lambda(lambda t: tf.nn.space_to_depth(t, 2))(x)  # 8x8x128
    x = layers.Conv2D(16, 1, activation="relu")(x)
    x = layers.Lambda(lambda t: tf.image.resize(t, (16, 16), method="nearest"))(x)  # 16x16x16
    x = layers.Cropping2D(((1, 1), (2, 0)))(x)  # 14x14x16
    x = layers.Lambda(lambda t: t[:, ::2, 1::2, :])(x)  # 7x7x16
    x = layers.Lambda(lambda t: tf.image.resize(t, (14, 14), method="nearest"))(x)
    x = layers.Lambda(lambda t: tf.slice(t, [0, 1, 1, 0], [-1, 12, 12, 16]))(x)
    x = layers.Conv2D(24, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(CLASSES)(x)
    return Model(inp, layers.Softmax()(x), name="movement_tiny")


def _se_net(batch: int | None) -> Any:
    """The elementwise and activation operators as TensorFlow's converter writes them: a
    strided Conv with hard-swish -> DW with LeakyReLU -> squeeze-excite (GAP, Conv ReLU, Conv
    sigmoid, MUL [1,H,W,C] x [1,1,1,C]) -> two 1x1 Convs (one tanh: the converter requantizes
    both to a common scale with int8 QUANTIZE) -> MAXIMUM + ReLU, SUB, MINIMUM -> Add -> GAP
    -> Dense -> Softmax. Not here, because every zoo model is checked against TFLite Micro
    too: a clip to [-1, 1] (RELU_N1_TO_1, which TFLM lacks) and a ReLU6 after the GAP (a
    RELU6 whose output scale differs from its input's: TFLM clamps without rescaling, so it
    disagrees with TFLite's reference, which the firmware follows)."""
    from keras import Input, Model, layers

    inp = Input((32, 32, 3), batch_size=batch)
    x = layers.Conv2D(16, 3, strides=2, padding="same")(inp)
    x = layers.Activation("hard_swish")(x)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.LeakyReLU(0.1)(x)
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(4, 1, activation="relu")(s)
    s = layers.Conv2D(16, 1, activation="sigmoid")(s)
    x = layers.Multiply()([x, s])
    a = layers.Conv2D(24, 1)(x)
    b = layers.Conv2D(24, 1, activation="tanh")(x)
    d = layers.Subtract()([a, b])
    m = layers.ReLU()(layers.Maximum()([a, b]))
    n = layers.Minimum()([a, d])
    x = layers.Add()([m, n])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(CLASSES)(x)
    return Model(inp, layers.Softmax()(x), name="se_net")


def _pad_fold(batch: int | None) -> Any:
    """Explicit ZeroPadding2D before VALID strided convolutions, as a PyTorch export (MCUNet)
    pads: symmetric, so unlike SAME on an even input, and the converter keeps each PAD
    (pytools/model/lowering/fold.py folds them): PAD 1 -> Conv 3x3/2, PAD 2 -> DW 5x5/2,
    PAD 3 -> DW 7x7/2, an asymmetric PAD ((1, 2), (2, 1)) -> DW 3x3/1, then Conv 1x1 -> GAP
    -> Dense -> Softmax."""
    from keras import Input, Model, layers

    inp = Input((32, 32, 3), batch_size=batch)
    x = layers.Conv2D(12, 3, padding="same", activation="relu6")(inp)  # 32x32x12
    x = layers.ZeroPadding2D(1)(x)
    x = layers.Conv2D(16, 3, strides=2, activation="relu6")(x)  # 16x16x16
    x = layers.ZeroPadding2D(2)(x)
    x = layers.DepthwiseConv2D(5, strides=2, activation="relu6")(x)  # 8x8x16
    x = layers.ZeroPadding2D(((1, 2), (2, 1)))(x)
    x = layers.DepthwiseConv2D(3, activation="relu6")(x)  # 9x9x16
    x = layers.Conv2D(24, 1, activation="relu6")(x)
    x = layers.ZeroPadding2D(3)(x)
    x = layers.DepthwiseConv2D(7, strides=2, activation="relu6")(x)  # 5x5x24
    x = layers.Conv2D(32, 1, activation="relu6")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(CLASSES)(x)
    return Model(inp, layers.Softmax()(x), name="pad_fold")


def _build(spec: ZooModel) -> bytes:
    """Trains spec's model on 1,500 samples (seed 1) and exports it (200 calibration samples)."""
    x, y = spec.data(1500, 1)
    model = train_keras(spec.make, x, y, spec.epochs, spec.lr)
    return export_tflite(model, x[:200], spec.io_dtype)


_CNN_OPS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "ADD",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
    "PAD",
    "RESHAPE",
    "MEAN",
    "FULLY_CONNECTED",
    "SOFTMAX",
)

MOVEMENT_OPS = (
    "CONV_2D",
    "RESHAPE",
    "TRANSPOSE",
    "DEPTHWISE_CONV_2D",
    "CONCATENATION",
    "SPACE_TO_DEPTH",
    "STRIDED_SLICE",
    "RESIZE_NEAREST_NEIGHBOR",
    "SLICE",
    "MEAN",
    "FULLY_CONNECTED",
    "SOFTMAX",
)
# Supported operators no zoo model can hold; tests/kernels covers them. The converter turns
# tf.squeeze / tf.expand_dims with fixed shapes into RESHAPE, and writes int8 DEPTH_TO_SPACE
# as version 2, which LiteRT's reference resolver (the zoo's accuracy check) does not
# register (TFLite Micro runs it: tests/kernels/test_movement_kernels.py).
# RELU_N1_TO_1 and RELU6: TFLite Micro, which checks every zoo model too, has no RELU_N1_TO_1
# and its RELU6 ignores a rescale (_se_net); the kernel tests check them against TFLite.
NOT_IN_THE_ZOO = ("SQUEEZE", "EXPAND_DIMS", "DEPTH_TO_SPACE", "RELU_N1_TO_1", "RELU6")

ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel(
            "cnn_int8_io",
            _cnn_int8_io,
            _images_32x32x3,
            "int8",
            _CNN_OPS,
            epochs=12,
            lr=3e-3,
            summary="32x32x3 CNN (Conv 3x3 SAME, 12 channels), int8 input/output",
        ),
        ZooModel(
            "cnn_float_io",
            _cnn_float_io,
            _images_28x28x1,
            "float32",
            ("QUANTIZE", *_CNN_OPS, "DEQUANTIZE"),
            epochs=15,
            lr=6e-3,
            summary="28x28x1 CNN (Conv 5x5 VALID, 8 channels), float32 input/output",
        ),
        ZooModel(
            "mlp",
            _mlp,
            _features,
            "int8",
            ("FULLY_CONNECTED", "SOFTMAX"),
            epochs=10,
            lr=3e-3,
            summary="64 features -> Dense 32 ReLU -> Dense 10 -> Softmax, int8 input/output",
        ),
        ZooModel(
            "mobilenet_tiny",
            _mobilenet_tiny,
            _images_32x32x3,
            "int8",
            ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX"),
            epochs=3,
            lr=3e-3,
            summary="32x32x3 MobileNetV2-style, 4 inverted residual blocks, int8 input/output",
        ),
        ZooModel(
            "movement_tiny",
            _movement_tiny,
            _images_32x32x3,
            "int8",
            MOVEMENT_OPS,
            epochs=6,
            lr=3e-3,
            summary="32x32x3 CNN through every shape and movement operator the converter writes",
        ),
        ZooModel(
            "pad_fold",
            _pad_fold,
            _images_32x32x3,
            "int8",
            ("PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"),
            epochs=6,
            lr=3e-3,
            summary="32x32x3 CNN with explicit PADs before strided 3x3 conv, 5x5 and 7x7 depthwise",
        ),
        ZooModel(
            "se_net",
            _se_net,
            _images_32x32x3,
            "int8",
            (
                "HARD_SWISH",
                "LEAKY_RELU",
                "LOGISTIC",
                "MUL",
                "QUANTIZE",
                "TANH",
                "MAXIMUM",
                "RELU",
                "SUB",
                "MINIMUM",
            ),
            epochs=6,
            lr=3e-3,
            summary="32x32x3 squeeze-excite net with the elementwise and activation operators, int8 I/O",
        ),
    )
}

# Helpers every model depends on: their source is part of every cache key.
BUILD_SOURCES: tuple[Callable[..., Any], ...] = (
    _blur,
    synthetic_images,
    import_tf,
    train_keras,
    export_tflite,
    _cnn,
    _build,
)


def store_cached(name: str, path: Path, model: bytes) -> None:
    """Writes a built model to its cache path atomically and drops its stale versions.

    Not part of BUILD_SOURCES: how a model is stored does not change what is built.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=CACHE, prefix=f".{name}-", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(model)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)  # atomic; a concurrent build of the same key writes an equivalent model
    for stale in CACHE.glob(f"{name}-*.tflite"):
        if stale != path:
            stale.unlink(missing_ok=True)


def cached_build(name: str, path: Path, build: Callable[[], bytes], check: Callable[[bytes], object]) -> Path:
    """path (its cache key in its name), built with TensorFlow, checked and stored on first use."""
    if not path.exists():
        model = build()
        check(model)
        store_cached(name, path, model)
    return path


def zoo_names() -> list[str]:
    return list(ZOO)


TF_DISTS = ("tensorflow-cpu", "keras", "numpy")  # the packages a cached model's bytes depend on


def source_key(
    params: object, functions: Iterable[Callable[..., Any]], dists: Iterable[str] = TF_DISTS
) -> str:
    """The cache key of a model built by code: a hash of its parameters' repr, the source of
    the functions that build it, and the installed versions of the packages it is built with.
    Every cached model under build/test_models is keyed by this one function (the zoo, the
    digits model, MobileNetV2), so a change to any of them rebuilds it."""
    h = hashlib.sha256(repr(params).encode())
    for fn in functions:
        h.update(inspect.getsource(fn).encode())
    for dist in dists:
        try:
            v = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            v = "absent"
        h.update(f"{dist}=={v}\n".encode())
    return h.hexdigest()[:16]


def cache_key(name: str) -> str:
    """Hash of the model's and the helpers' source and of the TensorFlow/Keras/numpy versions."""
    spec = ZOO[name]
    return source_key((spec.io_dtype, spec.epochs, spec.lr), (spec.make, spec.data, *BUILD_SOURCES))


def zoo_path(name: str) -> Path:
    return CACHE / f"{name}-{cache_key(name)}.tflite"


def quantize_input(model: bytes, x: np.ndarray) -> np.ndarray:
    """x (float) as the model's input type expects it."""
    import tflite

    g = tflite.Model.GetRootAsModel(model, 0).Subgraphs(0)
    t = g.Tensors(g.Inputs(0))
    x = x.reshape(tuple(t.ShapeAsNumpy()))
    if t.Type() == tflite.TensorType.FLOAT32:
        return x.astype(np.float32)
    q = t.Quantization()
    scale, zp = float(q.ScaleAsNumpy()[0]), int(q.ZeroPointAsNumpy()[0])
    return np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8)


def held_out_accuracy(name: str, model: bytes, n: int = 200) -> float:
    """Top-1 accuracy of the .tflite model (TFLite reference kernels) on n unseen samples."""
    from pytools.model.oracle import run_tflite

    x, y = ZOO[name].data(n, 2)
    hits = 0
    for xi, yi in zip(x, y, strict=True):
        hits += int(np.argmax(run_tflite(model, [quantize_input(model, xi)])[0]) == yi)
    return hits / n


def check_model(name: str, model: bytes) -> float:
    """Raises unless the model holds its operators (and only engine-supported ones), has its
    input/output type and classifies unseen samples well above chance (so it runs in TFLite's
    reference kernels and is not degenerate). Returns that accuracy."""
    from pytools.model.ir import SUPPORTED_OPS

    spec = ZOO[name]
    ops = op_names(model)
    missing = [op for op in spec.ops if op not in ops]
    extra = sorted(set(ops) - set(SUPPORTED_OPS))
    if missing or extra:
        raise RuntimeError(f"zoo model {name}: ops {ops}: missing {missing}, unsupported {extra}")
    ins, outs = io_dtypes(model)
    if ins + outs != [spec.io_dtype] * (len(ins) + len(outs)):
        raise RuntimeError(f"zoo model {name}: input/output types {ins} -> {outs}, not {spec.io_dtype}")
    acc = held_out_accuracy(name, model)
    if acc < 0.3:  # chance is 0.1
        raise RuntimeError(f"zoo model {name}: int8 accuracy {acc:.2f} on unseen samples; degenerate")
    return acc


def zoo_model(name: str) -> bytes:
    """The model's .tflite bytes: from the cache, or built (with TensorFlow), checked, cached."""
    if name not in ZOO:
        raise KeyError(f"no zoo model {name!r}; there are {zoo_names()}")
    path = zoo_path(name)
    if path.exists():
        return path.read_bytes()
    model = _build(ZOO[name])
    check_model(name, model)
    store_cached(name, path, model)
    return model


if __name__ == "__main__":  # python -m pytools.pretrain.zoo: build (or load) all; print a summary
    for n in zoo_names():
        b = zoo_model(n)
        print(f"{n:15} {len(b):6} B  acc {held_out_accuracy(n, b):.2f}  {' '.join(op_names(b))}")
