"""`invoke pull`: the trained weights, from a board back into the original .tflite.

The training step keeps every trained parameter as RAM state (compile_train; plan storage 2):
the first `train_rows` output channels of a layer's int8 weights (depthwise: the first
channels of its [kh, kw, C] filter) and its int32 bias. QAS trains in the quantized domain and
keeps each tensor's scales, so the trained model is the original one with those bytes
replaced: nothing else changes. The export patches the original flatbuffer in place (same
sizes, same quantization, same operators, metadata kept), so the result is exactly the model
the board runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pytools.errors import ToolError
from pytools.model.host_twin import tensor_table
from pytools.train.compile_train import CompiledTraining


class ArenaReader(Protocol):
    def arena_bytes(self, offset: int, size: int) -> bytes: ...


@dataclass
class TrainedParam:
    """One trained parameter: the model tensor it belongs to and its state tensor."""

    model_tensor: int  # tensor index in the original model (= the training graph's copy)
    state_tensor: int  # graph tensor of the RAM state
    kind: str  # "weights" or "bias"
    op_kind: str
    rows: int  # weights: leading output channels trained (depthwise: channels)


def trained_params(ct: CompiledTraining) -> list[TrainedParam]:
    out = []
    g = ct.train.graph
    for op in g.ops[: ct.train.n_forward]:
        o = op.options
        if "trained_filter" not in o:
            continue
        if o["trained_filter"] >= 0:
            out.append(TrainedParam(op.inputs[1], o["trained_filter"], "weights", op.kind, o["train_rows"]))
        if o["trained_bias"] >= 0:
            out.append(TrainedParam(op.inputs[2], o["trained_bias"], "bias", op.kind, 0))
    return out


def read_state(ct: CompiledTraining, board: ArenaReader) -> dict[int, np.ndarray]:
    """Every state tensor of the plan, read from the board's arena (ARENA_READ), by graph tensor."""
    table = tensor_table(ct.compiled.blob)
    out = {}
    for t in ct.train.state:
        rec = table[ct.compiled.plan_ids[t]]
        raw = board.arena_bytes(rec["offset"], rec["size"])
        out[t] = np.frombuffer(raw, dtype=rec["dtype_name"]).reshape(rec["shape"]).copy()
    return out


def _buffer_spans(model: bytes) -> tuple[list[int], dict[int, tuple[int, int]], list[str]]:
    """For subgraph 0: each tensor's buffer index, each buffer's (file offset, length) of its
    data, and each tensor's name."""
    from tflite.Model import Model

    m = Model.GetRootAs(model, 0)
    sg = m.Subgraphs(0)
    buffers = [sg.Tensors(i).Buffer() for i in range(sg.TensorsLength())]
    names = [sg.Tensors(i).Name().decode() for i in range(sg.TensorsLength())]
    spans = {}
    for b in set(buffers):
        buf = m.Buffers(b)
        o = buf._tab.Offset(4)  # the `data` field
        if o:
            spans[b] = (buf._tab.Vector(o), buf._tab.VectorLen(o))
    return buffers, spans, names


