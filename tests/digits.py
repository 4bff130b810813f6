"""Real data for the training tests: scikit-learn's handwritten digits, split for a transfer,
and a small int8 CNN pretrained on the first part, cached like tests/model_zoo.py's models.

The data: sklearn.datasets.load_digits(), bundled in scikit-learn (no download): 1,797
8x8 images of the digits 0-9, pixel values 0..16 (counts of on pixels in 4x4 blocks of a
32x32 bitmap), a copy of the UCI "optdigits" test set. Writers are not labelled, but the
samples come in the order of the forms they were written on: every form asks for the same
digit sequence (three runs of 0..9, then a fixed mixed order; a few samples per form are
missing), so the label sequence restarts about every 130 samples, at indices 0, 130, 256,
386, 516, 646, 776, 906, 1029, 1157, 1287, 1415, 1545, 1667 (14 form blocks; at 906 the
form's first 0 is missing). A form block is presumably one writer's (UCI: 43 writers in all,
13 of them in its test set, so the match with 14 blocks is not exact); contiguous blocks
are a proxy for groups of writers.

The split (deterministic, cut at form-block starts, which split() checks):
    pretrain   indices [0, 906) with labels 0-4 only   (455 samples, the first 7 forms)
    finetune   indices [906, 1287), all ten classes    (381 samples, the next 3 forms)
    held_out   indices [1287, 1797), all ten classes   (510 samples, the last 4 forms)
Fine-tuning is a genuine transfer: the pretrained model has never seen a 5, 6, 7, 8 or 9
(its head was trained to push those logits down), nor the fine-tuning or held-out writers.
Nobody trains on the held-out writers, so held-out accuracy measures what fine-tuning
learnt about the new classes, not memorised handwriting.

The model (pretrained_model()): 8x8x1 int8 input -> Conv 3x3 VALID 8 (ReLU) -> Conv 3x3
VALID 16 (ReLU) -> Flatten (RESHAPE 256) -> Dense 32 (ReLU) -> Dense 10 -> Softmax, int8
output; trained with model_zoo's recipe (Adam, batch 32, seeded, op determinism) on the
pretraining set, exported full-int8 (the whole pretraining set as representative data) and
cached as build/test_models/digits_cnn-<key>.tflite; the key hashes this module's builder
and model_zoo's helpers and the TensorFlow / Keras / numpy / scikit-learn versions.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests import model_zoo
from tests.model_zoo import CACHE, CLASSES

NAME = "digits_cnn"
N_SAMPLES = 1797
# Split points: starts of form blocks (see the module docstring).
PRETRAIN_END = 906  # indices [0, PRETRAIN_END): the pretraining writers
FINETUNE_END = 1287  # [PRETRAIN_END, FINETUNE_END): fine-tuning; the rest: held out
PRETRAIN_CLASSES = 5  # the pretraining set holds only the digits 0 .. PRETRAIN_CLASSES - 1
PRETRAIN_EPOCHS = 30
PRETRAIN_LR = 3e-3


@dataclass(frozen=True)
class Part:
    x: np.ndarray  # float32 [n, 8, 8, 1] in [0, 1] (pixel / 16)
    y: np.ndarray  # int64 [n], 0 .. 9

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Split:
    pretrain: Part
    finetune: Part
    held_out: Part


def load() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as float32 [n, 8, 8, 1] in [0, 1] and int64 labels, checked."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images, labels = np.asarray(d.images), np.asarray(d.target)
    if images.shape != (N_SAMPLES, 8, 8) or labels.shape != (N_SAMPLES,):
        raise RuntimeError(f"sklearn digits: images {images.shape}, labels {labels.shape}")
    if not np.array_equal(images.reshape(N_SAMPLES, 64), np.asarray(d.data)):
        raise RuntimeError("sklearn digits: images and data disagree")
    if images.min() != 0 or images.max() != 16 or not np.all(images == np.round(images)):
        raise RuntimeError(f"sklearn digits: pixels {images.min()}..{images.max()}, not integers 0..16")
    if set(np.unique(labels).tolist()) != set(range(CLASSES)):
        raise RuntimeError(f"sklearn digits: labels {np.unique(labels)}, not 0..9")
    counts = np.bincount(labels, minlength=CLASSES)
    if counts.min() < 170:  # 174 .. 183 per class
        raise RuntimeError(f"sklearn digits: class counts {counts}")
    x = (images / 16.0).astype(np.float32)[..., None]
    return x, labels.astype(np.int64)


def split() -> Split:
    """The pretraining / fine-tuning / held-out parts (see the module docstring)."""
    x, y = load()
    for b in (PRETRAIN_END, FINETUNE_END):  # a form starts here: runs of 0..9 (its first 0 may be missing)
        if not np.array_equal(y[b : b + 20], (y[b] + np.arange(20)) % CLASSES) or y[b] > 1:
            raise RuntimeError(f"digits split: no form block starts at index {b}: labels {y[b : b + 20]}")
    first = np.arange(PRETRAIN_END)
    pre = first[y[first] < PRETRAIN_CLASSES]
    fine = np.arange(PRETRAIN_END, FINETUNE_END)
    held = np.arange(FINETUNE_END, N_SAMPLES)
    s = Split(Part(x[pre], y[pre]), Part(x[fine], y[fine]), Part(x[held], y[held]))
    for name, part, classes in (
        ("pretrain", s.pretrain, PRETRAIN_CLASSES),
        ("finetune", s.finetune, CLASSES),
        ("held_out", s.held_out, CLASSES),
    ):
        counts = np.bincount(part.y, minlength=CLASSES)
        if counts[:classes].min() < 30 or counts[classes:].any():
            raise RuntimeError(f"digits split: {name} has class counts {counts}")
    return s


# ---------------------------------------------------------------- the pretrained model


def _digits_cnn(batch: int | None) -> Any:
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
    model = model_zoo._train(_digits_cnn, pre.x, pre.y, PRETRAIN_EPOCHS, PRETRAIN_LR)
    return model_zoo._export(model, pre.x, "int8")


_SOURCES = (load, split, _digits_cnn, _build, *model_zoo._COMMON)


def cache_key() -> str:
    h = hashlib.sha256(
        repr((PRETRAIN_END, FINETUNE_END, PRETRAIN_CLASSES, PRETRAIN_EPOCHS, PRETRAIN_LR)).encode()
    )
    for fn in _SOURCES:
        h.update(inspect.getsource(fn).encode())
    for dist in ("tensorflow-cpu", "keras", "numpy", "scikit-learn"):
        try:
            v = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            v = "absent"
        h.update(f"{dist}=={v}\n".encode())
    return h.hexdigest()[:16]


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
    CACHE.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=CACHE, prefix=f".{NAME}-", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(model)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)  # atomic; a concurrent build of the same key writes an equivalent model
    for stale in CACHE.glob(f"{NAME}-*.tflite"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return model
