"""Which samples each client of a fleet owns.

- "users" (HAPT's `users` split): client k is HAPT user 21 + k, with that user's own recordings
  (first recording to fine-tune, later ones held out): non-IID by nature, the personalisation case.
- "dirichlet:ALPHA" (any data set): the fine-tuning and held-out samples of the data set's split
  are dealt to the clients class by class, each class in the proportions of a Dirichlet(ALPHA)
  draw (seeded), the same proportions for a client's fine-tuning and held-out samples, so each
  client is scored on data like its own. Small ALPHA: each client sees few classes; large: IID.
- "column:NAME" (the user's own .csv or .npz): the data set's own groups (users, devices, sites):
  a CSV column NAME (taken out of the features), or an .npz array NAME beside x and y (NAME_train
  and NAME_test beside a given split), one group id per sample. Client k owns the k-th group in
  sorted order, with all of its samples, fine-tuning and held-out (the data set's own split,
  seeded and stratified by the loader, is kept).
- "iid": shuffled and dealt evenly (seeded).

Each client's share (its group, its numbers of fine-tuning and held-out samples per label) is
listed in the fleet folder's partition.json.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datasets import DataError
from datasets.files import table
from pytools.errors import ToolError

GROUPS_FILE = "groups.npz"  # the column partition's group id per sample, in the fleet folder
SHARES_FILE = "partition.json"
HAPT_USERS = tuple(range(21, 31))  # datasets/hapt.py ADAPT_USERS: the users the backbone never saw


@dataclass(frozen=True)
class Partition:
    kind: str  # "users", "dirichlet", "column" or "iid"
    alpha: float = 0.0
    column: str = ""

    def __str__(self) -> str:
        if self.kind == "column":
            return f"column:{self.column}"
        return f"dirichlet:{self.alpha:g}" if self.kind == "dirichlet" else self.kind


def parse(spec: str, dataset: str, split: str | None) -> Partition:
    """--partition, or the default: "users" for HAPT's users split, else dirichlet:0.5."""
    if not spec:
        return (
            Partition("users")
            if dataset == "hapt" and split in (None, "users")
            else Partition("dirichlet", 0.5)
        )
    if spec in ("users", "iid"):
        if spec == "users" and dataset != "hapt":
            raise ToolError(
                f"--partition users takes HAPT's users 21-30 as clients; {dataset} has no users: "
                "use --partition dirichlet:ALPHA (e.g. dirichlet:0.5) or iid"
            )
        return Partition(spec)
    if spec.startswith("dirichlet"):
        _, _, a = spec.partition(":")
        try:
            alpha = float(a) if a else 0.5
        except ValueError:
            alpha = -1.0
        if not alpha > 0:
            raise ToolError(f"--partition {spec}: ALPHA must be a number > 0 (e.g. dirichlet:0.5)")
        return Partition("dirichlet", alpha)
    if spec.startswith("column:"):
        name = spec.removeprefix("column:").strip()
        if not name:
            raise ToolError("--partition column:NAME: give the CSV column or .npz array of group ids")
        if not is_file_data(dataset):
            raise ToolError(
                f"--partition {spec} takes the groups from your own .csv (a column) or .npz (an "
                f"array): {dataset!r} is not one; use dirichlet:ALPHA or iid"
            )
        return Partition("column", column=name)
    raise ToolError(f"unknown --partition {spec!r}: users (HAPT), dirichlet:ALPHA, column:NAME or iid")


def is_file_data(dataset: str) -> bool:
    return Path(dataset).suffix.lower() in (".csv", ".tsv", ".npz")


def user_split(client: int, boards: int) -> str:
    """The HAPT split of client k under the users partition."""
    if boards > len(HAPT_USERS):
        raise ToolError(f"--partition users has {len(HAPT_USERS)} clients (HAPT users 21-30), not {boards}")
    return f"user{HAPT_USERS[client]}"


def deal(
    y_train: np.ndarray, y_held: np.ndarray, boards: int, part: Partition, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per client: (indices into y_train, indices into y_held). Every sample goes to exactly one
    client; a client with no fine-tuning sample is an error (say a larger ALPHA or fewer boards)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[list[int], list[int]]] = [([], []) for _ in range(boards)]
    if part.kind == "iid":
        for j, y in enumerate((y_train, y_held)):
            for k, chunk in enumerate(np.array_split(rng.permutation(len(y)), boards)):
                out[k][j].extend(chunk.tolist())
    elif part.kind == "dirichlet":
        for c in np.unique(np.concatenate([y_train, y_held])):
            p = rng.dirichlet(np.full(boards, part.alpha))
            for j, y in enumerate((y_train, y_held)):
                idx = rng.permutation(np.flatnonzero(y == c))
                cuts = np.round(np.cumsum(p)[:-1] * len(idx)).astype(int)
                for k, chunk in enumerate(np.split(idx, cuts)):
                    out[k][j].extend(chunk.tolist())
    else:
        raise ToolError(f"partition {part} is not dealt from one data set")
    result = [(np.sort(np.array(a, dtype=np.int64)), np.sort(np.array(b, dtype=np.int64))) for a, b in out]
    empty = [k for k, (a, b) in enumerate(result) if len(a) == 0 or len(b) == 0]
    if empty:
        raise ToolError(
            f"partition {part} over {boards} clients leaves client(s) {empty} without fine-tuning or "
            "held-out samples: use a larger ALPHA, fewer --boards or another --seed"
        )
    return result


# ---------------------------------------------------------------- the column partition


