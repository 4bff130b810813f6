"""The daily training session: fine-tune a model on the board, sample by sample, from the host.

run_training_session() loads a data set (datasets/), compiles the training step for the
board, puts the firmware holding that step on the board, streams every fine-tuning sample
to it (one SGD step per sample, computed on the device), measures held-out accuracy on the
device before training and after each epoch, and writes a session folder:

    config.json    every argument, the board, the data set's split sizes, the firmware build
                   id the board reported, the plan and arena sizes, the timing note
    steps.jsonl    one line per training step: epoch, step, sample, the board's sample id,
                   label, prediction, loss, cost (the board's counter unit, from STEP_RESULT),
                   samples trained, stack high-water, replayed, wall time, link retransmits
    epochs.jsonl   one line per epoch (0 = before training): held-out accuracy and loss, mean loss
    loss.png, accuracy.png, summary.txt, board.log (the firmware's own log lines, appended as
    they come), resumes.jsonl (one line per --resume), emulator.log (emulated boards only)
    checkpoints.jsonl  one line per SAVE of the trained state to the board's flash: when asked
                   ("saving") and when done ("saved"): the board's count of trained samples and
                   its state's CRC-32 at the save, slot, sequence
    rolled_back.jsonl  lines a --resume took out of the files above because the board had lost
                   those steps (it was reset, or lost power, after its last checkpoint)
    board-flash.bin    an emulated board's flash, kept when the session ends

The board trains with the training messages (docs/protocol.md, "Training over the link"):
SAMPLE chunks sized by what the board reports, then TRAIN of a sample id; held-out samples
go through EVAL, which trains nothing. The board counts the samples it trained, and step g of
a session trains its sample id first_sample_id + g (config.json). So a session whose host
process died (killed, cable pulled) is carried on with `invoke train --resume`: the board
says how far it got, the steps it trained but the dead process did not log are answered
again from the board's kept results (not trained again), and training goes on from the next
sample. Every sample is trained exactly once, and the session's files are appended to.

Checkpoints: the session SAVEs the board's trained state to its flash during training (at
each epoch's end by default, every save_every steps if given) and at the end; the board keeps
its count of trained samples with the state and restores both at boot. A board that was reset
(or lost power) mid-session comes back at its last checkpoint, below what the session logged:
--resume checks that the board stands exactly at one of the session's checkpoints (count and
state CRC), moves the lines after it to rolled_back.jsonl, and trains those samples again, in
the same order at the same per-step lr factor, so the end state is still every sample trained
once (_Run.roll_back).

Which board runs it:
- emulated: a running emulated board (`invoke flash`'s) is reused only if it runs this very
  plan from its initial state; otherwise the session starts its own emulator under a name
  of its own and stops it at the end, on errors and on Ctrl-C too;
- real: the board on --port (or the ST-LINK's port) must run the firmware built for this
  plan; else the error says what to flash and how.

A board proves which plan it runs with two things. The build id in HELLO is a hash of the
firmware's sources, board file and flags: it does not change with the embedded plan, so the
session also compares MODEL_INFO (model name, plan size, arena size, operator and tensor
counts) with the plan it compiled, and reads the trained state back (ARENA_READ) to know
whether it still holds the plan's initial weights.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import shutil
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

import datasets
from pytools import emulator
from pytools.boards import Board
from pytools.build.builder import FirmwareImage
from pytools.connect import open_link, port_url, resolve_board
from pytools.console import log_line
from pytools.errors import ToolError
from pytools.link.client import BoardRefused, Link, LinkError, LinkStats
from pytools.link.protocol import Msg, layout
from pytools.model.board_runner import BoardModel, BoardTraining, StepResult
from pytools.model.host_twin import io_tensors, tensor_table
from pytools.model.ir import Graph, ModelError
from pytools.model.plan import read_header
from pytools.model.tflite_import import import_tflite
from pytools.paths import ROOT
from pytools.train import schedule as schedules
from pytools.train.compile_train import CompiledTraining, check_fits, compile_training, report
from pytools.train.scheme import Scheme, load_scheme
from pytools.train.trainer import Trainer

# Biases of the last 3 layers, the classifier and half of the layer before it: on the digits
# transfer it reaches 0.828 held-out accuracy after 5 epochs against 0.609 for the classifier
# alone (docs/training.md), and its state is 4.6 KB.
DEFAULT_SCHEME = "bias=3,-1=1,-2=0.5"
DEFAULT_SPLIT = "writers"
SESSIONS = ROOT / "sessions"
SCHEMES = ROOT / "schemes"
MATPLOTLIB_PIN = "matplotlib==3.11.2"  # as requirements.txt pins it


# ---------------------------------------------------------------- inputs: data, model, scheme


def _default_model(dataset: str) -> tuple[bytes, str, str]:
    """The pretrained model for a data set: (bytes, name, where it comes from)."""
    if dataset == "digits":
        # The builder lives with the tests (it trains with TensorFlow once, then is cached).
        from pytools.pretrain import digits as digits_model

        data = digits_model.pretrained_model()
        where = f"pretrained on digits 0-4 of the first 7 writers, cached at {digits_model.model_path()}"
        return data, digits_model.NAME, where
    raise ToolError(f"there is no pretrained model for the dataset '{dataset}': give one with --model")


def _load_model(model: Path | None, dataset: str) -> tuple[bytes, str, str]:
    if model is None:
        return _default_model(dataset)
    path = Path(model)
    if not path.is_file():
        raise ToolError(f"no model at {path}")
    return path.read_bytes(), path.stem, str(path)


def _scheme(spec: str) -> Scheme:
    """A scheme: inline (bias=3,-1=1), a .toml file, or the name of one in schemes/."""
    named = SCHEMES / f"{spec}.toml"
    if spec and "=" not in spec and not Path(spec).exists() and named.is_file():
        spec = str(named)
    try:
        return load_scheme(spec)
    except ToolError as e:
        known = ", ".join(sorted(p.stem for p in SCHEMES.glob("*.toml")))
        raise ToolError(
            f"bad scheme: {e}. A scheme is inline (e.g. {DEFAULT_SCHEME}: biases of the last 3 "
            f"layers, all of layer -1, half of layer -2), a .toml file, or one of schemes/: {known}"
        ) from e


def check_classifier(graph: Graph, classes: int, sample_shape: tuple[int, ...], source: str) -> None:
    """Refuses a model that is not a classifier of this data set's samples and classes."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelError(
            f"{source} has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
            "a training session needs a classifier with one input and one output"
        )
    producer = {t: op for op in graph.ops for t in op.outputs}
    last = producer.get(graph.outputs[0])
    if last is not None and last.kind == "DEQUANTIZE":
        last = producer.get(last.inputs[0])
    if last is None or last.kind != "SOFTMAX":
        kind = last.kind if last is not None else "no operator"
        raise ModelError(
            f"{source} is not a classifier: its output comes from {kind}, not SOFTMAX "
            "(a training session needs class probabilities to compute a cross-entropy loss)"
        )
    out = graph.tensor(graph.outputs[0])
    if int(np.prod(out.shape)) != classes:
        raise ModelError(
            f"{source} outputs {out.shape}: {int(np.prod(out.shape))} classes, the data set has {classes}"
        )
    inp = graph.tensor(graph.inputs[0])
    if int(np.prod(inp.shape)) != int(np.prod(sample_shape)):
        raise ModelError(
            f"{source} takes inputs of shape {inp.shape}; the data set's samples are {sample_shape}"
        )
    if inp.dtype != "float32" and inp.quant is None:
        raise ModelError(f"{source}: its {inp.dtype} input has no quantization to convert samples with")


