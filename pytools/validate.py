"""Up-front checks of what a user (or a file) hands the tools: each refuses with a one-line
ToolError that names the option or file, the value, and what to give instead.

The rule they serve: every option and file is checked before anything starts (an emulator, a
board connection, a build, a file written), so a bad input leaves nothing behind. Names that
come from files (a session's config.json, a board file) are data, never paths: `name` allows
no separator and no "..", so they cannot point outside the project's run and session folders.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from pytools.errors import ToolError

# A name used to build a file name (emulator state, board file, session folder): letters,
# digits, '_', '-', '.'; it starts with a letter or digit, so it is neither "..", hidden, nor an
# option. 64 characters keep every file name built from it far below the 255-byte limit.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# The learning rate, in real units (SGD with QAS). The method's runs use 0.001 to 0.1 (0.01 on
# the digits transfer, docs/training.md). Above 1 a single step moves each trained weight by
# more than its whole (scale-normalised) gradient: the int8 weights saturate within a few steps
# and the loss diverges; far above, the plan's float32 update factors overflow.
LR_MAX = 1.0
EPOCHS_MAX = 65535  # a TRAIN carries its epoch in a u16 (firmware/link/payloads.def)
SEED_MAX = 2**32 - 1  # numpy's generators take a non-negative seed; 32 bits is plenty


def name(value: Any, what: str) -> str:
    """A name from the command line or a file, refused unless it is a plain name."""
    if not isinstance(value, str) or not NAME.fullmatch(value) or ".." in value:
        raise ToolError(
            f"{what} {value!r} is not a valid name: use letters, digits, '_', '-' and '.' "
            "(no path separators, no '..', at most 64 characters)"
        )
    return value


def label(value: str) -> str:
    """A safe piece of a file name made from a free text (a data set given as a path, e.g.
    "../data/my recordings.npz" -> "my_recordings"): a session folder named after it stays in
    sessions/."""
    stem = Path(value.replace("\\", "/")).stem if value else ""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._-")[:40]
    return cleaned or "data"


def lr(value: Any, option: str = "--lr") -> float:
    """A learning rate in [0, LR_MAX], with the reason for the bound."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ToolError(f"{option} must be a finite number, got {value!r}")
    if not 0 <= value <= LR_MAX:
        raise ToolError(
            f"{option} {value:g} is outside 0 .. {LR_MAX:g}: SGD with QAS diverges long before "
            f"(each step would move a trained weight by more than its whole gradient, saturating "
            "the int8 weights); the method's runs use 0.001 to 0.1 (0.01 by default)"
        )
    return float(value)


