"""Running an embedded model on a board over the serial link.

BoardModel: any plan, with the generic messages (TENSOR_WRITE in, INVOKE, TENSOR_READ out).
BoardTraining: a training step, with the training messages (SAMPLE, TRAIN, EVAL, PREDICT).

Both take a plan that streams an input (docs/protocol.md, "Streamed inputs"): the board holds a
band of its rows at a time, stops where it needs more and answers NEED_INPUT; the client sends
exactly the bytes it names and repeats the request. Never a byte the board did not ask for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytools.errors import ToolError
from pytools.link.client import Link, LinkError
from pytools.link.protocol import Msg, layout
from pytools.model.plan import DTYPE_NAMES, STORAGE_STREAM

WRITE_HEADER = layout("TENSOR_WRITE").size
NO_SAMPLE_ID = 0xFFFFFFFF
KIND_INVOKE = 3  # NEED_INPUT's kind for an INVOKE (payloads.def)


def need_input(payload: bytes) -> dict[str, Any]:
    """A NEED_INPUT reply's fields."""
    return layout("NEED_INPUT").unpack(payload)


def asked_window(need: dict[str, Any], size: int, what: str) -> tuple[int, int]:
    """The bytes [start, end) of a streamed input of size bytes that a NEED_INPUT asks for (the
    window's rest after what the board already has); a LinkError naming the window if it does
    not lie inside the input."""
    lo, n, got = need["offset"], need["length"], need["received"]
    if lo + n > size or got > n:
        raise LinkError(
            f"the board asks for bytes [{lo}, {lo + n}) of {what} (it has {got} of them), which is "
            f"{size} bytes: the board runs another plan than this host's? (compare MODEL_INFO)"
        )
    return lo + got, lo + n


def read_arena(link: Link, offset: int, size: int) -> bytes:
    """Raw arena bytes (e.g. the trained state), with ARENA_READ in chunks of max_reply."""
    chunk = link.board["max_reply"]
    out = bytearray()
    for off in range(offset, offset + size, chunk):
        req = layout("ARENA_READ").pack(offset=off, length=min(chunk, offset + size - off))
        out += link.request(Msg.ARENA_READ, req).payload
    return bytes(out)


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

    def _write(self, index: int, data: bytes, start: int = 0) -> None:
        """data at byte start of input index, in chunks the board takes."""
        chunk = self.link.board["max_payload"] - WRITE_HEADER
        for off in range(0, len(data), chunk):
            head = layout("TENSOR_WRITE").pack(io=0, index=index, offset=start + off)
            self.link.request(Msg.TENSOR_WRITE, head + data[off : off + chunk])

    def streamed(self, index: int) -> bool:
        """Does the plan stream input index (its bytes go in only when the board asks)?"""
        return self.tensors[self.inputs[index]]["storage"] == STORAGE_STREAM

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
        return read_arena(self.link, offset, size)

    def run(
        self, data: dict[int, bytes], timeout: float = 120.0, first: int = 0, end: int | None = None
    ) -> dict:
        """INVOKE of operators [first, end) (all: end None), answering each NEED_INPUT with the
        bytes it names of data[input] (TENSOR_WRITE) and going on from where the board stopped;
        the report's cost is the sum over the INVOKEs ("invokes" of them)."""
        stop = self.info["n_ops"] if end is None else end
        rng = (
            b""
            if end is None and first == 0
            else layout("INVOKE").pack(first=first, end=0xFFFF if end is None else end)
        )
        cost, invokes = 0, 0
        while True:
            r = self.link.request(Msg.INVOKE, rng, timeout=timeout)
            invokes += 1
            if r.type == Msg.INVOKE_RSP:
                report = layout("INVOKE_RSP").unpack(r.payload)
                return {**report, "cost": cost + report["cost"], "invokes": invokes}
            if r.type != Msg.NEED_INPUT:
                raise LinkError(f"INVOKE answered with 0x{r.type:02x}")
            need = need_input(r.payload)
            cost += need["cost"]
            k = need["input"]
            if need["kind"] != KIND_INVOKE or k not in data or not self.streamed(k):
                raise LinkError(
                    f"INVOKE answered NEED_INPUT for input {k} ({need}), which this host does not "
                    "stream: the board runs another plan than this host's? (compare MODEL_INFO)"
                )
            if not first < need["next_op"] <= stop:
                raise LinkError(f"INVOKE [{first}, {stop}) stopped at operator {need['next_op']}, outside it")
            lo, hi = asked_window(need, len(data[k]), f"input {k}")
            self._write(k, data[k][lo:hi], lo)
            if need["next_op"] >= stop:
                return {
                    "cost": cost,
                    "counter_unit": self.link.board.get("counter_unit", 0),
                    "n_ops": self.info["n_ops"],
                    "stack_high_water": need["stack_high_water"],
                    "invokes": invokes,
                }
            first = need["next_op"]
            rng = layout("INVOKE").pack(first=first, end=end if end is not None else 0xFFFF)

    def invoke(
        self, inputs: list[np.ndarray], timeout: float = 120.0, first: int = 0, end: int | None = None
    ) -> tuple[list[np.ndarray], dict]:
        """Outputs for one set of inputs, and the INVOKE report (cost in board units: of every
        INVOKE the run took, "invokes" of them: more than one where the board stopped for rows
        of a streamed input)."""
        data = {}
        for k, x in enumerate(inputs):
            t = self.tensors[self.inputs[k]]
            data[k] = np.ascontiguousarray(x, dtype=t["dtype_name"]).tobytes()
            if not self.streamed(k):
                self._write(k, data[k])
        report = self.run(data, timeout, first, end)
        outs = []
        for k, tid in enumerate(self.outputs):
            t = self.tensors[tid]
            outs.append(np.frombuffer(self._read(k, t["size"]), dtype=t["dtype_name"]).reshape(t["shape"]))
        return outs, report