def model_inputs(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Real-valued samples [n, ...] as the model's input tensor takes them, one per row."""
    t = graph.tensor(graph.inputs[0])
    x = np.asarray(x, dtype=np.float32).reshape(len(x), *t.shape)
    if t.dtype == "float32":
        return x
    return datasets.quantize(x, float(t.quant.scale[0]), int(t.quant.zero_point[0]), t.dtype)


def subset(y: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of the first `limit` samples, taking the classes in turn (all if limit is None)."""
    if limit is None or limit >= len(y):
        return np.arange(len(y))
    if limit < 1:
        raise ToolError(f"limit must be at least 1, got {limit}")
    rank = np.zeros(len(y), dtype=np.int64)  # how many of the same class come before
    seen: dict[int, int] = {}
    for i, c in enumerate(y.tolist()):
        rank[i] = seen.get(c, 0)
        seen[c] = rank[i] + 1
    order = np.lexsort((np.arange(len(y)), rank))  # by rank, then dataset order
    return np.sort(order[:limit])


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ToolError(
            f"the session's plots need matplotlib, which is not installed ({e}): "
            f"`.venv/bin/pip install {MATPLOTLIB_PIN}` (or ./setup.sh, which installs requirements.txt)"
        ) from e


# ---------------------------------------------------------------- the board


@dataclass
class _Connection:
    link: Link
    url: str
    emulator_name: str | None = None  # the emulator this session started (and must stop)
    emulator_pid: int | None = None
    reused: str | None = None  # name of a running emulated board reused as it was
    fresh_state: bool = True


def _model_info(link: Link) -> dict[str, Any]:
    return layout("MODEL_INFO_RSP").unpack(link.request(Msg.MODEL_INFO).payload)


def plan_mismatches(hello: dict[str, Any], info: dict[str, Any], ct: CompiledTraining) -> list[str]:
    """How the board's firmware differs from the one built for this plan (empty: it matches)."""
    assert ct.image is not None
    want = ct.image.build_id
    out = []
    if hello.get("board") != ct.board.name:
        out.append(f"it is a {hello.get('board')!r} board, the plan is for {ct.board.name}")
    if hello.get("build_id") != want:
        out.append(f"it runs firmware build {hello.get('build_id')}, this plan's firmware is build {want}")
    if info["status"] != 0:
        out.append(f"it has no usable model ({info['message'].strip() or 'none embedded'})")
        return out
    h = read_header(ct.compiled.blob)
    theirs = (info["model"], info["plan_size"], info["arena_size"], info["n_ops"], info["n_tensors"])
    ours = (h["model"], len(ct.compiled.blob), h["arena_size"], h["n_ops"], h["n_tensors"])
    if theirs != ours:
        out.append(
            "it embeds another plan: model {!r}, {:,} B plan, {:,} B arena, {} operators, {} tensors; "
            "this one is {!r}, {:,} B, {:,} B, {}, {}".format(*theirs, *ours)
        )
    return out


def _state_is_initial(trainer: Trainer, initial: dict[str, np.ndarray]) -> bool:
    now = trainer.state()
    return all(np.array_equal(now[k], v) for k, v in initial.items())


def _flash_instructions(board: Board, image: FirmwareImage) -> str:
    from pytools.flashing import flash_command

    st = " ".join(flash_command(board, image, "st-flash"))
    ocd = flash_command(board, image, "openocd")
    ocd_text = " ".join(f'"{a}"' if " " in a else a for a in ocd)
    return (
        f"flash the firmware built for this plan ({image.elf}), then run the session again:\n"
        f"  {st}\n"
        f"or\n  {ocd_text}\n"
        f"or `invoke flash --board {board.name}` with this session's --model, --scheme and --lr "
        "(it builds and flashes this training firmware and checks the build id the board reports)"
    )


def _probe(url: str, board: Board, ct: CompiledTraining, initial: dict[str, np.ndarray]) -> list[str]:
    """Why the emulated board at url cannot be reused for this plan (empty: it can)."""
    try:
        with Link.open(url, baudrate=board.baud, retries=2) as link:
            problems = plan_mismatches(link.board, _model_info(link), ct)
            if not problems:
                ins, outs = io_tensors(ct.compiled.blob)
                board_model = BoardModel(link, tensor_table(ct.compiled.blob), ins, outs)
                if not _state_is_initial(Trainer(ct, board_model), initial):
                    problems.append("its trained state is no longer the plan's initial state")
            return problems
    except (ToolError, OSError) as e:
        return [f"it did not answer ({e})"]


def _connect(
    board: Board,
    ct: CompiledTraining,
    port: str | None,
    initial: dict[str, np.ndarray],
    on_log: Callable[[Any, dict[str, Any]], None],
    own: list[str],
) -> _Connection:
    """A link to a board that runs this plan: reused, started, or checked (real boards)."""
    assert ct.image is not None
    if board.is_emulated and not port:
        running = emulator.find(board.name)
        if running is not None:
            problems = _probe(running.url, board, ct, initial)
            if not problems:
                print(
                    f"reusing the running emulated board {board.name} (pid {running.pid}): it runs this plan"
                )
                link = open_link(board, running.url, on_log=on_log)
                return _Connection(link, running.url, reused=running.name)
            print(f"not reusing the running emulated board {board.name}: {'; '.join(problems)}")
        name = f"session-{board.name}-{os.getpid()}"
        own.append(name)  # before the start, so that an interrupted start is cleaned up too
        emu = emulator.start(board, ct.image.elf, name=name)
        print(f"started emulated board {board.name} as '{name}': pid {emu.pid}, serial {emu.url}")
        link = open_link(board, emu.url, on_log=on_log)
        return _Connection(link, emu.url, emulator_name=name, emulator_pid=emu.pid)

    url = port_url(board, port)
    link = open_link(board, url, on_log=on_log)
    try:
        problems = plan_mismatches(link.board, _model_info(link), ct)
        if problems:
            what = (
                f"leave out the port and the session starts an emulated board with this plan's "
                f"firmware ({ct.image.elf})"
                if board.is_emulated
                else _flash_instructions(board, ct.image)
            )
            raise ToolError(
                f"the board on {url} does not run the firmware for this training plan: "
                f"{'; '.join(problems)}.\n{what}"
            )
    except BaseException:
        link.close()
        raise
    return _Connection(link, url)


class _Terminated(SystemExit):
    """SIGTERM arrived: the session ends like on Ctrl-C, through its finally blocks."""


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM ends the session through its finally blocks (the emulator is stopped)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Terminated(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# ---------------------------------------------------------------- the session folder


def _session_path(out_dir: Path | None, board: str, dataset: str) -> Path:
    """Where the session will write (checked now, created once the board answers)."""
    if out_dir is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return SESSIONS / f"{stamp}-{board}-{dataset}"
    out = Path(out_dir)
    if (out / "config.json").exists():
        raise ToolError(
            f"{out} already holds a session (config.json): choose another folder, or carry that "
            "session on with --resume"
        )
    return out


def _create(path: Path, explicit: bool) -> Path:
    if explicit:
        path.mkdir(parents=True, exist_ok=True)
        return path
    out, k = path, 1
    while True:  # two sessions started in the same second get -2, -3, ...
        try:
            out.mkdir(parents=True)
            return out
        except FileExistsError:
            k += 1
            out = path.with_name(f"{path.name}-{k}")


def _jsonable(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """JSON has no inf or NaN: such a value is written as null."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonl(f: IO[str], row: dict[str, Any]) -> None:
    f.write(json.dumps(_finite(row), default=_jsonable, allow_nan=False) + "\n")
    f.flush()


def _plots(folder: Path, steps: list[dict[str, Any]], epochs: list[dict[str, Any]], title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(1, len(steps) + 1)
    loss = np.array([s["loss"] for s in steps], dtype=float)
    ax.plot(x, loss, lw=0.6, alpha=0.35, color="tab:blue", label="loss of each step (before its update)")
    if len(loss):
        w = max(1, min(25, len(loss) // 10))
        smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
        ax.plot(x[w - 1 :], smooth, color="tab:blue", label=f"moving mean over {w} steps")
    end = 0
    for e in epochs[1:]:
        start, end = end, end + e["steps"]
        ax.hlines(e["train_loss"], start + 0.5, end + 0.5, colors="tab:red", lw=2)
        ax.axvline(end + 0.5, color="grey", lw=0.5, ls=":")
    if len(epochs) > 1:
        ax.plot([], [], color="tab:red", lw=2, label="mean of the epoch")
    ax.set_title(f"Training loss on the device\n{title}", fontsize=10)
    ax.set_xlabel("training step (one sample per step; dotted lines: epoch ends)")
    ax.set_yscale("symlog", linthresh=1.0)  # the first steps on new classes cost 10-40 nats
    ax.set_ylabel("cross-entropy loss (nats; log scale above 1)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(folder / "loss.png", dpi=110)

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ep = [e["epoch"] for e in epochs]
    ax.plot(
        ep, [100 * e["held_out_accuracy"] for e in epochs], "o-", label="held-out writers (on the device)"
    )
    trained = [e for e in epochs if e["train_accuracy"] is not None]
    ax.plot(
        [e["epoch"] for e in trained],
        [100 * e["train_accuracy"] for e in trained],
        "s--",
        label="fine-tuning samples, during the epoch (before each update)",
    )
    for e in epochs:
        acc = 100 * e["held_out_accuracy"]
        ax.annotate(f"{acc:.1f}", (e["epoch"], acc), textcoords="offset points", xytext=(0, 6), ha="center")
    ax.set_title(f"Accuracy\n{title}", fontsize=10)
    ax.set_xlabel("epoch (0: before training)")
    ax.set_ylabel("accuracy (% of samples)")
    ax.set_xticks(ep)
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(folder / "accuracy.png", dpi=110)


# ---------------------------------------------------------------- the session


@dataclass
class _Inputs:
    """Everything a session needs before it touches a board."""

    dataset: str
    split: str
    classes: int
    sizes: dict[str, int]  # of the split's parts
    model_bytes: bytes
    model_name: str
    model_source: str
    graph: Graph
    scheme: Scheme
    ct: CompiledTraining
    image: FirmwareImage
    chosen: np.ndarray  # indices into the fine-tuning part
    x_train: np.ndarray  # the model's input type, one row per sample
    y_train: np.ndarray
    x_held: np.ndarray
    y_held: np.ndarray


def _prepare(
    board: Board,
    dataset: str,
    scheme: str,
    lr: float,
    split: str,
    model: Path | None,
    limit: int | None,
    held_out: int | None = None,
) -> _Inputs:
    """Steps 1-3: the data, the model, and the training step compiled and linked for the board."""
    ds = datasets.module(dataset)
    parts = datasets.load_split(dataset, split)
    scheme_obj = _scheme(scheme)
    _require_matplotlib()
    model_bytes, model_name, model_source = _load_model(model, dataset)
    graph = import_tflite(model_bytes, model_name)
    check_classifier(graph, ds.CLASSES, ds.SHAPE, model_source if model else model_name)
    chosen = subset(parts.finetune.y, limit)
    held = subset(parts.held_out.y, held_out)
    print(
        f"data      {dataset} (split {split}): {len(chosen)} of {len(parts.finetune)} fine-tuning samples "
        f"per epoch, {len(held)} of {len(parts.held_out)} held out (pretraining part: {len(parts.pretrain)})"
    )
    print(f"source    {model_name}: {model_source}")
    ct = compile_training(graph, scheme_obj, board, model_name, link=True, lr=lr)
    check_fits(ct)  # a step that does not fit is refused, with the memory breakdown
    assert ct.image is not None
    print(report(ct))
    sizes = {
        "pretrain": len(parts.pretrain),
        "finetune": len(parts.finetune),
        "held_out": len(parts.held_out),
    }
    return _Inputs(
        dataset=dataset,
        split=split,
        classes=ds.CLASSES,
        sizes=sizes,
        model_bytes=model_bytes,
        model_name=model_name,
        model_source=model_source,
        graph=graph,
        scheme=scheme_obj,
        ct=ct,
        image=ct.image,
        chosen=chosen,
        x_train=model_inputs(graph, parts.finetune.x[chosen]),
        y_train=parts.finetune.y[chosen],
        x_held=model_inputs(graph, parts.held_out.x[held]),
        y_held=parts.held_out.y[held],
    )


def _config(
    arguments: dict[str, Any], started: dt.datetime, board: Board, inp: _Inputs, conn: _Connection
) -> dict[str, Any]:
    ct, image, hello = inp.ct, inp.image, conn.link.board
    t_in = inp.graph.tensor(inp.graph.inputs[0])
    return {
        "arguments": arguments,
        "started_utc": started.isoformat(timespec="seconds"),
        "board": {
            "name": board.name,
            "description": board.description,
            "emulated": board.is_emulated,
            "serial": conn.url,
            "emulator": {"name": conn.emulator_name, "pid": conn.emulator_pid, "reused": conn.reused},
            "counter_unit": board.counter_unit,
            "timing_note": board.timing_note,
            "fresh_state": conn.fresh_state,
        },
        "firmware": {
            "build_id": hello["build_id"],  # as the board reported it in HELLO
            "built_build_id": image.build_id,
            "elf": image.elf,
            "protocol_version": hello["protocol_version"],
            "max_payload": hello["max_payload"],
        },
        "dataset": {
            "name": inp.dataset,
            "split": inp.split,
            "classes": inp.classes,
            "sizes": inp.sizes,
            "finetune_used": len(inp.y_train),
        },
        "model": {
            "name": inp.model_name,
            "source": inp.model_source,
            "sha256": hashlib.sha256(inp.model_bytes).hexdigest(),
            "input_shape": t_in.shape,
            "input_dtype": t_in.dtype,
        },
        "scheme": {
            "spec": arguments["scheme"],
            "description": inp.scheme.describe(),
            "bias_layers": inp.scheme.bias_layers,
            "weights": {str(k): v for k, v in sorted(inp.scheme.weights.items())},
        },
        "plan": {
            "size": len(ct.compiled.blob),
            "arena": ct.compiled.arena,
            "operators": len(ct.compiled.plan.ops),
            "forward_operators": ct.train.n_forward,
            "arena_breakdown": ct.breakdown,
            "sram_used": image.regions["RAM"].used,
            "flash_used": image.regions["FLASH"].used,
        },
    }


def _median(v: list[float]) -> float:
    return float(statistics.median(v)) if v else float("nan")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a session's .jsonl file; a line torn by a killed process is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


def _append(path: Path) -> IO[str]:
    """Opens a session's .jsonl file to append to (never truncated: a resumed session adds)."""
    f = open(path, "a")  # closed by _Run.close()
    if f.tell() and not path.read_bytes().endswith(b"\n"):
        f.write("\n")  # a line torn by a killed process stays apart from the next
    return f


class _Run:
    """Training and evaluation on the connected board, and the records they leave (step 5).

    The steps of a session are numbered 0, 1, ... across its epochs; step g trains the board's
    sample id first_id + g, so the board's count of trained samples says how far the session
    got, even if this process was killed (see resume()).
    """

    def __init__(
        self,
        folder: Path,
        inp: _Inputs,
        link: Link,
        unit: str,
        first_id: int,
        schedule: str,
        epochs: int,
        save_every: int | None = None,
    ) -> None:
        self.folder, self.inp, self.link, self.unit, self.first_id = folder, inp, link, unit, first_id
        self.schedule, self.total_steps = schedule, epochs * len(inp.y_train)
        # Checkpoints: None at each epoch's end, N every N steps, 0 none (only the final save).
        self.save_every = save_every
        self.checkpoints = _read_jsonl(folder / CHECKPOINTS)
        self.checkpoint_error: str | None = None  # a SAVE the board refused: no more tries
        ins, outs = io_tensors(inp.ct.compiled.blob)
        self.board = BoardModel(link, tensor_table(inp.ct.compiled.blob), ins, outs)
        self.training = BoardTraining(link)
        self.trainer = Trainer(inp.ct, self.board)  # state() reads the board's trained state
        self.steps = _read_jsonl(folder / "steps.jsonl")
        self.epochs = _read_jsonl(folder / "epochs.jsonl")
        self.final: dict[str, Any] | None = None  # the board's TRAIN_STATUS at the end
        self.saved: str | None = None  # what the SAVE to flash at the end did
        self.steps_file = _append(folder / "steps.jsonl")
        self.epochs_file = _append(folder / "epochs.jsonl")

    def close(self) -> None:
        self.steps_file.close()
        self.epochs_file.close()

    # ------------------------------------------------------------ checkpoints and roll-back

    def checkpoint(self, epoch: int, final: bool = False) -> dict[str, Any] | None:
        """SAVEs the board's trained state (with its count of trained samples) to its flash and
        records it in checkpoints.jsonl: a line before the SAVE ("saving": the board may finish
        it even if this process dies) and one after ("saved"). A checkpoint at the count of the
        last one is not saved again. Returns the saved line (None: nothing saved)."""
        from pytools import persist

        if self.checkpoint_error is not None and not final:
            return None  # after a failed SAVE only the final one is tried again
        st = self.status()
        count = st["samples_trained"]
        saved = [c for c in self.checkpoints if c["status"] == "saved"]
        if saved and saved[-1]["samples_trained"] == count and saved[-1]["state_crc"] == st["state_crc"]:
            return saved[-1]
        row = {
            "utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "samples_trained": count,
            "steps": count - self.first_id,
            "epoch": epoch,
            "state_crc": st["state_crc"],
            "final": final,
        }
        # The step lines up to here reach the disk before the checkpoint's: a checkpoint line
        # must never be ahead of the steps it covers (a resume replays from the step log).
        for f in (self.steps_file, self.epochs_file):
            f.flush()
            os.fsync(f.fileno())
        self._checkpoint_row({**row, "status": "saving"})
        try:
            r = persist.save(self.link)
        except (LinkError, BoardRefused) as e:  # a refused SAVE (state too large, flash failed) too
            self.checkpoint_error = str(e)
            self._checkpoint_row({**row, "status": "failed", "error": str(e)})
            then = "" if final else "; only the final save will be tried again"
            tqdm.write(f"WARNING   checkpoint at sample {count} NOT saved: {e}{then}")
            return None
        done = {**row, "status": "saved", **{k: r[k] for k in ("slot", "sequence", "length", "cost")}}
        self._checkpoint_row(done)
        return done

    def _checkpoint_row(self, row: dict[str, Any]) -> None:
        self.checkpoints.append(row)
        with open(self.folder / CHECKPOINTS, "a") as f:
            _jsonl(f, row)
            os.fsync(f.fileno())  # a power cut of the host too must not lose a checkpoint's line

    def _explain_reset(self, g: int, refused: Exception) -> None:
        """A TRAIN or SAMPLE refused because the board went back (a reset or power cut while
        this process ran: it restored its last checkpoint) is said in those words, with what to
        do; any other refusal is left as the board worded it."""
        try:
            count = self.status()["samples_trained"]
        except ToolError:
            return  # the board does not answer either: the refusal stands as it is
        if count < self.first_id + g:
            raise ToolError(
                f"the board went back to {count} trained samples while this session was at step "
                f"{g} (sample id {self.first_id + g}): it was reset and restored its last "
                f"checkpoint. Run `invoke train --resume --out {self.folder}` to roll the session "
                f"back to it and train the lost steps again ({refused})"
            ) from refused

    def _after_step(self, g: int, epoch: int) -> None:
        """Step g (0-based, of the session) is logged: a checkpoint if one is due."""
        if self.save_every and (g + 1) % self.save_every == 0:
            self.checkpoint(epoch)

    def restart_points(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        """Where a board that lost steps may stand: the session's start (nothing trained yet)
        and every checkpoint SAVE it asked for (a "saving" one too: the board may have finished
        it), each with the state CRC it had."""
        points = []
        if config.get("first_state_crc") is not None:
            points.append(
                {"samples_trained": self.first_id, "state_crc": config["first_state_crc"], "what": "start"}
            )
        seen = {(p["samples_trained"], p["state_crc"]) for p in points}
        for c in self.checkpoints:
            key = (c["samples_trained"], c["state_crc"])
            if c["status"] in ("saving", "saved") and key not in seen:
                seen.add(key)
                points.append({**c, "what": "checkpoint"})
        return points

    def roll_back(self, st: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        """The board stands before the last logged step (it was reset, or lost power, and
        restored its last checkpoint from flash): the session's records go back to where the
        board is, so those steps are trained again. Lines are moved to rolled_back.jsonl, not
        deleted. Refuses a board that stands at no point this session saved."""
        count, crc = st["samples_trained"], st["state_crc"]
        points = self.restart_points(config)
        match = [p for p in points if p["samples_trained"] == count and p["state_crc"] == crc]
        if not match:
            known = ", ".join(f"{p['samples_trained']} (CRC 0x{p['state_crc']:08x})" for p in points)
            raise ToolError(
                f"the board has trained {count} samples and its trained state has CRC-32 0x{crc:08x}; "
                f"this session logged {len(self.steps)} steps from sample {self.first_id} and can "
                f"carry on only from its start or a checkpoint it saved: {known or 'none'}. The board "
                "was reset to a state this session did not save (another session's, an older "
                "firmware's slot, or erased flash after training elsewhere). Start a new session"
            )
        n = len(self.inp.y_train)
        done = count - self.first_id
        keep_steps = [s for s in self.steps if s["sample_id"] < count]
        keep_epochs = [e for e in self.epochs if e["epoch"] * n <= done]
        keep_ckpt = [c for c in self.checkpoints if c["samples_trained"] <= count]
        moved = {
            "steps.jsonl": self.steps[len(keep_steps) :],
            "epochs.jsonl": [e for e in self.epochs if e["epoch"] * n > done],
            CHECKPOINTS: [c for c in self.checkpoints if c["samples_trained"] > count],
        }
        utc = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        # First the copies, then the files without them: a crash in between leaves a line in
        # both places, never in neither.
        with open(self.folder / ROLLED_BACK, "a") as f:
            for name, rows in moved.items():
                for row in rows:
                    _jsonl(f, {"utc": utc, "file": name, "to_samples_trained": count, "row": row})
            os.fsync(f.fileno())
        self.steps_file.close()
        self.epochs_file.close()
        kept = (("steps.jsonl", keep_steps), ("epochs.jsonl", keep_epochs), (CHECKPOINTS, keep_ckpt))
        for name, rows in kept:
            tmp = self.folder / f"{name}.tmp"
            with open(tmp, "w") as f:
                for row in rows:
                    _jsonl(f, row)
            os.replace(tmp, self.folder / name)
        self.steps, self.epochs, self.checkpoints = keep_steps, keep_epochs, keep_ckpt
        self.steps_file = _append(self.folder / "steps.jsonl")
        self.epochs_file = _append(self.folder / "epochs.jsonl")
        return {
            "to_samples_trained": count,
            "to": match[0]["what"],
            "steps": len(moved["steps.jsonl"]),
            "epochs": [e["epoch"] for e in moved["epochs.jsonl"]],
            "checkpoints": len(moved[CHECKPOINTS]),
        }

    def status(self) -> dict[str, Any]:
        return self.training.status()

    def evaluate(self, epoch: int) -> tuple[int, float]:
        """Held-out samples evaluated on the device (EVAL trains nothing): (right, mean loss)."""
        x, y = self.inp.x_held, self.inp.y_held
        correct, losses = 0, []
        bar = tqdm(range(len(y)), desc=f"epoch {epoch} held-out", unit="sample", dynamic_ncols=True)
        for k in bar:
            r = self.training.evaluate(k, x[k], int(y[k]))
            correct += int(r.correct)
            losses.append(r.loss)
            bar.set_postfix(acc=f"{correct / (k + 1):.3f}", refresh=False)
        bar.close()
        return correct, float(np.mean(losses))

    def before(self) -> None:
        if any(e["epoch"] == 0 for e in self.epochs):
            return  # done before this process was started (a resumed session)
        correct, loss = self.evaluate(0)
        n = len(self.inp.y_held)
        self._epoch_row(
            {
                "epoch": 0,
                "held_out_accuracy": correct / n,
                "held_out_correct": correct,
                "held_out_samples": n,
                "held_out_loss": loss,
                "train_loss": None,
                "train_accuracy": None,
                "steps": 0,
            }
        )
        print(f"epoch 0   held-out accuracy {correct / n:.3f} ({correct}/{n}), before training")

    def _row(self, g: int, epoch: int, order: np.ndarray, r: StepResult, ms: float | None) -> None:
        n = len(order)
        i = int(order[g % n])
        label = int(self.inp.y_train[i])
        if r.label != label or r.sample_id != self.first_id + g or r.lr_scale != self.lr_scale(g):
            raise ToolError(
                f"the board's result for sample id {r.sample_id} (label {r.label}, lr scale "
                f"{r.lr_scale:g}) is not step {g} of this session (sample id {self.first_id + g}, label "
                f"{label}, lr scale {self.lr_scale(g):g}): the board is not where this session left it"
            )
        self._step_row(
            {
                "epoch": epoch,
                "step": g % n + 1,
                "sample": int(self.inp.chosen[i]),
                "sample_id": r.sample_id,
                "label": label,
                "prediction": r.prediction,
                "loss": r.loss,
                "lr_scale": r.lr_scale,
                "cost": r.cost,
                "samples_trained": r.samples_trained,
                "stack_high_water": r.stack_high_water,
                "replayed": r.replayed,
                "ms": None if ms is None else round(ms, 3),
                "retransmits": self.link.stats.retransmits,
                "time": round(time.time(), 3),
            }
        )

    def lr_scale(self, g: int) -> float:
        """Step g's learning-rate factor: the schedule over all the session's steps."""
        return schedules.lr_scale(self.schedule, g, self.total_steps)

    def resume(self, orders: list[np.ndarray]) -> int:
        """Steps the board trained that this session has no line of (it was killed between a
        TRAIN and its line): the board answers them from its kept results, training nothing.
        Returns how many."""
        trained = self.status()["samples_trained"] - self.first_id
        logged = len(self.steps)
        total = sum(len(o) for o in orders)
        if not logged <= trained <= total:
            raise ToolError(
                f"the board has trained {trained + self.first_id} samples; this session began at its "
                f"sample {self.first_id} and has {logged} of {total} steps logged: the board was "
                "trained by someone else since. Start a new session"
            )
        n = len(orders[0])
        for g in range(logged, trained):
            epoch = g // n + 1
            self._row(g, epoch, orders[epoch - 1], self.training.replay(self.first_id + g, epoch), None)
        return trained - logged

    def epoch(self, epoch: int, epochs: int, order: np.ndarray) -> None:
        """One SGD step on the device per fine-tuning sample, in this order; then held-out accuracy.

        Steps already in steps.jsonl (a resumed session) are not trained again."""
        x, y, n = self.inp.x_train, self.inp.y_train, len(order)
        start = min(max(0, len(self.steps) - (epoch - 1) * n), n)
        if start == n and any(e["epoch"] == epoch for e in self.epochs):
            return
        t0 = time.monotonic()
        bar = tqdm(range(start, n), desc=f"epoch {epoch}/{epochs} train", unit="step", dynamic_ncols=True)
        for k in bar:
            i = int(order[k])
            g = (epoch - 1) * n + k
            t_step = time.perf_counter()
            try:
                r = self.training.train(self.first_id + g, x[i], int(y[i]), epoch, lr_scale=self.lr_scale(g))
            except BoardRefused as e:
                self._explain_reset(g, e)
                raise
            ms = 1000 * (time.perf_counter() - t_step)
            self._row(g, epoch, order, r, ms)
            self._after_step(g, epoch)
            mine = self.steps[-(k + 1) :]
            acc = np.mean([s["prediction"] == s["label"] for s in mine])
            live = {"loss": f"{r.loss:.3f}", "epoch mean": f"{np.mean([s['loss'] for s in mine]):.3f}"}
            bar.set_postfix({**live, "acc": f"{acc:.3f}"}, refresh=False)
        bar.close()
        seconds = time.monotonic() - t0
        if self.save_every is None:  # the default: a checkpoint at each epoch's end
            self.checkpoint(epoch)
        mine = [s for s in self.steps if s["epoch"] == epoch]
        losses = [s["loss"] for s in mine]
        hits = sum(s["prediction"] == s["label"] for s in mine)
        correct, held_loss = self.evaluate(epoch)
        nh = len(self.inp.y_held)
        cost = _median([s["cost"] for s in mine])
        self._epoch_row(
            {
                "epoch": epoch,
                "held_out_accuracy": correct / nh,
                "held_out_correct": correct,
                "held_out_samples": nh,
                "held_out_loss": held_loss,
                "train_loss": float(np.mean(losses)),
                "train_accuracy": hits / n,
                "steps": n,
                "median_cost": cost,
                "train_seconds": round(seconds, 3),
                "retransmits": self.link.stats.retransmits,
            }
        )
        print(
            f"epoch {epoch}   held-out accuracy {correct / nh:.3f} ({correct}/{nh}); training: mean loss "
            f"{np.mean(losses):.3f}, accuracy {hits / n:.3f}; per step {cost:,.0f} {self.unit} "
            f"on the board, {1000 * seconds / max(1, n - start):.1f} ms in all"
        )

    def _step_row(self, row: dict[str, Any]) -> None:
        self.steps.append(row)
        _jsonl(self.steps_file, row)

    def _epoch_row(self, row: dict[str, Any]) -> None:
        self.epochs.append(row)
        _jsonl(self.epochs_file, row)


class _BoardLog:
    """The firmware's LOG lines: printed, and appended to the session's board.log as they come
    (a monitor can tail it); kept in memory until the session folder exists."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.file: IO[str] | None = None

    def __call__(self, frame: Any, entry: dict[str, Any]) -> None:
        line = log_line(entry)
        self.lines.append(line)
        tqdm.write(line)
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()

    def attach(self, path: Path) -> None:
        self.file = open(path, "a")  # closed by close()
        for line in self.lines:
            self.file.write(line + "\n")
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def latest_session(root: Path | None = None) -> Path:
    """The most recently started session folder under sessions/ (by its config.json's time)."""
    root = SESSIONS if root is None else root
    found = sorted(root.glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ToolError(f"no session folder under {root}: run `invoke train` first, or name one")
    return found[-1].parent


def _resume_target(out_dir: Path | None) -> tuple[Path, dict[str, Any]]:
    folder = latest_session() if out_dir is None else Path(out_dir)
    path = folder / "config.json"
    if not path.is_file():
        raise ToolError(f"nothing to resume in {folder}: it holds no session (config.json)")
    return folder, json.loads(path.read_text())


def _power_on(board: Board, ct: CompiledTraining, name: str, folder: Path) -> emulator.Emulator | None:
    """Starts the session's emulated board again (a power cycle) with the flash it had: its
    own file if it is still there (the board or the host was killed), else the copy the
    session kept in its folder when it ended. None: no flash is left."""
    assert ct.image is not None
    kept = folder / BOARD_FLASH
    if not emulator.flash_file(name).exists():
        if not kept.is_file():
            return None
        emulator.import_flash(board, name, kept)
    emu = emulator.start(board, ct.image.elf, name=name)
    print(
        f"started   the emulated board '{name}' again (it was not running), with its flash: "
        f"pid {emu.pid}, serial {emu.url}"
    )
    return emu


def _reconnect(
    board: Board,
    ct: CompiledTraining,
    port: str | None,
    cfg: dict[str, Any],
    on_log: Any,
    own: list[str],
    folder: Path,
) -> _Connection:
    """A link to the board a session ran on, to resume it: its emulator (started again from
    its flash if it stopped) or its port. The board must still run the session's firmware and
    plan."""
    assert ct.image is not None
    emu = cfg["board"]["emulator"]
    name = emu["name"] or emu["reused"]
    pid = emu["pid"]
    if board.is_emulated and not port:
        running = emulator.find(name) if name else None
        if running is None and name:
            if emu["name"]:
                own.append(name)  # before the start: an interrupted start is cleaned up too
            running = _power_on(board, ct, name, folder)
            if running is not None:
                pid = running.pid
        if running is None:
            raise ToolError(
                f"the emulated board this session ran on ('{name}') is not running any more, and "
                f"neither its flash file nor a copy in the session folder ({BOARD_FLASH}) is left: "
                "its trained state went with it. Start a new session"
            )
        url = running.url
    else:
        url = port_url(board, port or cfg["board"]["serial"])
    link = open_link(board, url, on_log=on_log)
    try:
        problems = plan_mismatches(link.board, _model_info(link), ct)
        if link.board["build_id"] != cfg["firmware"]["build_id"]:
            problems.append(
                f"it runs build {link.board['build_id']}, the session ran {cfg['firmware']['build_id']}"
            )
        if problems:
            raise ToolError(f"cannot resume the session on {url}: {'; '.join(problems)}")
    except BaseException:
        link.close()
        raise
    if emu["name"] and board.is_emulated and not port:
        if emu["name"] not in own:
            own.append(emu["name"])  # the session started it: this process stops it at the end
        return _Connection(link, url, emulator_name=emu["name"], emulator_pid=pid)
    return _Connection(link, url, reused=emu["reused"])


def run_training_session(
    board_name: str | None,
    dataset: str = "digits",
    scheme: str = DEFAULT_SCHEME,
    epochs: int = 3,
    lr: float = 0.01,
    lr_schedule: str = schedules.DEFAULT,
    split: str = DEFAULT_SPLIT,
    port: str | None = None,
    out_dir: Path | None = None,
    model: Path | None = None,
    seed: int = 0,
    limit: int | None = None,
    resume: bool = False,
    held_out: int | None = None,
    save: bool = True,
    save_every: int | None = None,
) -> Path:
    """Fine-tunes a model on a board from the host, sample by sample; returns the session folder.

    board_name: a board (boards/*.toml); None: --board elsewhere on the line, $TINYTRAIN_BOARD,
    else the emulated board. dataset/split: datasets.names() and the data set's SPLITS.
    scheme: inline (bias=3,-1=1,-2=0.5), a .toml file or a name in schemes/. lr: SGD learning
    rate in real units (QAS). lr_schedule: pytools/train/schedule.py's SCHEDULES, over all the
    session's steps (linear: from lr down to 0). port: the board's serial port or pyserial URL. out_dir: the
    session folder (default sessions/<UTC time>-<board>-<dataset>/). model: an int8 .tflite
    classifier (default: the data set's pretrained model). seed: the sample order of each
    epoch. limit: train on only this many fine-tuning samples (classes in turn; for tests).
    held_out: evaluate on only this many held-out samples (classes in turn; default all).
    save: save the trained state to the board's flash (restored at its next boot, with the
    board's count of trained samples; `invoke pull --session` exports it): checkpoints during
    the session, and at the end. False: the flash is never written.
    save_every: a checkpoint every this many steps; None (the default) at each epoch's end;
    0 only at the end. Each is a line in checkpoints.jsonl.
    resume: carry on the session in out_dir (default: the latest under sessions/) on the board
    it ran on, with the settings in its config.json, --no-save included (the other arguments
    but port are ignored): the board says how many samples it trained, and the session continues with
    the next, so each sample is trained exactly once. Its files are appended to. A board that
    was reset (or lost power; an emulated board that is not running is started again from its
    flash) stands at its last checkpoint: the steps after it are moved from the session's
    files to rolled_back.jsonl and trained again, so the result is still every sample
    trained once, in order, at its step's lr.
    """
    t_start, started = time.monotonic(), dt.datetime.now(dt.UTC)
    saved: dict[str, Any] | None = None
    if resume:
        out_dir, saved = _resume_target(out_dir)
        a = saved["arguments"]
        board_name, dataset, scheme, epochs, lr = (
            a["board_name"],
            a["dataset"],
            a["scheme"],
            a["epochs"],
            a["lr"],
        )
        split, seed, limit, held_out = a["split"], a["seed"], a["limit"], a.get("held_out")
        save_every = a.get("save_every")  # sessions before checkpoints: at each epoch's end now
        lr_schedule = a.get("lr_schedule", "constant")  # sessions before schedules trained at a constant lr
        save = a.get("save", save)  # a --no-save session stays one (older sessions: as asked now)
        model = Path(a["model"]) if a["model"] else None
        port = port or a["port"]
        board_name = board_name or saved["board"]["name"]
    arguments = {
        "board_name": board_name,
        "dataset": dataset,
        "scheme": scheme,
        "epochs": epochs,
        "lr": lr,
        "lr_schedule": lr_schedule,
        "split": split,
        "port": port,
        "out_dir": out_dir,
        "model": model,
        "seed": seed,
        "limit": limit,
        "held_out": held_out,
        "save_every": save_every,
        "save": save,
    }
    if save_every is not None and save_every < 0:
        raise ToolError(f"save_every must be 0 (only at the end) or a number of steps, got {save_every}")
    if epochs < 1:
        raise ToolError(f"epochs must be at least 1, got {epochs}")
    if not math.isfinite(lr) or lr < 0:
        raise ToolError(f"lr must be a finite number >= 0, got {lr}")
    try:
        schedules.check(lr_schedule)
    except ValueError as e:
        raise ToolError(str(e)) from None
    board = resolve_board(board_name)
    inp = _prepare(board, dataset, scheme, lr, split, model, limit, held_out)  # steps 1-3
    initial = Trainer(inp.ct).state()  # the plan's initial trained state (on the host twin)
    path = Path(out_dir) if resume and out_dir is not None else _session_path(out_dir, board.name, dataset)
    folder: Path | None = None

    board_log = _BoardLog()
    own: list[str] = []  # the emulator this session started, by name
    conn: _Connection | None = None
    run: _Run | None = None
    status = "interrupted"
    try:
        with _sigterm_as_exit():
            if saved is not None:
                conn = _reconnect(board, inp.ct, port, saved, board_log, own, path)
                folder = path
            else:
                conn = _connect(board, inp.ct, port, initial, board_log, own)  # step 4
                folder = _create(path, explicit=out_dir is not None)
            board_log.attach(folder / "board.log")
            print(f"session   {folder}{' (resumed)' if saved else ''}")
            if saved is None:
                first_id = BoardTraining(conn.link).status()["samples_trained"]
            else:
                first_id = saved.get("first_sample_id", 0)
            every = save_every if save else 0
            note = flash_wear_note(board, every, epochs * len(inp.y_train))
            if note:
                print(note)
            run = _Run(folder, inp, conn.link, board.counter_unit, first_id, lr_schedule, epochs, every)
            if saved is None and conn.emulator_name is None and conn.reused is None:
                conn.fresh_state = _state_is_initial(run.trainer, initial)
                if not conn.fresh_state:
                    print(
                        "note      the board's trained state is not the plan's initial state: it has "
                        "trained since its last reset, and this session carries on from there "
                        "(reset the board for a fresh start)"
                    )
            if saved is None:
                config = _config(arguments, started, board, inp, conn)
                config["first_sample_id"] = first_id
                # Where the session starts, as a board that lost every step must stand to redo
                # them all (see _Run.roll_back).
                config["first_state_crc"] = run.status()["state_crc"]
                config["plan"]["crc32"] = run.training.config["plan_crc"]
                _write_json(folder / "config.json", config)
            elif saved["plan"].get("crc32") not in (None, run.training.config["plan_crc"]):
                # Defence in depth: _reconnect already refused a board whose build id (firmware
                # and plan CRC) is not the session's; sessions before checkpoints have no crc32.
                plan_crc = run.training.config["plan_crc"]
                raise ToolError(
                    f"cannot resume the session in {folder}: the board runs plan CRC-32 0x{plan_crc:08x}, "
                    f"the session trained 0x{saved['plan']['crc32']:08x}. Start a new session"
                )
            rng = np.random.default_rng(seed)
            orders = [rng.permutation(len(inp.y_train)) for _ in range(epochs)]
            if saved is not None:
                st = run.status()
                rolled: dict[str, Any] | None = None
                if st["samples_trained"] - first_id < len(run.steps):
                    rolled = run.roll_back(st, saved)
                    print(
                        f"rollback  the board stands at its {rolled['to']} (sample {st['samples_trained']}): "
                        f"it lost {rolled['steps']} steps, which are trained again (their lines moved to "
                        f"{ROLLED_BACK})"
                    )
                replayed = run.resume(orders)
                done = st["samples_trained"] - first_id
                print(
                    f"resumed   the board has trained {done} of this session's {sum(map(len, orders))} "
                    f"steps ({replayed} answered again from its kept results, none trained twice)"
                )
                with open(folder / "resumes.jsonl", "a") as f:
                    _jsonl(
                        f,
                        {
                            "utc": started.isoformat(timespec="seconds"),
                            "board": st,
                            "replayed": replayed,
                            "rolled_back": rolled,
                        },
                    )
            run.before()  # step 5
            for epoch in range(1, epochs + 1):
                run.epoch(epoch, epochs, orders[epoch - 1])
            run.final = run.status()
            if save:
                run.saved = _saved_text(run.checkpoint(epochs, final=True), run.checkpoint_error)
                print(f"flash     {run.saved}")
            status = "completed"
    except KeyboardInterrupt:
        status = "interrupted (Ctrl-C)"
        raise
    except _Terminated:
        status = "terminated (SIGTERM)"
        raise
    except BaseException as e:
        status = f"failed: {type(e).__name__}: {e}"
        raise
    finally:
        if run is not None:
            run.close()
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.link.close()
        for name in own:  # step 7: the emulator this session started, whatever happened
            emulator.stop(name)
            print(f"stopped emulated board '{name}'")
            if folder is not None:
                with contextlib.suppress(OSError):
                    shutil.move(emulator.RUN / f"{name}.log", folder / "emulator.log")
                # The emulated board's flash goes with the session: `invoke pull --session`
                # boots it again from there and reads the weights it saved.
                if emulator.flash_file(name).exists():
                    emulator.export_flash(board, name, folder / BOARD_FLASH)
                emulator.erase_flash(name)
        board_log.close()
        if folder is not None:  # step 6 (a session that never reached the board leaves no folder)
            title = f"{inp.model_name} on {board.name}, {dataset} ({split}), scheme {scheme}, lr {lr:g}"
            stats = conn.link.stats if conn is not None else None
            _finish(folder, status, run, board, f"{title}, seed {seed}", time.monotonic() - t_start, stats)
    assert folder is not None
    return folder


BOARD_FLASH = "board-flash.bin"  # an emulated board's persistence file, kept in its session


CHECKPOINTS = "checkpoints.jsonl"  # one line per SAVE to the board's flash (asked, then done)
ROLLED_BACK = "rolled_back.jsonl"  # lines a resume took back: steps the board lost in a reset


FLASH_ERASE_CYCLES = 10_000  # STM32F746 datasheet: flash endurance, cycles per sector (minimum)
WEAR_NOTE_SAVES = 100  # a session asking more SAVEs than this on a real board is told what they cost


def flash_wear_note(board: Board, save_every: int | None, steps: int) -> str:
    """A warning when --save-every asks many SAVEs of a real board's flash (each erases a
    sector: up to 2 s on the STM32F746, and a sector survives about 10,000 erases); "" else.
    The emulated board's flash is a file: no note."""
    if board.is_emulated or not save_every or steps <= 0:
        return ""
    saves = steps // save_every + 1  # and the final one
    if saves <= WEAR_NOTE_SAVES:
        return ""
    per_slot = -(-saves // 2)  # the two slots alternate
    return (
        f"note      --save-every {save_every}: {saves:,} SAVEs this session, each erasing a flash "
        f"sector of {board.name} (up to 2 s each; {per_slot:,} erases per slot of the "
        f"~{FLASH_ERASE_CYCLES:,} a sector survives). A larger --save-every (or the default, each "
        "epoch's end) checkpoints with far less wear"
    )


def _saved_text(saved: dict[str, Any] | None, error: str | None) -> str:
    """What the save to flash at the end did, in words (a board that cannot save says why, and
    the session still completes: its results are in the folder)."""
    if saved is None:
        return f"trained state NOT saved to flash: {error}"
    return (
        f"trained state saved ({saved['length']:,} B, {saved['samples_trained']:,} samples trained) to "
        f"slot {saved['slot']}, sequence {saved['sequence']}: the board restores it at boot"
    )


def _finish(
    folder: Path,
    status: str,
    run: _Run | None,
    board: Board,
    title: str,
    seconds: float,
    stats: LinkStats | None,
) -> None:
    """summary.txt (always) and the plots (once an epoch is done); prints where they are."""
    steps = run.steps if run else []
    epochs = run.epochs if run else []
    unit = board.counter_unit
    lines = [f"training session: {title}", f"board {board.name} ({board.description}): {status}"]
    if epochs:
        acc = ", ".join(f"{e['held_out_accuracy']:.3f}" for e in epochs)
        lines.append(f"held-out accuracy by epoch (0 = before training): {acc}")
    if len(epochs) > 1:
        lines.append(
            "mean training loss by epoch: " + ", ".join(f"{e['train_loss']:.3f}" for e in epochs[1:])
        )
    if steps:
        costs = [s["cost"] for s in steps]
        ms = [s["ms"] for s in steps if s.get("ms") is not None]  # replayed steps have none
        lines.append(
            f"cost per training step on the board: median {_median(costs):,.0f} {unit} "
            f"(min {min(costs):,}, max {max(costs):,}); {board.timing_note}"
        )
        lines.append(
            f"wall time per training step: median {_median(ms):.1f} ms, link included; {len(steps)} steps"
        )
    if run is not None and run.final is not None:
        f = run.final
        lines.append(
            f"board: {f['samples_trained']:,} samples trained ({f['replays']} results replayed "
            f"to a resumed host, never trained twice); trained state CRC-32 0x{f['state_crc']:08x}"
        )
    if run is not None and run.saved is not None:
        lines.append(f"flash: {run.saved}")
    if stats is not None:
        lines.append(
            f"link: {stats.requests:,} requests, {stats.retransmits} retransmitted, "
            f"{stats.timeouts} time-outs, {stats.nacks} NACKs, {stats.damaged_rx} damaged replies"
        )
    lines.append(f"session time {seconds:.1f} s")
    text = "\n".join(lines) + "\n"
    (folder / "summary.txt").write_text(text)
    if len(epochs) > 1:
        _plots(folder, steps, epochs, title)
    print(text, end="")
    print(f"session folder: {folder}")
