"""scikit-learn's handwritten digits, split by writers for a transfer.

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

The split "writers" (deterministic, cut at form-block starts, which split() checks):
    pretrain   indices [0, 906) with labels 0-4 only   (455 samples, the first 7 forms)
    finetune   indices [906, 1287), all ten classes    (381 samples, the next 3 forms)
    held_out   indices [1287, 1797), all ten classes   (510 samples, the last 4 forms)
Fine-tuning is a genuine transfer: a model pretrained on the first part has never seen a 5,
6, 7, 8 or 9, nor the fine-tuning or held-out writers. Nobody trains on the held-out writers,
so held-out accuracy measures what fine-tuning learnt about the new classes, not memorised
handwriting.
"""

from __future__ import annotations

import numpy as np

from datasets import DataError, Part, Split

NAME = "digits"
CLASSES = 10
SHAPE = (8, 8, 1)  # one sample: height, width, channels
N_SAMPLES = 1797
# Split points: starts of form blocks (see the module docstring).
PRETRAIN_END = 906  # indices [0, PRETRAIN_END): the pretraining writers
FINETUNE_END = 1287  # [PRETRAIN_END, FINETUNE_END): fine-tuning; the rest: held out
PRETRAIN_CLASSES = 5  # the pretraining set holds only the digits 0 .. PRETRAIN_CLASSES - 1
SPLITS = ("writers",)  # the splits split() knows; the first is the default
SKLEARN_PIN = "scikit-learn==1.9.1"  # as requirements.txt pins it


def _load_digits() -> object:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DataError(
            f"the digits data set comes with scikit-learn, which is not installed ({e}): "
            f"install it with `.venv/bin/pip install {SKLEARN_PIN}` (or run ./setup.sh, "
            "which installs requirements.txt)"
        ) from e
    return load_digits()


def load() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as float32 [n, 8, 8, 1] in [0, 1] and int64 labels, checked."""
    d = _load_digits()
    images, labels = np.asarray(d.images), np.asarray(d.target)
    if images.shape != (N_SAMPLES, 8, 8) or labels.shape != (N_SAMPLES,):
        raise DataError(f"sklearn digits: images {images.shape}, labels {labels.shape}")
    if not np.array_equal(images.reshape(N_SAMPLES, 64), np.asarray(d.data)):
        raise DataError("sklearn digits: images and data disagree")
    if images.min() != 0 or images.max() != 16 or not np.all(images == np.round(images)):
        raise DataError(f"sklearn digits: pixels {images.min()}..{images.max()}, not integers 0..16")
    if set(np.unique(labels).tolist()) != set(range(CLASSES)):
        raise DataError(f"sklearn digits: labels {np.unique(labels)}, not 0..9")
    counts = np.bincount(labels, minlength=CLASSES)
    if counts.min() < 170:  # 174 .. 183 per class
        raise DataError(f"sklearn digits: class counts {counts}")
    x = (images / 16.0).astype(np.float32)[..., None]
    return x, labels.astype(np.int64)


def split(name: str = SPLITS[0]) -> Split:
    """The pretraining / fine-tuning / held-out parts (see the module docstring)."""
    if name not in SPLITS:
        raise DataError(f"unknown split '{name}' of {NAME}; known splits: {', '.join(SPLITS)}")
    x, y = load()
    for b in (PRETRAIN_END, FINETUNE_END):  # a form starts here: runs of 0..9 (its first 0 may be missing)
        if not np.array_equal(y[b : b + 20], (y[b] + np.arange(20)) % CLASSES) or y[b] > 1:
            raise DataError(f"digits split: no form block starts at index {b}: labels {y[b : b + 20]}")
    first = np.arange(PRETRAIN_END)
    pre = first[y[first] < PRETRAIN_CLASSES]
    fine = np.arange(PRETRAIN_END, FINETUNE_END)
    held = np.arange(FINETUNE_END, N_SAMPLES)
    s = Split(Part(x[pre], y[pre]), Part(x[fine], y[fine]), Part(x[held], y[held]))
    for part_name, part, classes in (
        ("pretrain", s.pretrain, PRETRAIN_CLASSES),
        ("finetune", s.finetune, CLASSES),
        ("held_out", s.held_out, CLASSES),
    ):
        counts = np.bincount(part.y, minlength=CLASSES)
        if counts[:classes].min() < 30 or counts[classes:].any():
            raise DataError(f"digits split: {part_name} has class counts {counts}")
    return s
