"""Every check of a user's data against the model, made once for all formats: labels
(kind, range, empty classes), inputs (type, shape, finite values), and the notes a user should
read (clipping, fewer classes than outputs, class balance, duplicates across parts).

Errors are DataErrors of one line: the file, the sample (as its reader names it: index, CSV
line, image path), the problem, what to do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from datasets import DataError
from datasets.files.raw import Raw, RawPart

FLOAT_DTYPES = ("float32",)
INTEGER_DTYPES = ("int8", "uint8", "int16")
IMBALANCE = 4.0  # largest class / smallest class at which the balance note says "heavy"
SHOWN = 12  # classes listed by name in a note before "..."


@dataclass(frozen=True)
class ModelInput:
    """What the model takes: one sample's shape (no batch dimension), its number of outputs,
    and its input tensor's type and quantization (scale, zero point; unused for float32)."""

    shape: tuple[int, ...]
    classes: int
    dtype: str
    scale: float
    zero_point: int
    anomaly: bool = False  # labels mark normal (0) / anomalous samples: class 0 alone may be trained on

    def __post_init__(self) -> None:
        if not self.shape or any(int(d) < 1 for d in self.shape):
            raise DataError(f"input_shape {self.shape}: one sample's shape, every dimension at least 1")
        if self.classes < 1:
            raise DataError(f"classes {self.classes}: the model's number of outputs, at least 1")
        if self.dtype not in (*FLOAT_DTYPES, *INTEGER_DTYPES):
            raise DataError(
                f"input_dtype '{self.dtype}': one of {', '.join((*FLOAT_DTYPES, *INTEGER_DTYPES))}"
            )
        if self.integer and not (np.isfinite(self.scale) and self.scale > 0):
            raise DataError(f"input_scale {self.scale}: a quantized input's scale is a positive number")

    @property
    def integer(self) -> bool:
        return self.dtype in INTEGER_DTYPES

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def pixels(self) -> str:
        """How image pixels 0..255 become this model's real inputs (a key of images.PIXELS),
        judged by the real range its quantized input covers: up to 255 (a model trained on
        raw pixels), down to -1 ([-1, 1]), else [0, 1]. A float32 input says nothing: [0, 1]."""
        if not self.integer:
            return "unit"
        info = np.iinfo(self.dtype)
        lo, hi = (info.min - self.zero_point) * self.scale, (info.max - self.zero_point) * self.scale
        if hi >= 128:
            return "raw"
        if lo <= -0.5:
            return "signed"
        return "unit"

    def image_shape(self, source: str) -> tuple[int, int, int]:
        """(H, W, C) of an image model (leading 1s dropped; (H, W) is grey)."""
        s = list(self.shape)
        while len(s) > 3 and s[0] == 1:
            s.pop(0)
        if len(s) == 2:
            s.append(1)
        if len(s) != 3:
            raise DataError(
                f"{source}: the model's input {self.shape} is not an image (height, width, channels): "
                "an image folder needs an image model; give an .npz, a .csv or a hook"
            )
        return s[0], s[1], s[2]


