"""plan.npz in a fleet folder: the trained slice's layout (names, kinds, dtypes, shapes, real-valued
scales) and the plan's initial slice. The orchestrator compiles the plan once and writes it; the
server reads it, so it averages without the model, the compiler or any client's data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pytools.fleet.aggregate import SliceTensor

PLAN_FILE = "plan.npz"


def write_plan(folder: Path, plan: list[SliceTensor], initial: dict[str, np.ndarray], plan_crc: int) -> None:
    meta = [{"name": t.name, "kind": t.kind, "dtype": t.dtype, "shape": list(t.shape)} for t in plan]
    arrays = {f"scale/{i}": t.scale for i, t in enumerate(plan) if t.scale is not None}
    arrays |= {f"initial/{i}": initial[t.name] for i, t in enumerate(plan) if t.kind != "local"}
    np.savez(folder / PLAN_FILE, meta=np.array(json.dumps({"tensors": meta, "plan_crc": plan_crc})), **arrays)


def read_plan(folder: Path) -> tuple[list[SliceTensor], dict[str, np.ndarray]]:
    with np.load(folder / PLAN_FILE) as f:
        meta = json.loads(str(f["meta"]))
        plan, initial = [], {}
        for i, m in enumerate(meta["tensors"]):
            scale = f[f"scale/{i}"] if f"scale/{i}" in f else None
            plan.append(SliceTensor(m["name"], m["kind"], m["dtype"], tuple(m["shape"]), scale))
            if m["kind"] != "local":
                initial[m["name"]] = f[f"initial/{i}"]
    return plan, initial
