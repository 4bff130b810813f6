"""Reads a .tflite flatbuffer (TFLite schema v3) into the graph IR, without TensorFlow.

How the file is read
--------------------
With a small bounds-checked flatbuffer reader of our own, not the generated `tflite`
package. The generated accessors read lazily with no bounds checks: on a damaged file they
raise IndexError/struct.error from deep inside, trust a garbage vector length when asked for
a numpy view, and cannot say where the file is broken. Here every position is checked
against the file size before it is read:

- a table: the uoffset that leads to it, its soffset to the vtable, the vtable (even size of
  at least 4 bytes, inside the file) and the table's own size (inside the file); a field is
  read only if its vtable slot exists and it lies inside the table;
- a vector or string: element count x element size must fit between its start and the end
  of the file *before* anything is allocated, so a length of 4e9 costs nothing; strings must
  be NUL-terminated and are decoded as UTF-8 with replacement characters;
- uoffsets are unsigned and non-zero, so following them always moves forward and cannot
  loop; the schema is walked to a fixed depth (no recursion on file content) and every loop
  runs over a vector whose length the file size bounds, so the work is linear in the size.

Structural damage and inconsistencies (indices out of range, a buffer whose size is not shape
x item size, scale and zero-point counts that differ from each other, wrong operand counts)
raise ModelError("<name>: malformed or truncated .tflite file:
<where>: <what>"), e.g. "tensor #5 'conv/w': refers to buffer 99, the model has 12". Things that are
well-formed but that the engine cannot run (an operator, a type, a dynamic shape, several
subgraphs) raise ModelError naming the operator or tensor. A per-channel quantization's
dimension and channel count are left to the operator that reads the scales, as TFLite Micro
does (see quant()). Only fields the IR needs are read:
damage to metadata or signature definitions goes unnoticed, as in TFLite itself. The
`tflite` package is used only for the names of operators and tensor types.

What the IR gets
----------------
- Operators in execution order, kind = TFLite builtin name; the operator code is
  max(deprecated_builtin_code, builtin_code), as TFLite does. Options, normalised:
  CONV_2D padding/stride_h/stride_w/dilation_h/dilation_w/activation; DEPTHWISE_CONV_2D the
  same plus depth_multiplier (inferred from the shapes when the file says 0);
  FULLY_CONNECTED activation/keep_num_dims; ADD activation; AVERAGE_/MAX_POOL_2D
  padding/stride_h/stride_w/filter_h/filter_w/activation; MEAN keep_dims and axes (a list,
  negative axes made positive); PAD paddings ([[before, after], ...]); RESHAPE new_shape
  (always the output tensor's concrete shape, after checking it against the ReshapeOptions or
  the constant shape tensor, either of which may hold one -1); SOFTMAX beta; CONCATENATION
  axis (as stored) and activation; STRIDED_SLICE begin_mask/end_mask/ellipsis_mask/
  new_axis_mask/shrink_axis_mask/offset; SQUEEZE squeeze_dims; RESIZE_NEAREST_NEIGHBOR
  align_corners/half_pixel_centers; DEPTH_TO_SPACE / SPACE_TO_DEPTH block_size; MUL and SUB
  activation; LEAKY_RELU alpha. The constant axes / paddings / shape / perm / begin / end /
  strides / size tensors stay as inputs (the lowering checks them). A model with operators
  outside SUPPORTED_OPS is refused with one error naming all of them.
- Tensors: shape, dtype (int8, uint8, int16, int32, int64, float32), Quant (None when the
  file has no scales; axis = quantized_dimension) and, for tensors with a non-empty buffer,
  `data` as a numpy array of the tensor's dtype and shape (a writable copy, not a view of
  the file). Buffers stored outside the
  flatbuffer (models over 2 GB: Buffer.offset > 1 and Buffer.size, relative to the start of
  the file) are read too.
- A -1 in shape_signature is accepted only in the batch dimension (dim 0 of a tensor of rank
  2 or more): converters write [-1, H, W, C] for every activation of a Keras model with a
  dynamic batch; the stored shape (batch 1) is used. A -1 anywhere else is a dynamic shape.
- Graph.name is the `name` given (load_tflite: the file name) or else the subgraph's name;
  Graph.description is the model's description.
- The operators must be in execution order: each reads only model inputs, constants and the
  results of earlier operators, and each tensor is written once.
"""

from __future__ import annotations

import math
import struct
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.TensorType import TensorType

from pytools.model.ir import ACTIVATIONS, SUPPORTED_OPS, Graph, ModelError, Op, Quant, Tensor

__all__ = ["import_tflite", "load_tflite"]

_IDENTIFIER = b"TFL3"
_SCHEMA_VERSION = 3
_MAX_ELEMENTS = 1 << 31  # no tensor this tool handles is larger; bigger means a damaged shape

_I8 = struct.Struct("<b")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U16x2 = struct.Struct("<HH")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F32 = struct.Struct("<f")

_OP_NAMES = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}
_OPTION_NAMES = {
    v: k for k, v in vars(BuiltinOptions).items() if not k.startswith("_") and isinstance(v, int)
}
_TYPE_NAMES = {v: k for k, v in vars(TensorType).items() if not k.startswith("_") and isinstance(v, int)}
_CUSTOM = BuiltinOperator.CUSTOM

