"""The host twin: the firmware's own runtime and kernels, compiled for this machine, running
a plan exactly as the board does (tests hold the two to bit-equality)."""

from __future__ import annotations

import ctypes
from functools import cache

import numpy as np

from pytools.cdefs import Layout
from pytools.model.ir import ModelError
from pytools.model.plan import DTYPE_NAMES, STORAGE_STREAM, layouts, read_header


class Fetch(ctypes.Structure):
    """runtime.h's rt_fetch_t: the bytes of a streamed input an INPUT_ROWS operator asks for."""

    _fields_ = [
        ("op", ctypes.c_uint32),
        ("input", ctypes.c_uint32),
        ("offset", ctypes.c_uint32),
        ("len", ctypes.c_uint32),
        ("dst", ctypes.c_void_p),
    ]


@cache
def _lib() -> ctypes.CDLL:
    from pytools.build.builder import build_host_lib

    lib = ctypes.CDLL(str(build_host_lib()))
    lib.rt_plan_struct_size.restype = ctypes.c_size_t
    lib.rt_plan_load.restype = ctypes.c_int
    lib.rt_plan_load.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    lib.rt_invoke.restype = None
    lib.rt_invoke.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.rt_invoke_range.restype = None
    lib.rt_invoke_range.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_uint32,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.rt_invoke_to_fetch.restype = ctypes.c_uint32
    lib.rt_invoke_to_fetch.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_uint32,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.rt_op_fetch.restype = ctypes.c_int
    lib.rt_op_fetch.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(Fetch)]
    lib.rt_reset_state.restype = None
    lib.rt_reset_state.argtypes = [ctypes.c_void_p]
    lib.rt_tensor_data.restype = ctypes.c_void_p
    lib.rt_tensor_data.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    return lib


@cache
def _lr_scale() -> ctypes.c_float:
    """kernels/grad.h's grad_lr_scale in the host library (looked up once)."""
    return ctypes.c_float.in_dll(_lib(), "grad_lr_scale")


def _aligned(nbytes: int, align: int = 16) -> np.ndarray:
    raw = np.zeros(nbytes + align, dtype=np.uint8)
    start = -raw.ctypes.data % align
    return raw[start : start + nbytes]


def tensor_table(blob: bytes) -> list[dict]:
    """The plan's tensor records (shape, dtype, quantization) as dicts."""
    h = read_header(blob)
    lay: Layout = layouts()["PLAN_TENSOR"]
    out = []
    for i in range(h["n_tensors"]):
        start = h["tensors_offset"] + i * lay.size
        t = lay.unpack(blob[start : start + lay.size])
        t["shape"] = tuple(t[f"dim{k}"] for k in range(t["ndim"]))
        t["dtype_name"] = DTYPE_NAMES[t["dtype"]]
        out.append(t)
    return out


def io_tensors(blob: bytes) -> tuple[list[int], list[int]]:
    h = read_header(blob)
    ids = np.frombuffer(blob, dtype="<u2", count=h["n_inputs"] + h["n_outputs"], offset=h["io_offset"])
    return [int(x) for x in ids[: h["n_inputs"]]], [int(x) for x in ids[h["n_inputs"] :]]