def integer(value: Any, option: str, low: int, high: int, why: str = "") -> int:
    """An integer option within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        reason = f" ({why})" if why else ""
        raise ToolError(f"{option} must be a whole number from {low:,} to {high:,}{reason}, got {value!r}")
    return value


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_writable(folder: Path, option: str, target: Path) -> None:
    """Creates and removes a file in folder: the one test that holds for every user (root too)
    and every file system (read-only mounts, /proc)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".tinytrain-probe-", dir=folder)
    except OSError as e:
        raise ToolError(f"{option} {target}: cannot write in {folder} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def output_file(path: str | Path, option: str = "--out", suffix: str | None = None) -> Path:
    """A file the command will write: its folder exists or can be created, and is writable.
    Nothing is created here."""
    p = Path(path)
    if not str(path).strip():
        raise ToolError(f"{option} is empty: name the file to write")
    if suffix and p.suffix != suffix:
        raise ToolError(f"{option} must name a {suffix} file, got {str(path)!r}")
    if p.is_dir():
        raise ToolError(f"{option} {p} is a folder: name a file in it")
    if p.exists() and not p.is_file():
        raise ToolError(f"{option} {p} exists and is not a regular file")
    base = _nearest_existing(p.parent)
    if not base.is_dir():
        raise ToolError(f"{option} {p}: {base} is a file, not a folder")
    _probe_writable(base, option, p)
    return p


def output_folder(path: str | Path, option: str = "--out") -> Path:
    """A folder the command will create (or write into): it, or its nearest existing parent,
    is a writable folder. Nothing is created here."""
    p = Path(path)
    if not str(path).strip():
        raise ToolError(f"{option} is empty: name the folder to write")
    base = _nearest_existing(p)
    if not base.is_dir():
        raise ToolError(f"{option} {p}: {base} is a file, not a folder")
    _probe_writable(base, option, p)
    return p


def session_config(cfg: Any, where: Path) -> dict[str, Any]:
    """A session's config.json as --resume and `pull --session` read it: the names in it are
    checked (they build file names), and the fields they need are there."""
    try:
        board = cfg["board"]
        name(board["name"], f"{where}: board name")
        emu = board.get("emulator") or {}
        for key in ("name", "reused"):
            if emu.get(key) is not None:
                name(emu[key], f"{where}: emulator {key}")
        a = cfg["arguments"]
        if not isinstance(a["dataset"], str):
            raise ToolError(f"{where}: dataset must be a name or a file, not {a['dataset']!r}")
        if a.get("board_name") is not None:
            name(a["board_name"], f"{where}: board name")
        if a.get("lr") is not None:
            lr(a["lr"], f"{where}: lr")
    except (KeyError, TypeError, AttributeError) as e:
        raise ToolError(f"{where} is not a session's config.json (missing or malformed {e})") from None
    return cfg


def training(
    *,
    dataset: Any,
    epochs: Any,
    lr_value: Any,
    seed: Any,
    limit: Any,
    held_out: Any,
    save_every: Any,
    out_dir: Path | None,
) -> None:
    """`invoke train`'s options, all checked before the data set loads or a board starts.
    (The data set itself is checked by its loader: a built-in name, or a user's file.)"""
    if not isinstance(dataset, str) or not dataset.strip() or "\0" in dataset:
        raise ToolError(f"--dataset must name a data set (e.g. digits), got {dataset!r}")
    if epochs is not None:  # None: the session picks the data set's default
        integer(epochs, "--epochs", 1, EPOCHS_MAX, "a TRAIN carries its epoch in 16 bits")
    if lr_value is not None:  # None: a short sweep on the host twin picks it
        lr(lr_value)
    integer(seed, "--seed", 0, SEED_MAX)
    if limit is not None:
        integer(limit, "--limit", 1, 2**31 - 1)
    if held_out is not None:
        integer(held_out, "--held-out", 1, 2**31 - 1)
    if save_every is not None:
        integer(save_every, "--save-every", 0, 2**31 - 1, "0: only at the end")
    if out_dir is not None:
        output_folder(out_dir)


def json_file(path: Path) -> Any:
    """A JSON file's content, or a one-line error naming the file."""
    import json

    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ToolError(f"{path}: not readable JSON ({e})") from None


def npy_array(path: str | Path, option: str = "--inputs") -> Any:
    """A numeric array from a .npy file (numpy's own format; never a pickle)."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise ToolError(f"{option}: no file at {p}")
    try:
        with open(p, "rb") as f:
            magic = f.read(6)
            if magic != b"\x93NUMPY":
                raise ToolError(
                    f"{option} {p} is not a .npy file (numpy.save's format): save the inputs with "
                    "numpy.save, one input per row"
                )
            f.seek(0)
            x = np.load(f, allow_pickle=False)
    except ToolError:
        raise
    except (OSError, ValueError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "allow_pickle" in msg or "pickled" in msg:
            msg = "it holds Python objects (an object array), not numbers"
        raise ToolError(f"{option} {p}: cannot read it as a numeric array: {msg}") from None
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf":
        raise ToolError(f"{option} {p} holds {getattr(x, 'dtype', type(x))}: give integers or floats")
    return x
