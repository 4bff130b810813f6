"""A user's own data as a training session's data: an .npz, a .csv, a folder of class
sub-folders of images, or a Python hook `module:function`; read, checked against the model
(input shape and type, label range, finite values, empty classes) and split.

    load("my.npz", input_shape=(28, 28, 1), classes=10, input_dtype="int8",
         input_scale=1 / 255, input_zero_point=-128)               -> UserData
    is_path_spec("my.npz"), is_path_spec("audio.py:load")           -> True
    is_path_spec("digits")                                          -> False (a built-in name)

Formats (details in each reader's module):
    .npz     x, y (the tool splits them: seeded, stratified) or x_train, y_train, x_test, y_test
    .csv     one row per sample, features then a label column; header optional (table.py)
    folder   one sub-folder of PNG/JPEG images per class, or train/ and test/ holding such
             sub-folders (images.py)
    hook     module:function or path/to/file.py:function returning those arrays (hook.py)

Inputs are real values (float32 in the result, quantized later by the model's input scale
and zero point; the notes count the values that clip) or, from an .npz or a hook, arrays
already in the model's integer input type (int8/uint8; `quantized` is then True). Labels are
class indices 0 .. K-1, or strings (and folder names), mapped to indices in sorted order.

Every problem is a one-line DataError naming the file, the sample and what to do. Loading
reads and nothing else: it writes no file and keeps no state (a hook's own code aside).
This package does not import pytools: the arrow runs from pytools to datasets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datasets import DATASETS, DataError, Part, Split, quantize
from datasets.files import checks, hook, images, npz, table
from datasets.files.checks import ModelInput
from datasets.files.raw import Raw
from datasets.files.splitting import stratified

CSV_SUFFIXES = (".csv", ".tsv")
FORMATS = "an .npz, a .csv, a folder of class sub-folders of images, or a hook module:function"


@dataclass(frozen=True)
class UserData:
    """A user's data set, checked against the model and split."""

    split: Split  # pretrain is empty; x [n, *input_shape] float32 reals (or the model's type), y int64
    classes: int  # K: the labels are 0 .. K-1, K <= the model's outputs (it trains on the first K)
    label_names: tuple[str, ...] | None  # label i's name (string labels, folder names); None: integers
    split_info: dict[str, Any]  # how it was split ("stratified": seed, fraction, indices; or "given")
    quantized: bool  # x is already in the model's integer input type (else real values)
    notes: tuple[str, ...]  # what a user should read: clipping, classes, balance, reshapes
    source: str  # the file, folder or hook as given
    format: str  # "npz", "csv", "images" or "hook"
    model_input: ModelInput  # what it was checked against: shape, outputs, input type, quantization
    sha256: str | None = field(default=None)  # digest of the bytes read (None for a hook)

    def model_inputs(self, part: Part) -> np.ndarray:
        """A part's inputs in the model's input type: quantized by its scale and zero point,
        unless they came quantized (or the model takes float32)."""
        m = self.model_input
        if self.quantized or not m.integer:
            return part.x
        return quantize(part.x, m.scale, m.zero_point, m.dtype)

    def record(self) -> dict[str, Any]:
        """What a session writes down about its data (JSON-ready)."""
        return {
            "source": self.source,
            "format": self.format,
            "sha256": self.sha256,
            "classes": self.classes,
            "label_names": list(self.label_names) if self.label_names is not None else None,
            "quantized": self.quantized,
            "split": self.split_info,
            "sizes": {"finetune": len(self.split.finetune), "held_out": len(self.split.held_out)},
            "notes": list(self.notes),
        }


def is_path_spec(spec: str | os.PathLike[str]) -> bool:
    """True when `spec` names a user's data (a file, a folder, a hook module:function) rather
    than a built-in data set's name. A bare name is a path only if it exists and is no
    built-in's name (write ./digits for a folder called digits)."""
    spec = os.fspath(spec)
    if hook.is_hook(spec) and not Path(spec).exists():
        return True
    if "/" in spec or "\\" in spec or spec.startswith(("~", ".")):
        return True
    if Path(spec).suffix.lower() in (".npz", *CSV_SUFFIXES):
        return True
    return spec not in DATASETS and Path(spec).exists()


