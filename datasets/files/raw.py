"""What a reader hands on: the arrays as the user's file held them, and how to name a sample.

Readers (npz, table, images, hook) only read and parse; every check against the model is
made once, in checks.py, on a Raw, so each format gets the same checks and the same words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def sample_index(i: int) -> str:
    return f"sample {i}"


def flat_value(j: int) -> str:
    return f"value {j} (flat index)"


@dataclass(frozen=True)
class RawPart:
    """One part (all of the data, or the given training or test part) as read."""

    x: np.ndarray  # [n, ...] in the file's own dtype
    y: np.ndarray  # [n] (or [n, 1], or one-hot [n, K]) ints, floats or strings
    x_name: str  # how the user knows the inputs: "x_train", "the feature columns"
    y_name: str  # how the user knows the labels: "y_train", "column 'label'"
    where: Callable[[int], str] = sample_index  # names sample i: "row 7 (line 9)", "image cat/a.png"
    column: Callable[[int], str] = flat_value  # names value j of a sample (flat): "column 'acc_x'"


@dataclass(frozen=True)
class Raw:
    source: str  # the file, folder or hook as the user gave it
    format: str  # "npz", "csv", "images" or "hook"
    train: RawPart  # everything, or the given training part
    test: RawPart | None  # the given test part; None: the tool splits `train`
    given: str | None = None  # with `test`: how the user named the split ("x_train/x_test")
    label_names: tuple[str, ...] | None = None  # labels already mapped to indices (image folders)
    sha256: str | None = None  # digest of the bytes read (None for a hook)
    notes: list[str] = field(default_factory=list)
