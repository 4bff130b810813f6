"""Arrays handed over in memory, by an .npz file or a hook: which keys make which parts.

Both take `x`, `y` (the tool splits them) or `x_train`, `y_train`, `x_test`, `y_test` (the
user's own split), so both name their parts the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from datasets import DataError
from datasets.files.raw import Raw, RawPart

WHOLE = ("x", "y")
GIVEN = ("x_train", "y_train", "x_test", "y_test")


def _part(arrays: Mapping[str, Any], xk: str, yk: str, source: str, what: str) -> RawPart:
    out = []
    for k in (xk, yk):
        try:
            a = np.asarray(arrays[k])
        except (ValueError, TypeError) as e:  # ragged lists and the like
            raise DataError(
                f"{source}: {what} '{k}' is not an array ({one_line(e)}): give numpy arrays"
            ) from e
        if a.ndim == 0:
            raise DataError(f"{source}: {what} '{k}' is a single value, not an array of samples")
        out.append(a)

    def where(i: int) -> str:
        return f"sample {i} ({xk}[{i}], {yk}[{i}])"

    return RawPart(out[0], out[1], xk, yk, where=where)


def from_mapping(arrays: Mapping[str, Any], source: str, fmt: str, what: str) -> Raw:
    """A Raw from arrays under the keys WHOLE or GIVEN; `what` names a key ("array", "key")."""
    keys = set(arrays)
    whole, given = set(WHOLE) <= keys, set(GIVEN) <= keys
    if whole and given:
        raise DataError(
            f"{source}: has both x, y and x_train, y_train, x_test, y_test: keep one set "
            "(x, y to let the tool split; the four to give your own split)"
        )
    if whole:
        return Raw(source, fmt, _part(arrays, "x", "y", source, what), None)
    if given:
        train = _part(arrays, "x_train", "y_train", source, what)
        test = _part(arrays, "x_test", "y_test", source, what)
        return Raw(source, fmt, train, test, given="x_train, y_train / x_test, y_test")
    partial = sorted(keys & {*WHOLE, *GIVEN})
    missing = sorted({*WHOLE} - keys) if keys & set(WHOLE) else sorted(set(GIVEN) - keys)
    hint = f"; it lacks {', '.join(missing)}" if partial else ""
    raise DataError(
        f"{source}: {what}s {', '.join(sorted(map(str, keys))) or '(none)'}{hint}: expected x, y "
        "(the tool splits them) or x_train, y_train, x_test, y_test"
    )


def one_line(e: BaseException) -> str:
    """An exception's message on one line (library messages may span several)."""
    return " ".join(str(e).split()) or type(e).__name__
