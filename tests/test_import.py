"""The .tflite importer: round trips through the exporter, the third-party models against an
independent reader (the `tflite` package), clear errors for what the engine cannot run, and
malformed, truncated and fuzzed files that must give ModelError and nothing else."""

from __future__ import annotations

import collections
import random
import struct
import threading
import time
import tracemalloc

import numpy as np
import pytest
import tflite
from tflite.BuiltinOperator import BuiltinOperator as BO
from tflite.BuiltinOptions import BuiltinOptions as BOpt
from tflite.TensorType import TensorType as TT

from pytools.model.ir import SUPPORTED_OPS, ModelError
from pytools.model.lowering import lower
from pytools.model.tflite_export import write_tflite
from pytools.model.tflite_import import import_tflite, load_tflite
from pytools.paths import SHARED_MODELS
from tests.import_support import (
    Mutator,
    RawBuffer,
    RawCode,
    RawModel,
    RawOp,
    RawSubgraph,
    RawTensor,
    check_graph,
    conv_options,
    graph_all_ops,
    graph_diff,
    graph_movement_ops,
    graph_optional_inputs,
    offset_like_fields,
    options_table,
    reshape_options,
    write_raw,
)

STRUCTURAL = ("malformed", "truncated", "not a TFLite")


def import_error(data: bytes, name: str = "m.tflite") -> str:
    with pytest.raises(ModelError) as e:
        import_tflite(data, name)
    msg = str(e.value)
    assert msg.startswith(f"{name}: "), msg
    return msg


def structural(msg: str) -> bool:
    return any(w in msg for w in STRUCTURAL)


# ------------------------------------------------------------------------------------------
# 1. Round trip through the exporter


@pytest.mark.parametrize("make", [graph_all_ops, graph_optional_inputs, graph_movement_ops])
def test_round_trip(make, tmp_path) -> None:
    g = make()
    data = write_tflite(g)
    back = import_tflite(data, g.name)
    assert graph_diff(g, back) == []
    check_graph(back)
    assert back.description == g.description
    for t in back.tensors:  # training updates weights in place: no read-only views of the file
        if t.data is not None:
            assert t.data.flags.writeable and not np.shares_memory(t.data, np.frombuffer(data, np.uint8))
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    assert graph_diff(g, load_tflite(path)) == [f"name: {g.name} != m.tflite"]
    assert import_tflite(data).name == g.name  # no name given: the subgraph's


def test_round_trip_covers_every_op_and_type() -> None:
    graphs = [graph_all_ops(), graph_optional_inputs(), graph_movement_ops()]
    kinds = {op.kind for g in graphs for op in g.ops}
    assert kinds == set(SUPPORTED_OPS)
    assert {t.dtype for g in graphs for t in g.tensors} == {
        "int8",
        "uint8",
        "int16",
        "int32",
        "int64",
        "float32",
    }
    acts = {op.options["activation"] for g in graphs for op in g.ops if "activation" in op.options}
    assert acts == {"NONE", "RELU", "RELU6", "RELU_N1_TO_1"}
    assert any(t.quant is not None and t.quant.per_channel and t.quant.axis == 3 for t in graphs[0].tensors)


def test_round_trip_detects_a_change() -> None:
    """The comparer itself must see a one-value difference in weights, scales and options."""
    g = graph_all_ops()
    back = import_tflite(write_tflite(g))
    back.tensors[4].data[0, 0, 0, 0] += 1
    back.tensors[4].quant.scale[1] *= 2
    back.ops[2].options["stride_w"] = 3
    assert len(graph_diff(g, back)) == 3


# ------------------------------------------------------------------------------------------
# 2. Third-party models, checked against the README and the `tflite` package


def _shared(name: str) -> bytes:
    path = SHARED_MODELS / name
    if not path.exists():
        pytest.skip(f"{path} is absent (third-party models live in ../shared/models, outside the repository)")
    return path.read_bytes()


_OP_NAMES = {v: k for k, v in vars(BO).items() if not k.startswith("_")}
_DT = {TT.INT8: "int8", TT.UINT8: "uint8", TT.INT16: "int16", TT.INT32: "int32", TT.INT64: "int64"}
_DT[TT.FLOAT32] = "float32"

