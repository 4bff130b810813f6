"""Writes an IR Graph as a .tflite flatbuffer (TFLite schema v3), without TensorFlow.

Used to make exact test models (any shape, zero point and scale) for the TFLite
interpreter, the oracle the kernels are checked against.
"""

from __future__ import annotations

import importlib
from typing import Any

import flatbuffers
import numpy as np
import tflite
from tflite import BuiltinOperator as BO
from tflite import BuiltinOptions as BOpt

from pytools.model.ir import Graph, ModelError, Op, Tensor


def _mod(name: str) -> Any:
    """The generated module tflite.<name> (the package rebinds each name to its class)."""
    return importlib.import_module(f"tflite.{name}")


_DTYPES = {
    "float32": tflite.TensorType.FLOAT32,
    "int32": tflite.TensorType.INT32,
    "uint8": tflite.TensorType.UINT8,
    "int64": tflite.TensorType.INT64,
    "int16": tflite.TensorType.INT16,
    "int8": tflite.TensorType.INT8,
}
_PADDING = {"SAME": tflite.Padding.SAME, "VALID": tflite.Padding.VALID}
_ACT = {
    "NONE": tflite.ActivationFunctionType.NONE,
    "RELU": tflite.ActivationFunctionType.RELU,
    "RELU6": tflite.ActivationFunctionType.RELU6,
    "RELU_N1_TO_1": tflite.ActivationFunctionType.RELU_N1_TO_1,
}
# Operator versions as TFLite's converter writes them for int8 models.
_VERSIONS = {
    "CONV_2D": 3,
    "DEPTHWISE_CONV_2D": 3,
    "FULLY_CONNECTED": 4,
    "ADD": 2,
    "AVERAGE_POOL_2D": 2,
    "MAX_POOL_2D": 2,
    "MEAN": 2,
    "PAD": 2,
    "RESHAPE": 1,
    "SOFTMAX": 2,
    "QUANTIZE": 1,
    "DEQUANTIZE": 2,
    # Shape and movement operators (issue 12): the versions of their int8 kernels.
    "TRANSPOSE": 2,
    "CONCATENATION": 2,
    "STRIDED_SLICE": 2,
    "SLICE": 2,
    "SQUEEZE": 1,
    "EXPAND_DIMS": 1,
    "RESIZE_NEAREST_NEIGHBOR": 3,
    "DEPTH_TO_SPACE": 1,
    "SPACE_TO_DEPTH": 2,
    # Elementwise and activation operators (issue 12).
    "MUL": 2,
    "SUB": 2,
    "LOGISTIC": 2,
    "TANH": 2,
    "HARD_SWISH": 1,
    "RELU": 2,
    "RELU6": 2,
    "RELU_N1_TO_1": 1,
    "LEAKY_RELU": 2,
    "MAXIMUM": 2,
    "MINIMUM": 2,
}
# Elementwise and activation operators (issue 12) whose options table is empty.
_EMPTY_OPTIONS = {
    "HARD_SWISH": "HardSwishOptions",
    "MAXIMUM": "MaximumMinimumOptions",
    "MINIMUM": "MaximumMinimumOptions",
}


def _vec(b: flatbuffers.Builder, start: Any, items: list[int], kind: str) -> int:
    start(b, len(items))
    prepend = {"i32": b.PrependInt32, "i64": b.PrependInt64, "f32": b.PrependFloat32, "u8": b.PrependUint8}[
        kind
    ]
    for x in reversed(items):
        prepend(x)
    return b.EndVector()


