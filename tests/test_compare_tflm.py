"""`invoke compare-tflm`: one row per model, with the reason on the row of a model that
either side cannot take, and the other models' rows still there."""

from __future__ import annotations

import os

import pytest

from pytools.model.tflite_export import write_tflite
from pytools.model.tflm import COMPARE_HEADER, compare_row, expand_model_paths
from tests.import_support import GraphMaker, quant
from tests.test_movement_models import person_detect_like
from tests.test_tasks import invoke


def _five_dimensional_io() -> bytes:
    """A model TFLite Micro runs and we refuse: a 5-D TRANSPOSE between 5-D model I/O."""
    g = GraphMaker(1)
    q = quant(0.1, 0)
    x = g.t("x", (1, 2, 3, 4, 5), "int8", q)
    perm = g.t("perm", (5,), "int32", None, [0, 4, 3, 2, 1])
    y = g.t("y", (1, 5, 4, 3, 2), "int8", q)
    g.op("TRANSPOSE", [x, perm], [y])
    return write_tflite(g.graph([x], [y], "t5"))


@pytest.fixture
def models(tmp_path):
    good = write_tflite(person_detect_like())
    (tmp_path / "a_good.tflite").write_bytes(good)
    (tmp_path / "b_truncated.tflite").write_bytes(good[:200])
    (tmp_path / "c_5d_io.tflite").write_bytes(_five_dimensional_io())
    return tmp_path


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def test_each_model_gets_its_own_row_with_its_reason(models, tmp_path) -> None:
    r = invoke("compare-tflm", "--models", f"{models}/*.tflite,{models}/missing.tflite", run_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[:2] == list(COMPARE_HEADER)
    rows = {c[0]: c for c in map(_cells, lines[2:])}
    assert list(rows) == ["a_good", "b_truncated", "c_5d_io", "missing"]
    good = rows["a_good"]
    assert good[1].endswith(" B") and good[3].endswith(" B") and good[5] == ""
    truncated = rows["b_truncated"]
    assert truncated[1:5] == ["-"] * 4
    assert "ours: b_truncated: malformed or truncated .tflite file" in truncated[5]
    assert "TFLM: not a readable .tflite model" in truncated[5]
    # Ours refuses, TFLite Micro's figures are still reported.
    five = rows["c_5d_io"]
    assert five[1] == "-" and five[2].endswith(" B") and five[3].endswith(" B")
    assert "ours: model input or output 'x' has 5 dimensions" in five[5]
    assert rows["missing"][5].startswith("cannot read") and "No such file" in rows["missing"][5]


def test_a_crash_inside_tflite_micro_costs_only_its_row(models) -> None:
    row = compare_row(models / "a_good.tflite", lambda data, name: 123, tflm=lambda data: os.abort())
    cells = _cells(row)
    assert cells[:2] == ["a_good", "123 B"] and cells[2:5] == ["-"] * 3
    assert cells[5] == "TFLM: TFLite Micro crashed on the model (signal 6)"


def test_unexpected_errors_are_named_and_pipes_escaped(models) -> None:
    def ours(data: bytes, name: str) -> int:
        raise KeyError("a|b")

    cells = _cells(compare_row(models / "a_good.tflite", ours).replace("\\|", "/"))
    assert cells[1] == "-" and cells[3].endswith(" B")
    assert cells[5] == "ours: unexpected KeyError: 'a/b'"


def test_model_paths(tmp_path) -> None:
    for n in ("x.tflite", "y.tflite", "z.txt"):
        (tmp_path / n).write_bytes(b"")
    assert expand_model_paths("", tmp_path) == [tmp_path / "x.tflite", tmp_path / "y.tflite"]
    got = expand_model_paths(f"{tmp_path}/*.tflite, {tmp_path}/none*.tflite,,{tmp_path}/z.txt", tmp_path)
    assert got == [
        tmp_path / "x.tflite",
        tmp_path / "y.tflite",
        tmp_path / "none*.tflite",
        tmp_path / "z.txt",
    ]
