"""The tool's own split of a user's data: seeded and stratified, so every class is held out
in the same proportion, and the same file, seed and fraction always give the same split."""

from __future__ import annotations

from typing import Any

import numpy as np

from datasets import DataError


def stratified(
    y: np.ndarray, k: int, fraction: float, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Sorted fine-tuning and held-out indices, and the split's record for the session.

    Each class of n samples holds out round(n * fraction) of them, at least 1 and at most
    n - 1 (a class of one sample is only trained on).
    """
    rng = np.random.default_rng(seed)
    held, per_class = [], []
    for c in range(k):
        members = np.flatnonzero(y == c)
        n = len(members)
        take = 0 if n < 2 else min(max(int(np.floor(n * fraction + 0.5)), 1), n - 1)
        held.append(rng.permutation(members)[:take])
        per_class.append(take)
    held_idx = np.sort(np.concatenate(held)).astype(np.int64)
    if not len(held_idx):
        raise DataError(
            f"{source}: too few samples to hold any out (every class has one): add samples, or give "
            "your own split (x_train, y_train, x_test, y_test)"
        )
    fine_idx = np.setdiff1d(np.arange(len(y)), held_idx)
    info = {
        "method": "stratified",
        "seed": seed,
        "held_out_fraction": fraction,
        "finetune": len(fine_idx),
        "held_out": len(held_idx),
        "held_out_per_class": per_class,
        "held_out_indices": held_idx.tolist(),
    }
    return fine_idx, held_idx, info
