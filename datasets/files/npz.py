"""An .npz file (numpy.savez): x, y or x_train, y_train, x_test, y_test.

Read with allow_pickle=False: a file holding Python objects is refused rather than executed.
String labels are fine as numpy string arrays (np.array(labels, dtype=str)).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from datasets import DataError
from datasets.files.arrays import from_mapping, one_line
from datasets.files.raw import Raw


def read(path: Path) -> Raw:
    data = path.read_bytes()
    if not data:
        raise DataError(
            f"{path}: the file is empty: save your arrays with numpy.savez({path.name!r}, x=x, y=y)"
        )
    if not data.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # every .npz is a zip archive
        what = "a single .npy array" if data.startswith(b"\x93NUMPY") else "not a zip archive"
        raise DataError(f"{path}: not an .npz ({what}): save x and y together with numpy.savez")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DataError(
                f"{path}: holds Python objects (pickled arrays), which are not loaded: save numeric "
                "arrays, and string labels as np.array(labels, dtype=str)"
            ) from e
        raise DataError(f"{path}: not a readable .npz ({one_line(e)}): save it with numpy.savez") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz ({one_line(e)}): save it with numpy.savez") from e
    raw = from_mapping(arrays, str(path), "npz", "array")
    return Raw(
        raw.source, raw.format, raw.train, raw.test, raw.given, sha256=hashlib.sha256(data).hexdigest()
    )
