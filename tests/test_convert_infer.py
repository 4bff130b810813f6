"""`invoke convert` and `invoke infer` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from pytools.model.ir import Graph, Op, Tensor
from pytools.model.oracle import run_tflite
from pytools.model.tflite_export import write_tflite
from pytools.paths import ROOT
from tests.kernels.support import quant


def invoke(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TINYTRAIN_RUN_DIR": str(tmp_path / "run")}
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def big_model() -> bytes:
    """A 1x1 conv over a 256x256x4 image: 256 KB in, 512 KB out: no 320 KB board can run it."""
    rng = np.random.default_rng(0)
    t = [
        Tensor(0, "in", (1, 256, 256, 4), "int8", quant(0.05, 0)),
        Tensor(
            1,
            "w",
            (8, 1, 1, 4),
            "int8",
            quant([0.01] * 8, 0),
            rng.integers(-127, 128, (8, 1, 1, 4), dtype=np.int8),
        ),
        Tensor(2, "b", (8,), "int32", quant([0.0005] * 8, 0), np.zeros(8, np.int32)),
        Tensor(3, "out", (1, 256, 256, 8), "int8", quant(0.1, 0)),
    ]
    op = Op(0, "CONV_2D", [0, 1, 2], [3], dict(padding="VALID", stride_h=1, stride_w=1))
    return write_tflite(Graph(t, [op], [0], [3]))


def test_convert_refuses_a_model_that_does_not_fit_with_the_breakdown(tmp_path) -> None:
    model = tmp_path / "big.tflite"
    model.write_bytes(big_model())
    r = invoke("convert", "--model", str(model), "--board", "nucleo_f746zg", tmp_path=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr
    assert "big does not fit nucleo_f746zg" in err
    # input and output alive together (786,432 B) and the conv kernel's planned buffers (1,056 B)
    assert "arena                 787,488 B" in err
    assert "of 327,680" in err and "RAM overflowed by" in err
    assert "Traceback" not in err


def test_convert_prints_the_memory_report_of_a_model_that_fits(tmp_path) -> None:
    from pytools.pretrain.zoo import zoo_model

    model = tmp_path / "cnn.tflite"
    model.write_bytes(zoo_model("cnn_int8_io"))
    r = invoke("convert", "--model", str(model), "--out", str(tmp_path / "cnn.plan"), tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    for line in ("arena", "weights", "plan tables", "of 327,680", "of 1,048,576", "(linker)"):
        assert line in r.stdout
    assert (tmp_path / "cnn.plan").read_bytes()[:4] == b"TTPL"


@pytest.mark.parametrize("board", ["host", pytest.param("mps2_an500", marks=pytest.mark.emulator)])
def test_infer_writes_one_output_row_per_input_row_like_tflite(tmp_path, board: str) -> None:
    from pytools.pretrain.zoo import zoo_model

    data = zoo_model("cnn_float_io")  # float input and output: QUANTIZE/DEQUANTIZE at the edges
    model = tmp_path / "m.tflite"
    model.write_bytes(data)
    x = np.random.default_rng(1).normal(0, 1, (3, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = invoke(
        "infer",
        "--model",
        str(model),
        "--inputs",
        str(tmp_path / "x.npy"),
        "--out",
        str(tmp_path / "y.npy"),
        "--board",
        board,
        tmp_path=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    y = np.load(tmp_path / "y.npy")
    ref = np.stack([run_tflite(data, [row[None]])[0][0] for row in x])
    assert y.dtype == np.float32 and y.shape == ref.shape
    np.testing.assert_array_equal(y, ref)


def test_infer_names_the_expected_input(tmp_path) -> None:
    from pytools.pretrain.zoo import zoo_model

    model = tmp_path / "m.tflite"
    model.write_bytes(zoo_model("cnn_int8_io"))
    np.save(tmp_path / "x.npy", np.zeros((2, 5, 5), np.int8))
    r = invoke(
        "infer",
        "--model",
        str(model),
        "--inputs",
        str(tmp_path / "x.npy"),
        "--out",
        str(tmp_path / "y.npy"),
        "--board",
        "host",
        tmp_path=tmp_path,
    )
    assert r.returncode == 1
    assert "each row must hold one input of shape (1, 32, 32, 3)" in r.stderr
