"""Pretrained backbones on real data, for transfer on the device: `invoke pretrain`.

Two full-int8 classifiers, trained with Keras (seeded, op determinism, oneDNN off) and
exported through pytools.pretrain.zoo.export_tflite (Optimize.DEFAULT + representative dataset +
TFLITE_BUILTINS_INT8, int8 input and output, batch 1), written to models/ with their
measured figures (models/<name>.json, models/README.md). The transfer tasks replace the
classifier head (the last FULLY_CONNECTED) and train a sparse part of the rest.

- fashion_mbv2: MCUNet / MobileNetV2 style on Fashion-MNIST (28x28x1, 10 classes): a 3x3
  stride-2 stem, inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 linear project,
  residual ADD where shapes allow; BatchNorm folded, ReLU6), a 1x1 conv, global average
  (MEAN), Dense 10, Softmax.
- hapt_cnn1d: a 1-D CNN on HAPT users 1-20 (six activities, windows of 1x128x6). Keras'
  Conv1D exports EXPAND_DIMS/SQUEEZE around a CONV_2D, which the engine lacks: the model is
  built from Conv2D with (1, k) kernels on the (1, T, C) input instead.

Only operators the engine runs bit-exactly (pytools.model.ir.SUPPORTED_OPS) and whose
backward kernels exist (no MAX_POOL_2D, no PAD) may appear; check() refuses anything else.

Each model's held-out accuracy is measured twice: float (Keras) and int8 (the host twin,
which is bit-exact with TFLite's reference kernels; tests/test_pretrain.py checks that on
held-out samples).

    BACKBONES[name]      -> Backbone (data set, split, builder, recipe)
    pretrain(names)      -> trains, exports, checks, measures and writes models/<name>.*
    model_path(name)     -> models/<name>.tflite
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import datasets
from pytools.paths import ROOT
from pytools.pretrain.zoo import export_tflite, import_tf, io_dtypes, op_names

MODELS = ROOT / "models"
COMMAND = ".venv/bin/invoke pretrain"
SEED = 1234
# Operators a backbone may hold: supported by the engine and by its backward pass.
ALLOWED_OPS = frozenset(
    [
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "ADD",
        "MEAN",
        "RESHAPE",
        "FULLY_CONNECTED",
        "SOFTMAX",
        "AVERAGE_POOL_2D",
    ]
)


@dataclass(frozen=True)
class Backbone:
    name: str
    dataset: str  # datasets/ name
    split: str
    make: Callable[[int | None], Any]  # batch size -> Keras model
    epochs: int
    batch: int
    lr: float  # Adam, cosine-decayed to 0 over the epochs
    representative: int  # calibration samples, drawn (seeded) from the pretraining part
    summary: str


# ---------------------------------------------------------------- the models


def _fashion_mbv2(batch: int | None) -> Any:
    """28x28x1 -> stem 3x3/2 16 -> IR blocks -> 1x1 96 -> global average -> Dense 10 -> Softmax."""
    from keras import Input, Model, layers

    def bn_act(x: Any, act: bool = True) -> Any:
        x = layers.BatchNormalization(momentum=0.9)(x)
        return layers.ReLU(6.0)(x) if act else x

    def block(x: Any, expand: int, out: int, stride: int) -> Any:
        inp = x
        if expand != 1:
            x = bn_act(layers.Conv2D(expand * x.shape[-1], 1, use_bias=False)(x))
        x = bn_act(layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x))
        x = bn_act(layers.Conv2D(out, 1, use_bias=False)(x), act=False)
        return layers.Add()([inp, x]) if stride == 1 and inp.shape[-1] == out else x

    inp = Input((28, 28, 1), batch_size=batch)
    x = bn_act(layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inp))  # 14x14x16
    x = block(x, 1, 16, 1)  # 14x14x16, residual
    x = block(x, 4, 24, 2)  # 7x7x24
    x = block(x, 4, 24, 1)  # residual
    x = block(x, 4, 32, 2)  # 4x4x32
    x = block(x, 4, 32, 1)  # residual
    x = block(x, 4, 48, 1)  # 4x4x48
    x = bn_act(layers.Conv2D(96, 1, use_bias=False)(x))  # 4x4x96
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(datasets.module("fashion_mnist").CLASSES)(x)
    return Model(inp, layers.Softmax()(x), name="fashion_mbv2")


def _hapt_cnn1d(batch: int | None) -> Any:
    """1x128x6 -> four (1, k) convolutions, stride 2 -> global average -> Dense 6 -> Softmax."""
    from keras import Input, Model, layers

    def conv(x: Any, ch: int, k: int) -> Any:
        x = layers.Conv2D(ch, (1, k), strides=(1, 2), padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        return layers.ReLU(6.0)(x)

    inp = Input((1, 128, 6), batch_size=batch)
    x = conv(inp, 16, 7)  # 1x64x16
    x = conv(x, 32, 5)  # 1x32x32
    x = conv(x, 48, 5)  # 1x16x48
    x = conv(x, 64, 3)  # 1x8x64
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(datasets.module("hapt").CLASSES)(x)
    return Model(inp, layers.Softmax()(x), name="hapt_cnn1d")


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            "fashion_mbv2",
            "fashion_mnist",
            "standard",
            _fashion_mbv2,
            epochs=4,
            batch=128,
            lr=4e-3,
            representative=500,
            summary="MobileNetV2-style (stem, 6 inverted residual blocks, ReLU6), 28x28x1, 10 classes",
        ),
        Backbone(
            "hapt_cnn1d",
            "hapt",
            "users",
            _hapt_cnn1d,
            epochs=30,
            batch=64,
            lr=3e-3,
            representative=500,
            summary="1-D CNN (4 Conv2D with (1, k) kernels, stride 2, ReLU6), 1x128x6, 6 activities",
        ),
    )
}


# ---------------------------------------------------------------- training and export


def train_backbone(spec: Backbone, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
    """Trains spec.make(None) (free batch); returns it and spec.make(1) with its weights."""
    import_tf()
    import keras

    keras.backend.clear_session()  # layer names (they end up in the .tflite) restart from 0
    keras.utils.set_random_seed(SEED)
    model = spec.make(None)
    steps = spec.epochs * int(np.ceil(len(x) / spec.batch))
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(spec.lr, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=spec.batch, epochs=spec.epochs, shuffle=True, verbose=2)
    export = spec.make(1)
    export.set_weights(model.get_weights())
    return model, export


def check(name: str, model: bytes) -> None:
    """Raises unless the model holds only ALLOWED_OPS, ends in SOFTMAX and has int8 input/output."""
    ops = op_names(model)
    extra = sorted(set(ops) - ALLOWED_OPS)
    if extra or ops[-1] != "SOFTMAX" or ops[-2] != "FULLY_CONNECTED":
        raise RuntimeError(f"{name}: operators {ops}: not allowed {extra}, or no final Dense + Softmax")
    if io_dtypes(model) != (["int8"], ["int8"]):
        raise RuntimeError(f"{name}: input/output types {io_dtypes(model)}, not int8")


def model_path(name: str) -> Any:
    return MODELS / f"{name}.tflite"


def int8_predictions(model: bytes, name: str, x: np.ndarray) -> np.ndarray:
    """Class predictions of the int8 model on the host twin (bit-exact with TFLite's reference)."""
    from pytools.boards import load_board
    from pytools.model.compiler import compile_graph
    from pytools.model.host_twin import HostTwin
    from pytools.model.tflite_import import import_tflite

    twin = HostTwin(compile_graph(import_tflite(model, name), load_board("mps2_an500"), name).blob)
    xq = datasets.quantize(x, *_input_quant(model))
    return np.array([int(np.argmax(twin.invoke([xi])[0])) for xi in xq])


def _input_quant(model: bytes) -> tuple[float, int]:
    import tflite

    g = tflite.Model.GetRootAsModel(model, 0).Subgraphs(0)
    q = g.Tensors(g.Inputs(0)).Quantization()
    return float(q.ScaleAsNumpy()[0]), int(q.ZeroPointAsNumpy()[0])


def build(name: str) -> dict[str, Any]:
    """Trains, exports, checks and measures one backbone; writes models/<name>.tflite and .json."""
    from pytools.bench import graph_macs
    from pytools.model.tflite_import import import_tflite

    spec = BACKBONES[name]
    data = datasets.load_split(spec.dataset, spec.split)
    t0 = time.monotonic()
    float_model, export = train_backbone(spec, data.pretrain.x, data.pretrain.y)
    train_s = time.monotonic() - t0
    rng = np.random.default_rng(SEED)
    rep = data.pretrain.x[rng.choice(len(data.pretrain), spec.representative, replace=False)]
    model = export_tflite(export, rep, "int8")
    check(name, model)
    held = data.held_out
    float_pred = np.argmax(float_model.predict(held.x, batch_size=256, verbose=0), axis=1)
    int8_pred = int8_predictions(model, name, held.x)
    per_user = {}
    if spec.dataset == "hapt":  # each adaptation user's held-out recording on its own
        for u in datasets.module("hapt").ADAPT_USERS:
            part = datasets.load_split("hapt", f"user{u}").held_out
            per_user[u] = round(float(np.mean(int8_predictions(model, name, part.x) == part.y)), 4)
    graph = import_tflite(model, name)
    scale, zp = _input_quant(model)
    info = {
        "name": name,
        "file": f"models/{name}.tflite",
        "summary": spec.summary,
        "dataset": spec.dataset,
        "split": spec.split,
        "pretrain_samples": len(data.pretrain),
        "held_out_samples": len(held),
        "input_shape": list(graph.tensor(graph.inputs[0]).shape),
        "input_quant": {"scale": scale, "zero_point": zp},
        "classes": int(graph.tensor(graph.outputs[0]).shape[-1]),
        "float_accuracy": round(float(np.mean(float_pred == held.y)), 4),
        "int8_accuracy": round(float(np.mean(int8_pred == held.y)), 4),
        **({"int8_accuracy_per_user": per_user} if per_user else {}),
        "bytes": len(model),
        "forward_macs": int(sum(graph_macs(graph).values())),
        "operators": dict(Counter(op_names(model))),
        "recipe": {
            "epochs": spec.epochs,
            "batch": spec.batch,
            "adam_lr": spec.lr,
            "cosine": True,
            "seed": SEED,
        },
        "train_seconds": round(train_s, 1),
        "versions": {d: importlib.metadata.version(d) for d in ("tensorflow-cpu", "keras", "numpy")},
    }
    MODELS.mkdir(exist_ok=True)
    model_path(name).write_bytes(model)
    (MODELS / f"{name}.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def write_readme() -> None:
    """models/README.md from the models' .json files (their measured figures)."""
    infos = [
        json.loads((MODELS / f"{n}.json").read_text()) for n in BACKBONES if (MODELS / f"{n}.json").exists()
    ]
    rows = [
        f"| `{i['file']}` | {i['summary']} | {i['dataset']} ({i['split']}): {i['pretrain_samples']:,} "
        f"pretraining, {i['held_out_samples']:,} held out | {'x'.join(map(str, i['input_shape']))} int8 "
        f"(scale {i['input_quant']['scale']:.6g}, zp {i['input_quant']['zero_point']}) | "
        f"{i['float_accuracy']:.4f} | {i['int8_accuracy']:.4f} | {i['bytes']:,} B | {i['forward_macs']:,} |"
        for i in infos
    ]
    users = [
        f"- `{i['name']}`, int8, each of users 21-30 on its own held-out recording: "
        + ", ".join(f"{u}: {a:.3f}" for u, a in i["int8_accuracy_per_user"].items())
        + f" (mean {np.mean(list(i['int8_accuracy_per_user'].values())):.3f}, "
        f"worst {min(i['int8_accuracy_per_user'].values()):.3f})"
        for i in infos
        if "int8_accuracy_per_user" in i
    ]
    ops = [f"- `{i['name']}`: " + ", ".join(f"{k} x{v}" for k, v in i["operators"].items()) for i in infos]
    text = f"""# Pretrained backbones

Full-int8 `.tflite` classifiers pretrained on real data, for transfer learning on the
device (the transfer tasks replace the classifier head: the last FULLY_CONNECTED). Made by

    {COMMAND}

(pytools/pretrain/backbones.py: seeded Keras training with op determinism, then full-int8
export with a representative set from the pretraining data; a few minutes on 2 cores). It
rewrites these files; on the same machine and versions it gives the same models, another CPU
may round float training differently. Each model's figures are in its `.json` beside it.

Accuracy is top-1 on the data set's held-out part (datasets/): float is the Keras model,
int8 the exported model on the host twin, which is bit-exact with TFLite's reference
kernels (tests/test_pretrain.py checks both that and the accuracy).

| file | model | data | input | float acc. | int8 acc. | size | forward MACs |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Per user:
{chr(10).join(users)}

Operators (all run bit-exactly by the engine, all with backward kernels):
{chr(10).join(ops)}

Inputs are the data sets' real values quantized by the model's input quantization
(`datasets.quantize(x, scale, zero_point)`): Fashion-MNIST and MNIST pixels in [0, 1]; HAPT
accelerometer in g and gyroscope in rad/s.
"""
    (MODELS / "README.md").write_text(text)


def pretrain(names: list[str]) -> list[dict[str, Any]]:
    infos = []
    for n in names:
        if n not in BACKBONES:
            raise KeyError(f"unknown backbone '{n}'; known: {', '.join(BACKBONES)}")
        infos.append(build(n))
        write_readme()
    return infos
