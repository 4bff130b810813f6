"""The session folder: where it goes, its config.json and .jsonl files (appended to, never
truncated), and finding a session to resume."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from pytools import validate
from pytools.boards import Board
from pytools.errors import ToolError
from pytools.paths import ROOT
from pytools.train.losses import NAMES

if TYPE_CHECKING:
    from pytools.session.board import Connection
    from pytools.session.inputs import Inputs


SESSIONS = ROOT / "sessions"
BOARD_FLASH = "board-flash.bin"  # an emulated board's persistence file, kept in its session


CHECKPOINTS = "checkpoints.jsonl"  # one line per SAVE to the board's flash (asked, then done)
TWIN_COST_UNIT = "ns"  # a host-twin session's step cost: the host's clock around the step
TWIN_TIMING_NOTE = "nanoseconds of the host's clock (the host twin's speed, not the board's)"
TRAINED_STATE = "trained_state.npz"  # the trained tensors at the end, read from the board or the twin
ROLLED_BACK = "rolled_back.jsonl"  # lines a resume took back: steps the board lost in a reset


def session_path(out_dir: Path | None, board: str, dataset: str) -> Path:
    """Where the session will write (checked now, created once the board answers)."""
    if out_dir is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return SESSIONS / f"{stamp}-{board}-{validate.label(dataset)}"  # inside sessions/, whatever the name
    out = Path(out_dir)
    if (out / "config.json").exists():
        raise ToolError(
            f"{out} already holds a session (config.json): choose another folder, or carry that "
            "session on with --resume"
        )
    return out


def create_folder(path: Path, explicit: bool) -> Path:
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


def jsonable(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


def finite(row: dict[str, Any]) -> dict[str, Any]:
    """JSON has no inf or NaN: such a value is written as null."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=jsonable) + "\n")


def write_row(f: IO[str], row: dict[str, Any]) -> None:
    f.write(json.dumps(finite(row), default=jsonable, allow_nan=False) + "\n")
    f.flush()


def session_config(
    arguments: dict[str, Any], started: dt.datetime, board: Board, inp: Inputs, conn: Connection
) -> dict[str, Any]:
    """config.json: the arguments, and what they resolved to (board, firmware, data, lr, plan).
    A session on the host twin (--board host) says so in "board" ("host_twin": true, and the
    board whose memory limits the plan was compiled for) and has no firmware."""
    ct, image = inp.ct, inp.image
    t_in = inp.graph.tensor(inp.graph.inputs[0])
    on_twin = conn.link is None
    board_info = {
        "name": "host" if on_twin else board.name,
        "host_twin": on_twin,
        "description": (
            f"the host twin: the firmware's runtime and kernels compiled for this machine, the plan "
            f"compiled for {board.name}"
            if on_twin
            else board.description
        ),
        "plan_board": board.name,
        "emulated": board.is_emulated and not on_twin,
        "serial": conn.url,
        "emulator": {"name": conn.emulator_name, "pid": conn.emulator_pid, "reused": conn.reused},
        "counter_unit": TWIN_COST_UNIT if on_twin else board.counter_unit,
        "timing_note": TWIN_TIMING_NOTE if on_twin else board.timing_note,
        "fresh_state": conn.fresh_state,
    }
    firmware = None
    if conn.link is not None and image is not None:
        hello = conn.link.board
        firmware = {
            "build_id": hello["build_id"],  # as the board reported it in HELLO
            "built_build_id": image.build_id,
            "elf": image.elf,
            "protocol_version": hello["protocol_version"],
            "max_payload": hello["max_payload"],
        }
    plan = {
        "size": len(ct.compiled.blob),
        "arena": ct.compiled.arena,
        "operators": len(ct.compiled.plan.ops),
        "forward_operators": ct.train.n_forward,
        "arena_breakdown": ct.breakdown,
    }
    if image is not None:
        plan |= {"sram_used": image.regions["RAM"].used, "flash_used": image.regions["FLASH"].used}
    return {
        "arguments": arguments,
        "started_utc": started.isoformat(timespec="seconds"),
        "board": board_info,
        "firmware": firmware,
        "dataset": {
            "name": inp.data.name,
            "spec": inp.data.spec,  # as given: a built-in name, a path or module:function
            "kind": inp.data.kind,
            "split": inp.split,
            "classes": inp.classes,
            "sizes": inp.sizes,
            "finetune_used": len(inp.y_train),
            **({"details": inp.data.details} if inp.data.details else {}),
        },
        "lr": inp.lr_record,
        "model": {
            "name": inp.model_name,
            "source": inp.model_source,
            "sha256": hashlib.sha256(inp.model_bytes).hexdigest(),
            "input_shape": t_in.shape,
            "input_dtype": t_in.dtype,
        },
        "loss": {
            "asked": inp.loss_asked,
            "loss": inp.head.loss,
            "name": NAMES[inp.head.loss],
            "why": inp.head.why,
            "target": inp.head.target,  # label (a class, 0/1), or input (an autoencoder)
            "tensor": inp.graph.tensor(inp.head.output).name,
            "metric": metric_name(inp.head.loss),
        },
        "head": {
            "new": inp.new_head is not None,
            "classes": inp.new_head,  # --new-head's; None: the model's own head
            "seed": arguments["seed"] if inp.new_head else None,  # `invoke pull` draws it again
            "outputs": int(inp.graph.tensor(inp.head.output).shape[-1]),
            "note": inp.head_note,
        },
        "scheme": {
            "spec": arguments["scheme"],
            "description": inp.scheme.describe(),
            "bias_layers": inp.scheme.bias_layers,
            "weights": {str(k): v for k, v in sorted(inp.scheme.weights.items())},
        },
        "plan": plan,
    }


def metric_name(loss: str) -> str:
    """What the session's held-out evaluation reports for a loss (pytools/train/evaluate.py)."""
    if loss == "mse":
        return "mean reconstruction error (anomaly score); ROC AUC when labels mark anomalies"
    return "accuracy"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a session's .jsonl file; a line torn by a killed process is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


def append_to(path: Path) -> IO[str]:
    """Opens a session's .jsonl file to append to (never truncated: a resumed session adds)."""
    f = open(path, "a")  # closed by Run.close()
    if f.tell() and not path.read_bytes().endswith(b"\n"):
        f.write("\n")  # a line torn by a killed process stays apart from the next
    return f


def latest_session(root: Path | None = None) -> Path:
    """The most recently started session folder under sessions/ (by its config.json's time)."""
    root = SESSIONS if root is None else root
    found = sorted(root.glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ToolError(f"no session folder under {root}: run `invoke train` first, or name one")
    return found[-1].parent


def resume_target(out_dir: Path | None) -> tuple[Path, dict[str, Any]]:
    folder = latest_session() if out_dir is None else Path(out_dir)
    path = folder / "config.json"
    if not path.is_file():
        raise ToolError(f"nothing to resume in {folder}: it holds no session (config.json)")
    return folder, validate.session_config(validate.json_file(path), path)