MODELS = {
    "vww_96_int8.tflite": {
        "counts": {"CONV_2D": 14, "DEPTHWISE_CONV_2D": 13, "AVERAGE_POOL_2D": 1, "RESHAPE": 1}
        | {"FULLY_CONNECTED": 1, "SOFTMAX": 1},
        "input": (1, 96, 96, 3),
        "output": (1, 2),
        "input_quant": (1 / 255, -128),
    },
    "pretrainedResnet_quant.tflite": {
        "counts": {"CONV_2D": 9, "ADD": 3, "AVERAGE_POOL_2D": 1, "FULLY_CONNECTED": 1, "RESHAPE": 1}
        | {"SOFTMAX": 1},
        "input": (1, 32, 32, 3),
        "output": (1, 10),
        "input_quant": None,
    },
}


def _options(op: tflite.Operator, cls: type) -> object:
    o = cls()
    tab = op.BuiltinOptions()
    o.Init(tab.Bytes, tab.Pos)
    return o


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shared_model(name: str) -> None:
    data = _shared(name)
    want = MODELS[name]
    g = import_tflite(data, name)
    check_graph(g)
    assert collections.Counter(op.kind for op in g.ops) == want["counts"]
    (x,), (y,) = g.inputs, g.outputs
    tx, ty = g.tensor(x), g.tensor(y)
    assert (tx.shape, tx.dtype, ty.shape, ty.dtype) == (want["input"], "int8", want["output"], "int8")
    if want["input_quant"]:
        scale, zp = want["input_quant"]
        assert tx.quant.scale.tolist() == pytest.approx(
            [scale], rel=1e-6
        ) and tx.quant.zero_point.tolist() == [zp]
    assert ty.quant.scale.tolist() == [1 / 256] and ty.quant.zero_point.tolist() == [-128]  # softmax output
    for op in g.ops:
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = g.tensor(op.inputs[1])
            assert w.quant.per_channel and w.quant.axis == (3 if op.kind == "DEPTHWISE_CONV_2D" else 0)
            assert g.tensor(op.inputs[2]).dtype == "int32"
        if op.kind == "RESHAPE":  # the file says [-1, N]; the IR holds the concrete shape
            y = g.tensor(op.outputs[0])
            assert op.options["new_shape"] == list(y.shape) == [1, y.shape[1]]
            assert g.tensor(op.inputs[1]).data.tolist() == [-1, y.shape[1]]

    # Everything again through the independent reader.
    m = tflite.Model.GetRootAsModel(data, 0)
    sg = m.Subgraphs(0)
    assert (m.SubgraphsLength(), sg.TensorsLength(), sg.OperatorsLength()) == (1, len(g.tensors), len(g.ops))
    assert (sg.InputsAsNumpy().tolist(), sg.OutputsAsNumpy().tolist()) == (g.inputs, g.outputs)
    n_const = 0
    for i, t in enumerate(g.tensors):
        ref = sg.Tensors(i)
        assert t.name == ref.Name().decode()
        assert t.shape == tuple(ref.ShapeAsNumpy().tolist()) and t.dtype == _DT[ref.Type()]
        raw = m.Buffers(ref.Buffer()).DataAsNumpy()
        if isinstance(raw, np.ndarray) and raw.size:
            n_const += 1
            assert t.data is not None and t.data.tobytes() == raw.tobytes()
        else:
            assert t.data is None
        q = ref.Quantization()
        if q is None or q.ScaleLength() == 0:
            assert t.quant is None
        else:
            assert np.array_equal(t.quant.scale, q.ScaleAsNumpy()) and t.quant.scale.dtype == np.float32
            assert np.array_equal(t.quant.zero_point, q.ZeroPointAsNumpy())
            assert t.quant.axis == q.QuantizedDimension()
    assert n_const == sum(len(op.inputs) - 1 for op in g.ops if op.kind not in ("ADD", "SOFTMAX"))
    for k, op in enumerate(g.ops):
        ref = sg.Operators(k)
        code = m.OperatorCodes(ref.OpcodeIndex())
        assert op.kind == _OP_NAMES[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        assert (op.inputs, op.outputs) == (ref.InputsAsNumpy().tolist(), ref.OutputsAsNumpy().tolist())
        o = op.options
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            r = _options(ref, tflite.Conv2DOptions if op.kind == "CONV_2D" else tflite.DepthwiseConv2DOptions)
            assert (o["stride_h"], o["stride_w"]) == (r.StrideH(), r.StrideW())
            assert (o["dilation_h"], o["dilation_w"]) == (r.DilationHFactor(), r.DilationWFactor())
            assert o["padding"] == ("SAME", "VALID")[r.Padding()]
            assert o["activation"] == ("NONE", "RELU", "RELU_N1_TO_1", "RELU6")[r.FusedActivationFunction()]
        if op.kind == "AVERAGE_POOL_2D":
            r = _options(ref, tflite.Pool2DOptions)
            assert (o["filter_h"], o["filter_w"], o["stride_h"]) == (
                r.FilterHeight(),
                r.FilterWidth(),
                r.StrideH(),
            )
        if op.kind == "SOFTMAX":
            assert o["beta"] == _options(ref, tflite.SoftmaxOptions).Beta()


def test_shared_models_have_a_dynamic_batch_only() -> None:
    """They carry shape_signature [-1, ...]: accepted as batch 1; any other -1 is refused."""
    m = tflite.Model.GetRootAsModel(_shared("vww_96_int8.tflite"), 0)
    sig = m.Subgraphs(0).Tensors(0).ShapeSignatureAsNumpy().tolist()
    assert sig == [-1, 96, 96, 3]


def test_shared_model_mutations() -> None:
    """A converter-written file (shared vtables, metadata, 16-byte aligned buffers) mutated."""
    mutator = Mutator(_shared("pretrainedResnet_quant.tflite"))
    outcome = collections.Counter()
    for seed in range(300):
        data, desc = mutator.mutate(seed)
        try:
            check_graph(import_tflite(data))
            outcome["ok"] += 1
        except ModelError:
            outcome["error"] += 1
        except Exception as e:
            raise AssertionError(f"Mutator(resnet).mutate({seed}) ({desc}): {type(e).__name__}: {e}") from e
    assert outcome["error"] > 100, outcome


# ------------------------------------------------------------------------------------------
# 3. Models the engine cannot run: clear errors naming the operator or tensor


def tiny(
    codes: list[RawCode] | None = None,
    ops: list[RawOp] | None = None,
    tensors: list[RawTensor] | None = None,
    buffers: list[RawBuffer] | None = None,
    subgraphs: int = 1,
    outputs: list[int] | None = None,
    version: int = 3,
) -> RawModel:
    """in [1,4] int8 -> SOFTMAX -> probs, unless told otherwise."""
    if tensors is None:
        tensors = [
            RawTensor("in", [1, 4], scale=[0.1], zero_point=[3]),
            RawTensor("probs", [1, 4], scale=[1 / 256], zero_point=[-128]),
        ]
    codes = codes if codes is not None else [RawCode(BO.SOFTMAX, BO.SOFTMAX)]
    ops = ops if ops is not None else [RawOp(0, [0], [1])]
    outs = outputs if outputs is not None else [len(tensors) - 1]
    sgs = [RawSubgraph(tensors, ops, [0], outs, name=f"sg{k}") for k in range(subgraphs)]
    return RawModel(codes, sgs, buffers if buffers is not None else [RawBuffer()], version=version)


def test_raw_writer_makes_importable_models() -> None:
    g = import_tflite(write_raw(tiny()))
    assert [op.kind for op in g.ops] == ["SOFTMAX"] and g.ops[0].options == {"beta": 0.0}
    assert g.tensor(0).quant.zero_point.tolist() == [3]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (RawCode(builtin=None, deprecated=BO.SOFTMAX), "SOFTMAX"),  # files from before builtin_code
        (RawCode(builtin=BO.SOFTMAX, deprecated=None), "SOFTMAX"),
        (RawCode(builtin=BO.SOFTMAX, deprecated=BO.SOFTMAX), "SOFTMAX"),
        (RawCode(builtin=0, deprecated=BO.SOFTMAX), "SOFTMAX"),  # old writer, newer reader's default
        (RawCode(builtin=BO.GELU, deprecated=127), "GELU"),  # code > 127: deprecated holds the placeholder
        (RawCode(builtin=BO.CUMSUM, deprecated=None), "CUMSUM"),
    ],
)
def test_operator_code_fields(code: RawCode, kind: str) -> None:
    data = write_raw(tiny(codes=[code]))
    if kind == "SOFTMAX":
        assert import_tflite(data).ops[0].kind == "SOFTMAX"
    else:
        assert f"operator #0 ({kind}): inputs" in import_error(data)


