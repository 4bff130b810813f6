"""Input-channel slices in schemes ([input_channels], inline "-5=in:0.25"), end to end: the
scheme language, what the training step keeps (only the trained input channels of the layer's
input outlive the forward pass), the board against the host twin bit for bit, and the pulled
.tflite against the board (tests/test_pull.py runs an input-channel scheme too). The kernels
themselves are checked against TensorFlow in tests/kernels/conv/test_input_channel_slices.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.errors import ToolError
from pytools.model.ir import ModelError
from pytools.model.tflite_import import import_tflite
from pytools.pretrain.zoo import zoo_model
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme, parse_scheme_text, resolve
from pytools.train.trainer import Trainer

BOARD = load_board("mps2_an500")
# mobilenet_tiny: -2 is CONV_2D 32 -> 64 on 8x8, -5 CONV_2D 32 -> 128 on 8x8, -4 a depthwise.
SCHEME = "bias=6,-1=1,-2=in:0.5,-5=in:0.25"


def _model():
    return import_tflite(zoo_model("mobilenet_tiny"), "mt")


def test_the_scheme_language_writes_either_slice(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text("bias_layers = 6\n[weights]\n-1 = 1.0\n[input_channels]\n-2 = 0.5\n-5 = 0.25\n")
    s = load_scheme(str(f))
    assert s.weights == {-1: 1.0} and s.inputs == {-2: 0.5, -5: 0.25}
    assert s == parse_scheme_text(SCHEME) == parse_scheme_text(s.inline())
    assert "at 0.5 of its input channels" in s.describe()
    g = _model()
    u = {x.layer: x for x in resolve(g, s).values()}
    assert (u[-2].rows, u[-2].cols) == (0, 16) and (u[-5].rows, u[-5].cols) == (0, 8)
    assert (u[-1].rows, u[-1].cols) == (10, 0)
    assert s.restricted_to_last(3).inputs == {-2: 0.5}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("-2=0.5,-2=in:0.5", "both output and input channels"),
        ("-4=in:0.5", r"only a CONV_2D takes \[input_channels\]"),
        ("-1=in:1", r"only a CONV_2D takes \[input_channels\]"),
        ("-2=in:0.3", "is not one of"),
        ("-99=in:0.5", "trainable layers"),
    ],
)
def test_bad_input_channel_slices_are_refused(text: str, says: str) -> None:
    with pytest.raises(ToolError, match=says):
        resolve(_model(), parse_scheme_text(text))


def test_an_input_slice_of_the_output_layer_is_refused() -> None:
    """A CONV_2D classifier (1x1 over a 1x1 map, as MCUNet's) reads its loss from rows only."""
    from tests.kernels import grad_support as gs

    layer = gs.make_layer("conv", 3, fh=1, fw=1, h=1, w=1, n=1, padding="VALID", in_c=12, out_c=5, bias=True)
    compile_training(layer.graph, parse_scheme_text("bias=1,-1=0.5"), BOARD, "c", False, 0.05)
    with pytest.raises(ModelError, match="output layer"):
        compile_training(layer.graph, parse_scheme_text("-1=in:0.5"), BOARD, "c", False, 0.05)


def test_only_the_trained_input_channels_are_kept_for_backward() -> None:
    g = _model()
    ct = compile_training(g, parse_scheme_text(SCHEME), BOARD, "mt", False, 0.05)
    tb, tg = ct.train, ct.train.graph
    for op_index, u in tb.updates.items():
        if not u.cols:
            continue
        layer = g.ops[op_index]
        x = g.tensor(layer.inputs[0])
        assert x.index not in tb.saved, "the whole input is kept"
        update = next(
            o for o in tg.ops if o.kind == "CONV_2D_GRAD_UPDATE" and o.options["train_cols"] == u.cols
        )
        kept = tg.tensor(update.inputs[0])
        assert kept.index in tb.saved and kept.shape == (*x.shape[:-1], u.cols)
        made = next(o for o in tg.ops if kept.index in o.outputs)
        assert made.kind == "SLICE" and made.index < tb.n_forward and made.inputs[0] == x.index
        # The layer's input dies in the forward pass: nothing after it reads x.
        assert max(o.index for o in tg.ops if x.index in o.inputs) < tb.n_forward
        # The RAM state: every output channel, the first cols input channels.
        w = g.tensor(layer.inputs[1])
        state = tg.tensor(update.inputs[4])
        assert state.shape == (*w.shape[:3], u.cols)
        np.testing.assert_array_equal(state.data, w.data[..., : u.cols])
    # The planner holds the kept slice, not the input: the compiled plan's saved tensors total
    # the slices' bytes.
    kept_bytes = sum(int(np.prod(tg.tensor(t).shape)) for t in tb.saved if "/keep" in tg.tensor(t).name)
    assert kept_bytes == 8 * 8 * (16 + 8)


def test_input_slices_train_on_the_host_twin() -> None:
    ct = compile_training(_model(), parse_scheme_text(SCHEME), BOARD, "mt", False, 0.05)
    tr = Trainer(ct)
    before = tr.state()
    rng = np.random.default_rng(1)
    x = ct.train.graph.tensor(ct.train.graph.inputs[0])
    for _ in range(4):
        tr.step(rng.integers(-128, 128, x.shape, dtype=np.int8), int(rng.integers(10)))
    after = tr.state()
    moved = [
        k for k in after if k.endswith("convolution/trained") and not np.array_equal(before[k], after[k])
    ]
    assert len(moved) == 2, moved


@pytest.mark.emulator
def test_input_slices_on_the_board_match_the_host_twin() -> None:
    """Board (DSP kernels) against the twin (reference kernels): losses and every state byte."""
    from tests.kernels.conv.test_dsp_grads import _board_matches_twin

    _board_matches_twin(zoo_model("mobilenet_tiny"), "mt", SCHEME, 8, 3)


def test_bench_counts_the_update_macs_of_an_input_slice() -> None:
    """`invoke bench`'s MACs: an input-channel slice's update does its share of the layer's
    MACs (all rows, cols of the input channels)."""
    from pytools import bench

    g = _model()
    ct = compile_training(g, parse_scheme_text("bias=1,-2=in:0.5"), BOARD, "mt", False, 0.05)
    macs = bench.step_macs(ct)
    conv = [op for op in g.ops if op.kind == "CONV_2D"][-1]  # layer -2: 32 -> 64 on 8x8
    ops = ct.train.graph.ops
    got = [m for op, m in zip(ops, macs, strict=True) if op.kind == "CONV_2D_GRAD_UPDATE"]
    assert got == [bench.op_macs(g, conv) // 2] == [8 * 8 * 64 * 16]


def test_the_float_gradient_option_trains_input_slices() -> None:
    """gradients=float32 (the _F32 kernels) with input-channel slices: the sliced weights move."""
    ct = compile_training(
        _model(), parse_scheme_text(SCHEME + ",gradients=float32"), BOARD, "mt", False, 0.05
    )
    assert any(op.kind == "CONV_2D_GRAD_UPDATE_F32" and op.options["train_cols"] for op in ct.train.graph.ops)
    tr = Trainer(ct)
    before = tr.state()
    rng = np.random.default_rng(2)
    x = ct.train.graph.tensor(ct.train.graph.inputs[0])
    for _ in range(3):
        loss, _ = tr.step(rng.integers(-128, 128, x.shape, dtype=np.int8), int(rng.integers(10)))
        assert np.isfinite(loss)
    after = tr.state()
    assert (
        sum(not np.array_equal(before[k], after[k]) for k in after if k.endswith("convolution/trained")) == 2
    )


def test_the_planner_holds_only_the_kept_channels() -> None:
    """The arena's saved activations over the whole step (pytools.bench's profile): with input
    slices the two layers keep 8x8x16 + 8x8x8 bytes, with output slices of the same layers their
    whole 8x8x32 inputs."""
    from pytools.bench.memory import arena_profile

    def saved(scheme: str) -> int:
        ct = compile_training(_model(), parse_scheme_text(scheme), BOARD, "mt", False, 0.05)
        return max(p.get("saved activations", 0) for p in arena_profile(ct))

    head = 64  # the classifier's saved input, 1x64
    assert saved(SCHEME) == head + 8 * 8 * (16 + 8)
    assert saved("bias=6,-1=1,-2=0.5,-5=0.25") == head + 2 * 8 * 8 * 32