def prepare_groups(folder: Path, dataset: str, part: Partition) -> str:
    """For the column partition: writes the group id of every sample to folder/groups.npz and
    returns the data set the clients load: a CSV without the group column (written into the
    fleet folder, so the group is not a feature), or the .npz itself (its extra arrays are not
    read by the loader)."""
    path = Path(dataset).expanduser()
    if not path.is_file():
        raise ToolError(f"{dataset}: no such file (--partition {part} reads its groups from it)")
    name = part.column
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if name in keys:
                groups = {"whole": np.asarray(z[name]).astype(str)}
                n = {"whole": len(z["y"]) if "y" in keys else -1}
            elif {f"{name}_train", f"{name}_test"} <= keys:
                groups = {p: np.asarray(z[f"{name}_{p}"]).astype(str) for p in ("train", "test")}
                n = {p: len(z[f"y_{p}"]) if f"y_{p}" in keys else -1 for p in ("train", "test")}
            else:
                raise ToolError(
                    f"{dataset}: no array {name!r} (beside x, y) nor {name}_train and {name}_test "
                    f"(beside a given split) to partition by; its arrays: {', '.join(sorted(keys))}"
                )
        for k, g in groups.items():
            if g.ndim != 1 or (n[k] >= 0 and len(g) != n[k]):
                raise ToolError(
                    f"{dataset}: the group array for {k} has shape {list(g.shape)}: one id per sample "
                    f"({n[k]}) is needed"
                )
        np.savez(folder / GROUPS_FILE, **groups)
        return str(path)
    try:  # the rows exactly as the CSV loader reads them (encoding, delimiter, stripped cells)
        rows, delimiter = table.read_rows(path)
    except DataError as e:
        raise ToolError(str(e)) from None
    if not rows or name not in rows[0]:
        raise ToolError(
            f"{dataset}: no column {name!r} in its header row ({', '.join(rows[0][:12]) if rows else 'empty'}"
            f"): --partition column:NAME needs a header naming the group column"
        )
    j = rows[0].index(name)
    groups = np.array([r[j].strip() if j < len(r) else "" for r in rows[1:]], dtype=str)
    out = io.StringIO()
    w = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    for r in rows:
        w.writerow(r[:j] + r[j + 1 :])
    data = folder / f"data{path.suffix.lower()}"
    data.write_text(out.getvalue())
    np.savez(folder / GROUPS_FILE, whole=groups)
    return str(data)


def client_groups(folder: Path, boards: int) -> list[str]:
    """The groups the clients own, client k the k-th in sorted order."""
    with np.load(folder / GROUPS_FILE) as z:
        names = sorted(set(np.concatenate([z[k] for k in z.files]).tolist()))
    if boards > len(names):
        raise ToolError(
            f"the column partition has {len(names)} groups ({', '.join(names[:10])}), not {boards}: "
            f"give --boards {len(names)} or fewer"
        )
    return names[:boards]


def _part_groups(folder: Path, inp: Any) -> tuple[np.ndarray, np.ndarray]:
    """The group of each of the session's fine-tuning and held-out samples (inp.x_train and
    inp.x_held rows), through the loader's split of the user's data."""
    with np.load(folder / GROUPS_FILE) as z:
        got = {k: z[k] for k in z.files}
    user = inp.data.user
    info = user.split_info
    if "whole" in got:
        g = got["whole"]
        if info.get("method") != "stratified" or len(g) != info["finetune"] + info["held_out"]:
            raise ToolError(
                f"{user.source}: {len(g)} group ids for {info['finetune'] + info['held_out']} samples: "
                "one group id per sample is needed"
            )
        held = np.asarray(info["held_out_indices"], dtype=np.int64)
        fine = np.setdiff1d(np.arange(len(g)), held)
        g_fine, g_held = g[fine], g[held]
    else:
        g_fine, g_held = got["train"], got["test"]
    if len(g_fine) != len(inp.data.parts.finetune) or len(g_held) != len(inp.data.parts.held_out):
        raise ToolError(f"{user.source}: the group ids do not cover every sample of the split")
    return g_fine[inp.chosen], g_held[: len(inp.y_held)]


def client_share(
    folder: Path, inp: Any, boards: int, part: Partition, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per client: (indices into inp.y_train, indices into inp.y_held) under a partition dealt
    from one data set (dirichlet, iid or column)."""
    if part.kind != "column":
        return deal(inp.y_train, inp.y_held, boards, part, seed)
    g_fine, g_held = _part_groups(folder, inp)
    out = []
    for k, g in enumerate(client_groups(folder, boards)):
        idx_t, idx_h = np.flatnonzero(g_fine == g), np.flatnonzero(g_held == g)
        if not len(idx_t) or not len(idx_h):
            raise ToolError(
                f"group {g!r} (client {k}) has {len(idx_t)} fine-tuning and {len(idx_h)} held-out "
                "samples: each client needs both (more samples in that group, or another seed)"
            )
        out.append((idx_t, idx_h))
    return out


def write_shares(folder: Path, part: Partition, shares: list[dict[str, Any]]) -> Path:
    """partition.json: each client's share of the data (what it trains on and is scored on)."""
    path = folder / SHARES_FILE
    path.write_text(json.dumps({"partition": str(part), "clients": shares}, indent=2) + "\n")
    return path


def share(client: int, y_train: np.ndarray, y_held: np.ndarray, group: str | None) -> dict[str, Any]:
    labels = sorted(set(np.concatenate([y_train, y_held]).tolist()))
    return {
        "client": client,
        "group": group,
        "finetune": len(y_train),
        "held_out": len(y_held),
        "finetune_per_label": {str(c): int(np.sum(y_train == c)) for c in labels},
        "held_out_per_label": {str(c): int(np.sum(y_held == c)) for c in labels},
    }