def _offsets(b: flatbuffers.Builder, start: Any, offs: list[int]) -> int:
    start(b, len(offs))
    for o in reversed(offs):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _options(b: flatbuffers.Builder, op: Op) -> tuple[int, int]:
    """(BuiltinOptions type, table offset) for op."""
    o = op.options
    act = _ACT[o.get("activation", "NONE")]
    k = op.kind
    if k == "CONV_2D":
        m = _mod("Conv2DOptions")
        m.Conv2DOptionsStart(b)
        m.Conv2DOptionsAddPadding(b, _PADDING[o["padding"]])
        m.Conv2DOptionsAddStrideW(b, o["stride_w"])
        m.Conv2DOptionsAddStrideH(b, o["stride_h"])
        m.Conv2DOptionsAddDilationWFactor(b, o.get("dilation_w", 1))
        m.Conv2DOptionsAddDilationHFactor(b, o.get("dilation_h", 1))
        m.Conv2DOptionsAddFusedActivationFunction(b, act)
        return BOpt.Conv2DOptions, m.Conv2DOptionsEnd(b)
    if k == "DEPTHWISE_CONV_2D":
        m = _mod("DepthwiseConv2DOptions")
        m.DepthwiseConv2DOptionsStart(b)
        m.DepthwiseConv2DOptionsAddPadding(b, _PADDING[o["padding"]])
        m.DepthwiseConv2DOptionsAddStrideW(b, o["stride_w"])
        m.DepthwiseConv2DOptionsAddStrideH(b, o["stride_h"])
        m.DepthwiseConv2DOptionsAddDepthMultiplier(b, o.get("depth_multiplier", 1))
        m.DepthwiseConv2DOptionsAddDilationWFactor(b, o.get("dilation_w", 1))
        m.DepthwiseConv2DOptionsAddDilationHFactor(b, o.get("dilation_h", 1))
        m.DepthwiseConv2DOptionsAddFusedActivationFunction(b, act)
        return BOpt.DepthwiseConv2DOptions, m.DepthwiseConv2DOptionsEnd(b)
    if k == "FULLY_CONNECTED":
        m = _mod("FullyConnectedOptions")
        m.FullyConnectedOptionsStart(b)
        m.FullyConnectedOptionsAddFusedActivationFunction(b, act)
        m.FullyConnectedOptionsAddKeepNumDims(b, bool(o.get("keep_num_dims", False)))
        return BOpt.FullyConnectedOptions, m.FullyConnectedOptionsEnd(b)
    if k == "ADD":
        m = _mod("AddOptions")
        m.AddOptionsStart(b)
        m.AddOptionsAddFusedActivationFunction(b, act)
        return BOpt.AddOptions, m.AddOptionsEnd(b)
    if k in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        m = _mod("Pool2DOptions")
        m.Pool2DOptionsStart(b)
        m.Pool2DOptionsAddPadding(b, _PADDING[o["padding"]])
        m.Pool2DOptionsAddStrideW(b, o["stride_w"])
        m.Pool2DOptionsAddStrideH(b, o["stride_h"])
        m.Pool2DOptionsAddFilterWidth(b, o["filter_w"])
        m.Pool2DOptionsAddFilterHeight(b, o["filter_h"])
        m.Pool2DOptionsAddFusedActivationFunction(b, act)
        return BOpt.Pool2DOptions, m.Pool2DOptionsEnd(b)
    if k == "MEAN":
        m = _mod("ReducerOptions")
        m.ReducerOptionsStart(b)
        m.ReducerOptionsAddKeepDims(b, bool(o.get("keep_dims", False)))
        return BOpt.ReducerOptions, m.ReducerOptionsEnd(b)
    if k == "SOFTMAX":
        m = _mod("SoftmaxOptions")
        m.SoftmaxOptionsStart(b)
        m.SoftmaxOptionsAddBeta(b, float(o.get("beta", 1.0)))
        return BOpt.SoftmaxOptions, m.SoftmaxOptionsEnd(b)
    if k == "RESHAPE":
        m = _mod("ReshapeOptions")
        new_shape = _vec(b, m.ReshapeOptionsStartNewShapeVector, list(o["new_shape"]), "i32")
        m.ReshapeOptionsStart(b)
        m.ReshapeOptionsAddNewShape(b, new_shape)
        return BOpt.ReshapeOptions, m.ReshapeOptionsEnd(b)
    if k == "PAD":
        _mod("PadOptions").PadOptionsStart(b)
        return BOpt.PadOptions, _mod("PadOptions").PadOptionsEnd(b)
    if k == "QUANTIZE":
        _mod("QuantizeOptions").QuantizeOptionsStart(b)
        return BOpt.QuantizeOptions, _mod("QuantizeOptions").QuantizeOptionsEnd(b)
    if k == "DEQUANTIZE":
        _mod("DequantizeOptions").DequantizeOptionsStart(b)
        return BOpt.DequantizeOptions, _mod("DequantizeOptions").DequantizeOptionsEnd(b)
    moved = _movement_options(b, op)
    if moved is not None:
        return moved
    # Elementwise and activation operators (issue 12).
    if k in ("MUL", "SUB"):
        m = _mod(f"{k.title()}Options")
        getattr(m, f"{k.title()}OptionsStart")(b)
        getattr(m, f"{k.title()}OptionsAddFusedActivationFunction")(b, act)
        return getattr(BOpt, f"{k.title()}Options"), getattr(m, f"{k.title()}OptionsEnd")(b)
    if k == "LEAKY_RELU":
        m = _mod("LeakyReluOptions")
        m.LeakyReluOptionsStart(b)
        m.LeakyReluOptionsAddAlpha(b, float(o["alpha"]))
        return BOpt.LeakyReluOptions, m.LeakyReluOptionsEnd(b)
    if k in _EMPTY_OPTIONS:
        name = _EMPTY_OPTIONS[k]
        getattr(_mod(name), f"{name}Start")(b)
        return getattr(BOpt, name), getattr(_mod(name), f"{name}End")(b)
    if k in ("LOGISTIC", "TANH", "RELU", "RELU6", "RELU_N1_TO_1"):
        return BOpt.NONE, 0
    raise ModelError(f"{op.where()}: cannot write {k} to .tflite")