def test_unsupported_op_is_named_with_index_and_output() -> None:
    tensors = [
        RawTensor("in", [1, 4], scale=[0.1]),
        RawTensor("mid", [1, 4], scale=[0.1]),
        RawTensor("sqdiff_out", [1, 4], scale=[0.1]),
    ]
    codes = [RawCode(BO.SOFTMAX, BO.SOFTMAX), RawCode(BO.SQUARED_DIFFERENCE, BO.SQUARED_DIFFERENCE)]
    ops = [RawOp(0, [0], [1]), RawOp(1, [1, 1], [2])]
    msg = import_error(write_raw(tiny(codes, ops, tensors)))
    assert msg.startswith("m.tflite: 1 operator of the model has no forward kernel here")
    assert (
        "operator #1 (SQUARED_DIFFERENCE): inputs tensor #1 'mid', tensor #1 'mid'; outputs tensor #2" in msg
    )
    assert "Supported operators: CONV_2D, DEPTHWISE_CONV_2D" in msg and "malformed" not in msg
    assert "operators before #1 are all supported: the model cut there (output tensor #1 'mid')" in msg


def test_every_unsupported_op_is_named_in_one_message() -> None:
    """Three unsupported operators (one custom) among supported ones: one error names each
    with its index, inputs and outputs, says the forward kernel is missing, and what works."""
    tensors = [RawTensor(name, [1, 4], scale=[0.1]) for name in ("in", "a", "b", "c", "d", "e")]
    codes = [
        RawCode(BO.SOFTMAX, BO.SOFTMAX),
        RawCode(BO.SQUARED_DIFFERENCE, BO.SQUARED_DIFFERENCE),
        RawCode(BO.GELU, 127),
        RawCode(BO.CUSTOM, BO.CUSTOM, custom="MyPostProcess"),
    ]
    ops = [
        RawOp(0, [0], [1]),
        RawOp(1, [1, 0], [2]),
        RawOp(0, [2], [3]),
        RawOp(2, [3], [4]),
        RawOp(3, [4], [5]),
    ]
    msg = import_error(write_raw(tiny(codes, ops, tensors, outputs=[5])))
    assert msg.count("\n") >= 4, msg
    assert "3 operators of the model have no forward kernel here (the forward kernel is missing" in msg
    assert (
        "operator #1 (SQUARED_DIFFERENCE): inputs tensor #1 'a', tensor #0 'in'; outputs tensor #2 'b'" in msg
    )
    assert "operator #3 (GELU): inputs tensor #3 'c'; outputs tensor #4 'd'" in msg
    assert (
        "operator #4 is the custom operator 'MyPostProcess': inputs tensor #4 'd'; outputs tensor #5 'e'"
        in msg
    )
    assert "operator #0 " not in msg and "operator #2 " not in msg  # the supported ones are not named
    assert "re-convert the model with builtin int8 operators only" in msg
    assert "operators before #1 are all supported: the model cut there (output tensor #1 'a')" in msg