def _squeeze_labels(source: str, part: RawPart) -> np.ndarray:
    """Labels [n] from [n], [n, 1] or one-hot [n, K]; their count matches the inputs'."""
    y, n = part.y, len(part.x)
    if len(y) != n:
        raise DataError(
            f"{source}: {part.x_name} has {n} samples but {part.y_name} has {len(y)} labels: "
            "they must pair one to one"
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2 and y.dtype.kind in "biuf":
        one = (y == 1).sum(axis=1) == 1
        zero = ((y == 0) | (y == 1)).all(axis=1)
        bad = np.flatnonzero(~(one & zero))
        if len(bad):
            raise DataError(
                f"{source}: {part.where(int(bad[0]))}: {part.y_name} is 2-D {y.shape} but not one-hot "
                "(one 1 per row, the rest 0): give one class label per sample"
            )
        y = np.argmax(y, axis=1)
    if y.ndim != 1:
        raise DataError(f"{source}: {part.y_name} has shape {y.shape}: give one class label per sample")
    return y


def _integer_labels(source: str, part: RawPart, y: np.ndarray, classes: int) -> np.ndarray:
    """Numeric labels as int64, each a whole number in 0 .. classes - 1 (the first bad one named)."""
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(bad):
            raise DataError(
                f"{source}: {part.where(int(bad[0]))}: label {float(y[bad[0]]):g} in {part.y_name} is not a "
                "whole number: labels are class indices (or strings, mapped to indices)"
            )
    y = y.astype(np.int64)
    bad = np.flatnonzero((y < 0) | (y >= classes))
    if len(bad):
        i = int(bad[0])
        one_based = y.min() == 1 and y.max() == classes  # a common slip, worth naming
        hint = f" (yours run 1 .. {classes}: subtract 1)" if one_based else ""
        raise DataError(
            f"{source}: {part.where(i)}: label {y[i]} is out of range: the model has {classes} outputs "
            f"(labels 0 .. {classes - 1}): relabel your classes 0 .. {classes - 1}{hint}, or use a model "
            "with more outputs"
        )
    return y


def _shown(names: tuple[str, ...] | list[str]) -> str:
    listed = ", ".join(f"'{n}'" for n in names[:SHOWN])
    return listed + (f", ... ({len(names)} in all)" if len(names) > SHOWN else "")


def labels(raw: Raw, model: ModelInput) -> tuple[list[np.ndarray], tuple[str, ...] | None, int, list[str]]:
    """Each part's labels as int64 class indices, the label names (strings and folders:
    sorted, so the map is stable), the number of classes K, and notes."""
    parts = [raw.train] if raw.test is None else [raw.train, raw.test]
    ys = [_squeeze_labels(raw.source, p) for p in parts]
    notes: list[str] = []
    names = raw.label_names
    if names is None and any(y.dtype.kind in "USO" for y in ys):
        strings = []
        for p, y in zip(parts, ys, strict=True):
            if y.dtype.kind == "O":
                bad = [i for i, v in enumerate(y) if not isinstance(v, str | int | np.integer)]
                if bad:
                    raise DataError(
                        f"{raw.source}: {p.where(bad[0])}: label {y[bad[0]]!r} is neither a string "
                        "nor an integer: give class indices or class names"
                    )
            strings.append(y.astype(str))
        names = tuple(sorted(set().union(*(set(s.tolist()) for s in strings))))
        ys = [np.searchsorted(np.array(names), s).astype(np.int64) for s in strings]
        shown = ", ".join(f"{i} '{n}'" for i, n in enumerate(names[:SHOWN]))
        notes.append(
            f"labels are strings, mapped to outputs in sorted order: {shown}"
            + (" ..." if len(names) > SHOWN else "")
        )
    if names is not None:
        if len(names) > model.classes:
            raise DataError(
                f"{raw.source}: {len(names)} classes ({_shown(names)}) but the model has {model.classes} "
                f"outputs: drop classes, or use a model with {len(names)} or more outputs"
            )
        ys = [y.astype(np.int64) for y in ys]
        k = len(names)
    else:
        ys = [_integer_labels(raw.source, p, y, model.classes) for p, y in zip(parts, ys, strict=True)]
        k = max(int(y.max()) + 1 for y in ys if len(y)) if any(len(y) for y in ys) else 0
    if len(ys[0]) == 0:
        raise DataError(f"{raw.source}: {parts[0].x_name} holds no samples: give at least one per class")
    counts = np.bincount(ys[0], minlength=k)
    empty = np.flatnonzero(counts == 0)
    if model.anomaly and raw.test is not None:
        # An anomaly detector trains on normal samples; the anomalies it is scored on are in
        # the test part. Only "normal" must be there to train on.
        if len(empty) and counts[0] > 0:
            notes.append(
                "the training part holds normal samples (0) only: trained on those, anomalies scored "
                "in the test part"
            )
        empty = empty[empty == 0]
    if len(empty):
        c = int(empty[0])
        name = f"class {c} ('{names[c]}')" if names else f"class {c}"
        where = "the training part" if raw.test is not None else "the data"
        present = ", ".join(str(i) for i in np.flatnonzero(counts)[:SHOWN])
        raise DataError(
            f"{raw.source}: {name} has no samples in {where} ({parts[0].y_name}; classes present: "
            f"{present}{' ...' if np.count_nonzero(counts) > SHOWN else ''}): every class 0 .. {k - 1} "
            "needs samples to train on: add some, or number the classes consecutively from 0"
        )
    if k < model.classes:
        notes.append(f"data set has {k} classes, model has {model.classes} outputs: trains on the first {k}")
    return ys, names, k, notes


def _sample_shape_note(
    raw: Raw, part: RawPart, model: ModelInput, x: np.ndarray
) -> tuple[np.ndarray, str | None]:
    sample = tuple(x.shape[1:])
    if sample == model.shape:
        return x, None
    size = int(np.prod(sample))
    what = f"{size} features per sample" if len(sample) == 1 else f"samples of shape {sample} ({size} values)"
    if size != model.size:
        raise DataError(
            f"{raw.source}: {part.x_name}: {what}, but the model takes {model.shape} ({model.size} values): "
            f"give samples of shape {model.shape} (or {model.size} values each), e.g. resize or crop them"
        )
    x = x.reshape(len(x), *model.shape)
    if tuple(d for d in sample if d != 1) == tuple(d for d in model.shape if d != 1):
        return x, None  # only 1-sized dimensions differ: nothing can be misread
    return x, (
        f"{raw.source}: {what} reshaped to the model's input {model.shape} (same values, in C order; "
        "if your samples are laid out otherwise, e.g. channels first, transpose them first)"
    )


def _check_finite(raw: Raw, part: RawPart, x: np.ndarray, after_cast: bool) -> None:
    flat = x.reshape(len(x), -1)
    bad = np.argwhere(~np.isfinite(flat))
    if len(bad):
        i, j = (int(v) for v in bad[0])
        v = flat[i, j]
        what = "beyond float32's range" if after_cast else ("NaN" if np.isnan(v) else str(v))
        raise DataError(
            f"{raw.source}: {part.where(i)}: {part.column(j)} is {what} "
            f"({len(np.unique(bad[:, 0]))} samples have such values): fill or drop those samples"
        )


def inputs(raw: Raw, model: ModelInput) -> tuple[list[np.ndarray], bool, list[str]]:
    """Each part's inputs as [n, *model.shape]: float32 real values, or (quantized) already in
    the model's integer type; whether they are quantized; notes."""
    parts = [raw.train] if raw.test is None else [raw.train, raw.test]
    out, kinds, notes = [], [], []
    for part in parts:
        x = part.x
        kind = x.dtype.kind
        if kind in "USO" or kind in "cmMV":
            raise DataError(
                f"{raw.source}: {part.x_name} holds {x.dtype} values, not real numbers: give numeric inputs"
            )
        if len(x) == 0 and part is raw.train:
            raise DataError(f"{raw.source}: {part.x_name} holds no samples")
        if model.integer and x.dtype == np.dtype(model.dtype):
            kinds.append(True)
        elif x.dtype in (np.int8, np.uint8):
            expect = f"{model.dtype}, the model's type" if model.integer else "float32 (real values)"
            raise DataError(
                f"{raw.source}: {part.x_name} is {x.dtype} but the model takes {model.dtype} inputs: give "
                f"real values as floats (as the model was trained on, e.g. pixels / 255), or {expect}"
            )
        else:
            if kind in "iub":
                notes.append(f"{raw.source}: {part.x_name} ({x.dtype}) taken as real values")
            elif kind == "f":
                _check_finite(raw, part, x, after_cast=False)
            x = x.astype(np.float32)
            _check_finite(raw, part, x, after_cast=True)
            kinds.append(False)
        x, note = _sample_shape_note(raw, part, model, x)
        if note and note not in notes:
            notes.append(note)
        out.append(x)
    if len(set(kinds)) > 1:
        raise DataError(
            f"{raw.source}: the training inputs are {parts[0].x.dtype}, the test inputs {parts[1].x.dtype}: "
            "give both as real values, or both in the model's type"
        )
    quantized = kinds[0]
    if quantized:
        notes.append(f"inputs are already {model.dtype}, the model's input type: used as they are")
    elif model.integer:
        notes += quantization_notes(out, model)
    return out, quantized, notes


def quantization_notes(xs: list[np.ndarray], model: ModelInput) -> list[str]:
    """How the real inputs fare quantized by the model's input: values that clip, levels used."""
    info = np.iinfo(model.dtype)
    clipped = total = 0
    q_min, q_max = np.inf, -np.inf
    for x in xs:  # part by part: no copy of all the data at once
        q = np.round(x.reshape(-1) / np.float32(model.scale)) + model.zero_point  # as datasets.quantize
        clipped += int(np.count_nonzero((q < info.min) | (q > info.max)))
        total += q.size
        q_min, q_max = min(q_min, float(q.min(initial=np.inf))), max(q_max, float(q.max(initial=-np.inf)))
    lo = (info.min - model.zero_point) * model.scale
    hi = (info.max - model.zero_point) * model.scale
    note = (
        f"{clipped:,} of {total:,} input values clip when quantized with scale {model.scale:.6g} and zero "
        f"point {model.zero_point} ({model.dtype} holds {lo:.6g} .. {hi:.6g})"
    )
    if clipped > 0.01 * total:
        note += ": are the inputs scaled as the model was trained (e.g. pixels / 255)?"
    notes = [note]
    q_lo, q_hi = int(np.clip(q_min, info.min, info.max)), int(np.clip(q_max, info.min, info.max))
    used, levels = q_hi - q_lo + 1, int(info.max) - int(info.min) + 1
    if used < levels // 16:
        notes.append(
            f"the inputs span only {used} of {levels} quantization levels "
            f"({q_lo} .. {q_hi}): are they scaled as the model was trained?"
        )
    return notes


def balance_notes(y: np.ndarray, k: int, names: tuple[str, ...] | None, what: str) -> list[str]:
    counts = np.bincount(y, minlength=k)
    label = [f"'{n}'" for n in names] if names else [str(c) for c in range(k)]
    listed = ", ".join(f"{label[c]} {counts[c]}" for c in range(min(k, SHOWN)))
    notes = [f"{what}: {len(y):,} samples, {k} classes ({listed}{', ...' if k > SHOWN else ''})"]
    small, large = int(np.argmin(counts)), int(np.argmax(counts))
    if counts[small] > 0 and counts[large] >= IMBALANCE * counts[small]:
        notes.append(
            f"heavy class imbalance in {what}: class {label[large]} has {counts[large]} samples, class "
            f"{label[small]} only {counts[small]} ({counts[large] / counts[small]:.0f}x): the model will "
            "favour the large classes; collect more of the small ones or use fewer of the large"
        )
    return notes


def overlap_note(train: np.ndarray, held: np.ndarray) -> list[str]:
    """A note when held-out samples also appear, identical, among the training samples."""
    seen = {hashlib.sha1(row.tobytes()).digest() for row in train}
    same = sum(hashlib.sha1(row.tobytes()).digest() in seen for row in held)
    if not same:
        return []
    return [
        f"{same} held-out samples are identical to training samples: held-out accuracy will "
        "overstate accuracy on new data (remove the duplicates)"
    ]
