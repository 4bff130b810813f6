"""BasicMotions (UEA multivariate time-series archive): smartwatch IMU, 4 activities.

The data: `BasicMotions_TRAIN.ts` and `BasicMotions_TEST.ts` from the PyPI wheel aeon==1.6.0
(only those files are installed, by ./setup.sh, not aeon): 40 + 40 recordings of 10 s at
10 Hz, 6 channels (3-D accelerometer, 3-D gyroscope), each labelled Standing, Running,
Walking or Badminton (10 per class in each file). Values are the archive's as they are.

A sample is float32 [1, 100, 6]: NHWC with height 1, time along the width and the six axes as
channels, so the 2-D convolutions of a (1, k)-kernel IMU backbone take it directly.

The split "standard": the archive's own. pretrain: none; finetune: TRAIN (40);
held_out: TEST (40). Labels: LABELS.index(name), 0..3.
"""

from __future__ import annotations

import numpy as np

from datasets import DataError, Part, Split
from datasets.sources import path

NAME = "basic_motions"
CLASSES = 4
CHANNELS = 6
STEPS = 100
SHAPE = (1, STEPS, CHANNELS)
SPLITS = ("standard",)
LABELS = ("Standing", "Running", "Walking", "Badminton")  # as the file's @classLabel line
PER_FILE = 40


def load_ts(file: str) -> tuple[np.ndarray, np.ndarray]:
    """One .ts file as float32 [n, 1, STEPS, CHANNELS] and int64 labels; header and shapes checked."""
    header: dict[str, str] = {}
    xs: list[np.ndarray] = []
    ys: list[int] = []
    in_data = False
    for lineno, line in enumerate(path(file).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            key, _, value = line.partition(" ")
            if key.lower() == "@data":
                in_data = True
            else:
                header[key.lower()] = value
            continue
        *dims, label = line.split(":")
        if len(dims) != CHANNELS or label not in LABELS:
            raise DataError(f"{file}:{lineno}: {len(dims)} dimensions and label {label!r}")
        series = np.array([[float(v) for v in d.split(",")] for d in dims])
        if series.shape != (CHANNELS, STEPS) or not np.all(np.isfinite(series)):
            raise DataError(f"{file}:{lineno}: a series of shape {series.shape}, not ({CHANNELS}, {STEPS})")
        xs.append(series.T[None].astype(np.float32))
        ys.append(LABELS.index(label))
    labels_line = header.get("@classlabel", "").split()
    if labels_line != ["true", *LABELS] or header.get("@dimensions") != str(CHANNELS):
        raise DataError(f"{file}: header {header}")
    y = np.array(ys, np.int64)
    if len(y) != PER_FILE or not np.all(np.bincount(y, minlength=CLASSES) == PER_FILE // CLASSES):
        raise DataError(f"{file}: {len(y)} series, class counts {np.bincount(y).tolist()}")
    return np.stack(xs), y


def split(name: str = SPLITS[0]) -> Split:
    if name not in SPLITS:
        raise DataError(f"unknown split '{name}' of {NAME}; known splits: {', '.join(SPLITS)}")
    empty = Part(np.zeros((0, *SHAPE), np.float32), np.zeros(0, np.int64))
    return Split(empty, Part(*load_ts("BasicMotions_TRAIN.ts")), Part(*load_ts("BasicMotions_TEST.ts")))
