"""The training step of every public third-party int8 model in ../shared/models/*.tflite
compiles for nucleo_f746zg (the reference board) with a sparse scheme and the loss `auto`
picks, and its firmware links and fits the board's memory; where a model cannot be trained,
the refusal names the reason (the operators missing, forward or backward, or the memory
breakdown of what does not fit). Skipped, saying why, without ../shared/models (a user's clone).

Each scheme is tried from the largest to the smallest until one fits: the result says which.
The models this repository's docs name as trainable must reach a step that fits, and one step
of it runs on the host twin with a finite loss.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.errors import ToolError
from pytools.model.tflite_import import import_tflite
from pytools.train.compile_train import check_fits, compile_training
from pytools.train.losses import choose, loss_op_index
from pytools.train.scheme import load_scheme
from pytools.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "models"
NUCLEO = load_board("nucleo_f746zg")
SCHEMES = ("bias=3,-1=1,-2=0.5", "bias=2,-1=1", "bias=1,-1=0.5", "bias=1")
# ../shared/models/README.md's models, which train (the MLPerf Tiny VWW and ResNet-8 references).
MUST_TRAIN = {"vww_96_int8.tflite", "pretrainedResnet_quant.tflite"}
CLEAR_REFUSAL = r"operator #\d+ \(\w+\)|does not fit nucleo_f746zg"

MODELS = sorted(SHARED.glob("*.tflite")) if SHARED.is_dir() else []


@pytest.mark.parametrize("path", MODELS or [None], ids=[p.name for p in MODELS] or ["no-shared-models"])
def test_the_training_step_of_a_public_model_compiles_and_fits_nucleo_f746zg(path: Path | None) -> None:
    if path is None:
        pytest.skip(f"{SHARED} is absent (third-party models live in ../shared/models beside the checkout)")
    refusals = []
    try:
        graph = import_tflite(path.read_bytes(), path.stem)
        head = choose(graph)
        for spec in SCHEMES:
            try:
                ct = compile_training(graph, load_scheme(spec), NUCLEO, path.stem, link=True, lr=0.01)
                check_fits(ct)
            except ToolError as e:  # a ModelError too (the operators a scheme cannot train)
                refusals.append(f"{spec}: {e}")
                continue
            break
        else:
            raise ToolError(f"no scheme fits: {refusals[-1]}")
    except ToolError as e:  # the import, the loss, or every scheme: each must say why
        assert path.name not in MUST_TRAIN, f"{path.name} must train on nucleo_f746zg: {e}"
        for why in refusals or [str(e)]:
            assert re.search(CLEAR_REFUSAL, why), f"a refusal that names no reason: {why}"
        print(f"\n{path.name}: refused, with the reason: {e}")
        return
    assert ct.image is not None and ct.image.regions["RAM"].used <= NUCLEO.memory.ram_size
    kinds = [op.kind for op in ct.compiled.plan.ops]
    loss_op = kinds[loss_op_index(ct.compiled.plan.ops)]
    print(
        f"\n{path.name}: loss {head.describe()}; scheme {spec} ({len(refusals)} larger refused); "
        f"loss operator {loss_op}; RAM {ct.image.regions['RAM'].used:,} of {NUCLEO.memory.ram_size:,} B, "
        f"flash {ct.image.regions['FLASH'].used:,} B"
    )
    # One step of that plan on the host twin (the board's C): a finite loss.
    t = graph.tensor(graph.inputs[0])
    x = np.random.default_rng(0).integers(-128, 128, t.shape).astype(t.dtype)
    loss, pred = Trainer(ct).step(x, 0)
    assert math.isfinite(loss) and pred >= 0