def test_custom_op_is_named() -> None:
    codes = [RawCode(BO.CUSTOM, BO.CUSTOM, custom="TFLite_Detection_PostProcess")]
    msg = import_error(write_raw(tiny(codes=codes)))
    assert "operator #0 is the custom operator 'TFLite_Detection_PostProcess'" in msg
    assert "'probs'" in msg


@pytest.mark.parametrize("type_", [TT.FLOAT16, TT.BOOL, TT.STRING, TT.INT4, TT.FLOAT64, 99])
def test_unsupported_tensor_type(type_: int) -> None:
    tensors = [RawTensor("in", [1, 4], scale=[0.1]), RawTensor("odd", [1, 4], type=type_)]
    msg = import_error(write_raw(tiny(tensors=tensors)))
    name = {v: k for k, v in vars(TT).items() if not k.startswith("_")}.get(type_, f"unknown type {type_}")
    assert f"tensor #1 'odd' has type {name}, which is not supported" in msg


@pytest.mark.parametrize("sig", [[1, -1], [-1, -1], [-1]])
def test_dynamic_shape(sig: list[int]) -> None:
    shape = [4] if len(sig) == 1 else [1, 4]
    tensors = [RawTensor("in", shape, scale=[0.1], shape_signature=sig), RawTensor("out", shape, scale=[0.1])]
    msg = import_error(write_raw(tiny(tensors=tensors)))
    assert f"tensor #0 'in' has a dynamic shape {sig}" in msg


def test_dynamic_batch_is_accepted() -> None:
    tensors = [RawTensor("in", [1, 4], scale=[0.1], shape_signature=[-1, 4]), RawTensor("out", [1, 4])]
    assert import_tflite(write_raw(tiny(tensors=tensors))).tensor(0).shape == (1, 4)