SAMPLE_HEADER = layout("SAMPLE").size
KINDS = ("train", "eval", "predict")


@dataclass(frozen=True)
class StepResult:
    """A STEP_RESULT: what one TRAIN, EVAL or PREDICT did on the board."""

    sample_id: int
    kind: str  # train, eval, predict
    replayed: bool  # a TRAIN of an id already trained: the kept result, nothing trained
    epoch: int
    label: int | None
    prediction: int
    correct: bool
    loss: float  # before the update; NaN for predict
    cost: int  # counter units (board's counter_unit)
    samples_trained: int
    stack_high_water: int
    lr_scale: float = 0.0  # TRAIN: the learning-rate schedule factor it trained with

    @classmethod
    def unpack(cls, payload: bytes) -> StepResult:
        r = layout("STEP_RESULT").unpack(payload)
        return cls(
            sample_id=r["sample_id"],
            kind=KINDS[r["kind"]],
            replayed=bool(r["replayed"]),
            epoch=r["epoch"],
            label=None if r["label"] == 0xFFFF else r["label"],
            prediction=r["prediction"],
            correct=bool(r["correct"]),
            loss=float(r["loss"]),
            cost=r["cost"],
            samples_trained=r["samples_trained"],
            stack_high_water=r["stack_high_water"],
            lr_scale=float(r["lr_scale"]),
        )