def export_trained(
    model: bytes, ct: CompiledTraining, state: dict[int, np.ndarray]
) -> tuple[bytes, list[str]]:
    """The original model with the trained rows and biases written in; and a line per change."""
    buffers, spans, names = _buffer_spans(model)
    out = bytearray(model)
    g = ct.train.graph
    lines = []
    for p in trained_params(ct):
        t = g.tensor(p.model_tensor)
        if names[p.model_tensor] != t.name:
            raise ToolError(
                f"the model's tensor {p.model_tensor} is {names[p.model_tensor]!r}, the plan's {t.name!r}"
            )
        b = buffers[p.model_tensor]
        if sum(x == b for x in buffers) > 1:
            raise ToolError(f"tensor {t.name!r} shares its buffer with another tensor: cannot write it alone")
        if b not in spans:
            raise ToolError(f"tensor {t.name!r} has no data in the model")
        start, length = spans[b]
        dtype = "<i1" if t.dtype == "int8" else "<i4"
        if t.dtype not in ("int8", "int32") or length != t.data.size * np.dtype(dtype).itemsize:
            raise ToolError(
                f"tensor {t.name!r}: {t.dtype}, {length} bytes in the model; "
                "expected int8 weights or int32 bias"
            )
        full = np.frombuffer(model, dtype=dtype, count=t.data.size, offset=start).reshape(t.shape).copy()
        new = state[p.state_tensor]
        if p.kind == "weights":
            if p.op_kind == "DEPTHWISE_CONV_2D":  # [1, kh, kw, C]: the first `rows` channels
                view = full.reshape(t.shape[1], t.shape[2], -1)
                view[:, :, : p.rows] = new.reshape(t.shape[1], t.shape[2], p.rows)
            else:  # [out, ...]: the first `rows` output channels
                full[: p.rows] = new.reshape(full[: p.rows].shape)
            channels = t.shape[-1] if p.op_kind == "DEPTHWISE_CONV_2D" else t.shape[0]
            what = f"weights, {p.rows} of {channels} channels"
        else:
            full[...] = new.reshape(full.shape)
            what = "bias"
        before = np.frombuffer(model, dtype=dtype, count=t.data.size, offset=start)
        changed = int(np.count_nonzero(before != full.reshape(-1)))
        out[start : start + length] = full.astype(dtype).tobytes()
        label = t.name if len(t.name) <= 48 else t.name[:45] + "..."
        lines.append(f"{p.op_kind} {label} ({what}): {changed:,} of {full.size:,} values changed by training")
    return bytes(out), lines


def pull(
    board_name: str | None,
    out: str,
    model: str = "",
    scheme: str = "",
    lr: float = 0.01,
    port: str | None = None,
) -> list[str]:
    """Reads the trained state from the board and writes the trained .tflite; the report lines.

    The board must run the training plan of (model, scheme, lr): the state's layout comes from
    that plan, so the plan is compiled again here and its build id checked against the board's.
    """
    from pathlib import Path

    from pytools.connect import open_link, resolve_board
    from pytools.model.board_runner import BoardModel
    from pytools.model.host_twin import io_tensors
    from pytools.model.tflite_import import import_tflite
    from pytools.session import DEFAULT_SCHEME, _load_model, _model_info, _scheme, plan_mismatches
    from pytools.train.compile_train import compile_training

    board = resolve_board(board_name)
    if not out.endswith(".tflite"):
        raise ToolError(f"--out must name a .tflite file, got {out!r}")
    model_bytes, model_name, source = _load_model(Path(model) if model else None, "digits")
    spec = scheme or DEFAULT_SCHEME
    ct = compile_training(
        import_tflite(model_bytes, model_name), _scheme(spec), board, model_name, link=True, lr=lr
    )
    if ct.image is None:
        raise ToolError(f"this training plan does not fit {board.name}: no board can be running it")
    lines = [f"plan      {model_name} ({source}), scheme {spec}, lr {lr:g}: build {ct.image.build_id}"]
    with open_link(board, port) as link:
        problems = plan_mismatches(link.board, _model_info(link), ct)
        if problems:
            raise ToolError(
                f"the board does not run this training plan: {'; '.join(problems)}. Give the --model, "
                "--scheme and --lr it was trained with."
            )
        ins, outs = io_tensors(ct.compiled.blob)
        state = read_state(ct, BoardModel(link, tensor_table(ct.compiled.blob), ins, outs))
        lines.append(
            f"board     {link.board['board']}, build {link.board['build_id']}: "
            f"{len(state)} state tensors read"
        )
    data, changes = export_trained(model_bytes, ct, state)
    Path(out).write_bytes(data)
    lines += changes
    lines.append(
        f"wrote     {out} ({len(data):,} B; only the trained weights and biases differ from the original)"
    )
    return lines