@pytest.mark.parametrize("n", [0, 2, 3])
def test_subgraph_count(n: int) -> None:
    msg = import_error(write_raw(tiny(subgraphs=n)))
    assert f"the model has {n} subgraphs; only single-subgraph models are supported" in msg


def test_unsupported_fused_activation() -> None:
    tensors = [
        RawTensor("in", [1, 4, 4, 1], scale=[0.1]),
        RawTensor("w", [1, 1, 1, 1], buffer=1, scale=[0.1]),
        RawTensor("out", [1, 4, 4, 1], scale=[0.1]),
    ]
    ops = [RawOp(0, [0, 1, -1], [2], BOpt.Conv2DOptions, conv_options(activation=4))]  # TANH
    model = tiny([RawCode(BO.CONV_2D, BO.CONV_2D)], ops, tensors, [RawBuffer(), RawBuffer(b"\x01")])
    msg = import_error(write_raw(model))
    assert "operator #0 (CONV_2D): fused activation TANH is not supported" in msg


# Inconsistent files: each must name what is wrong and where.
def _conv() -> RawModel:
    """in [1,4,4,2] -> CONV_2D (per-channel int8 weights from buffer 1, int32 bias from 2) -> out."""
    tensors = [
        RawTensor("in", [1, 4, 4, 2], scale=[0.1]),
        RawTensor("w", [3, 1, 1, 2], buffer=1, scale=[0.1, 0.2, 0.3], zero_point=[0, 0, 0]),
        RawTensor("b", [3], type=TT.INT32, buffer=2, scale=[0.01, 0.02, 0.03], zero_point=[0, 0, 0]),
        RawTensor("out", [1, 4, 4, 3], scale=[0.5], zero_point=[-128]),
    ]
    buffers = [RawBuffer(), RawBuffer(bytes(range(6))), RawBuffer(np.arange(3, dtype="<i4").tobytes())]
    ops = [RawOp(0, [0, 1, 2], [3], BOpt.Conv2DOptions, conv_options())]
    return tiny([RawCode(BO.CONV_2D, BO.CONV_2D)], ops, tensors, buffers)


def test_conv_fixture_imports() -> None:
    g = import_tflite(write_raw(_conv()))
    assert g.tensor(1).data.tolist() == np.arange(6).reshape(3, 1, 1, 2).tolist()
    assert g.tensor(2).data.dtype == np.int32 and g.tensor(1).quant.per_channel


def _edit(fn) -> RawModel:
    m = _conv()
    fn(m)
    return m


INCONSISTENT = {
    "buffer index": (
        lambda m: setattr(m.subgraphs[0].tensors[1], "buffer", 99),
        "tensor #1 'w': refers to buffer 99, the model has 3",
    ),
    "input index": (
        lambda m: setattr(m.subgraphs[0].ops[0], "inputs", [0, 7, 2]),
        "operator #0 (CONV_2D): input 1 refers to tensor 7, the model has 4",
    ),
    "output index": (
        lambda m: setattr(m.subgraphs[0].ops[0], "outputs", [-1]),
        "operator #0 (CONV_2D): output 0 refers to tensor -1, the model has 4",
    ),
    "opcode index": (
        lambda m: setattr(m.subgraphs[0].ops[0], "opcode_index", 5),
        "operator #0: uses operator code 5, the model has 1",
    ),
    "model output": (
        lambda m: setattr(m.subgraphs[0], "outputs", [12]),
        "subgraph 0: outputs refer to tensor 12, the model has 4",
    ),
    "buffer size": (
        lambda m: setattr(m.buffers[1], "data", bytes(5)),
        "tensor #1 'w': shape [3, 1, 1, 2] x int8 needs 6 bytes, but buffer 1 holds 5",
    ),
    "zero point count": (
        lambda m: setattr(m.subgraphs[0].tensors[2], "zero_point", [0, 0]),
        "tensor #2 'b': quantization has 3 scales but 2 zero points",
    ),
    "zero point range": (
        lambda m: setattr(m.subgraphs[0].tensors[0], "zero_point", [200]),
        "tensor #0 'in': zero point 200 is out of range for int8",
    ),
    "arity": (
        lambda m: setattr(m.subgraphs[0].ops[0], "inputs", [0]),
        "operator #0 (CONV_2D): has 1 inputs, CONV_2D takes 2 or 3",
    ),
    "missing weights": (
        lambda m: setattr(m.subgraphs[0].ops[0], "inputs", [0, -1, 2]),
        "operator #0 (CONV_2D): input 1 is missing (-1), and CONV_2D needs it",
    ),
    "options type": (
        lambda m: setattr(m.subgraphs[0].ops[0], "options_type", BOpt.Pool2DOptions),
        "operator #0 (CONV_2D): carries Pool2DOptions, CONV_2D takes Conv2DOptions",
    ),
    "stride": (
        lambda m: setattr(m.subgraphs[0].ops[0], "options", conv_options(stride=0)),
        "operator #0 (CONV_2D): stride_w is 0, it must be at least 1",
    ),
    "padding": (
        lambda m: setattr(m.subgraphs[0].ops[0], "options", conv_options(padding=7)),
        "operator #0 (CONV_2D): padding code 7 is neither SAME (0) nor VALID (1)",
    ),
    "order": (
        lambda m: setattr(m.subgraphs[0], "inputs", [3]),
        "operator #0 (CONV_2D) reads tensor #0 'in', which is not a model input",
    ),
    "version": (lambda m: setattr(m, "version", 2), "TFLite schema version 2 is not supported (expected 3)"),
    "external buffer": (
        lambda m: setattr(m, "buffers", [*m.buffers[:1], RawBuffer(offset=10**6, size=6), m.buffers[2]]),
        "tensor #1 'w': buffer #1 holds 6 bytes at file offset 1000000, past the end of the file",
    ),
}


