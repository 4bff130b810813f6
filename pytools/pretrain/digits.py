"""A small int8 CNN pretrained on scikit-learn's handwritten digits, for the training tests,
cached like pytools/pretrain/zoo.py's models.

The data and its writer-block split (pretrain / finetune / held_out) live in
datasets/digits.py; the tests reach the split through this module (digits.split()).

The model (pretrained_model()): 8x8x1 int8 input -> Conv 3x3 VALID 8 (ReLU) -> Conv 3x3
VALID 16 (ReLU) -> Flatten (RESHAPE 256) -> Dense 32 (ReLU) -> Dense 10 -> Softmax, int8
output; trained with model_zoo's recipe (Adam, batch 32, seeded, op determinism) on the
pretraining set (digits 0-4 of the first 7 forms), exported full-int8 (the whole pretraining
set as representative data) and cached as build/test_models/digits_cnn-<key>.tflite; the key
hashes the data loader and split, this module's builder and model_zoo's helpers and the
TensorFlow / Keras / numpy / scikit-learn versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets.digits import FINETUNE_END, PRETRAIN_CLASSES, PRETRAIN_END, load, split
from pytools.pretrain import zoo as model_zoo
from pytools.pretrain.zoo import CACHE, CLASSES

NAME = "digits_cnn"
PRETRAIN_EPOCHS = 30
PRETRAIN_LR = 3e-3


# ---------------------------------------------------------------- the pretrained model


def digits_cnn(batch: int | None) -> Any:
    from keras import Input, Model, layers

    inp = Input((8, 8, 1), batch_size=batch)
    x = layers.Conv2D(8, 3, activation="relu")(inp)  # 6x6x8
    x = layers.Conv2D(16, 3, activation="relu")(x)  # 4x4x16
    x = layers.Flatten()(x)
    x = layers.Dense(32, activation="relu")(x)
    x = layers.Dense(CLASSES)(x)
    return Model(inp, layers.Softmax()(x), name=NAME)


def _build() -> bytes:
    pre = split().pretrain
    model = model_zoo.train_keras(digits_cnn, pre.x, pre.y, PRETRAIN_EPOCHS, PRETRAIN_LR)
    return model_zoo.export_tflite(model, pre.x, "int8")


_SOURCES = (load, split, digits_cnn, _build, *model_zoo.BUILD_SOURCES)


def cache_key() -> str:
    params = (PRETRAIN_END, FINETUNE_END, PRETRAIN_CLASSES, PRETRAIN_EPOCHS, PRETRAIN_LR)
    return model_zoo.source_key(params, _SOURCES, (*model_zoo.TF_DISTS, "scikit-learn"))


def model_path() -> Path:
    return CACHE / f"{NAME}-{cache_key()}.tflite"


def pretrained_model() -> bytes:
    """The pretrained full-int8 .tflite: from the cache, or built with TensorFlow and cached."""
    path = model_path()
    if path.exists():
        return path.read_bytes()
    model = _build()
    ops = model_zoo.op_names(model)
    if ops != ["CONV_2D", "CONV_2D", "RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX"]:
        raise RuntimeError(f"{NAME}: unexpected operators {ops}")
    if model_zoo.io_dtypes(model) != (["int8"], ["int8"]):
        raise RuntimeError(f"{NAME}: input/output types {model_zoo.io_dtypes(model)}, not int8")
    model_zoo.store_cached(NAME, path, model)
    return model
