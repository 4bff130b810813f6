"""Running an embedded model on a board over the serial link: inputs in, INVOKE, outputs out."""

from __future__ import annotations

from typing import Any

import numpy as np

from pytools.link.client import Link, LinkError
from pytools.link.protocol import Msg, layout

WRITE_HEADER = layout("TENSOR_WRITE").size


class BoardModel:
    """The model embedded in the firmware of a connected board."""

    def __init__(self, link: Link, tensors: list[dict], inputs: list[int], outputs: list[int]) -> None:
        self.link = link
        self.tensors, self.inputs, self.outputs = tensors, inputs, outputs
        self.info = self.model_info()
        if self.info["status"] != 0:
            raise LinkError(f"the board has no usable model: {self.info['message']}")

    def model_info(self) -> dict[str, Any]:
        return layout("MODEL_INFO_RSP").unpack(self.link.request(Msg.MODEL_INFO).payload)

    def _write(self, index: int, data: bytes) -> None:
        chunk = self.link.board["max_payload"] - WRITE_HEADER
        for off in range(0, len(data), chunk):
            head = layout("TENSOR_WRITE").pack(io=0, index=index, offset=off)
            self.link.request(Msg.TENSOR_WRITE, head + data[off : off + chunk])

    def _read(self, index: int, size: int) -> bytes:
        chunk = self.link.board["max_reply"]
        out = bytearray()
        for off in range(0, size, chunk):
            req = layout("TENSOR_READ").pack(io=1, index=index, offset=off, length=min(chunk, size - off))
            r = self.link.request(Msg.TENSOR_READ, req)
            if r.type != Msg.TENSOR_DATA:
                raise LinkError(f"TENSOR_READ answered with 0x{r.type:02x}")
            out += r.payload
        return bytes(out)

    def arena_bytes(self, offset: int, size: int) -> bytes:
        chunk = self.link.board["max_reply"]
        out = bytearray()
        for off in range(offset, offset + size, chunk):
            req = layout("ARENA_READ").pack(offset=off, length=min(chunk, offset + size - off))
            out += self.link.request(Msg.ARENA_READ, req).payload
        return bytes(out)

    def invoke(
        self, inputs: list[np.ndarray], timeout: float = 120.0, first: int = 0, end: int | None = None
    ) -> tuple[list[np.ndarray], dict]:
        """Outputs for one set of inputs, and the INVOKE report (cost in board units)."""
        for k, x in enumerate(inputs):
            t = self.tensors[self.inputs[k]]
            self._write(k, np.ascontiguousarray(x, dtype=t["dtype_name"]).tobytes())
        rng = b"" if end is None and first == 0 else layout("INVOKE").pack(first=first, end=end or 0xFFFF)
        report = layout("INVOKE_RSP").unpack(self.link.request(Msg.INVOKE, rng, timeout=timeout).payload)
        outs = []
        for k, tid in enumerate(self.outputs):
            t = self.tensors[tid]
            outs.append(np.frombuffer(self._read(k, t["size"]), dtype=t["dtype_name"]).reshape(t["shape"]))
        return outs, report