@pytest.mark.parametrize("case", sorted(INCONSISTENT))
def test_inconsistent_model(case: str) -> None:
    edit, expected = INCONSISTENT[case]
    msg = import_error(write_raw(_edit(edit)))
    assert expected in msg, msg
    if case != "version":
        assert "malformed or truncated .tflite file" in msg


# Per-channel layouts: TFLite Micro's rule, not LiteRT's. TFLM does not check a tensor's
# quantized_dimension or channel count when it loads a model; the kernels that read scales per
# channel (the filters) do. person_detect.tflite has per-channel biases along dimension 3 of
# 1-D tensors: LiteRT refuses it, TFLM runs it (tests/test_movement_models.py runs one).
PER_CHANNEL_LAYOUTS = {
    "bias along a dimension past its rank": (
        lambda m: setattr(m.subgraphs[0].tensors[2], "axis", 3),
        None,
    ),
    "bias with fewer scales than channels": (
        lambda m: m.subgraphs[0].tensors[2].__dict__.update(scale=[0.01, 0.02], zero_point=[0, 0]),
        None,
    ),
    "filter with fewer scales than channels": (
        lambda m: m.subgraphs[0].tensors[1].__dict__.update(scale=[0.1, 0.2], zero_point=[0, 0]),
        "operator #0 (CONV_2D): filter 'w' has 2 scales for 3 channels",
    ),
    "filter along a dimension past its rank": (
        lambda m: setattr(m.subgraphs[0].tensors[1], "axis", 4),
        "operator #0 (CONV_2D): filter 'w' of shape [3, 1, 1, 2] is quantized along dimension 4; "
        "its 3 channels are dimension 0",
    ),
    "filter along another dimension": (
        lambda m: setattr(m.subgraphs[0].tensors[1], "axis", 3),
        "operator #0 (CONV_2D): filter 'w' of shape [3, 1, 1, 2] is quantized along dimension 3",
    ),
}


@pytest.mark.parametrize("case", sorted(PER_CHANNEL_LAYOUTS))
def test_per_channel_layouts_follow_tflite_micro(case: str) -> None:
    """Imported as TFLM loads them; refused, naming the operator, where TFLM's kernel refuses."""
    edit, refusal = PER_CHANNEL_LAYOUTS[case]
    g = import_tflite(write_raw(_edit(edit)), "m")
    check_graph(g)
    if refusal is None:
        lower(g, g.ops[0])
    else:
        with pytest.raises(ModelError) as e:
            lower(g, g.ops[0])
        assert refusal in str(e.value), str(e.value)


def test_reshape_checks_new_shape() -> None:
    tensors = [RawTensor("in", [1, 2, 3]), RawTensor("out", [1, 6])]
    for spec, ok in (([1, 6], True), ([-1, 6], True), ([], True), ([2, 3], False), ([-1, -1], False)):
        ops = [RawOp(0, [0], [1], BOpt.ReshapeOptions, reshape_options(spec))]
        data = write_raw(tiny([RawCode(BO.RESHAPE, BO.RESHAPE)], ops, tensors))
        if ok:
            assert import_tflite(data).ops[0].options == {"new_shape": [1, 6]}
        else:
            assert f"new shape {spec} does not match the output shape [1, 6]" in import_error(data)
    tensors[1].shape = [1, 7]
    ops = [RawOp(0, [0], [1], BOpt.ReshapeOptions, reshape_options([1, 7]))]
    msg = import_error(write_raw(tiny([RawCode(BO.RESHAPE, BO.RESHAPE)], ops, tensors)))
    assert "reshapes [1, 2, 3] (6 elements) to [1, 7] (7 elements)" in msg