class HostTwin:
    def __init__(self, blob: bytes) -> None:
        lib = _lib()
        try:
            arena_size = read_header(blob)["arena_size"]
        except ValueError:
            arena_size = 0  # too short to read: the runtime's own check below says why
        self.blob = _aligned(len(blob))
        self.blob[:] = np.frombuffer(blob, dtype=np.uint8)
        self.arena = _aligned(max(16, arena_size))
        self.handle = ctypes.create_string_buffer(lib.rt_plan_struct_size())
        err = ctypes.create_string_buffer(256)
        status = lib.rt_plan_load(
            self.handle,
            self.blob.ctypes.data,
            len(blob),
            self.arena.ctypes.data,
            self.arena.size,
            err,
            len(err),
        )
        if status != 0:
            raise ModelError(f"the runtime refused the plan: {err.value.decode()}")
        self.header = read_header(blob)
        self.tensors = tensor_table(blob)
        self.inputs, self.outputs = io_tensors(blob)

    def streamed(self, i: int) -> bool:
        """Does the plan stream input i (a band of rows at a time, lowering/stream.py)?"""
        return self.tensors[self.inputs[i]]["storage"] == STORAGE_STREAM

    def _view(self, tid: int) -> np.ndarray:
        t = self.tensors[tid]
        if t["storage"] == STORAGE_STREAM:
            raise ModelError(
                f"tensor {tid} is a streamed input: it has no bytes of its own (its band holds its rows)"
            )
        ptr = _lib().rt_tensor_data(self.handle, tid)
        buf = (ctypes.c_uint8 * t["size"]).from_address(ptr)
        return np.frombuffer(buf, dtype=t["dtype_name"]).reshape(t["shape"])

    def input_spec(self, i: int) -> dict:
        return self.tensors[self.inputs[i]]

    def output_spec(self, i: int) -> dict:
        return self.tensors[self.outputs[i]]

    def invoke(
        self, inputs: list[np.ndarray], first: int = 0, end: int | None = None, lr_scale: float = 1.0
    ) -> list[np.ndarray]:
        """Runs operators [first, end) (all by default) on the inputs; returns the outputs.
        lr_scale: the learning-rate schedule's factor for this step, as the board's TRAIN
        applies it (kernels/grad.h's grad_lr_scale, put back to 1 afterwards). A streamed
        input is given whole, as any other: each INPUT_ROWS operator in the range gets its
        rows from it (rt_invoke_to_fetch), as the board gets them from the host."""
        if len(inputs) != len(self.inputs):
            raise ModelError(f"the model takes {len(self.inputs)} input(s), got {len(inputs)}")
        whole: dict[int, np.ndarray] = {}  # streamed input -> its bytes
        for k, (tid, x) in enumerate(zip(self.inputs, inputs, strict=True)):
            t = self.tensors[tid]
            x = np.asarray(x)
            if x.dtype != np.dtype(t["dtype_name"]) or x.size * x.itemsize != t["size"]:
                raise ModelError(
                    f"input {k} must be {t['dtype_name']} with shape {t['shape']}, got {x.dtype} {x.shape}"
                )
            if t["storage"] == STORAGE_STREAM:
                whole[k] = np.ascontiguousarray(x).view(np.uint8).reshape(-1)
            else:
                self._view(tid)[...] = x.reshape(t["shape"])
        n = self.header["n_ops"]
        scale = _lr_scale()
        scale.value = lr_scale
        try:
            if whole:
                self._invoke_streamed(whole, first, n if end is None else end)
            else:
                _lib().rt_invoke_range(self.handle, first, n if end is None else end, None, None)
        finally:
            scale.value = 1.0
        return [self._view(tid).copy() for tid in self.outputs]

    def _invoke_streamed(self, whole: dict[int, np.ndarray], first: int, end: int) -> None:
        """Operators [first, end), stopping after each INPUT_ROWS to write the rows it asks
        for from the whole input (the board asks the host for them instead)."""
        lib, f = _lib(), Fetch()
        at = first
        while at < end:
            nxt = int(lib.rt_invoke_to_fetch(self.handle, at, end, None, None))
            if nxt > at and lib.rt_op_fetch(self.handle, nxt - 1, ctypes.byref(f)):
                src = whole[f.input]
                if f.offset + f.len > src.size:
                    raise ModelError(f"operator {f.op} asks for input bytes past the input's {src.size}")
                ctypes.memmove(f.dst, src.ctypes.data + f.offset, f.len)
            if nxt <= at:
                break
            at = nxt

    def tensor(self, tid: int) -> np.ndarray:
        """A copy of any plan tensor (e.g. trained state, or logits after a forward pass)."""
        return self._view(tid).copy()

    def set_tensor(self, tid: int, value: np.ndarray) -> None:
        """Writes a plan tensor in place (e.g. a trained state saved by an earlier session)."""
        view = self._view(tid)
        value = np.asarray(value)
        if value.dtype != view.dtype or value.size != view.size:
            raise ModelError(f"tensor {tid} is {view.dtype} {view.shape}, got {value.dtype} {value.shape}")
        view[...] = value.reshape(view.shape)

    def arena_bytes(self, offset: int, size: int) -> bytes:
        return self.arena[offset : offset + size].tobytes()

    def reset_state(self) -> None:
        _lib().rt_reset_state(self.handle)
