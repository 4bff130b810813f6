"""MCUNet-5FPS at 128x128 (pytools/pretrain/mcunet.py) with the 49kb scheme
(schemes/mcunet_49kb.toml). Oracles: TFLite's reference kernels for the forward pass (the
model's five PADs folded into their 3x3/2 conv and 3x3, 7x7 depthwise layers), the linker for
whether the training step fits the NUCLEO-F746ZG. The measured peak and cost are in
`invoke bench` (BENCHMARKS.md), not here."""

from __future__ import annotations

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.model.compiler import compile_graph
from pytools.model.host_twin import HostTwin
from pytools.model.oracle import run_tflite
from pytools.model.tflite_import import load_tflite
from pytools.paths import ROOT
from pytools.pretrain.mcunet import mcunet_path
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme

pytestmark = pytest.mark.slow  # builds the model with TensorFlow on first use (~2 min)


def test_mcunet_forward_is_bit_exact_with_its_pads_folded() -> None:
    path = mcunet_path()
    g = load_tflite(path)
    compiled = compile_graph(g, load_board("mps2_an500"), path.stem)
    assert [op.kind for op in g.ops].count("PAD") == 5
    assert "PAD" not in [op.kind for op in compiled.plan.ops]
    twin = HostTwin(compiled.blob)
    model = path.read_bytes()
    rng = np.random.default_rng(0)
    for _ in range(2):
        x = rng.integers(-128, 128, (1, 128, 128, 3), dtype=np.int8)
        np.testing.assert_array_equal(twin.invoke([x])[0], run_tflite(model, [x])[0])


def test_mcunet_49kb_scheme_links_for_the_nucleo() -> None:
    board = load_board("nucleo_f746zg")
    path = mcunet_path()
    scheme = load_scheme(str(ROOT / "schemes" / "mcunet_49kb.toml"))
    ct = compile_training(load_tflite(path), scheme, board, path.stem, link=True)
    assert ct.image is not None, ct.link_error
    assert len(ct.folded.folded) == 5
    assert ct.breakdown["state total"] < 66 * 1024
    ram, flash = ct.image.regions["RAM"].used, ct.image.regions["FLASH"].used
    assert ram < 0.6 * board.memory.ram_size, ram  # room to spare (the measured peak: bench)
    assert flash < board.memory.flash_size, flash