def test_depth_multiplier_inferred_when_absent() -> None:
    """Newer converters leave DepthwiseConv2DOptions.depth_multiplier at 0; TFLite infers it."""
    tensors = [
        RawTensor("in", [1, 4, 4, 2], scale=[0.1]),
        RawTensor("w", [1, 1, 1, 4], buffer=1, scale=[0.1]),
        RawTensor("out", [1, 4, 4, 4], scale=[0.1]),
    ]
    opts = options_table({1: ("i32", 1), 2: ("i32", 1), 4: ("i8", 3)})  # strides 1, RELU6, no multiplier
    ops = [RawOp(0, [0, 1], [2], BOpt.DepthwiseConv2DOptions, opts)]
    model = tiny(
        [RawCode(BO.DEPTHWISE_CONV_2D, BO.DEPTHWISE_CONV_2D)],
        ops,
        tensors,
        [RawBuffer(), RawBuffer(bytes(4))],
    )
    o = import_tflite(write_raw(model)).ops[0].options
    assert (o["depth_multiplier"], o["activation"], o["padding"], o["dilation_h"]) == (2, "RELU6", "SAME", 1)


def test_mean_axes_must_be_constant() -> None:
    tensors = [RawTensor("in", [1, 4, 4, 2]), RawTensor("axes", [2], type=TT.INT32), RawTensor("out", [1, 2])]
    ops = [RawOp(0, [0, 1], [2], BOpt.ReducerOptions, options_table({}))]
    model = tiny([RawCode(BO.MEAN, BO.MEAN)], ops, tensors)
    model.subgraphs[0].inputs = [0, 1]
    msg = import_error(write_raw(model))
    assert "operator #0 (MEAN): the axes (tensor #1 'axes') must be a constant tensor" in msg


def _external(size_delta: int = 0) -> bytes:
    """_conv() with the weights stored after the flatbuffer, as models over 2 GB are."""
    weights = bytes(range(6))

    def make(offset: int) -> bytes:
        m = _conv()
        m.buffers[1] = RawBuffer(offset=offset, size=len(weights) + size_delta)
        return write_raw(m)

    probe = make(1 << 40)  # same length whatever the offset: the field is a u64
    start = (len(probe) + 15) // 16 * 16
    data = make(start)
    assert len(data) == len(probe)
    return data + bytes(start - len(data)) + weights


def test_external_buffers() -> None:
    g = import_tflite(_external())
    assert g.tensor(1).data.reshape(-1).tolist() == list(range(6))
    msg = import_error(_external(size_delta=1))
    assert "buffer #1 holds 7 bytes at file offset" in msg and "past the end of the file" in msg


def test_string_without_terminator() -> None:
    data = write_raw(tiny())
    k = data.index(b"probs\x00")
    msg = import_error(data[: k + 5] + b"X" + data[k + 6 :])
    assert "tensor #1: name: string of 5 bytes at byte" in msg and "is not NUL-terminated" in msg


def test_load_missing_file(tmp_path) -> None:
    with pytest.raises(ModelError, match="cannot read the model"):
        load_tflite(tmp_path / "nope.tflite")


# ------------------------------------------------------------------------------------------
# 4. Malformed input


@pytest.fixture(scope="module")
def small_model() -> bytes:
    """Every supported op in a few KB; small weights so they look less like offsets."""
    data = write_tflite(graph_all_ops(weight_lim=3))
    assert 2000 < len(data) < 8000
    return data


def test_not_tflite(small_model: bytes) -> None:
    assert "not a TFLite model: 0 bytes is too short" in import_error(b"")
    assert "not a TFLite model" in import_error(b"TFL3")
    assert "not a TFLite model" in import_error(b"\x00\x00\x00\x00TFL")
    wrong = small_model[:4] + b"TFL2" + small_model[8:]
    assert "file identifier is b'TFL2', expected b'TFL3'" in import_error(wrong)
    assert "not a TFLite model" in import_error(b"PK\x03\x04" + bytes(100))  # a zip, e.g. a Keras file
    rng = random.Random(1)
    for k in range(300):
        blob = bytearray(rng.randbytes(rng.choice([8, 9, 16, 64, 1000, 5000])))
        if k % 2:
            blob[4:8] = b"TFL3"  # looks like one, is not
        msg = import_error(bytes(blob))
        assert structural(msg) or "subgraphs" in msg or "schema version" in msg, (k, msg)


