"""The learning rate when --lr is not given: a short sweep on the host twin.

Each candidate lr fine-tunes a fresh copy of the step on part of the session's own
fine-tuning samples (one seeded pass, at most SWEEP_STEPS steps, the session's lr schedule)
and is scored on the rest (a stratified validation part: the held-out samples are never
looked at). The best validation accuracy wins; a tie goes to the lower validation loss, then
to the smaller lr. With a mean-squared-error loss (an autoencoder, `--loss mse`) there is no
accuracy: the lowest validation loss (mean reconstruction error) wins. The twin is the board's
own C, bit-exact, so the sweep ranks the lrs as the board would, in seconds. The table is
printed and kept in config.json ("lr").
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from pytools.boards import Board
from pytools.model.ir import Graph
from pytools.plan import finetune
from pytools.progress import progress
from pytools.train import schedule as schedules
from pytools.train.losses import loss_op_index
from pytools.train.scheme import Scheme
from pytools.train.trainer import Trainer

SWEEP_LRS = (0.001, 0.003, 0.01, 0.03, 0.1)
SWEEP_STEPS = 300  # training steps per candidate (one pass over at most this many samples)
SWEEP_EVAL = 300  # validation samples scored per candidate
SWEEP_FRACTION = 0.3  # of the session's fine-tuning samples, held back to score the candidates


def _evaluate(tr: Trainer, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean loss) without training: the forward pass and loss of each sample."""
    twin = tr.backend
    ops = tr.ct.compiled.plan.ops
    end = loss_op_index(ops) + 1  # the loss head (train.c is_loss)
    right, losses = 0, []
    for xi, yi in zip(x, y, strict=True):
        loss, pred = twin.invoke([xi, np.array([yi], np.int32)], 0, end)
        right += int(pred.reshape(-1)[0]) == int(yi)
        losses.append(float(loss.reshape(-1)[0]))
    return right / max(1, len(y)), float(np.mean(losses)) if losses else float("nan")


def sweep_lr(
    graph: Graph,
    scheme: Scheme,
    board: Board,
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    schedule: str = schedules.DEFAULT,
    lrs: tuple[float, ...] = SWEEP_LRS,
    loss: str = "auto",
) -> tuple[float, dict[str, Any]]:
    """(the chosen lr, the record of the sweep). x: the session's fine-tuning samples in the
    model's input type, y their labels. loss: as the session's (pytools/train/losses.py)."""
    t0 = time.monotonic()
    if len(y) < 2:
        return 0.01, {"how": "default (too few fine-tuning samples to sweep)", "value": 0.01}
    train, val = finetune.validation_split(y, SWEEP_FRACTION)
    if not len(train):
        train = val
    steps = min(SWEEP_STEPS, len(train))
    order = finetune.orders(len(train), steps, seed)
    xv, yv = x[val][:SWEEP_EVAL], y[val][:SWEEP_EVAL]
    print(
        f"lr        no --lr given: a sweep on the host twin, {steps} steps on {len(train)} of the "
        f"fine-tuning samples per lr, scored on {len(yv)} others (validation; the held-out part is not used)"
    )
    rows = []
    by_loss = False  # mse: no accuracy to rank by
    for lr in progress(lrs, desc="lr sweep", unit="lr"):
        ct = finetune.compile_for(graph, scheme, board, name, lr, loss=loss)
        by_loss = ct.train.head is not None and ct.train.head.loss == "mse"
        tr = Trainer(ct)
        for t, i in enumerate(order):
            tr.step(x[train][i], int(y[train][i]), schedules.lr_scale(schedule, t, steps))
        v_acc, v_loss = _evaluate(tr, xv, yv)
        rows.append({"lr": lr, "validation_accuracy": v_acc, "validation_loss": v_loss})

    def key(r: dict[str, Any]) -> tuple[float, float, float]:
        v = r["validation_loss"]
        acc = 0.0 if by_loss else -r["validation_accuracy"]
        return (acc, v if math.isfinite(v) else math.inf, r["lr"])

    best = min(rows, key=key)
    for r in rows:
        mark = "  <- chosen" if r is best else ""
        acc = "" if by_loss else f"validation accuracy {r['validation_accuracy']:.3f}, "
        print(f"          lr {r['lr']:<6g} {acc}loss {r['validation_loss']:.4g}{mark}")
    seconds = time.monotonic() - t0
    print(f"lr        {best['lr']:g} (sweep took {seconds:.1f} s; give --lr to choose it yourself)")
    record = {
        "how": "sweep on the host twin",
        "value": best["lr"],
        "steps": steps,
        "train_samples": len(train),
        "validation_samples": len(yv),
        "schedule": schedule,
        "ranked_by": "validation loss" if by_loss else "validation accuracy, then loss",
        "seed": seed,
        "candidates": rows,
        "seconds": round(seconds, 2),
    }
    return best["lr"], record
