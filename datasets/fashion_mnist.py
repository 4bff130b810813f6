"""Fashion-MNIST (Zalando): 70,000 28x28 grey images of clothing in 10 classes.

The data: Debian's package `dataset-fashion-mnist` (MIT licence), the original IDX files
under /usr/share/datasets/fashion-mnist: 60,000 training and 10,000 test images, 6,000 and
1,000 per class. Pixels 0..255 become float32 pixel / 255 in [0, 1].

The split "standard" (deterministic, seed SEED):
    pretrain   the 60,000 training images less the fine-tuning part   (55,000)
    finetune   500 per class drawn from the training images (seeded)   (5,000)
    held_out   the 10,000 test images (nobody trains on them)
Its purpose is pretraining a backbone (pytools/pretrain/fashion.py); the transfers go to
other data sets (MNIST, sklearn digits).
"""

from __future__ import annotations

import gzip

import numpy as np

from datasets import DataError, Part, Split, stratified
from datasets.sources import path

NAME = "fashion_mnist"
CLASSES = 10
SHAPE = (28, 28, 1)
SPLITS = ("standard",)
SEED = 0
FINETUNE_PER_CLASS = 500
LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat")
LABELS += ("Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {  # part -> (images, labels, count)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}


def _idx(name: str, magic: int, dims: tuple[int, ...]) -> np.ndarray:
    """An IDX file's uint8 array, its header checked (magic number, dimensions)."""
    with gzip.open(path(name), "rb") as f:
        raw = f.read()
    ndim = magic & 0xFF
    header = np.frombuffer(raw[: 4 + 4 * ndim], ">u4")
    if int(header[0]) != magic or tuple(int(d) for d in header[1:]) != dims:
        raise DataError(f"Fashion-MNIST {name}: header {header.tolist()}, expected {magic:#x} {dims}")
    data = np.frombuffer(raw[4 + 4 * ndim :], np.uint8)
    if data.size != int(np.prod(dims)):
        raise DataError(f"Fashion-MNIST {name}: {data.size} bytes of data, expected {np.prod(dims)}")
    return data.reshape(dims)


def load(part: str) -> tuple[np.ndarray, np.ndarray]:
    """The "train" or "test" images as float32 [n, 28, 28, 1] in [0, 1], int64 labels; checked."""
    images_file, labels_file, n = FILES[part]
    images = _idx(images_file, 0x803, (n, 28, 28))
    labels = _idx(labels_file, 0x801, (n,)).astype(np.int64)
    counts = np.bincount(labels, minlength=CLASSES)
    if len(counts) != CLASSES or not np.all(counts == n // CLASSES):
        raise DataError(f"Fashion-MNIST {part}: class counts {counts.tolist()}, expected {n // CLASSES} each")
    if images.max() != 255 or images.min() != 0:
        raise DataError(f"Fashion-MNIST {part}: pixels {images.min()}..{images.max()}")
    return (images.astype(np.float32) / 255.0)[..., None], labels


def split(name: str = SPLITS[0]) -> Split:
    if name not in SPLITS:
        raise DataError(f"unknown split '{name}' of {NAME}; known splits: {', '.join(SPLITS)}")
    x, y = load("train")
    fine = stratified(y, FINETUNE_PER_CLASS, SEED)
    pre = np.setdiff1d(np.arange(len(y)), fine)
    xt, yt = load("test")
    return Split(Part(x[pre], y[pre]), Part(x[fine], y[fine]), Part(xt, yt))
