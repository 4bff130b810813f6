"""Which samples each client of a fleet owns.

- "users" (HAPT's `users` split): client k is HAPT user 21 + k, with that user's own recordings
  (first recording to fine-tune, later ones held out): non-IID by nature, the personalisation case.
- "dirichlet:ALPHA" (any data set): the fine-tuning and held-out samples of the data set's split
  are dealt to the clients class by class, each class in the proportions of a Dirichlet(ALPHA)
  draw (seeded), the same proportions for a client's fine-tuning and held-out samples, so each
  client is scored on data like its own. Small ALPHA: each client sees few classes; large: IID.
- "iid": shuffled and dealt evenly (seeded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pytools.errors import ToolError

HAPT_USERS = tuple(range(21, 31))  # datasets/hapt.py ADAPT_USERS: the users the backbone never saw


@dataclass(frozen=True)
class Partition:
    kind: str  # "users", "dirichlet" or "iid"
    alpha: float = 0.0

    def __str__(self) -> str:
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
    raise ToolError(f"unknown --partition {spec!r}: users (HAPT), dirichlet:ALPHA or iid")


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
