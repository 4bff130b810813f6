"""A CSV file: one row per sample, its features then a label column (any column, by name or
index; the last by default).

A header row is optional: the first row is a header when it has a non-numeric cell where the
second row has a number (or when it is all non-numeric, or numbered 0..n-1 as pandas writes
column names). The delimiter is a tab or a semicolon if the first line has one, else a comma. A first
column named "" or "Unnamed: 0" holding 0, 1, 2, ... is the row index pandas writes by
default: it is dropped, with a note. Labels may be integers (the model's output index) or
strings (mapped by checks.py). Line numbers in errors are the file's own, counting from 1.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np

from datasets import DataError
from datasets.files.raw import Raw, RawPart


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def delimiter_of(text: str) -> str:
    """A tab or a semicolon on the first non-blank line is the delimiter (with ";", commas are
    decimal commas), else a comma."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return next((d for d in ("\t", ";") if d in first), ",")


def decode(path: Path, data: bytes) -> str:
    """The file's bytes as text: UTF-8 (a byte-order mark dropped), or a DataError saying what to do."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}): save the CSV as UTF-8") from e
    if not text.strip():
        raise DataError(f"{path}: the file is empty: expected one row per sample, features then a label")
    return text


def read_rows(path: Path) -> tuple[list[list[str]], str]:
    """The CSV's non-blank rows, cells stripped, and its delimiter: what the loader reads, for
    any other tool that needs the file's columns (the fleet's column partition)."""
    text = decode(path, path.read_bytes())
    return _rows(path, text)[0], delimiter_of(text)


def _rows(path: Path, text: str) -> tuple[list[list[str]], list[int]]:
    """Non-blank rows, cells stripped, and each row's line number."""
    delimiter = delimiter_of(text)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows, lines = [], []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append([cell.strip() for cell in row])
                lines.append(reader.line_num)
    except csv.Error as e:
        raise DataError(f"{path}: line {reader.line_num}: not valid CSV ({e}): check its quoting") from e
    return rows, lines


def _is_header(rows: list[list[str]], label_column: str | int | None) -> bool:
    first = rows[0]
    if isinstance(label_column, str) and label_column in first and not label_column.lstrip("-").isdigit():
        return True
    numeric = [is_number(c) for c in first]
    if not any(numeric):
        return True
    if len(rows) > 1 and any(
        not n and j < len(rows[1]) and is_number(rows[1][j]) for j, n in enumerate(numeric)
    ):
        return True
    numbers = [float(c) for c, n in zip(first, numeric, strict=True) if n]
    return (
        not all(numeric)
        and len(numbers) > 1
        and numbers
        in (
            list(range(len(numbers))),
            list(range(1, len(numbers) + 1)),
        )
    )


def _label_index(path: Path, header: list[str] | None, width: int, label_column: str | int | None) -> int:
    """The label column's index, from a name or an index (a string of digits is an index
    unless the header has a column of that name)."""
    if label_column is None:
        return width - 1
    if isinstance(label_column, str):
        if header is not None and label_column in header:
            return header.index(label_column)
        try:
            label_column = int(label_column)
        except ValueError:
            if header is None:
                raise DataError(
                    f"{path}: has no header row, so there is no column named '{label_column}': give "
                    f"the label column's index (0 .. {width - 1}; -1 for the last) with --label-column"
                ) from None
            shown = ", ".join(repr(h) for h in header[:12]) + (" ..." if len(header) > 12 else "")
            raise DataError(
                f"{path}: has no column '{label_column}'; its columns are {shown}: name the label "
                "column with --label-column NAME or INDEX"
            ) from None
    if not -width <= label_column < width:
        raise DataError(
            f"{path}: label column {label_column} does not exist: rows have {width} columns "
            f"(0 .. {width - 1}; -1 for the last): give --label-column NAME or INDEX"
        )
    return label_column % width


def _features(path: Path, cells: list[list[str]], lines: list[int], names: list[str]) -> np.ndarray:
    """The feature cells as float64 [n, features]; a cell that is not a number is named."""
    table = np.array(cells, dtype=str)
    try:
        return table.astype(np.float64)
    except ValueError:
        pass
    for i, row in enumerate(cells):  # slow path, only to name the first bad cell
        for j, cell in enumerate(row):
            if not is_number(cell):
                what = "an empty cell" if not cell else f"{cell[:40]!r}, not a number"
                if is_number(cell.replace(",", ".", 1)):
                    what += " (a decimal comma? write decimal points)"
                raise DataError(
                    f"{path}: line {lines[i]}, column {names[j]}: {what}: features must be numbers "
                    "(fill or drop the sample; a text column other than the label has to be encoded "
                    "as numbers or removed)"
                ) from None
    raise AssertionError("a cell failed to parse but none is named")


def read(path: Path, label_column: str | int | None) -> Raw:
    data = path.read_bytes()
    text = decode(path, data)
    rows, lines = _rows(path, text)
    header = rows[0] if _is_header(rows, label_column) else None
    if header is not None:
        rows, lines = rows[1:], lines[1:]
    if not rows:
        raise DataError(f"{path}: has a header but no data rows: add one row per sample")
    notes = []
    if all(r[-1] == "" for r in rows) and (header is None or header[-1] == ""):
        # a delimiter at the end of every line (spreadsheet exports): an empty last column
        rows = [r[:-1] for r in rows]
        header = header[:-1] if header is not None else None
        notes.append(f"{path}: every line ends with a delimiter: the empty last column is ignored")
    width = len(header) if header is not None else len(rows[0])
    for row, line in zip(rows, lines, strict=True):
        if len(row) != width:
            first = "the header" if header is not None else f"line {lines[0]}"
            raise DataError(
                f"{path}: line {line} has {len(row)} fields, {first} has {width}: every row needs "
                "the same columns (features, then the label)"
            )
    if width < 2:
        raise DataError(f"{path}: rows have a single column: expected features, then a label column")
    label = _label_index(path, header, width, label_column)
    names = [f"{j} ('{header[j]}')" if header is not None and header[j] else str(j) for j in range(width)]
    keep = [j for j in range(width) if j != label]
    if (
        header is not None
        and label != 0
        and header[0] in ("", "Unnamed: 0")
        and all(r[0] == str(i) for i, r in enumerate(rows))
    ):
        keep = keep[1:]
        notes.append(f"{path}: column 0 (unnamed, 0, 1, 2, ...) is a row index (as pandas writes): dropped")
    if not keep:
        raise DataError(f"{path}: rows have no feature columns besides the label column")
    labels = [r[label] for r in rows]
    for i, cell in enumerate(labels):
        if not cell:
            raise DataError(
                f"{path}: line {lines[i]}: the label (column {names[label]}) is empty: label or drop the row"
            )
    x = _features(path, [[r[j] for j in keep] for r in rows], lines, [names[j] for j in keep])
    if all(is_number(c) for c in labels):
        y = np.array([float(c) for c in labels])
    else:
        y = np.array(labels, dtype=str)
    kept = [names[j] for j in keep]

    def where(i: int) -> str:
        return f"line {lines[i]}"

    def column(j: int) -> str:
        return f"column {kept[j]}"

    part = RawPart(x, y, "the feature columns", f"label column {names[label]}", where=where, column=column)
    return Raw(str(path), "csv", part, None, sha256=hashlib.sha256(data).hexdigest(), notes=notes)
