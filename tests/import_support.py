"""Helpers for tests/test_import.py: IR test graphs, a raw .tflite writer that can write what
the exporter refuses to (any op code, type, shape signature, subgraph count, external
buffers), a graph comparer and validity check, and the seeded mutator of the fuzz test."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
from tflite.TensorType import TensorType

from pytools.model.ir import ACTIVATIONS, SUPPORTED_OPS, Graph, Op, Quant, Tensor

# ------------------------------------------------------------------------------------------
# IR graphs


def quant(scale: float | list[float], zero_point: int | list[int] = 0, axis: int = 0) -> Quant:
    s = np.atleast_1d(np.asarray(scale, dtype=np.float32))
    z = np.atleast_1d(np.asarray(zero_point, dtype=np.int64))
    if z.size == 1 and s.size > 1:
        z = np.full(s.size, z[0], dtype=np.int64)
    return Quant(s, z, axis)


class GraphMaker:
    def __init__(self, seed: int = 0) -> None:
        self.tensors: list[Tensor] = []
        self.ops: list[Op] = []
        self.rng = np.random.default_rng(seed)

    def t(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: str = "int8",
        q: Quant | None = None,
        data: object = None,
    ) -> int:
        arr = None if data is None else np.asarray(data, dtype=dtype).reshape(shape)
        self.tensors.append(Tensor(len(self.tensors), name, shape, dtype, q, arr))
        return len(self.tensors) - 1

    def weights(self, name: str, shape: tuple[int, ...], q: Quant, lim: int = 127) -> int:
        return self.t(name, shape, "int8", q, self.rng.integers(-lim, lim + 1, shape))

    def bias(self, name: str, n: int, q: Quant) -> int:
        return self.t(name, (n,), "int32", q, self.rng.integers(-5000, 5000, n))

    def op(self, kind: str, inputs: list[int], outputs: list[int], **options: object) -> None:
        self.ops.append(Op(len(self.ops), kind, inputs, outputs, dict(options)))

    def graph(self, inputs: list[int], outputs: list[int], name: str) -> Graph:
        return Graph(self.tensors, self.ops, inputs, outputs, name=name, description=f"test graph {name}")


def graph_all_ops(weight_lim: int = 127) -> Graph:
    """Every supported op with non-default options; per-channel and per-tensor quantization;
    tensors of every supported type (float32, uint8 elsewhere; int8, int16, int32, int64 here)."""
    g = GraphMaker(1)
    x = g.t("input", (1, 8, 8, 3), "float32")
    q_in = quant(0.05, -3)
    x1 = g.t("quantized", (1, 8, 8, 3), "int8", q_in)
    g.op("QUANTIZE", [x], [x1])
    pads = g.t("paddings", (4, 2), "int64", None, [[0, 0], [1, 1], [2, 0], [0, 0]])
    x2 = g.t("padded", (1, 10, 10, 3), "int8", q_in)
    g.op("PAD", [x1, pads], [x2], paddings=[[0, 0], [1, 1], [2, 0], [0, 0]])
    w_scales = [0.01, 0.02, 0.005, 0.03]
    w = g.weights("conv/w", (4, 3, 3, 3), quant(w_scales, 0, 0), weight_lim)
    b = g.bias("conv/b", 4, quant([0.05 * s for s in w_scales], 0, 0))
    x3 = g.t("conv", (1, 6, 4, 4), "int8", quant(0.1, -128))
    g.op(
        "CONV_2D", [x2, w, b], [x3], padding="VALID", stride_h=1, stride_w=2, dilation_h=2, dilation_w=1,
        activation="RELU",
    )  # fmt: skip
    dw_scales = [0.01 + 0.001 * k for k in range(8)]
    dw = g.weights("dw/w", (1, 3, 3, 8), quant(dw_scales, 0, 3), weight_lim)
    db = g.bias("dw/b", 8, quant([0.1 * s for s in dw_scales], 0, 0))
    x4 = g.t("dw", (1, 6, 4, 8), "int8", quant(0.07, -128))
    g.op(
        "DEPTHWISE_CONV_2D", [x3, dw, db], [x4], padding="SAME", stride_h=1, stride_w=1, depth_multiplier=2,
        dilation_h=1, dilation_w=1, activation="RELU6",
    )  # fmt: skip
    x5 = g.t("maxpool", (1, 3, 2, 8), "int8", quant(0.07, -128))
    g.op(
        "MAX_POOL_2D", [x4], [x5], padding="VALID", stride_h=2, stride_w=2, filter_h=2, filter_w=2,
        activation="RELU",
    )  # fmt: skip
    x6 = g.t("avgpool", (1, 3, 2, 8), "int8", quant(0.07, -128))
    g.op(
        "AVERAGE_POOL_2D", [x5], [x6], padding="SAME", stride_h=1, stride_w=1, filter_h=3, filter_w=2,
        activation="RELU_N1_TO_1",
    )  # fmt: skip
    x7 = g.t("add", (1, 3, 2, 8), "int8", quant(0.12, -100))
    g.op("ADD", [x5, x6], [x7], activation="NONE")
    x7 = _elementwise_chain(g, x7, x6, x5)
    axes = g.t("axes", (2,), "int32", None, [1, -2])
    x8 = g.t("mean", (1, 1, 1, 8), "int8", quant(0.12, -100))
    g.op("MEAN", [x7, axes], [x8], keep_dims=True, axes=[1, 2])
    shape = g.t("shape", (2,), "int32", None, [-1, 8])
    x9 = g.t("flat", (1, 8), "int8", quant(0.12, -100))
    g.op("RESHAPE", [x8, shape], [x9], new_shape=[1, 8])
    fw = g.weights("fc/w", (5, 8), quant(0.02, 0), weight_lim)
    fb = g.bias("fc/b", 5, quant(0.12 * 0.02, 0))
    x10 = g.t("fc", (1, 5), "int8", quant(0.2, 7))
    g.op("FULLY_CONNECTED", [x9, fw, fb], [x10], activation="RELU", keep_num_dims=True)
    x11 = g.t("softmax", (1, 5), "int8", quant(1 / 256, -128))
    g.op("SOFTMAX", [x10], [x11], beta=0.5)
    x12 = g.t("probs16", (1, 5), "int16", quant(1 / 32768, 0))
    g.op("QUANTIZE", [x11], [x12])
    y = g.t("output", (1, 5), "float32")
    g.op("DEQUANTIZE", [x12], [y])
    return g.graph([x], [y], "all_ops")


def graph_movement_ops() -> Graph:
    """The shape and movement operators (issue 12), with non-default options."""
    g = GraphMaker(3)
    q = quant(0.05, -3)
    x = g.t("input", (1, 4, 6, 8), "int8", q)
    perm = g.t("perm", (4,), "int32", None, [0, 2, 1, 3])
    x1 = g.t("transposed", (1, 6, 4, 8), "int8", q)
    g.op("TRANSPOSE", [x, perm], [x1])
    x2 = g.t("concat", (1, 6, 4, 16), "int8", q)
    g.op("CONCATENATION", [x1, x1], [x2], axis=-1, activation="NONE")
    begin, end = (
        g.t("begin", (4,), "int32", None, [0, 5, 0, 1]),
        g.t("end", (4,), "int32", None, [1, 0, 4, 16]),
    )
    strides = g.t("strides", (4,), "int32", None, [1, -2, 1, 2])
    x3 = g.t("strided", (1, 3, 4, 8), "int8", q)
    g.op(
        "STRIDED_SLICE", [x2, begin, end, strides], [x3], begin_mask=1, end_mask=4, ellipsis_mask=0,
        new_axis_mask=0, shrink_axis_mask=0, offset=False,
    )  # fmt: skip
    sb, ss = (
        g.t("slice_begin", (4,), "int32", None, [0, 1, 0, 0]),
        g.t("slice_size", (4,), "int32", None, [1, 2, -1, 8]),
    )
    x4 = g.t("sliced", (1, 2, 4, 8), "int8", q)
    g.op("SLICE", [x3, sb, ss], [x4])
    x5 = g.t("s2d", (1, 1, 2, 32), "int8", q)
    g.op("SPACE_TO_DEPTH", [x4], [x5], block_size=2)
    x6 = g.t("d2s", (1, 2, 4, 8), "int8", q)
    g.op("DEPTH_TO_SPACE", [x5], [x6], block_size=2)
    size = g.t("size", (2,), "int32", None, [3, 7])
    x7 = g.t("resized", (1, 3, 7, 8), "int8", q)
    g.op("RESIZE_NEAREST_NEIGHBOR", [x6, size], [x7], align_corners=False, half_pixel_centers=True)
    x8 = g.t("squeezed", (3, 7, 8), "int8", q)
    g.op("SQUEEZE", [x7], [x8], squeeze_dims=[0])
    axis = g.t("axis", (1,), "int32", None, [-1])
    y = g.t("output", (3, 7, 8, 1), "int8", q)
    g.op("EXPAND_DIMS", [x8, axis], [y])
    return g.graph([x], [y], "movement_ops")


def _elementwise_chain(g: GraphMaker, x: int, y: int, z: int) -> int:
    """The elementwise and activation operators (issue 12) in a chain on [1, 3, 2, 8] tensors,
    ending in the quantization of x (0.12, -100)."""
    shape = (1, 3, 2, 8)
    se = g.t("se/scale", (1, 1, 1, 8), "int8", quant(1 / 256, -128))
    logits = g.t("se/logits", (1, 1, 1, 8), "int8", quant(0.1, 3), [-40, -5, 0, 3, 9, 30, 60, 127])
    g.op("LOGISTIC", [logits], [se])
    t = g.t("mul", shape, "int8", quant(0.05, -128))
    g.op("MUL", [x, y], [t], activation="RELU")
    t2 = g.t("mul_se", shape, "int8", quant(0.05, -128))
    g.op("MUL", [t, se], [t2], activation="NONE")
    t3 = g.t("sub", shape, "int8", quant(0.1, 0))
    g.op("SUB", [t2, z], [t3], activation="RELU6")
    t4 = g.t("tanh", shape, "int8", quant(1 / 128, 0))
    g.op("TANH", [t3], [t4])
    t5 = g.t("hard_swish", shape, "int8", quant(0.01, -20))
    g.op("HARD_SWISH", [t4], [t5])
    prev = t5
    for kind in ("RELU", "RELU6", "RELU_N1_TO_1"):
        nxt = g.t(kind.lower(), shape, "int8", quant(0.02, -128))
        g.op(kind, [prev], [nxt])
        prev = nxt
    t6 = g.t("leaky_relu", shape, "int8", quant(0.02, -1))
    g.op("LEAKY_RELU", [prev], [t6], alpha=0.125)
    t7 = g.t("maximum", shape, "int8", quant(0.02, -1))
    g.op("MAXIMUM", [t6, t6], [t7])
    t8 = g.t("minimum", shape, "int8", quant(0.02, -1))
    g.op("MINIMUM", [t7, t6], [t8])
    out = g.t("requantized", shape, "int8", quant(0.12, -100))
    g.op("QUANTIZE", [t8], [out])
    return out


def graph_optional_inputs() -> Graph:
    """No bias (-1 and omitted), RESHAPE without a shape tensor, a uint8 input, two outputs."""
    g = GraphMaker(2)
    x = g.t("input_u8", (1, 4, 4, 2), "uint8", quant(0.02, 128))
    x1 = g.t("input_i8", (1, 4, 4, 2), "int8", quant(0.02, 0))
    g.op("QUANTIZE", [x], [x1])
    w = g.weights("pw/w", (3, 1, 1, 2), quant(0.01, 0))
    x2 = g.t("pw", (1, 4, 4, 3), "int8", quant(0.05, 3))
    g.op(
        "CONV_2D", [x1, w, -1], [x2], padding="SAME", stride_h=1, stride_w=1, dilation_h=1, dilation_w=1,
        activation="NONE",
    )  # fmt: skip
    x3 = g.t("flat", (1, 48), "int8", quant(0.05, 3))
    g.op("RESHAPE", [x2], [x3], new_shape=[1, 48])
    fw = g.weights("fc/w", (6, 48), quant(0.004, 0))
    x4 = g.t("fc", (1, 6), "int8", quant(0.3, -2))
    g.op("FULLY_CONNECTED", [x3, fw], [x4], activation="RELU6", keep_num_dims=False)
    x5 = g.t("fc_float", (1, 6), "float32")
    g.op("DEQUANTIZE", [x4], [x5])
    return g.graph([x], [x5, x2], "optional_inputs")


# ------------------------------------------------------------------------------------------
# Comparing and checking graphs


def quant_diff(a: Quant | None, b: Quant | None) -> str | None:
    if a is None or b is None:
        return None if a is b else f"quant {a} != {b}"
    if a.scale.dtype != np.float32 or b.scale.dtype != np.float32 or not np.array_equal(a.scale, b.scale):
        return f"scale {a.scale!r} != {b.scale!r}"
    if a.zero_point.dtype != np.int64 or b.zero_point.dtype != np.int64:
        return f"zero point dtypes {a.zero_point.dtype}, {b.zero_point.dtype}"
    if not np.array_equal(a.zero_point, b.zero_point):
        return f"zero point {a.zero_point!r} != {b.zero_point!r}"
    if a.axis != b.axis:
        return f"axis {a.axis} != {b.axis}"
    return None


def graph_diff(a: Graph, b: Graph) -> list[str]:
    """Differences between two graphs (an empty list when they are equal)."""
    out = []
    for attr in ("inputs", "outputs", "name"):
        if getattr(a, attr) != getattr(b, attr):
            out.append(f"{attr}: {getattr(a, attr)} != {getattr(b, attr)}")
    if len(a.tensors) != len(b.tensors):
        out.append(f"{len(a.tensors)} tensors != {len(b.tensors)}")
    for ta, tb in zip(a.tensors, b.tensors, strict=False):
        where = f"tensor #{ta.index} {ta.name!r}"
        for attr in ("index", "name", "shape", "dtype"):
            if getattr(ta, attr) != getattr(tb, attr):
                out.append(f"{where}: {attr} {getattr(ta, attr)!r} != {getattr(tb, attr)!r}")
        if (d := quant_diff(ta.quant, tb.quant)) is not None:
            out.append(f"{where}: {d}")
        if (ta.data is None) != (tb.data is None):
            out.append(f"{where}: constant {ta.data is not None} != {tb.data is not None}")
        elif ta.data is not None and tb.data is not None:
            if ta.data.dtype != tb.data.dtype or ta.data.shape != tb.data.shape:
                out.append(f"{where}: data {ta.data.dtype}{ta.data.shape} != {tb.data.dtype}{tb.data.shape}")
            elif not np.array_equal(ta.data, tb.data):
                out.append(f"{where}: data differs")
    if len(a.ops) != len(b.ops):
        out.append(f"{len(a.ops)} ops != {len(b.ops)}")
    for oa, ob in zip(a.ops, b.ops, strict=False):
        for attr in ("index", "kind", "inputs", "outputs", "options"):
            if getattr(oa, attr) != getattr(ob, attr):
                out.append(f"op #{oa.index}: {attr} {getattr(oa, attr)!r} != {getattr(ob, attr)!r}")
    return out


def check_graph(g: Graph) -> None:
    """Asserts the invariants every imported graph must have, whatever file it came from."""
    n = len(g.tensors)
    for i, t in enumerate(g.tensors):
        assert t.index == i
        assert isinstance(t.name, str)
        assert t.dtype in ("int8", "uint8", "int16", "int32", "int64", "float32"), t.dtype
        assert isinstance(t.shape, tuple) and all(isinstance(d, int) and d >= 0 for d in t.shape), t.shape
        assert t.nbytes >= 0
        if t.data is not None:
            assert isinstance(t.data, np.ndarray) and t.data.dtype == np.dtype(t.dtype), (i, t.data.dtype)
            assert t.data.shape == t.shape, (i, t.data.shape, t.shape)
        if t.quant is not None:
            q = t.quant
            assert q.scale.dtype == np.float32 and q.zero_point.dtype == np.int64
            assert q.scale.ndim == 1 and q.scale.shape == q.zero_point.shape and q.scale.size >= 1
            assert np.all(np.isfinite(q.scale)) and np.all(q.scale >= 0)
            # A per-channel layout (axis, count) is checked by the operator that reads the scales
            # per channel, as TFLite Micro does (tflite_import.py, "quant").
    for k, op in enumerate(g.ops):
        assert op.index == k and op.kind in SUPPORTED_OPS
        assert op.outputs and all(0 <= x < n for x in op.outputs)
        assert all(0 <= x < n or x == -1 for x in op.inputs)
        if "activation" in op.options:
            assert op.options["activation"] in ACTIVATIONS
        if op.kind == "RESHAPE":
            assert op.options["new_shape"] == list(g.tensors[op.outputs[0]].shape)
    assert all(0 <= x < n for x in g.inputs + g.outputs)


# ------------------------------------------------------------------------------------------
# A raw .tflite writer


@dataclass
class RawTensor:
    name: str
    shape: list[int] | None
    type: int = TensorType.INT8
    buffer: int = 0
    scale: list[float] | None = None
    zero_point: list[int] | None = None
    axis: int = 0
    shape_signature: list[int] | None = None


@dataclass
class RawOp:
    opcode_index: int
    inputs: list[int]
    outputs: list[int]
    options_type: int = 0
    options: Callable[[flatbuffers.Builder], int] | None = None  # writes the options table


@dataclass
class RawCode:
    builtin: int | None  # builtin_code (int32); None: field absent, as in old files
    deprecated: int | None  # deprecated_builtin_code (int8); None: field absent
    custom: str | None = None
    version: int = 1


@dataclass
class RawSubgraph:
    tensors: list[RawTensor]
    ops: list[RawOp]
    inputs: list[int]
    outputs: list[int]
    name: str = "main"


@dataclass
class RawBuffer:
    data: bytes = b""
    offset: int | None = None  # outside the flatbuffer (models > 2 GB)
    size: int | None = None


@dataclass
class RawModel:
    codes: list[RawCode]
    subgraphs: list[RawSubgraph]
    buffers: list[RawBuffer] = field(default_factory=lambda: [RawBuffer()])
    version: int = 3
    description: str = "raw test model"


def _vector(b: flatbuffers.Builder, items: list, kind: str) -> int:
    size = {"i32": 4, "i64": 8, "f32": 4, "u32": 4}[kind]
    b.StartVector(size, len(items), size)
    prepend = {"i32": b.PrependInt32, "i64": b.PrependInt64, "f32": b.PrependFloat32, "u32": b.PrependUint32}
    for x in reversed(items):
        prepend[kind](x)
    return b.EndVector()


def _offsets(b: flatbuffers.Builder, offs: list[int]) -> int:
    b.StartVector(4, len(offs), 4)
    for o in reversed(offs):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def write_raw(m: RawModel, identifier: bytes = b"TFL3") -> bytes:
    """Writes m as a .tflite flatbuffer, fields in schema slot order (see the tflite package)."""
    b = flatbuffers.Builder(1024)
    buffers = []
    for buf in m.buffers:
        vec = None
        if buf.data:
            b.StartVector(1, len(buf.data), 16)
            b.head = b.head - len(buf.data)
            b.Bytes[b.head : b.head + len(buf.data)] = buf.data
            vec = b.EndVector()
        b.StartObject(3)
        if vec is not None:
            b.PrependUOffsetTRelativeSlot(0, vec, 0)
        if buf.offset is not None:
            b.PrependUint64Slot(1, buf.offset, 0)
        if buf.size is not None:
            b.PrependUint64Slot(2, buf.size, 0)
        buffers.append(b.EndObject())

    subgraphs = []
    for sg in m.subgraphs:
        tensors = []
        for t in sg.tensors:
            name = b.CreateString(t.name)
            shape = None if t.shape is None else _vector(b, t.shape, "i32")
            sig = None if t.shape_signature is None else _vector(b, t.shape_signature, "i32")
            q = None
            if t.scale is not None:
                scale = _vector(b, t.scale, "f32")
                zp = _vector(b, t.zero_point if t.zero_point is not None else [0] * len(t.scale), "i64")
                b.StartObject(7)
                b.PrependUOffsetTRelativeSlot(2, scale, 0)
                b.PrependUOffsetTRelativeSlot(3, zp, 0)
                b.PrependInt32Slot(6, t.axis, 0)
                q = b.EndObject()
            b.StartObject(10)
            if shape is not None:
                b.PrependUOffsetTRelativeSlot(0, shape, 0)
            b.PrependInt8Slot(1, t.type, 0)
            b.PrependUint32Slot(2, t.buffer, 0)
            b.PrependUOffsetTRelativeSlot(3, name, 0)
            if q is not None:
                b.PrependUOffsetTRelativeSlot(4, q, 0)
            if sig is not None:
                b.PrependUOffsetTRelativeSlot(7, sig, 0)
            tensors.append(b.EndObject())
        ops = []
        for op in sg.ops:
            ins = _vector(b, op.inputs, "i32")
            outs = _vector(b, op.outputs, "i32")
            opt = op.options(b) if op.options is not None else None
            b.StartObject(14)
            b.PrependUint32Slot(0, op.opcode_index, 0)
            b.PrependUOffsetTRelativeSlot(1, ins, 0)
            b.PrependUOffsetTRelativeSlot(2, outs, 0)
            if op.options_type:
                b.PrependUint8Slot(3, op.options_type, 0)
            if opt is not None:
                b.PrependUOffsetTRelativeSlot(4, opt, 0)
            ops.append(b.EndObject())
        t_vec = _offsets(b, tensors)
        in_vec = _vector(b, sg.inputs, "i32")
        out_vec = _vector(b, sg.outputs, "i32")
        op_vec = _offsets(b, ops)
        name = b.CreateString(sg.name)
        b.StartObject(6)
        b.PrependUOffsetTRelativeSlot(0, t_vec, 0)
        b.PrependUOffsetTRelativeSlot(1, in_vec, 0)
        b.PrependUOffsetTRelativeSlot(2, out_vec, 0)
        b.PrependUOffsetTRelativeSlot(3, op_vec, 0)
        b.PrependUOffsetTRelativeSlot(4, name, 0)
        subgraphs.append(b.EndObject())

    codes = []
    for c in m.codes:
        custom = None if c.custom is None else b.CreateString(c.custom)
        b.StartObject(4)
        b.ForceDefaults(True)
        if c.deprecated is not None:
            b.PrependInt8Slot(0, c.deprecated, 0)
        if custom is not None:
            b.PrependUOffsetTRelativeSlot(1, custom, 0)
        b.PrependInt32Slot(2, c.version, 1)
        if c.builtin is not None:
            b.PrependInt32Slot(3, c.builtin, 0)
        b.ForceDefaults(False)
        codes.append(b.EndObject())

    codes_vec = _offsets(b, codes)
    sgs_vec = _offsets(b, subgraphs)
    bufs_vec = _offsets(b, buffers)
    desc = b.CreateString(m.description)
    b.StartObject(8)
    b.ForceDefaults(True)
    b.PrependUint32Slot(0, m.version, 0)
    b.ForceDefaults(False)
    b.PrependUOffsetTRelativeSlot(1, codes_vec, 0)
    b.PrependUOffsetTRelativeSlot(2, sgs_vec, 0)
    b.PrependUOffsetTRelativeSlot(3, desc, 0)
    b.PrependUOffsetTRelativeSlot(4, bufs_vec, 0)
    b.Finish(b.EndObject(), file_identifier=identifier)
    return bytes(b.Output())


def reshape_options(new_shape: list[int]) -> Callable[[flatbuffers.Builder], int]:
    def write(b: flatbuffers.Builder) -> int:
        vec = _vector(b, new_shape, "i32")
        b.StartObject(1)
        b.PrependUOffsetTRelativeSlot(0, vec, 0)
        return b.EndObject()

    return write


def conv_options(
    stride: int = 1, activation: int = 0, padding: int = 0
) -> Callable[[flatbuffers.Builder], int]:
    def write(b: flatbuffers.Builder) -> int:
        b.StartObject(7)
        b.PrependInt8Slot(0, padding, 0)
        b.PrependInt32Slot(1, stride, 0)
        b.PrependInt32Slot(2, stride, 0)
        b.PrependInt8Slot(3, activation, 0)
        return b.EndObject()

    return write


def options_table(slots: dict[int, tuple[str, int | float]]) -> Callable[[flatbuffers.Builder], int]:
    """Any options table: {slot: ("i8" | "i32" | "u8" | "f32", value)}."""

    def write(b: flatbuffers.Builder) -> int:
        b.StartObject(max(slots, default=0) + 1)
        for slot, (kind, value) in sorted(slots.items()):
            {"i8": b.PrependInt8Slot, "i32": b.PrependInt32Slot, "u8": b.PrependUint8Slot}.get(
                kind, b.PrependFloat32Slot
            )(slot, value, 0)
        return b.EndObject()

    return write


# ------------------------------------------------------------------------------------------
# Mutations


def offset_like_fields(data: bytes) -> tuple[list[int], list[int], list[int]]:
    """Heuristic positions of (uoffset fields, vector/string length fields, vtable entries):
    any aligned u32 that points forward to an aligned position inside the file is taken for
    a uoffset; what it points at is a table (soffset -> vtable) or a vector length."""
    n = len(data)
    offsets, lengths, vt_entries = [], set(), set()
    for p in range(0, n - 3, 4):
        v = struct.unpack_from("<I", data, p)[0]
        target = p + v
        if 0 < v and target + 4 <= n and target % 4 == 0:
            offsets.append(p)
            lengths.add(target)
            vt = target - struct.unpack_from("<i", data, target)[0]
            if 0 <= vt and vt + 4 <= n:
                vt_size = struct.unpack_from("<H", data, vt)[0]
                if 4 <= vt_size <= 64 and vt_size % 2 == 0 and vt + vt_size <= n:
                    vt_entries.update(range(vt, vt + vt_size, 2))
    return offsets, sorted(lengths), sorted(vt_entries)


_SPECIAL32 = (0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFC)
_SPECIAL16 = (0, 1, 2, 3, 4, 5, 6, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0xFFFE)


class Mutator:
    """Seeded mutations of one model; mutate(seed) is reproducible from the seed alone."""

    def __init__(self, model: bytes) -> None:
        self.model = model
        self.offsets, self.lengths, self.vtables = offset_like_fields(model)

    def mutate(self, seed: int) -> tuple[bytes, str]:
        rng = random.Random(seed)
        d = bytearray(self.model)
        kind = rng.choice(_KINDS)
        if kind != "multi":
            desc = self._one(d, rng, kind)
            return bytes(d), desc
        parts = [self._one(d, rng, rng.choice(_KINDS[:-1])) for _ in range(rng.randint(2, 4))]
        return bytes(d), "multi: " + "; ".join(parts)

    def _one(self, d: bytearray, rng: random.Random, kind: str) -> str:
        n = len(d)
        if n < 8:
            return "nothing (file too short)"
        if kind == "flip":
            bits = [rng.randrange(n * 8) for _ in range(rng.randint(1, 4))]
            for bit in bits:
                d[bit // 8] ^= 1 << (bit % 8)
            return f"flip bits {bits}"
        if kind == "bytes":
            pos = [rng.randrange(n) for _ in range(rng.randint(1, 8))]
            for p in pos:
                d[p] = rng.randrange(256)
            return f"random bytes at {pos}"
        if kind == "insert":
            p, k = rng.randrange(n + 1), rng.randint(1, 16)
            d[p:p] = bytes(rng.randrange(256) for _ in range(k))
            return f"insert {k} bytes at {p}"
        if kind == "delete":
            p, k = rng.randrange(n), rng.randint(1, 16)
            del d[p : p + k]
            return f"delete {k} bytes at {p}"
        if kind == "truncate":
            k = rng.randrange(n)
            del d[k:]
            return f"truncate to {k} bytes"
        if kind in ("offset", "length"):
            p = rng.choice(self.offsets if kind == "offset" else self.lengths)
            if p + 4 > n:
                return f"{kind} field at {p}: past the end"
            old = struct.unpack_from("<I", d, p)[0]
            r = rng.random()
            if r < 0.5:
                v = rng.choice(_SPECIAL32)
            elif r < 0.8:
                v = (old + rng.randint(-64, 64)) & 0xFFFFFFFF
            else:
                v = rng.randrange(n + 64)
            struct.pack_into("<I", d, p, v)
            return f"{kind} field at {p}: {old} -> {v}"
        p = rng.choice(self.vtables)  # "vtable"
        if p + 2 > n:
            return f"vtable entry at {p}: past the end"
        old = struct.unpack_from("<H", d, p)[0]
        v = rng.choice(_SPECIAL16) if rng.random() < 0.6 else (old + rng.randint(-8, 8)) & 0xFFFF
        struct.pack_into("<H", d, p, v)
        return f"vtable entry at {p}: {old} -> {v}"


_KINDS = (
    "flip",
    "flip",
    "bytes",
    "insert",
    "delete",
    "truncate",
    "offset",
    "offset",
    "length",
    "vtable",
    "multi",
)