class BoardTraining:
    """The training step embedded in a board's firmware, driven by the training messages.

    Samples go in SAMPLE chunks of the size the board reports (TRAIN_CONFIG's chunk_max);
    TRAIN, EVAL and PREDICT name the sample by id. The board trains each sample id once:
    see docs/protocol.md, "Training over the link". A streamed sample goes in as the board asks
    for it: its first window (TRAIN_CONFIG's first_window) with the SAMPLE, the rest in answer
    to each NEED_INPUT, after which the request is repeated ("Streamed inputs").
    """

    def __init__(self, link: Link) -> None:
        self.link = link
        # How long to wait for a STEP_RESULT before asking again: a step's own time grows with the
        # model, so the wait follows the slowest step seen (a repeat is never trained twice: the
        # board answers it from its reply cache). A fixed long wait would stall on every reply
        # that a damaged frame lost.
        self.slowest = 0.0
        r = link.request(Msg.TRAIN_CONFIG)
        if r.type != Msg.TRAIN_CONFIG_RSP:
            raise LinkError(f"TRAIN_CONFIG answered with 0x{r.type:02x}")
        self.config = layout("TRAIN_CONFIG_RSP").unpack(r.payload)
        self.dtype = np.dtype(DTYPE_NAMES[self.config["sample_dtype"]])
        self.shape = tuple(self.config[f"dim{k}"] for k in range(self.config["sample_ndim"]))
        # The sample last sent (id, bytes, label): a streamed one's rest goes in when asked.
        self.loaded: tuple[int, bytes, int] | None = None

    def arena_bytes(self, offset: int, size: int) -> bytes:
        """Raw arena bytes (the trained state)."""
        return read_arena(self.link, offset, size)

    def status(self) -> dict[str, Any]:
        r = self.link.request(Msg.TRAIN_STATUS)
        if r.type != Msg.TRAIN_STATUS_RSP:
            raise LinkError(f"TRAIN_STATUS answered with 0x{r.type:02x}")
        return layout("TRAIN_STATUS_RSP").unpack(r.payload)

    def sample_bytes(self, x: np.ndarray) -> bytes:
        """x as the plan's input bytes; refuses another size (before anything is sent)."""
        data = np.ascontiguousarray(x, dtype=self.dtype).tobytes()
        if len(data) != self.config["sample_size"]:
            raise ToolError(
                f"a sample is {self.config['sample_size']} bytes ({self.dtype} {list(self.shape)}) "
                f"for the board's plan; this one is {len(data)} bytes"
            )
        return data

    def load(self, sample_id: int, x: np.ndarray | bytes, label: int = 0) -> None:
        """Writes one sample (and its label) to the board, in chunks it accepts: all of it, or
        of a streamed one the first window (the board asks for the rest, _result)."""
        data = x if isinstance(x, bytes) else self.sample_bytes(x)
        first = self.config["first_window"]
        if first < self.config["sample_size"]:  # streamed: the rest only when the board asks
            if len(data) != self.config["sample_size"]:
                raise ToolError(
                    f"a sample is {self.config['sample_size']} bytes for the board's plan; "
                    f"this one is {len(data)}"
                )
            self.loaded = (sample_id, data, label)
        else:
            self.loaded, first = (sample_id, data, label), len(data)  # the board checks its size
        self._send(sample_id, data, label, 0, first)

    def _send(self, sample_id: int, data: bytes, label: int, start: int, end: int) -> None:
        """SAMPLE chunks of data[start:end] (one empty chunk if start = end = 0: it starts a sample)."""
        chunk = self.config["chunk_max"]
        for off in range(start, max(end, 1) if start == 0 else end, chunk):
            head = layout("SAMPLE").pack(sample_id=sample_id, offset=off, label=label)
            self.link.request(Msg.SAMPLE, head + data[off : min(off + chunk, end)])

    def _feed(self, name: str, payload: bytes, need: dict[str, Any]) -> None:
        """The SAMPLE chunks a NEED_INPUT asks for, of the sample sent last: a LinkError if it
        names another sample or bytes outside it."""
        sample_id = int.from_bytes(payload[:4], "little")
        if self.loaded is None or need["sample_id"] != sample_id or self.loaded[0] != sample_id:
            sent = "none" if self.loaded is None else f"sample {self.loaded[0]}"
            raise LinkError(
                f"{name} {sample_id} answered NEED_INPUT for sample {need['sample_id']}; this host sent "
                f"{sent}: nothing to send it (was the board driven by another host meanwhile?)"
            )
        _, data, label = self.loaded
        lo, hi = asked_window(need, len(data), f"sample {sample_id}")
        self._send(sample_id, data, label, lo, hi)

    def _result(self, type_: int, payload: bytes, timeout: float | None) -> StepResult:
        """The request's STEP_RESULT, answering each NEED_INPUT (a streamed sample's next rows,
        then the same request again: the board goes on where it stopped)."""
        name = Msg(type_).name
        while True:
            wait = timeout if timeout is not None else max(self.link.timeout, 3 * self.slowest)
            t0, retransmits = time.monotonic(), self.link.stats.retransmits
            r = self.link.request(type_, payload, timeout=wait)
            if self.link.stats.retransmits == retransmits:
                self.slowest = max(self.slowest, time.monotonic() - t0)
            if r.type == Msg.STEP_RESULT:
                res = StepResult.unpack(r.payload)
                if not res.replayed:
                    self.loaded = None  # the step consumed it
                return res
            if r.type != Msg.NEED_INPUT:
                raise LinkError(f"{name} answered with 0x{r.type:02x}")
            self._feed(name, payload, need_input(r.payload))

    def train(
        self,
        sample_id: int,
        x: np.ndarray,
        label: int,
        epoch: int = 0,
        timeout: float | None = None,
        lr_scale: float = 1.0,
    ) -> StepResult:
        """One training step on sample_id (the board's next id): SAMPLE chunks, then TRAIN, at
        the plan's lr times lr_scale (the learning-rate schedule's factor for this step)."""
        self.load(sample_id, x, label)
        return self.replay(sample_id, epoch, timeout, lr_scale)

    def replay(
        self, sample_id: int, epoch: int = 0, timeout: float | None = None, lr_scale: float = 1.0
    ) -> StepResult:
        """TRAIN alone: for an id already trained, the board's kept result (nothing trains; the
        kept result's lr_scale is the one it trained with)."""
        payload = layout("TRAIN").pack(sample_id=sample_id, epoch=epoch, lr_scale=lr_scale)
        return self._result(Msg.TRAIN, payload, timeout)

    def evaluate(self, sample_id: int, x: np.ndarray, label: int, timeout: float | None = None) -> StepResult:
        """Loss and prediction against the label, without training."""
        self.load(sample_id, x, label)
        return self._result(Msg.EVAL, layout("EVAL").pack(sample_id=sample_id), timeout)

    def predict(self, sample_id: int, x: np.ndarray, timeout: float | None = None) -> StepResult:
        """The forward pass alone: the predicted class."""
        self.load(sample_id, x, 0)
        return self._result(Msg.PREDICT, layout("PREDICT").pack(sample_id=sample_id), timeout)