def _movement_options(b: flatbuffers.Builder, op: Op) -> tuple[int, int] | None:
    """The options of the shape and movement operators (issue 12), or None for another op."""
    o, k = op.options, op.kind
    if k in ("TRANSPOSE", "SLICE", "EXPAND_DIMS"):
        name = {"TRANSPOSE": "TransposeOptions", "SLICE": "SliceOptions", "EXPAND_DIMS": "ExpandDimsOptions"}[
            k
        ]
        getattr(_mod(name), f"{name}Start")(b)
        return getattr(BOpt, name), getattr(_mod(name), f"{name}End")(b)
    if k == "CONCATENATION":
        m = _mod("ConcatenationOptions")
        m.ConcatenationOptionsStart(b)
        m.ConcatenationOptionsAddAxis(b, int(o["axis"]))
        m.ConcatenationOptionsAddFusedActivationFunction(b, _ACT[o.get("activation", "NONE")])
        return BOpt.ConcatenationOptions, m.ConcatenationOptionsEnd(b)
    if k == "STRIDED_SLICE":
        m = _mod("StridedSliceOptions")
        m.StridedSliceOptionsStart(b)
        m.StridedSliceOptionsAddBeginMask(b, int(o.get("begin_mask", 0)))
        m.StridedSliceOptionsAddEndMask(b, int(o.get("end_mask", 0)))
        m.StridedSliceOptionsAddEllipsisMask(b, int(o.get("ellipsis_mask", 0)))
        m.StridedSliceOptionsAddNewAxisMask(b, int(o.get("new_axis_mask", 0)))
        m.StridedSliceOptionsAddShrinkAxisMask(b, int(o.get("shrink_axis_mask", 0)))
        m.StridedSliceOptionsAddOffset(b, bool(o.get("offset", False)))
        return BOpt.StridedSliceOptions, m.StridedSliceOptionsEnd(b)
    if k == "SQUEEZE":
        m = _mod("SqueezeOptions")
        dims = _vec(b, m.SqueezeOptionsStartSqueezeDimsVector, list(o.get("squeeze_dims", [])), "i32")
        m.SqueezeOptionsStart(b)
        m.SqueezeOptionsAddSqueezeDims(b, dims)
        return BOpt.SqueezeOptions, m.SqueezeOptionsEnd(b)
    if k == "RESIZE_NEAREST_NEIGHBOR":
        m = _mod("ResizeNearestNeighborOptions")
        m.ResizeNearestNeighborOptionsStart(b)
        m.ResizeNearestNeighborOptionsAddAlignCorners(b, bool(o.get("align_corners", False)))
        m.ResizeNearestNeighborOptionsAddHalfPixelCenters(b, bool(o.get("half_pixel_centers", False)))
        return BOpt.ResizeNearestNeighborOptions, m.ResizeNearestNeighborOptionsEnd(b)
    if k in ("DEPTH_TO_SPACE", "SPACE_TO_DEPTH"):
        name = "DepthToSpaceOptions" if k == "DEPTH_TO_SPACE" else "SpaceToDepthOptions"
        m = _mod(name)
        getattr(m, f"{name}Start")(b)
        getattr(m, f"{name}AddBlockSize")(b, int(o["block_size"]))
        return getattr(BOpt, name), getattr(m, f"{name}End")(b)
    return None


def _quant(b: flatbuffers.Builder, t: Tensor) -> int | None:
    if t.quant is None:
        return None
    m = _mod("QuantizationParameters")
    scale = _vec(b, m.QuantizationParametersStartScaleVector, [float(x) for x in t.quant.scale], "f32")
    zp = _vec(b, m.QuantizationParametersStartZeroPointVector, [int(x) for x in t.quant.zero_point], "i64")
    m.QuantizationParametersStart(b)
    m.QuantizationParametersAddScale(b, scale)
    m.QuantizationParametersAddZeroPoint(b, zp)
    m.QuantizationParametersAddQuantizedDimension(b, t.quant.axis)
    return m.QuantizationParametersEnd(b)


