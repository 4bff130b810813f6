"""What evaluation reports for a training step's loss (pytools/train/losses.py).

Each held-out sample is evaluated without training (the board's EVAL, or
`Trainer.evaluate` on the host twin): a loss and a prediction. `metrics` turns those into
the numbers that mean something for the loss:
  ce, bce  accuracy and the mean loss;
  mse      the mean loss, and per sample its anomaly score: the sample's reconstruction error
           (an autoencoder) or squared error (a regression), which is the sample's loss. When
           labels mark samples as normal (0) or anomalous (non-zero) and both occur, the ROC AUC
           of the scores (MLPerf Tiny's anomaly-detection metric), and the threshold that
           separates them best on these samples.
A sample whose loss is NaN (a label out of range) is left out of the means and counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pytools.train.losses import Head


def roc_auc(scores: np.ndarray, anomalous: np.ndarray) -> float:
    """Probability that an anomalous sample scores above a normal one (ties count half)."""
    pos, neg = scores[anomalous], scores[~anomalous]
    if not len(pos) or not len(neg):
        raise ValueError("the ROC AUC needs both normal and anomalous samples")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order), np.float64)
    ranks[order] = np.arange(1, len(order) + 1)
    allv = np.concatenate([pos, neg])
    for v in np.unique(allv):  # average ranks over ties
        tie = allv == v
        ranks[tie] = ranks[tie].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def metrics(
    head: Head, losses: Sequence[float], predictions: Sequence[int], labels: Sequence[int] | None = None
) -> dict[str, object]:
    """The evaluation figures of per-sample (loss, prediction) results, for head's loss."""
    loss = np.asarray(losses, np.float64)
    ok = ~np.isnan(loss)
    out: dict[str, object] = {
        "loss": head.loss,
        "samples": len(loss),
        "unscored": int((~ok).sum()),
        "mean_loss": float(loss[ok].mean()) if ok.any() else float("nan"),
    }
    if head.loss in ("ce", "bce"):
        if labels is not None:
            lab = np.asarray(labels)
            out["accuracy"] = (
                float(np.mean(np.asarray(predictions)[ok] == lab[ok])) if ok.any() else float("nan")
            )
        return out
    out["anomaly_scores"] = [float(v) for v in loss]
    if labels is not None and head.target == "input":
        anomalous = np.asarray(labels) != 0
        if anomalous[ok].any() and (~anomalous[ok]).any():
            s, a = loss[ok], anomalous[ok]
            out["auc"] = roc_auc(s, a)
            cuts = np.unique(s)
            best = max(cuts, key=lambda c: np.mean((s >= c) == a))
            out["threshold"] = float(best)
            out["threshold_accuracy"] = float(np.mean((s >= best) == a))
    return out


def evaluate(trainer: object, xs: np.ndarray, labels: Sequence[int] | np.ndarray | None = None) -> dict:
    """Evaluates every sample of xs with a Trainer (pytools/train/trainer.py: host twin or
    board) and returns metrics(). labels: classes (ce, bce), normal/anomalous flags (an
    autoencoder's MSE), or float32 target vectors (a regression's MSE)."""
    head = trainer.ct.train.head  # type: ignore[attr-defined]
    losses, preds = [], []
    for i in range(len(xs)):
        lab = 0 if labels is None else labels[i]
        loss, pred = trainer.evaluate(xs[i], lab)  # type: ignore[attr-defined]
        losses.append(loss)
        preds.append(pred)
    flags = None if labels is None or head.target == "vector" else [int(v) for v in labels]
    return metrics(head, losses, preds, flags)