_DTYPES = {
    TensorType.INT8: "int8",
    TensorType.UINT8: "uint8",
    TensorType.INT16: "int16",
    TensorType.INT32: "int32",
    TensorType.INT64: "int64",
    TensorType.FLOAT32: "float32",
}
_LE_DTYPES = {name: np.dtype(name).newbyteorder("<") for name in _DTYPES.values()}
_ITEMSIZE = {name: np.dtype(name).itemsize for name in _DTYPES.values()}
_ZP_RANGE = {
    name: (int(np.iinfo(name).min), int(np.iinfo(name).max)) for name in _DTYPES.values() if name != "float32"
}

_PADDING = {0: "SAME", 1: "VALID"}
# ActivationFunctionType: NONE, RELU, RELU_N1_TO_1, RELU6, TANH, SIGN_BIT.
_ACTIVATION = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}

# Per op: the BuiltinOptions table it carries (or NONE, for all defaults).
_OPTIONS_TYPE = {
    "CONV_2D": BuiltinOptions.Conv2DOptions,
    "DEPTHWISE_CONV_2D": BuiltinOptions.DepthwiseConv2DOptions,
    "FULLY_CONNECTED": BuiltinOptions.FullyConnectedOptions,
    "ADD": BuiltinOptions.AddOptions,
    "AVERAGE_POOL_2D": BuiltinOptions.Pool2DOptions,
    "MAX_POOL_2D": BuiltinOptions.Pool2DOptions,
    "MEAN": BuiltinOptions.ReducerOptions,
    "PAD": BuiltinOptions.PadOptions,
    "RESHAPE": BuiltinOptions.ReshapeOptions,
    "SOFTMAX": BuiltinOptions.SoftmaxOptions,
    "QUANTIZE": BuiltinOptions.QuantizeOptions,
    "DEQUANTIZE": BuiltinOptions.DequantizeOptions,
    # Shape and movement operators (issue 12).
    "TRANSPOSE": BuiltinOptions.TransposeOptions,
    "CONCATENATION": BuiltinOptions.ConcatenationOptions,
    "STRIDED_SLICE": BuiltinOptions.StridedSliceOptions,
    "SLICE": BuiltinOptions.SliceOptions,
    "SQUEEZE": BuiltinOptions.SqueezeOptions,
    "EXPAND_DIMS": BuiltinOptions.ExpandDimsOptions,
    "RESIZE_NEAREST_NEIGHBOR": BuiltinOptions.ResizeNearestNeighborOptions,
    "DEPTH_TO_SPACE": BuiltinOptions.DepthToSpaceOptions,
    "SPACE_TO_DEPTH": BuiltinOptions.SpaceToDepthOptions,
    # Elementwise and activation operators (issue 12).
    "MUL": BuiltinOptions.MulOptions,
    "SUB": BuiltinOptions.SubOptions,
    "LOGISTIC": BuiltinOptions.NONE,
    "TANH": BuiltinOptions.NONE,
    "HARD_SWISH": BuiltinOptions.HardSwishOptions,
    "RELU": BuiltinOptions.NONE,
    "RELU6": BuiltinOptions.NONE,
    "RELU_N1_TO_1": BuiltinOptions.NONE,
    "LEAKY_RELU": BuiltinOptions.LeakyReluOptions,
    "MAXIMUM": BuiltinOptions.MaximumMinimumOptions,
    "MINIMUM": BuiltinOptions.MaximumMinimumOptions,
}
# Per op: (min, max) number of inputs, and which inputs may be -1 (omitted). Every op has 1 output.
_ARITY: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "CONV_2D": (2, 3, (2,)),
    "DEPTHWISE_CONV_2D": (2, 3, (2,)),
    "FULLY_CONNECTED": (2, 3, (2,)),
    "ADD": (2, 2, ()),
    "AVERAGE_POOL_2D": (1, 1, ()),
    "MAX_POOL_2D": (1, 1, ()),
    "MEAN": (2, 2, ()),
    "PAD": (2, 3, ()),  # PADV2: the pad value as a third input
    "RESHAPE": (1, 2, ()),
    "SOFTMAX": (1, 1, ()),
    "QUANTIZE": (1, 1, ()),
    "DEQUANTIZE": (1, 1, ()),
    # Shape and movement operators (issue 12).
    "TRANSPOSE": (2, 2, ()),
    "CONCATENATION": (1, 1 << 16, ()),
    "STRIDED_SLICE": (4, 4, ()),
    "SLICE": (3, 3, ()),
    "SQUEEZE": (1, 1, ()),
    "EXPAND_DIMS": (2, 2, ()),
    "RESIZE_NEAREST_NEIGHBOR": (2, 2, ()),
    "DEPTH_TO_SPACE": (1, 1, ()),
    "SPACE_TO_DEPTH": (1, 1, ()),
    # Elementwise and activation operators (issue 12).
    "MUL": (2, 2, ()),
    "SUB": (2, 2, ()),
    "LOGISTIC": (1, 1, ()),
    "TANH": (1, 1, ()),
    "HARD_SWISH": (1, 1, ()),
    "RELU": (1, 1, ()),
    "RELU6": (1, 1, ()),
    "RELU_N1_TO_1": (1, 1, ()),
    "LEAKY_RELU": (1, 1, ()),
    "MAXIMUM": (2, 2, ()),
    "MINIMUM": (2, 2, ()),
}
assert set(_OPTIONS_TYPE) == set(SUPPORTED_OPS) == set(_ARITY)