def write_tflite(graph: Graph) -> bytes:
    b = flatbuffers.Builder(1024)

    # Buffers: 0 is the empty sentinel; constant tensors get one each.
    buffer_of: dict[int, int] = {}
    buffer_data: list[bytes] = [b""]
    for t in graph.tensors:
        if t.data is not None:
            buffer_of[t.index] = len(buffer_data)
            buffer_data.append(np.ascontiguousarray(t.data, dtype=t.dtype).tobytes())
    buffers = []
    for data in buffer_data:
        vec = None
        if data:
            b.StartVector(1, len(data), 16)  # 16-byte alignment, as the converter does
            b.head = b.head - len(data)
            b.Bytes[b.head : b.head + len(data)] = data
            vec = b.EndVector()
        _mod("Buffer").BufferStart(b)
        if vec is not None:
            _mod("Buffer").BufferAddData(b, vec)
        buffers.append(_mod("Buffer").BufferEnd(b))

    tensors = []
    for t in graph.tensors:
        name = b.CreateString(t.name or f"t{t.index}")
        shape = _vec(b, _mod("Tensor").TensorStartShapeVector, list(t.shape), "i32")
        q = _quant(b, t)
        _mod("Tensor").TensorStart(b)
        _mod("Tensor").TensorAddShape(b, shape)
        _mod("Tensor").TensorAddType(b, _DTYPES[t.dtype])
        _mod("Tensor").TensorAddBuffer(b, buffer_of.get(t.index, 0))
        _mod("Tensor").TensorAddName(b, name)
        if q is not None:
            _mod("Tensor").TensorAddQuantization(b, q)
        tensors.append(_mod("Tensor").TensorEnd(b))

    kinds = sorted({op.kind for op in graph.ops}, key=lambda k: getattr(BO, k))
    codes = []
    for k in kinds:
        c = getattr(BO, k)
        _mod("OperatorCode").OperatorCodeStart(b)
        _mod("OperatorCode").OperatorCodeAddDeprecatedBuiltinCode(b, min(c, 127))
        _mod("OperatorCode").OperatorCodeAddBuiltinCode(b, c)
        _mod("OperatorCode").OperatorCodeAddVersion(b, _VERSIONS.get(k, 1))
        codes.append(_mod("OperatorCode").OperatorCodeEnd(b))

    ops = []
    for op in graph.ops:
        ins = _vec(b, _mod("Operator").OperatorStartInputsVector, op.inputs, "i32")
        outs = _vec(b, _mod("Operator").OperatorStartOutputsVector, op.outputs, "i32")
        opt_type, opt = _options(b, op)
        _mod("Operator").OperatorStart(b)
        _mod("Operator").OperatorAddOpcodeIndex(b, kinds.index(op.kind))
        _mod("Operator").OperatorAddInputs(b, ins)
        _mod("Operator").OperatorAddOutputs(b, outs)
        _mod("Operator").OperatorAddBuiltinOptionsType(b, opt_type)
        if opt:
            _mod("Operator").OperatorAddBuiltinOptions(b, opt)
        ops.append(_mod("Operator").OperatorEnd(b))

    sg = _mod("SubGraph")
    t_vec = _offsets(b, sg.SubGraphStartTensorsVector, tensors)
    in_vec = _vec(b, sg.SubGraphStartInputsVector, graph.inputs, "i32")
    out_vec = _vec(b, sg.SubGraphStartOutputsVector, graph.outputs, "i32")
    op_vec = _offsets(b, sg.SubGraphStartOperatorsVector, ops)
    sg_name = b.CreateString(graph.name or "main")
    sg.SubGraphStart(b)
    sg.SubGraphAddTensors(b, t_vec)
    sg.SubGraphAddInputs(b, in_vec)
    sg.SubGraphAddOutputs(b, out_vec)
    sg.SubGraphAddOperators(b, op_vec)
    sg.SubGraphAddName(b, sg_name)
    subgraph = sg.SubGraphEnd(b)

    m = _mod("Model")
    codes_vec = _offsets(b, m.ModelStartOperatorCodesVector, codes)
    sgs_vec = _offsets(b, m.ModelStartSubgraphsVector, [subgraph])
    bufs_vec = _offsets(b, m.ModelStartBuffersVector, buffers)
    desc = b.CreateString(graph.description or "written by pytools.model.tflite_export")
    m.ModelStart(b)
    m.ModelAddVersion(b, 3)
    m.ModelAddOperatorCodes(b, codes_vec)
    m.ModelAddSubgraphs(b, sgs_vec)
    m.ModelAddDescription(b, desc)
    m.ModelAddBuffers(b, bufs_vec)
    b.Finish(m.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())
