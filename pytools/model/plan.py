"""The plan format (firmware/runtime/plan_format.def) on the Python side: pack and read."""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from pytools.cdefs import Layout, parse_layouts
from pytools.paths import FIRMWARE

RUNTIME_DIR = FIRMWARE / "runtime"
DTYPES = {"int8": 0, "int32": 1, "float32": 2, "uint8": 3, "int16": 4, "int64": 5, "uint32": 6}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
STORAGE_ARENA, STORAGE_CONSTANT, STORAGE_STATE, STORAGE_STREAM = 0, 1, 2, 3
NO_TENSOR = 0xFFFF
OP_FLAG_NOOP = 1
ALIGN = 16


@cache
def layouts() -> dict[str, Layout]:
    return parse_layouts(RUNTIME_DIR / "plan_format.def", "PLAN")


@cache
def format_constants() -> dict[str, int]:
    text = (RUNTIME_DIR / "plan_format.h").read_text()
    return {m[1]: int(m[2], 0) for m in re.finditer(r"#define (PLAN_\w+) (0x[0-9A-Fa-f]+|\d+)u", text)}


@dataclass
class PlanTensor:
    storage: int
    dtype: str
    shape: tuple[int, ...]
    offset: int
    size: int
    scale: float = 0.0
    zero_point: int = 0
    name: str = ""  # not stored in the blob; for reports
    init_offset: int = 0  # state: its initial bytes in the data section


@dataclass
class PlanOp:
    code: int
    operands: list[int]
    params: bytes
    scratch: int = NO_TENSOR
    flags: int = 0
    kind: str = ""  # for reports


@dataclass
class Plan:
    tensors: list[PlanTensor]
    ops: list[PlanOp]
    inputs: list[int]
    outputs: list[int]
    data: bytes
    arena_size: int
    ram_limit: int
    flash_limit: int
    board: str
    model: str
    n_forward: int = 0  # ops [0, n_forward) are the forward pass; 0 means all of them
    state_size: int = 0  # arena bytes that persist between steps
    table_bytes: int = field(default=0)  # everything in the blob but the constant data


def _pad(b: bytearray) -> None:
    b.extend(b"\0" * (-len(b) % ALIGN))


def pack(plan: Plan) -> bytes:
    lay = layouts()
    H, T, OP = lay["PLAN_HEADER"], lay["PLAN_TENSOR"], lay["PLAN_OP"]
    consts = format_constants()
    body = bytearray(b"\0" * H.size)
    _pad(body)
    tensors_offset = len(body)
    for t in plan.tensors:
        dims = [*t.shape, *([0] * (4 - len(t.shape)))]
        body += T.pack(
            storage=t.storage,
            dtype=DTYPES[t.dtype],
            ndim=len(t.shape),
            dim0=dims[0],
            dim1=dims[1],
            dim2=dims[2],
            dim3=dims[3],
            offset=t.offset,
            size=t.size,
            scale=t.scale,
            zero_point=t.zero_point,
            init_offset=t.init_offset,
        )
    _pad(body)
    ops_offset = len(body)
    operand_ids: list[int] = []
    params = bytearray()
    for op in plan.ops:
        body += OP.pack(
            code=op.code,
            n_operands=len(op.operands),
            flags=op.flags,
            operands_index=len(operand_ids),
            params_offset=len(params),
            params_size=len(op.params),
            scratch_tensor=op.scratch,
        )
        operand_ids += op.operands
        params += op.params
        params.extend(b"\0" * (-len(params) % 4))
    _pad(body)
    operands_offset = len(body)
    body += np.asarray(operand_ids, dtype="<u2").tobytes()
    _pad(body)
    io_offset = len(body)
    body += np.asarray([*plan.inputs, *plan.outputs], dtype="<u2").tobytes()
    _pad(body)
    params_offset = len(body)
    body += params
    _pad(body)
    data_offset = len(body)
    body += plan.data
    header = H.pack(
        magic=consts["PLAN_MAGIC"],
        version=consts["PLAN_FORMAT_VERSION"],
        header_size=H.size,
        total_size=len(body),
        crc32=0,
        arena_size=plan.arena_size,
        ram_limit=plan.ram_limit,
        flash_limit=plan.flash_limit,
        n_tensors=len(plan.tensors),
        n_ops=len(plan.ops),
        n_inputs=len(plan.inputs),
        n_outputs=len(plan.outputs),
        n_forward_ops=plan.n_forward or len(plan.ops),
        state_size=plan.state_size,
        tensors_offset=tensors_offset,
        ops_offset=ops_offset,
        operands_offset=operands_offset,
        io_offset=io_offset,
        params_offset=params_offset,
        data_offset=data_offset,
        data_size=len(plan.data),
        board=plan.board.encode()[:23],
        model=plan.model.encode()[:31],
    )
    body[: H.size] = header
    crc_at = struct.calcsize("<" + "".join(code for _, code in H.fields[: H.names.index("crc32")]))
    body[crc_at : crc_at + 4] = zlib.crc32(bytes(body)).to_bytes(4, "little")  # CRC over crc32 = 0
    plan.table_bytes = data_offset
    return bytes(body)


def read_header(blob: bytes) -> dict:
    H = layouts()["PLAN_HEADER"]
    return H.unpack(blob[: H.size])


def op_codes(blob: bytes) -> set[int]:
    """The operator codes (kernels/ops.def) a packed plan runs, no-ops included: the kernels an
    image that links this plan needs (pytools/build/builder.py)."""
    h, op = read_header(blob), layouts()["PLAN_OP"]
    at = h["ops_offset"]
    return {op.unpack(blob[at + i * op.size : at + (i + 1) * op.size])["code"] for i in range(h["n_ops"])}