class _Bad(Exception):
    """Structural damage; import_tflite adds the file name and where it was found."""


class _Table:
    __slots__ = ("pos", "size", "slots", "vt")

    def __init__(self, pos: int, vt: int, slots: int, size: int) -> None:
        self.pos, self.vt, self.slots, self.size = pos, vt, slots, size


class _Reader:
    """Bounds-checked access to a flatbuffer: every read is checked against the file size."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.n = len(buf)

    def table(self, pos: int, what: str) -> _Table:
        buf, n = self.buf, self.n
        if pos < 0 or pos + 4 > n:
            raise _Bad(f"{what} at byte {pos} lies outside the file ({n} bytes)")
        vt = pos - _I32.unpack_from(buf, pos)[0]
        if vt < 0 or vt + 4 > n:
            raise _Bad(f"{what} at byte {pos}: its vtable at byte {vt} lies outside the file ({n} bytes)")
        vt_size, size = _U16x2.unpack_from(buf, vt)
        if vt_size < 4 or vt_size & 1 or vt + vt_size > n:
            raise _Bad(f"{what} at byte {pos}: its vtable at byte {vt} has an invalid size {vt_size}")
        if size < 4 or pos + size > n:
            raise _Bad(f"{what} at byte {pos}: its size {size} runs past the end of the file ({n} bytes)")
        return _Table(pos, vt, (vt_size - 4) >> 1, size)

    def field(self, t: _Table, slot: int, size: int, what: str) -> int:
        """Absolute position of a field of `size` bytes, or 0 when the field is absent."""
        if slot >= t.slots:
            return 0
        fo = _U16.unpack_from(self.buf, t.vt + 4 + 2 * slot)[0]
        if fo == 0:
            return 0
        if fo < 4 or fo + size > t.size:
            raise _Bad(f"{what}: field {slot} at offset {fo} lies outside its table ({t.size} bytes)")
        return t.pos + fo

    def scalar(self, t: _Table, slot: int, st: struct.Struct, default: int | float, what: str) -> int | float:
        p = self.field(t, slot, st.size, what)
        return st.unpack_from(self.buf, p)[0] if p else default

    def ref(self, t: _Table, slot: int, what: str) -> int:
        """Position of the table, vector or string a field refers to, or 0 when absent."""
        p = self.field(t, slot, 4, what)
        if not p:
            return 0
        off = _U32.unpack_from(self.buf, p)[0]
        if off == 0 or p + off >= self.n:
            raise _Bad(f"{what}: offset {off} at byte {p} points outside the file ({self.n} bytes)")
        return p + off

    def vector(self, pos: int, elem: int, what: str) -> tuple[int, int]:
        """(count, start) of the vector at pos, checked to fit in the file."""
        n = self.n
        if pos + 4 > n:
            raise _Bad(f"{what}: vector length at byte {pos} lies outside the file ({n} bytes)")
        count = _U32.unpack_from(self.buf, pos)[0]
        start = pos + 4
        if count * elem > n - start:
            raise _Bad(
                f"{what}: vector of {count} x {elem} bytes at byte {start} runs past the end of the file "
                f"({n} bytes)"
            )
        return count, start

    def ints(self, t: _Table, slot: int, code: str, elem: int, what: str) -> list[int] | None:
        """A vector of scalars (struct code `code`), or None when absent."""
        pos = self.ref(t, slot, what)
        if not pos:
            return None
        count, start = self.vector(pos, elem, what)
        return list(struct.unpack_from(f"<{count}{code}", self.buf, start))

    def array(self, t: _Table, slot: int, dtype: str, what: str) -> np.ndarray | None:
        pos = self.ref(t, slot, what)
        if not pos:
            return None
        le = np.dtype(dtype).newbyteorder("<")
        count, start = self.vector(pos, le.itemsize, what)
        return np.frombuffer(self.buf, le, count, start).astype(dtype)

    def string(self, t: _Table, slot: int, what: str) -> str | None:
        pos = self.ref(t, slot, what)
        if not pos:
            return None
        count, start = self.vector(pos, 1, what)
        end = start + count
        if end >= self.n or self.buf[end] != 0:
            raise _Bad(f"{what}: string of {count} bytes at byte {start} is not NUL-terminated")
        return self.buf[start:end].decode("utf-8", "replace")

    def tables(self, t: _Table, slot: int, what: str) -> list[int]:
        """Positions of the tables in a vector of tables ([] when absent)."""
        pos = self.ref(t, slot, what)
        if not pos:
            return []
        count, start = self.vector(pos, 4, what)
        offs = struct.unpack_from(f"<{count}I", self.buf, start)
        n = self.n
        out = []
        for k, off in enumerate(offs):
            p = start + 4 * k
            if off == 0 or p + off >= n:
                raise _Bad(f"{what}[{k}]: offset {off} at byte {p} points outside the file ({n} bytes)")
            out.append(p + off)
        return out


class _RawTensor:
    """A tensor's fields as stored, before the semantic checks."""

    __slots__ = ("buffer", "name", "qpos", "shape", "signature", "sparse", "type")

    def __init__(
        self,
        shape: list[int],
        type_: int,
        buffer: int,
        name: str,
        qpos: int,
        sparse: bool,
        signature: list[int] | None,
    ) -> None:
        self.shape, self.type, self.buffer, self.name = shape, type_, buffer, name
        self.qpos, self.sparse, self.signature = qpos, sparse, signature