def test_every_truncation(small_model: bytes) -> None:
    for n in range(len(small_model)):
        msg = import_error(small_model[:n])
        assert structural(msg), (n, msg)


def test_byte_mutations(small_model: bytes) -> None:
    """Every byte inverted, every aligned word set to 0xFFFFFFFF and to 0: a valid graph or ModelError."""
    n = len(small_model)
    cases = [(p, bytes([small_model[p] ^ 0xFF])) for p in range(n)]
    cases += [(p, w) for p in range(0, n - 3, 4) for w in (b"\xff\xff\xff\xff", bytes(4))]
    outcome = collections.Counter()
    for p, patch in cases:
        data = small_model[:p] + patch + small_model[p + len(patch) :]
        try:
            check_graph(import_tflite(data, "m.tflite"))
            outcome["ok"] += 1
        except ModelError as e:
            assert str(e).startswith("m.tflite: "), (p, patch, str(e))
            outcome["structural" if structural(str(e)) else "semantic"] += 1
    assert outcome["structural"] > n // 2, outcome  # the mutations do reach the structure


def test_huge_lengths_are_rejected_before_allocation(small_model: bytes) -> None:
    """A garbage vector length or offset must cost no memory: bounds checks come first."""
    offsets, lengths, _ = offset_like_fields(small_model)
    assert len(offsets) > 50 and len(lengths) > 50
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        cases = [(p, v) for p in lengths for v in (0xFFFFFFFF, 0x3FFFFFFF)]
        for p, v in cases + [(p, 0xFFFFFFF0) for p in offsets]:
            data = bytearray(small_model)
            struct.pack_into("<I", data, p, v)
            try:
                import_tflite(bytes(data))
            except ModelError:
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 4 * 2**20, f"peak {peak - base} bytes"


# ------------------------------------------------------------------------------------------
# 5. Fuzz

FUZZ_SEED = 20240601
FUZZ_CASES = 10_000
PER_FILE_LIMIT_S = 1.0


def test_fuzz(small_model: bytes) -> None:
    """Seeded random mutations: each file imports to a valid graph or raises ModelError.

    To reproduce case k: Mutator(write_tflite(graph_all_ops(weight_lim=3))).mutate(FUZZ_SEED + k).
    """
    mutator = Mutator(small_model)
    state = {"case": None, "done": 0}
    failures: list[str] = []
    outcome: collections.Counter[str] = collections.Counter()
    slowest = [0.0, ""]

    def run() -> None:
        for k in range(FUZZ_CASES):
            seed = FUZZ_SEED + k
            data, desc = mutator.mutate(seed)
            state["case"] = f"seed {seed} ({desc})"
            t0 = time.perf_counter()
            try:
                check_graph(import_tflite(data, "fuzz"))
                outcome["ok"] += 1
            except ModelError:
                outcome["error"] += 1
            except Exception as e:  # any other exception is a bug in the importer
                failures.append(f"seed {seed} ({desc}): {type(e).__name__}: {e}")
            dt = time.perf_counter() - t0
            if dt > slowest[0]:
                slowest[:] = [dt, f"seed {seed} ({desc})"]
            if dt > PER_FILE_LIMIT_S:
                failures.append(f"seed {seed} ({desc}): took {dt:.2f} s")
            state["done"] += 1

    t0 = time.perf_counter()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=120)
    elapsed = time.perf_counter() - t0
    assert not worker.is_alive(), f"hang: stuck for 120 s at {state['case']} after {state['done']} files"
    assert not failures, "reproduce with Mutator(small_model).mutate(seed):\n" + "\n".join(failures[:20])
    assert state["done"] == FUZZ_CASES
    assert outcome["error"] > FUZZ_CASES // 2, outcome  # the mutations are not all harmless
    print(f"fuzz: {FUZZ_CASES} files in {elapsed:.1f} s ({FUZZ_CASES / elapsed:.0f}/s), {dict(outcome)}")
    print(f"fuzz: slowest {slowest[0] * 1e3:.1f} ms: {slowest[1]}")
