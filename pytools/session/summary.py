"""The end of a session: summary.txt, the plots, and where they are."""

from __future__ import annotations

from pathlib import Path

from pytools.boards import Board
from pytools.link.client import LinkStats
from pytools.session.folder import TWIN_COST_UNIT, TWIN_TIMING_NOTE
from pytools.session.loop import Run, median
from pytools.session.plots import write_plots
from pytools.train.losses import NAMES


def finish(
    folder: Path,
    status: str,
    run: Run | None,
    board: Board,
    title: str,
    seconds: float,
    stats: LinkStats | None,
    twin: bool = False,
    loss: str = "ce",
) -> None:
    """summary.txt (always) and the plots (once an epoch is done); prints where they are.
    twin: the session ran on the host twin, its plan compiled for board. loss: the session's
    (ce, bce: accuracy; mse: the reconstruction error and, when known, the ROC AUC)."""
    steps = run.steps if run else []
    epochs = run.epochs if run else []
    unit = TWIN_COST_UNIT if twin else board.counter_unit
    timing = TWIN_TIMING_NOTE if twin else board.timing_note
    where = "the host twin" if twin else "the board"
    if twin:
        ran = f"host twin (the firmware's C on this machine; plan for {board.name}): {status}"
    else:
        ran = f"board {board.name} ({board.description}): {status}"
    lines = [f"training session: {title}", ran, f"loss: {loss} ({NAMES[loss]})"]
    if epochs and loss != "mse":
        acc = ", ".join(f"{e['held_out_accuracy']:.3f}" for e in epochs)
        lines.append(f"held-out accuracy by epoch (0 = before training): {acc}")
    elif epochs:
        err = ", ".join(f"{e['held_out_loss']:.4g}" for e in epochs)
        lines.append(
            f"held-out reconstruction error (mse, the anomaly score) by epoch (0 = before training): {err}"
        )
        if any(e.get("held_out_auc") is not None for e in epochs):
            auc = ", ".join(
                "n/a" if e.get("held_out_auc") is None else f"{e['held_out_auc']:.3f}" for e in epochs
            )
            lines.append(f"held-out ROC AUC (normal 0 vs anomalous labels) by epoch: {auc}")
    if len(epochs) > 1:
        lines.append(
            "mean training loss by epoch: " + ", ".join(f"{e['train_loss']:.4g}" for e in epochs[1:])
        )
    if steps:
        costs = [s["cost"] for s in steps]
        ms = [s["ms"] for s in steps if s.get("ms") is not None]  # replayed steps have none
        lines.append(
            f"cost per training step on {where}: median {median(costs):,.0f} {unit} "
            f"(min {min(costs):,}, max {max(costs):,}); {timing}"
        )
        link = "" if twin else ", link included"
        lines.append(f"wall time per training step: median {median(ms):.1f} ms{link}; {len(steps)} steps")
    if run is not None and run.final is not None:
        f = run.final
        who = "twin" if twin else "board"
        lines.append(
            f"{who}: {f['samples_trained']:,} samples trained ({f['replays']} results replayed "
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
        write_plots(folder, steps, epochs, title, loss)
    print(text, end="")
    print(f"session folder: {folder}")