class _Importer:
    def __init__(self, data: bytes, name: str) -> None:
        self.r = _Reader(data)
        self.mv = memoryview(data)
        self.label = name or "model"
        self.where = "model"
        self.given_name = name
        self.raw: list[_RawTensor] = []
        self.tensors: list[Tensor] = []
        self.buffers: list[int] = []

    def err(self, msg: str) -> ModelError:
        return ModelError(f"{self.label}: {msg}")

    def tname(self, i: int) -> str:
        return f"tensor #{i} '{self.raw[i].name}'"

    # ---------------------------------------------------------------------------------------
    def run(self) -> Graph:
        r = self.r
        buf = r.buf
        if r.n < 8:
            raise self.err(f"not a TFLite model: {r.n} bytes is too short for a .tflite file")
        if buf[4:8] != _IDENTIFIER:
            raise self.err(
                f"not a TFLite model: the flatbuffer file identifier is {bytes(buf[4:8])!r}, expected b'TFL3'"
            )
        model = r.table(_U32.unpack_from(buf, 0)[0], "root table")
        version = r.scalar(model, 0, _U32, 0, "model")
        if version != _SCHEMA_VERSION:
            raise self.err(f"TFLite schema version {version} is not supported (expected {_SCHEMA_VERSION})")
        codes = [self.opcode(k, p) for k, p in enumerate(r.tables(model, 1, "operator_codes"))]
        subgraphs = r.tables(model, 2, "subgraphs")
        if len(subgraphs) != 1:
            raise self.err(
                f"the model has {len(subgraphs)} subgraphs; only single-subgraph models are supported "
                "(several come from control flow such as WHILE, IF or CALL_ONCE)"
            )
        description = r.string(model, 3, "description") or ""
        self.buffers = r.tables(model, 4, "buffers")

        self.where = "subgraph 0"
        sg = r.table(subgraphs[0], "table")
        tensor_pos = r.tables(sg, 0, "tensors")
        sg_inputs = r.ints(sg, 1, "i", 4, "inputs") or []
        sg_outputs = r.ints(sg, 2, "i", 4, "outputs") or []
        op_pos = r.tables(sg, 3, "operators")
        sg_name = r.string(sg, 4, "name") or ""

        self.raw = [self.raw_tensor(i, p) for i, p in enumerate(tensor_pos)]
        nt = len(self.raw)
        raw_ops = [self.raw_op(i, p, codes) for i, p in enumerate(op_pos)]
        self.refuse_unsupported(raw_ops)
        self.where = "subgraph 0"
        for what, lst in (("inputs", sg_inputs), ("outputs", sg_outputs)):
            for t in lst:
                if not 0 <= t < nt:
                    raise _Bad(f"{what} refer to tensor {t}, the model has {nt}")

        self.tensors = [self.tensor(i) for i in range(nt)]
        ops = [self.op(i, *raw) for i, raw in enumerate(raw_ops)]
        self.where = "data flow"
        self.check_dataflow(ops, sg_inputs, sg_outputs)
        name = self.given_name or sg_name
        return Graph(self.tensors, ops, sg_inputs, sg_outputs, name=name, description=description)

    # ---------------------------------------------------------------------------------------
    def opcode(self, k: int, pos: int) -> tuple[int, str]:
        r = self.r
        what = f"operator code #{k}"
        t = r.table(pos, what)
        dep = int(r.scalar(t, 0, _I8, 0, what))
        custom = r.string(t, 1, what + " custom_code")
        code = max(dep, int(r.scalar(t, 3, _I32, 0, what)))
        return code, custom or ""

    def raw_op(
        self, i: int, pos: int, codes: list[tuple[int, str]]
    ) -> tuple[str, list[int], list[int], tuple[int, int, str]]:
        """(kind, inputs, outputs, (options type, options position, custom code))."""
        r = self.r
        self.where = f"operator #{i}"
        t = r.table(pos, "table")
        idx = int(r.scalar(t, 0, _U32, 0, "opcode_index"))
        if idx >= len(codes):
            raise _Bad(f"uses operator code {idx}, the model has {len(codes)}")
        code, custom = codes[idx]
        kind = _OP_NAMES.get(code, f"builtin operator {code}")
        if kind == "PADV2":  # PAD with its pad value as a third input: TFLite runs both with one kernel
            kind = "PAD"
        self.where = f"operator #{i} ({kind})"
        inputs = r.ints(t, 1, "i", 4, "inputs") or []
        outputs = r.ints(t, 2, "i", 4, "outputs") or []
        nt = len(self.raw)
        for role, lst in (("input", inputs), ("output", outputs)):
            for k, x in enumerate(lst):
                if not (0 <= x < nt or (x == -1 and role == "input")):
                    raise _Bad(f"{role} {k} refers to tensor {x}, the model has {nt}")
        opt_type = int(r.scalar(t, 3, _U8, 0, "builtin_options_type"))
        if kind == "PAD" and opt_type == BuiltinOptions.PadV2Options:
            opt_type = BuiltinOptions.PadOptions  # both empty tables
        opt_pos = r.ref(t, 4, "builtin_options")
        return kind, inputs, outputs, (opt_type, opt_pos, custom if code == _CUSTOM else "")

    def refuse_unsupported(
        self, raw_ops: list[tuple[str, list[int], list[int], tuple[int, int, str]]]
    ) -> None:
        """One ModelError naming every operator without a forward kernel (index, kind, input
        and output tensors) and what would work instead; nothing if all are supported."""
        bad = [i for i, raw in enumerate(raw_ops) if raw[0] not in SUPPORTED_OPS]
        if not bad:
            return
        lines, custom = [], False
        for i in bad:
            kind, inputs, outputs, (_, _, code) = raw_ops[i]
            what = f"operator #{i} ({kind})"
            if code:
                what = f"operator #{i} is the custom operator '{code}'"
                custom = True
            ins = ", ".join(self.tname(x) for x in inputs if x >= 0) or "none"
            outs = ", ".join(self.tname(o) for o in outputs) or "none"
            lines.append(f"  {what}: inputs {ins}; outputs {outs}")
        n = len(bad)
        msg = [
            f"{n} operator{'s' if n > 1 else ''} of the model {'have' if n > 1 else 'has'} no forward kernel "
            "here (the forward kernel is missing, so even a frozen layer cannot run):",
            *lines,
        ]
        if custom:
            msg.append(
                "Custom operators are not supported: re-convert the model with builtin int8 operators only."
            )
        first = bad[0]
        if first > 0:
            earlier = {y for raw in raw_ops[:first] for y in raw[2]}
            cut = ", ".join(dict.fromkeys(self.tname(x) for x in raw_ops[first][1] if x in earlier))
            msg.append(
                f"The operators before #{first} are all supported: the model cut there (output {cut}) "
                "would import, and the rest could run on the host."
            )
        msg.append(f"Supported operators: {', '.join(SUPPORTED_OPS)} (docs/operators.md).")
        raise self.err("\n".join(msg))

    # ---------------------------------------------------------------------------------------
    def raw_tensor(self, i: int, pos: int) -> _RawTensor:
        r = self.r
        self.where = f"tensor #{i}"
        t = r.table(pos, "table")
        shape = r.ints(t, 0, "i", 4, "shape") or []
        type_ = int(r.scalar(t, 1, _I8, 0, "type"))
        buffer = int(r.scalar(t, 2, _U32, 0, "buffer"))
        name = r.string(t, 3, "name") or ""
        qpos = r.ref(t, 4, "quantization")
        sparse = bool(r.ref(t, 6, "sparsity"))
        signature = r.ints(t, 7, "i", 4, "shape_signature")
        return _RawTensor(shape, type_, buffer, name, qpos, sparse, signature)

    def tensor(self, i: int) -> Tensor:
        raw = self.raw[i]
        label = self.tname(i)
        self.where = label
        dtype = _DTYPES.get(raw.type)
        if dtype is None:
            tn = _TYPE_NAMES.get(raw.type, f"unknown type {raw.type}")
            raise self.err(
                f"{label} has type {tn}, which is not supported; supported: {', '.join(_DTYPES.values())}"
            )
        if raw.sparse:
            raise self.err(f"{label} is stored sparse, which is not supported: convert without sparsity")
        shape = tuple(raw.shape)
        sig = raw.signature
        if any(d < 0 for d in shape) or (sig and any(d < 0 for d in sig[1 if len(sig) > 1 else 0 :])):
            raise self.err(
                f"{label} has a dynamic shape {list(sig or shape)}; only fixed shapes are supported "
                "(a dynamic batch dimension is accepted): convert the model with fixed input shapes"
            )
        if sig and (len(sig) != len(shape) or any(a != b for a, b in zip(sig[1:], shape[1:], strict=True))):
            raise _Bad(f"shape_signature {sig} does not match shape {list(shape)}")
        count = 1
        for d in shape:
            count *= d
            if count >= _MAX_ELEMENTS:  # checked as it grows: a long garbage shape stays cheap
                more = "..." if len(shape) > 8 else ""
                raise _Bad(f"shape {list(shape[:8])}{more} has 2^31 elements or more")

        data = None
        if raw.buffer >= len(self.buffers):
            raise _Bad(f"refers to buffer {raw.buffer}, the model has {len(self.buffers)}")
        blob = self.buffer_bytes(raw.buffer)
        if blob is not None:
            need = count * _ITEMSIZE[dtype]
            if len(blob) != need:
                raise _Bad(
                    f"shape {list(shape)} x {dtype} needs {need} bytes, "
                    f"but buffer {raw.buffer} holds {len(blob)}"
                )
            data = np.frombuffer(blob, _LE_DTYPES[dtype], count).astype(dtype).reshape(shape)
        quant = self.quant(raw.qpos, shape, dtype) if raw.qpos else None
        return Tensor(i, raw.name, shape, dtype, quant, data)

    def buffer_bytes(self, k: int) -> memoryview | None:
        r = self.r
        what = f"buffer #{k}"
        t = r.table(self.buffers[k], what)
        offset = int(r.scalar(t, 1, _U64, 0, what))
        if offset > 1:  # data outside the flatbuffer (models > 2 GB); 1 is the writer's placeholder
            size = int(r.scalar(t, 2, _U64, 0, what))
            if offset + size > r.n:
                raise _Bad(
                    f"{what} holds {size} bytes at file offset {offset}, "
                    f"past the end of the file ({r.n} bytes)"
                )
            return self.mv[offset : offset + size] if size else None
        pos = r.ref(t, 0, what + " data")
        if not pos:
            return None
        count, start = r.vector(pos, 1, what + " data")
        return self.mv[start : start + count] if count else None

    def quant(self, qpos: int, shape: tuple[int, ...], dtype: str) -> Quant | None:
        r = self.r
        what = "quantization"
        q = r.table(qpos, what)
        scale = r.array(q, 2, "float32", what + " scale")
        zp = r.array(q, 3, "int64", what + " zero_point")
        details = int(r.scalar(q, 4, _U8, 0, what))
        axis = int(r.scalar(q, 6, _I32, 0, what))
        ns = 0 if scale is None else scale.size
        nz = 0 if zp is None else zp.size
        if ns == 0 and nz == 0:
            return None
        if details:
            raise self.err(f"{self.where} uses custom quantization details, which are not supported")
        if ns != nz:
            raise _Bad(f"quantization has {ns} scales but {nz} zero points")
        assert scale is not None and zp is not None
        # quantized_dimension and the channel count are not checked here: TFLite Micro does
        # not check them when it loads a model, only the kernels that read scales per channel
        # do (the convolution and fully-connected filters: lowering/conv.py checks them the
        # same way). LiteRT refuses at load a per-channel dimension outside the tensor's rank
        # or a count unlike that dimension's size, on every tensor; TFLM's person_detect.tflite
        # has such per-channel biases (quantized_dimension 3 on 1-D biases), whose scales no
        # kernel reads, and TFLM runs it. Quant.axis keeps the file's value.
        if not np.all(np.isfinite(scale)) or np.any(scale < 0):
            raise _Bad(
                f"quantization scale {scale[~np.isfinite(scale) | (scale < 0)][0]} is not a valid scale"
            )
        lim = _ZP_RANGE.get(dtype)
        if lim is not None and (zp.min() < lim[0] or zp.max() > lim[1]):
            bad = int(zp.min()) if zp.min() < lim[0] else int(zp.max())
            raise _Bad(f"zero point {bad} is out of range for {dtype}")
        return Quant(scale, zp, axis)

    # ---------------------------------------------------------------------------------------
    def op(self, i: int, kind: str, inputs: list[int], outputs: list[int], opt: tuple[int, int, str]) -> Op:
        r = self.r
        where = self.where = f"operator #{i} ({kind})"
        lo, hi, optional = _ARITY[kind]
        if not lo <= len(inputs) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} or {hi}"
            raise _Bad(f"has {len(inputs)} inputs, {kind} takes {want}")
        if len(outputs) != 1:
            raise _Bad(f"has {len(outputs)} outputs, {kind} has 1")
        for k, x in enumerate(inputs):
            if x == -1 and k not in optional:
                raise _Bad(f"input {k} is missing (-1), and {kind} needs it")
        opt_type, opt_pos, _ = opt
        expected = _OPTIONS_TYPE[kind]
        t = None
        if opt_type != 0:
            if opt_type != expected:
                got = _OPTION_NAMES.get(opt_type, f"options type {opt_type}")
                raise _Bad(f"carries {got}, {kind} takes {_OPTION_NAMES[expected]}")
            if opt_pos:
                t = r.table(opt_pos, where + " options")
        op = Op(i, kind, inputs, outputs)
        op.options = self.options(op, t)
        return op

    def _int(self, t: _Table | None, slot: int, st: struct.Struct, default: int) -> int:
        return default if t is None else int(self.r.scalar(t, slot, st, default, self.where + " options"))

    def _act(self, t: _Table | None, slot: int) -> str:
        code = self._int(t, slot, _I8, 0)
        act = _ACTIVATION.get(code)
        if act is None:
            raise _Bad(f"fused activation code {code} is not a TFLite activation")
        if act not in ACTIVATIONS:
            raise self.err(
                f"{self.where}: fused activation {act} is not supported; supported: {', '.join(ACTIVATIONS)}"
            )
        return act

    def _padding(self, t: _Table | None) -> str:
        code = self._int(t, 0, _I8, 0)
        if code not in _PADDING:
            raise _Bad(f"padding code {code} is neither SAME (0) nor VALID (1)")
        return _PADDING[code]

    def _positive(self, opts: dict[str, Any], *keys: str) -> None:
        for k in keys:
            if opts[k] < 1:
                raise _Bad(f"{k} is {opts[k]}, it must be at least 1")

    def options(self, op: Op, t: _Table | None) -> dict[str, Any]:
        k = op.kind
        if k == "CONV_2D":
            o = {
                "padding": self._padding(t),
                "stride_w": self._int(t, 1, _I32, 0),
                "stride_h": self._int(t, 2, _I32, 0),
                "activation": self._act(t, 3),
                "dilation_w": self._int(t, 4, _I32, 1),
                "dilation_h": self._int(t, 5, _I32, 1),
            }
            self._positive(o, "stride_w", "stride_h", "dilation_w", "dilation_h")
            return o
        if k == "DEPTHWISE_CONV_2D":
            o = {
                "padding": self._padding(t),
                "stride_w": self._int(t, 1, _I32, 0),
                "stride_h": self._int(t, 2, _I32, 0),
                "depth_multiplier": self._int(t, 3, _I32, 0),
                "activation": self._act(t, 4),
                "dilation_w": self._int(t, 5, _I32, 1),
                "dilation_h": self._int(t, 6, _I32, 1),
            }
            if o["depth_multiplier"] == 0:  # newer converters leave it out; TFLite infers it
                o["depth_multiplier"] = self.infer_depth_multiplier(op)
            self._positive(o, "stride_w", "stride_h", "dilation_w", "dilation_h", "depth_multiplier")
            return o
        if k == "FULLY_CONNECTED":
            fmt = self._int(t, 1, _I8, 0)
            if fmt != 0:
                raise self.err(f"{self.where}: shuffled weights format {fmt} is not supported")
            return {"activation": self._act(t, 0), "keep_num_dims": bool(self._int(t, 2, _U8, 0))}
        if k == "ADD":
            return {"activation": self._act(t, 0)}
        if k in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            o = {
                "padding": self._padding(t),
                "stride_w": self._int(t, 1, _I32, 0),
                "stride_h": self._int(t, 2, _I32, 0),
                "filter_w": self._int(t, 3, _I32, 0),
                "filter_h": self._int(t, 4, _I32, 0),
                "activation": self._act(t, 5),
            }
            self._positive(o, "stride_w", "stride_h", "filter_w", "filter_h")
            return o
        if k == "MEAN":
            return {"keep_dims": bool(self._int(t, 0, _U8, 0)), "axes": self.mean_axes(op)}
        if k == "PAD":
            if len(op.inputs) == 3 and self.pad_value(op) == self.tensors[op.outputs[0]].quant.zero_point[0]:
                op.inputs = op.inputs[:2]  # PADV2 padding with real 0.0: a plain PAD (and folds as one)
            return {"paddings": self.paddings(op)}
        if k == "RESHAPE":
            spec = None
            if t is not None:
                spec = self.r.ints(t, 0, "i", 4, self.where + " new_shape")
            return {"new_shape": self.new_shape(op, spec)}
        if k == "SOFTMAX":
            beta = 0.0 if t is None else float(self.r.scalar(t, 0, _F32, 0.0, self.where + " options"))
            return {"beta": beta}
        # Elementwise and activation operators (issue 12).
        if k in ("MUL", "SUB"):
            return {"activation": self._act(t, 0)}
        if k == "LEAKY_RELU":
            return {
                "alpha": 0.0 if t is None else float(self.r.scalar(t, 0, _F32, 0.0, self.where + " options"))
            }
        return self.movement_options(k, t)

    def movement_options(self, k: str, t: _Table | None) -> dict[str, Any]:
        """Options of the shape and movement operators (issue 12); their constant operands
        (perm, begin/end/strides, sizes, axis) stay inputs, checked by the lowering."""
        if k == "CONCATENATION":
            return {"axis": self._int(t, 0, _I32, 0), "activation": self._act(t, 1)}
        if k == "STRIDED_SLICE":
            names = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")
            o: dict[str, Any] = {n: self._int(t, slot, _I32, 0) for slot, n in enumerate(names)}
            o["offset"] = bool(self._int(t, 5, _U8, 0))
            return o
        if k == "SQUEEZE":
            dims = None if t is None else self.r.ints(t, 0, "i", 4, self.where + " squeeze_dims")
            return {"squeeze_dims": dims or []}
        if k == "RESIZE_NEAREST_NEIGHBOR":
            return {
                "align_corners": bool(self._int(t, 0, _U8, 0)),
                "half_pixel_centers": bool(self._int(t, 1, _U8, 0)),
            }
        if k in ("DEPTH_TO_SPACE", "SPACE_TO_DEPTH"):
            o = {"block_size": self._int(t, 0, _I32, 0)}
            self._positive(o, "block_size")
            return o
        return {}

    def const_ints(self, op: Op, k: int, what: str) -> np.ndarray:
        x = op.inputs[k]
        t = self.tensors[x]
        if t.data is None:
            raise self.err(f"{self.where}: {what} ({self.tname(x)}) must be a constant tensor")
        if t.dtype not in ("int32", "int64"):
            raise _Bad(f"{what} ({self.tname(x)}) has type {t.dtype}, expected int32 or int64")
        return t.data

    def infer_depth_multiplier(self, op: Op) -> int:
        x, w = self.tensors[op.inputs[0]], self.tensors[op.inputs[1]]
        if len(x.shape) == 4 and len(w.shape) == 4 and x.shape[3] > 0 and w.shape[3] % x.shape[3] == 0:
            return w.shape[3] // x.shape[3]
        raise _Bad(f"depth_multiplier is 0 and cannot be inferred from shapes {x.shape} and {w.shape}")

    def mean_axes(self, op: Op) -> list[int]:
        data = self.const_ints(op, 1, "the axes")
        rank = len(self.tensors[op.inputs[0]].shape)
        axes = []
        for a in data.reshape(-1).tolist():
            if not -rank <= a < rank:
                raise _Bad(f"axis {a} is out of range for an input of rank {rank}")
            axes.append(a + rank if a < 0 else a)
        return axes

    def pad_value(self, op: Op) -> int:
        """PADV2's pad value: a constant int8 scalar quantized as the output (TFLite's pad.cc
        writes its raw value into the output)."""
        c, out = self.tensors[op.inputs[2]], self.tensors[op.outputs[0]]
        if c.data is None or c.data.size != 1:
            what = self.tname(op.inputs[2])
            raise self.err(f"{self.where}: the pad value ({what}) must be a constant scalar")
        same = (
            c.quant is not None
            and out.quant is not None
            and np.array_equal(c.quant.scale, out.quant.scale)
            and np.array_equal(c.quant.zero_point, out.quant.zero_point)
        )
        if c.dtype != out.dtype or not same:
            raise self.err(
                f"{self.where}: the pad value ({self.tname(op.inputs[2])}, {c.dtype}) must have the "
                "output's type and quantization, as TFLite requires"
            )
        return int(c.data.reshape(-1)[0])

    def paddings(self, op: Op) -> list[list[int]]:
        data = self.const_ints(op, 1, "the paddings")
        rank = len(self.tensors[op.inputs[0]].shape)
        if data.shape != (rank, 2):
            raise _Bad(f"paddings have shape {list(data.shape)}, expected [{rank}, 2] for the input's rank")
        pads = data.tolist()
        if any(p < 0 for row in pads for p in row):
            raise _Bad(f"paddings {pads} are negative")
        return pads

    def new_shape(self, op: Op, spec: list[int] | None) -> list[int]:
        x, y = self.tensors[op.inputs[0]], self.tensors[op.outputs[0]]
        if len(op.inputs) == 2 and self.tensors[op.inputs[1]].data is not None:
            spec = self.const_ints(op, 1, "the shape").reshape(-1).tolist()
        n_in, n_out = math.prod(x.shape), math.prod(y.shape)
        if n_in != n_out:
            raise _Bad(f"reshapes {list(x.shape)} ({n_in} elements) to {list(y.shape)} ({n_out} elements)")
        if spec:  # an empty new_shape means "take the output's shape"
            ok = len(spec) == len(y.shape) and spec.count(-1) <= 1
            ok = ok and all(s == d or s == -1 for s, d in zip(spec, y.shape, strict=True))
            if not ok:
                raise _Bad(f"new shape {spec} does not match the output shape {list(y.shape)}")
        return list(y.shape)

    # ---------------------------------------------------------------------------------------
    def check_dataflow(self, ops: list[Op], inputs: list[int], outputs: list[int]) -> None:
        """Execution order: each op reads only constants, model inputs and earlier results."""
        ready = set(inputs)
        model_inputs = set(inputs)
        written: set[int] = set()
        for op in ops:
            for x in op.inputs:
                if x >= 0 and x not in ready and self.tensors[x].data is None:
                    raise _Bad(
                        f"{op.where()} reads {self.tname(x)}, which is not a model input, not a constant "
                        "and not written by an earlier operator"
                    )
            for y in op.outputs:
                if y in written or y in model_inputs or self.tensors[y].data is not None:
                    raise _Bad(
                        f"{op.where()} writes {self.tname(y)}, "
                        "which is a model input, a constant or written twice"
                    )
                written.add(y)
                ready.add(y)
        for y in outputs:
            if y not in ready and self.tensors[y].data is None:
                raise _Bad(f"model output {self.tname(y)} is not written by any operator")


def import_tflite(data: bytes, name: str = "") -> Graph:
    """Parses a .tflite file's bytes into a Graph; ModelError (naming `name`) if it cannot."""
    imp = _Importer(bytes(data), name)
    try:
        return imp.run()
    except _Bad as e:
        raise imp.err(f"malformed or truncated .tflite file: {imp.where}: {e}") from None


def load_tflite(path: str | PathLike[str]) -> Graph:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ModelError(f"{p}: cannot read the model: {e.strerror or e}") from None
    return import_tflite(data, p.name)
