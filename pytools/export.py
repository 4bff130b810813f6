"""`invoke pull`: the trained weights, from a board back into the original .tflite.

The training step keeps every trained parameter as RAM state (compile_train; plan storage 2):
the first `train_rows` output channels of a layer's int8 weights (depthwise: the first
channels of its [kh, kw, C] filter; CONV_2D with an input-channel slice: the first
`train_cols` input channels of every output channel) and its int32 bias. QAS trains in the
quantized domain and keeps each tensor's scales, so the trained model is the original one with those bytes
replaced: nothing else changes. The export patches the original flatbuffer in place (same
sizes, same quantization, same operators, metadata kept), so the result is exactly the model
the board runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pytools import validate
from pytools.boards import Board
from pytools.errors import ToolError
from pytools.model.host_twin import tensor_table
from pytools.model.ir import Graph
from pytools.train.compile_train import CompiledTraining
from pytools.train.trainer import Trainer


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
    cols: int = 0  # CONV_2D weights: leading input channels trained, of every output channel

    def write_into(self, full: np.ndarray, new: np.ndarray) -> str:
        """Writes the state `new` into the model tensor's values `full` (in place) where the
        step keeps them; returns what that part is."""
        if self.kind != "weights":
            full[...] = new.reshape(full.shape)
            return "bias"
        if self.cols:  # [out, kh, kw, in]: the first `cols` input channels of every row
            full[..., : self.cols] = new.reshape(*full.shape[:-1], self.cols)
            return f"weights, {self.cols} of {full.shape[-1]} input channels"
        if self.op_kind == "DEPTHWISE_CONV_2D":  # [1, kh, kw, C]: the first `rows` channels
            view = full.reshape(full.shape[1], full.shape[2], -1)
            view[:, :, : self.rows] = new.reshape(full.shape[1], full.shape[2], self.rows)
            return f"weights, {self.rows} of {full.shape[-1]} channels"
        full[: self.rows] = new.reshape(full[: self.rows].shape)  # [out, ...]: the first rows
        return f"weights, {self.rows} of {full.shape[0]} channels"


def trained_params(ct: CompiledTraining) -> list[TrainedParam]:
    out = []
    g = ct.train.graph
    for op in g.ops[: ct.train.n_forward]:
        o = op.options
        if "trained_filter" not in o:
            continue
        if o["trained_filter"] >= 0:
            out.append(
                TrainedParam(
                    op.inputs[1],
                    o["trained_filter"],
                    "weights",
                    op.kind,
                    o["train_rows"],
                    o.get("train_cols", 0),
                )
            )
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
        what = p.write_into(full, state[p.state_tensor])
        before = np.frombuffer(model, dtype=dtype, count=t.data.size, offset=start)
        changed = int(np.count_nonzero(before != full.reshape(-1)))
        out[start : start + length] = full.astype(dtype).tobytes()
        label = t.name if len(t.name) <= 48 else t.name[:45] + "..."
        lines.append(f"{p.op_kind} {label} ({what}): {changed:,} of {full.size:,} values changed by training")
    return bytes(out), lines


def _session_settings(session: str) -> tuple[Path, dict[str, Any]]:
    """A session folder ('latest' or a path) and the arguments it was trained with."""
    from pytools.session import latest_session

    folder = latest_session() if session == "latest" else Path(session)
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise ToolError(f"{folder} holds no training session (config.json): name a folder under sessions/")
    return folder, validate.session_config(validate.json_file(cfg), cfg)


@contextlib.contextmanager
def _session_board(board: Board, folder: Path, ct: CompiledTraining) -> Iterator[str]:
    """An emulated board booted from a session's flash: the session's firmware and plan, with
    the trained state it last saved (its final save, or a checkpoint) restored at boot.
    Stopped (and its copy of the flash forgotten) afterwards."""
    from pytools import emulator
    from pytools.session import BOARD_FLASH

    saved = folder / BOARD_FLASH
    if not saved.is_file():
        raise ToolError(
            f"{folder} has no {BOARD_FLASH}: that session did not save its trained state to the "
            "emulated board's flash (it ran with --no-save, on a reused emulator, or stopped before "
            "its first checkpoint). "
            "Pull from the running board instead (--port)"
        )
    assert ct.image is not None
    name = f"pull-{os.getpid()}"
    emulator.RUN.mkdir(parents=True, exist_ok=True)
    try:
        emulator.import_flash(board, name, saved)
        emu = emulator.start(board, ct.image.elf, name=name)
        yield emu.url
    finally:
        emulator.stop(name)
        emulator.erase_flash(name)
        (emulator.RUN / f"{name}.log").unlink(missing_ok=True)


def check_held_out(data: bytes, ct: CompiledTraining, trained: Trainer, xs: np.ndarray, what: str) -> str:
    """The exported model against what trained it (trained: the board's or the twin's Trainer,
    holding the trained state), on held-out samples: the int8 values of the tensor the loss is
    about (the logits, or an autoencoder's reconstruction) after the forward pass, in TFLite's
    interpreter and on the device, bit for bit; for a classifier, their predictions too. The
    report line; a ToolError (nothing written) on any difference. what: "board" or "twin"."""
    tensor = ct.train.graph.tensor(ct.train.logits).name
    ours = [trained.forward_output(x).reshape(-1) for x in xs]
    from pytools.model.oracle import tflite_tensor_values

    try:
        theirs = [v.reshape(-1) for v in tflite_tensor_values(data, tensor, xs)]
    except ValueError as e:
        raise ToolError(f"the exported model cannot be checked: {e}") from None
    same = sum(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    if same != len(xs):
        raise ToolError(
            f"the exported model's '{tensor}' differs from the {what}'s on {len(xs) - same} of {len(xs)} "
            "held-out samples: not written (a bug: please report it with the session folder)"
        )
    head = ct.train.head
    if head is not None and head.loss == "mse":
        return f"its reconstruction ('{tensor}') in TFLite's interpreter equals the {what}'s, bit for bit"
    # A classifier: the predictions too (the device's un-clamped logits against TFLite's int8
    # values: equal wherever the int8 values do not tie at their ceiling).
    if head is not None and head.loss == "bce" and ours and ours[0].size == 1:
        zp = int(ct.train.graph.tensor(ct.train.logits).quant.zero_point[0])
        in_tflite = [int(v[0] > zp) for v in theirs]
    else:
        in_tflite = [int(np.argmax(v)) for v in theirs]
    agree = sum(int(trained.predict(x)) == p for x, p in zip(xs, in_tflite, strict=True))
    return (
        f"predictions in TFLite's interpreter equal the {what}'s on {agree} (its logits '{tensor}' bit for "
        "bit on all)"
    )


def pull(
    board_name: str | None,
    out: str,
    model: str = "",
    scheme: str = "",
    lr: float = 0.01,
    port: str | None = None,
    session: str = "",
    check: int = 50,
    allow_older: bool = False,
) -> list[str]:
    """Reads the trained state from the board and writes the trained .tflite; the report lines.

    The board must run the training plan of (model, scheme, lr): the state's layout comes from
    that plan, so the plan is compiled again here and its build id checked against the board's.
    session: take model, scheme, lr and board from a session folder ('latest' or a path); on
    the emulated board without --port, boot the session's firmware from the flash it saved.
    check: with a session, that many held-out samples of its data set are predicted by the
    board and by the exported model in TFLite's interpreter, and must agree.
    allow_older: with a session, export an earlier checkpoint of it when the board does not hold
    its final state (refused otherwise: see session_state).
    """
    from pytools import persist
    from pytools.connect import open_link, resolve_board
    from pytools.model.board_runner import BoardModel, BoardTraining
    from pytools.model.host_twin import io_tensors
    from pytools.session import DEFAULT_SCHEME, load_model, model_info, plan_mismatches, resolve_scheme
    from pytools.train.compile_train import compile_training
    from pytools.train.trainer import Trainer

    validate.output_file(out, "--out", ".tflite")  # before anything is built or started
    folder: Path | None = None
    dataset = "digits"
    cfg: dict[str, Any] = {}
    if session:
        folder, cfg = _session_settings(session)
        a = cfg["arguments"]
        model, scheme, dataset = a["model"] or "", a["scheme"], a["dataset"]
        lr = a["lr"] if a["lr"] is not None else cfg["lr"]["value"]  # None: the sweep chose it
        if cfg["board"].get("host_twin"):
            return _pull_twin_session(folder, cfg, out, model, scheme or DEFAULT_SCHEME, lr, check)
        board_name = board_name or cfg["board"]["name"]
    elif allow_older:
        raise ToolError("--allow-older goes with --session (it allows a session's earlier checkpoint)")
    validate.lr(lr)
    board = resolve_board(board_name)
    model_bytes, model_name, source = load_model(Path(model) if model else None, dataset)
    spec = scheme or DEFAULT_SCHEME
    graph, loss, head_note = session_model(cfg, model_bytes, model_name)
    ct = compile_training(graph, resolve_scheme(spec), board, model_name, link=True, lr=lr, loss=loss)
    if ct.image is None:
        raise ToolError(f"this training plan does not fit {board.name}: no board can be running it")
    lines = [f"plan      {model_name} ({source}), scheme {spec}, lr {lr:g}: build {ct.image.build_id}"]
    if head_note:
        lines.append(f"head      {head_note}")
    with contextlib.ExitStack() as stack:
        if folder is not None and board.is_emulated and not port:
            port = stack.enter_context(_session_board(board, folder, ct))
            lines.append(f"board     emulated {board.name}, booted from {folder / 'board-flash.bin'}")
        link = stack.enter_context(open_link(board, port))
        problems = plan_mismatches(link.board, model_info(link), ct)
        if problems:
            raise ToolError(
                f"the board does not run this training plan: {'; '.join(problems)}. Give the --model, "
                "--scheme and --lr it was trained with (or --session; a session trained with --loss or "
                "--new-head: --session, which knows them)."
            )
        if folder is not None:  # the board must hold the session's final state (or an allowed checkpoint)
            note = session_state(folder, cfg, persist.info(link), BoardTraining(link).status(), allow_older)
        ins, outs = io_tensors(ct.compiled.blob)
        reader = BoardModel(link, tensor_table(ct.compiled.blob), ins, outs)
        state = read_state(ct, reader)
        lines.append(
            f"board     {link.board['board']}, build {link.board['build_id']}: "
            f"{len(state)} state tensors read"
        )
        data, changes = _export(model_bytes, graph, ct, state, head_note)
        if folder is not None:
            lines.append(note)
        if folder is not None and check > 0:
            xs = _held_out(cfg, graph, check)
            said = check_held_out(data, ct, Trainer(ct, reader), xs, "board")
            lines.append(f"check     {len(xs)} of {len(xs)} held-out {dataset} samples: {said}")
    Path(out).write_bytes(data)
    return lines + changes + [_wrote(out, data, head_note)]


def session_model(cfg: dict[str, Any], model_bytes: bytes, model_name: str) -> tuple[Graph, str, str | None]:
    """The model a session trained (with the new head it gave it: --new-head, drawn again from
    the seed config.json kept), the loss it trained with, and the new head's line (None: the
    model's own head). cfg: the session's config.json ({}: no session, the model as it is)."""
    from pytools.model.tflite_import import import_tflite
    from pytools.session import model_head

    a = cfg.get("arguments", {})
    loss, new_head = a.get("loss") or "auto", a.get("new_head") or 0
    seed = (cfg.get("head") or {}).get("seed")
    graph, _head, note = model_head(
        import_tflite(model_bytes, model_name), loss, new_head, a.get("seed", 0) if seed is None else seed
    )
    return graph, loss, note


def _export(
    model_bytes: bytes,
    graph: Graph,
    ct: CompiledTraining,
    state: dict[int, np.ndarray],
    head_note: str | None,
) -> tuple[bytes, list[str]]:
    """The trained .tflite and a line per change: the original file patched in place, or (a new
    head: other shapes than the original's buffers) the graph written as a new flatbuffer."""
    if not head_note:
        return export_trained(model_bytes, ct, state)
    from pytools.train.new_head import export_graph

    data = export_graph(graph, ct, state)
    lines = [
        f"{p.op_kind} {ct.train.graph.tensor(p.model_tensor).name} ({p.kind}): trained"
        for p in trained_params(ct)
    ]
    return data, lines


def _wrote(out: str, data: bytes, head_note: str | None) -> str:
    if head_note:
        return f"wrote     {out} ({len(data):,} B; a new flatbuffer: the model with its new, trained head)"
    return f"wrote     {out} ({len(data):,} B; only the trained weights and biases differ from the original)"


def session_state(
    folder: Path, cfg: dict[str, Any], info: dict[str, Any], status: dict[str, Any], allow_older: bool
) -> str:
    """Which of the session's states the board holds; the report line when it may be exported.

    The board's state (its count of trained samples and the state's CRC-32, TRAIN_STATUS) must be
    the session's final one: its count after the last logged step, and the CRC-32 of its final
    save when it made one. Anything else is refused with what the board holds (each slot and the
    check it failed, PERSIST_INFO) and what that means for the session:
    - an earlier checkpoint of the session (the newest slot is damaged, the final save failed, or
      the session stopped early): exported only with allow_older, and said so;
    - the state the session started from (no slot restored: the plan's initial weights), or a
      state this session never saved: never exported.
    """
    from pytools import persist
    from pytools.session import CHECKPOINTS, read_jsonl

    first = cfg.get("first_sample_id", 0)
    total = first + len(read_jsonl(folder / "steps.jsonl"))
    ckpts = read_jsonl(folder / CHECKPOINTS)
    at_end = [c for c in ckpts if c["samples_trained"] == total]
    final = next((c for c in reversed(at_end) if c["status"] == "saved"), None)
    have, crc = status["samples_trained"], status["state_crc"]
    if have == total and (final is None or final["state_crc"] == crc):
        return f"state     the session's final state: {have - first:,} samples trained (CRC-32 0x{crc:08x})"

    def slot_line(k: int) -> str:
        code, seq = info[f"slot{k}_status"], info[f"slot{k}_sequence"]
        what = f"sequence {seq}, " if code in (0, 4, 5, 9) else ""
        mine = [c for c in ckpts if c["status"] == "saved" and c["slot"] == k and c["sequence"] == seq]
        if mine and code == persist.VALID:
            what += f"the session's checkpoint at {mine[-1]['samples_trained'] - first:,} steps, "
        elif mine:
            what += f"where the session saved {mine[-1]['samples_trained'] - first:,} steps, "
        return f"slot {k}: {what}{'valid' if code == persist.VALID else persist.status_text(code)}"

    restored = info["restored_slot"]
    on_board = (
        "On the board: "
        + "; ".join(slot_line(k) for k in (0, 1))
        + (
            f"; restored at boot: slot {restored} (sequence {info['restored_sequence']})"
            if restored != persist.NO_SLOT
            else "; restored at boot: nothing"
        )
    )
    # Why the final state is not there.
    if final is not None:
        k, seq = final["slot"], final["sequence"]
        code = info[f"slot{k}_status"]
        if code != persist.VALID:
            why = (
                f"the session saved its final state ({total - first:,} steps) to slot {k}, sequence {seq}, "
                f"and slot {k} now fails its check: {persist.status_text(code)}"
            )
        elif info[f"slot{k}_sequence"] != seq:
            why = (
                f"the session saved its final state to slot {k}, sequence {seq}; slot {k} now holds "
                f"sequence {info[f'slot{k}_sequence']} (saved over since)"
            )
        else:
            why = f"the board did not restore the session's final save (slot {k}, sequence {seq})"
    elif at_end and at_end[-1]["status"] == "failed":
        why = f"the session's final save failed ({at_end[-1].get('error', 'no reason logged')})"
    elif at_end:
        why = "the session's final save was asked for but never confirmed (its host stopped during it)"
    else:
        why = (
            f"the session never saved its state after its last step ({total - first:,} steps): it ran "
            "with --no-save or stopped before its final save"
        )
    points = [c for c in ckpts if c["status"] in ("saving", "saved")]
    match = [c for c in points if (c["samples_trained"], c["state_crc"]) == (have, crc)]
    start = (first, cfg.get("first_state_crc"))
    if match and have != total:
        lost = total - have
        what = (
            f"the board holds the session's checkpoint after {have - first:,} of its {total - first:,} "
            f"steps (CRC-32 0x{crc:08x}): exporting it would lose the last {lost:,} steps"
        )
        if allow_older:
            return (
                f"note      exported the session's checkpoint after {have - first:,} of its "
                f"{total - first:,} steps (CRC-32 0x{crc:08x}), as --allow-older asked: the last "
                f"{lost:,} steps are not in it, because {why}. {on_board}"
            )
        raise ToolError(
            f"not exported: {what}, because {why}. {on_board}. To export that checkpoint anyway, "
            "give --allow-older"
        )
    if restored == persist.NO_SLOT and have == first:
        what = (
            "the board restored no saved state at boot, so it holds the plan's initial (untrained) "
            "weights, none of the session's training"
        )
    elif (have, crc) == start:
        what = f"the board holds the state the session started from ({have:,} samples trained)"
    else:
        what = f"the board's state ({have:,} samples trained, CRC-32 0x{crc:08x}) is none this session saved"
    raise ToolError(
        f"not exported: {what}, because {why}. {on_board}. There is nothing of this session to export"
    )


def _held_out(cfg: dict, graph: Graph, n: int) -> np.ndarray:
    """The first n held-out samples of a session's data (resolved as the session did:
    pytools.session.load_data), as the model's input type."""
    from pytools.session import load_data, subset

    d, a = cfg["dataset"], cfg["arguments"]
    spec = d.get("spec", a["dataset"])
    user = d.get("kind", "builtin") == "user"
    split = None if user else d["split"]
    # The user's own data: its recorded seed and label column (the split is the seeded one).
    details = d.get("details", {}) if user else {}
    seed = details.get("seed", a["seed"])
    label_column = details.get("label_column", a.get("label_column"))
    data = load_data(spec, graph, split, seed, label_column, loss=a.get("loss") or "auto")
    if user and details.get("sha256") and data.details.get("sha256") != details["sha256"]:
        raise ToolError(
            f"{spec} has changed since the session trained on it (its SHA-256 differs from the one "
            "in config.json): the check needs the session's own held-out samples: restore the file "
            "the session trained on"
        )
    held = data.parts.held_out
    return data.inputs(graph, held, subset(held.y, n))


def _pull_twin_session(
    folder: Path, cfg: dict, out: str, model: str, spec: str, lr: float, check: int
) -> list[str]:
    """A session that ran on the host twin (--board host): its trained tensors are in its
    trained_state.npz, written into a copy of the .tflite; no board is asked. The check runs
    the twin with that state against the exported model in TFLite's interpreter."""
    from pytools.boards import DEFAULT_BOARD, load_board
    from pytools.model.host_twin import HostTwin
    from pytools.session import load_model, resolve_scheme
    from pytools.session.folder import TRAINED_STATE
    from pytools.train.compile_train import compile_training
    from pytools.train.trainer import Trainer

    if not out.endswith(".tflite"):
        raise ToolError(f"--out must name a .tflite file, got {out!r}")
    saved = folder / TRAINED_STATE
    if not saved.is_file():
        raise ToolError(f"{folder} ran on the host twin but has no {TRAINED_STATE}: it did not complete")
    board = load_board(cfg["board"].get("plan_board") or DEFAULT_BOARD)
    model_bytes, model_name, source = load_model(Path(model) if model else None, cfg["arguments"]["dataset"])
    graph, loss, head_note = session_model(cfg, model_bytes, model_name)
    ct = compile_training(graph, resolve_scheme(spec), board, model_name, link=False, lr=lr, loss=loss)
    with np.load(saved) as z:
        by_name = {k: z[k] for k in z.files}
    g = ct.train.graph
    missing = [g.tensor(t).name for t in ct.train.state if g.tensor(t).name not in by_name]
    if missing:
        raise ToolError(f"{saved} lacks the plan's state tensors {missing}: not this session's plan")
    state = {t: by_name[g.tensor(t).name] for t in ct.train.state}
    data, changes = _export(model_bytes, graph, ct, state, head_note)
    lines = [
        f"plan      {model_name} ({source}), scheme {spec}, lr {lr:g}: a host-twin session, from {saved}"
    ]
    if head_note:
        lines.append(f"head      {head_note}")
    if check > 0:
        twin = HostTwin(ct.compiled.blob)
        for t, v in state.items():
            twin.set_tensor(ct.compiled.plan_ids[t], v)
        xs = _held_out(cfg, graph, check)
        said = check_held_out(data, ct, Trainer(ct, twin), xs, "twin")
        lines.append(f"check     {len(xs)} of {len(xs)} held-out samples: {said}")
    Path(out).write_bytes(data)
    return lines + changes + [_wrote(out, data, head_note)]
