"""The session's plots: loss.png (every step, its moving mean, each epoch's mean) and, by the
session's loss, accuracy.png (ce, bce) or held_out.png (mse: the held-out reconstruction error
and, when labels mark anomalies, the ROC AUC, by epoch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pytools.errors import ToolError

MATPLOTLIB_PIN = "matplotlib==3.11.2"  # as requirements.txt pins it


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ToolError(
            f"the session's plots need matplotlib, which is not installed ({e}): "
            f"`.venv/bin/pip install {MATPLOTLIB_PIN}` (or ./setup.sh, which installs requirements.txt)"
        ) from e


LOSS_AXIS = {
    "ce": "cross-entropy loss (nats; log scale above 1)",
    "bce": "binary cross-entropy loss (nats; log scale above 1)",
    "mse": "mean squared error (real units; log scale above 1)",
}


def write_plots(
    folder: Path, steps: list[dict[str, Any]], epochs: list[dict[str, Any]], title: str, loss: str = "ce"
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(1, len(steps) + 1)
    values = np.array([s["loss"] for s in steps], dtype=float)
    ax.plot(x, values, lw=0.6, alpha=0.35, color="tab:blue", label="loss of each step (before its update)")
    if len(values):
        w = max(1, min(25, len(values) // 10))
        smooth = np.convolve(values, np.ones(w) / w, mode="valid")
        ax.plot(x[w - 1 :], smooth, color="tab:blue", label=f"moving mean over {w} steps")
    end = 0
    for e in epochs[1:]:
        start, end = end, end + e["steps"]
        ax.hlines(e["train_loss"], start + 0.5, end + 0.5, colors="tab:red", lw=2)
        ax.axvline(end + 0.5, color="grey", lw=0.5, ls=":")
    if len(epochs) > 1:
        ax.plot([], [], color="tab:red", lw=2, label="mean of the epoch")
    ax.set_title(f"Training loss\n{title}", fontsize=10)
    ax.set_xlabel("training step (one sample per step; dotted lines: epoch ends)")
    ax.set_yscale("symlog", linthresh=1.0)  # the first steps on new classes cost 10-40 nats
    ax.set_ylabel(LOSS_AXIS[loss])
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(folder / "loss.png", dpi=110)
    if loss == "mse":
        _held_out_error(folder, epochs, title)
        return

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ep = [e["epoch"] for e in epochs]
    ax.plot(
        ep,
        [100 * e["held_out_accuracy"] for e in epochs],
        "o-",
        label="held-out samples (on the device or its twin)",
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


def _held_out_error(folder: Path, epochs: list[dict[str, Any]], title: str) -> None:
    """held_out.png: an autoencoder's held-out reconstruction error by epoch, and its ROC AUC."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ep = [e["epoch"] for e in epochs]
    ax.plot(
        ep, [e["held_out_loss"] for e in epochs], "o-", color="tab:blue", label="mean reconstruction error"
    )
    ax.set_xlabel("epoch (0: before training)")
    ax.set_ylabel("held-out mean squared error (real units)")
    ax.set_xticks(ep)
    ax.grid(alpha=0.3)
    scored = [e for e in epochs if e.get("held_out_auc") is not None]
    if scored:
        ax2 = ax.twinx()
        ax2.plot([e["epoch"] for e in scored], [e["held_out_auc"] for e in scored], "s--", color="tab:red")
        ax2.set_ylabel("ROC AUC, normal vs anomalous (red)")
        ax2.set_ylim(0, 1.05)
    ax.set_title(f"Held-out reconstruction error (the anomaly score)\n{title}", fontsize=10)
    ax.legend(fontsize=8)
    fig.savefig(folder / "held_out.png", dpi=110)