def _read(
    spec: str, model: ModelInput, label_column: str | int | None, progress: images.Progress | None
) -> Raw:
    """The reader for the spec's format (a hook, an image folder, an .npz or a CSV)."""
    if hook.is_hook(spec) and not Path(spec).exists():
        raw = hook.read(spec)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise DataError(f"{spec}: no such file or folder: give {FORMATS}")
        if path.is_dir():
            raw = images.read(path, model.image_shape(spec), model.pixels(), progress)
        elif path.suffix.lower() == ".npz":
            raw = npz.read(path)
        elif path.suffix.lower() in CSV_SUFFIXES:
            raw = table.read(path, label_column)
        else:
            raise DataError(f"{spec}: unknown kind of data file ('{path.suffix}'): give {FORMATS}")
    if label_column is not None and raw.format != "csv":
        raise DataError(
            f"{spec}: a label column is chosen in CSV files only; a {raw.format} names its labels"
        )
    return raw


def load(
    spec: str | os.PathLike[str],
    *,
    input_shape: tuple[int, ...],
    classes: int,
    input_dtype: str,
    input_scale: float,
    input_zero_point: int,
    seed: int = 0,
    held_out: float = 0.2,
    label_column: str | int | None = None,
    progress: Callable[[int, int], None] | None = None,
    anomaly: bool = False,
) -> UserData:
    """A user's data set for a model: input_shape is one sample's (no batch dimension),
    classes its number of outputs, input_dtype/scale/zero_point its input tensor's type and
    quantization. x, y data are split seeded and stratified, `held_out` of each class held
    out; a given split (x_train/x_test, train/ and test/ folders) is kept. label_column: CSV
    only, a name or an index (default: the last column; a string of digits, as a command
    line gives it, is an index unless the header has a column of that name). progress:
    called as progress(done, total) after each image of a folder (the one slow format).
    anomaly: the labels only mark samples normal (0) or anomalous (non-zero), as an
    autoencoder is scored: the training part may then hold normal samples alone (what an
    anomaly detector is trained on), so only class 0 must be there."""
    spec = os.fspath(spec)
    try:
        dtype = np.dtype(input_dtype).name
    except TypeError as e:
        raise DataError(f"input_dtype {input_dtype!r}: not a numpy type name (int8, uint8, float32)") from e
    if not 0.0 < held_out < 1.0:
        raise DataError(f"held_out {held_out}: the fraction of each class held out, between 0 and 1")
    model = ModelInput(
        tuple(int(d) for d in input_shape),
        int(classes),
        dtype,
        float(input_scale),
        int(input_zero_point),
        anomaly=bool(anomaly),
    )
    raw = _read(spec, model, label_column, progress)
    ys, names, k, label_notes = checks.labels(raw, model)
    xs, quantized, input_notes = checks.inputs(raw, model)
    notes = [*raw.notes, *input_notes, *label_notes]
    if raw.test is None:
        fine, held, info = stratified(ys[0], k, held_out, seed, raw.source)
        finetune, held_part = Part(xs[0][fine], ys[0][fine]), Part(xs[0][held], ys[0][held])
        lonely = [c for c, n in enumerate(info["held_out_per_class"]) if n == 0]
        if lonely:
            notes.append(f"classes {lonely} have a single sample: trained on, not held out")
    else:
        finetune, held_part = Part(xs[0], ys[0]), Part(xs[1], ys[1])
        info = {"method": "given", "parts": raw.given, "finetune": len(finetune), "held_out": len(held_part)}
        if len(held_part) == 0:
            raise DataError(f"{raw.source}: the test part ({raw.test.x_name}) holds no samples: add some")
        missing = sorted(set(range(k)) - set(held_part.y.tolist()))
        if missing:
            notes.append(f"classes {missing} have no held-out samples: their accuracy is not measured")
    notes += checks.balance_notes(finetune.y, k, names, "fine-tuning part")
    notes += checks.overlap_note(
        finetune.x.reshape(len(finetune), -1), held_part.x.reshape(len(held_part), -1)
    )
    empty = Part(np.empty((0, *model.shape), dtype=finetune.x.dtype), np.empty(0, dtype=np.int64))
    return UserData(
        split=Split(empty, finetune, held_part),
        classes=k,
        label_names=names,
        split_info=info,
        quantized=quantized,
        notes=tuple(notes),
        source=raw.source,
        format=raw.format,
        model_input=model,
        sha256=raw.sha256,
    )
