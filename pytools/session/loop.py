"""Training and evaluation over the link, step by step, and the records they leave: steps.jsonl,
epochs.jsonl, checkpoints to the board's flash and the roll-back of steps a reset board lost."""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from pytools.boards import Board
from pytools.console import log_line
from pytools.errors import ToolError
from pytools.link.client import BoardRefused, Link, LinkError
from pytools.model.board_runner import BoardModel, BoardTraining, StepResult
from pytools.model.host_twin import io_tensors, tensor_table
from pytools.progress import progress
from pytools.session.folder import CHECKPOINTS, ROLLED_BACK, append_to, read_jsonl, write_row
from pytools.session.inputs import Inputs
from pytools.session.twin import TwinTraining
from pytools.train import schedule as schedules
from pytools.train.evaluate import metrics
from pytools.train.trainer import Trainer

FLASH_ERASE_CYCLES = 10_000  # STM32F746 datasheet: flash endurance, cycles per sector (minimum)
WEAR_NOTE_SAVES = 100  # a session asking more SAVEs than this on a real board is told what they cost


def median(v: list[float]) -> float:
    return float(statistics.median(v)) if v else float("nan")


class Run:
    """Training and evaluation on the connected board, and the records they leave (step 5).

    The steps of a session are numbered 0, 1, ... across its epochs; step g trains the board's
    sample id first_id + g, so the board's count of trained samples says how far the session
    got, even if this process was killed (see resume()).
    """

    def __init__(
        self,
        folder: Path,
        inp: Inputs,
        link: Link | None,
        unit: str,
        first_id: int,
        schedule: str,
        epochs: int,
        save_every: int | None = None,
        twin: TwinTraining | None = None,
    ) -> None:
        self.folder, self.inp, self.link, self.unit, self.first_id = folder, inp, link, unit, first_id
        self.schedule, self.total_steps = schedule, epochs * len(inp.y_train)
        # Checkpoints: None at each epoch's end, N every N steps, 0 none (only the final save).
        self.save_every = save_every
        self.checkpoints = read_jsonl(folder / CHECKPOINTS)
        self.checkpoint_error: str | None = None  # a SAVE the board refused: no more tries
        # The board over its link, or (--board host, no link) the host twin answering the same
        # calls: everything below runs the same either way.
        self.training: BoardTraining | TwinTraining
        self.where = "on the host twin" if twin is not None else "on the board"
        if twin is not None:
            self.training, self.trainer = twin, twin.trainer
        else:
            assert link is not None
            ins, outs = io_tensors(inp.ct.compiled.blob)
            board = BoardModel(link, tensor_table(inp.ct.compiled.blob), ins, outs)
            self.training = BoardTraining(link)
            self.trainer = Trainer(inp.ct, board)  # state() reads the board's trained state
        self.steps = read_jsonl(folder / "steps.jsonl")
        self.epochs = read_jsonl(folder / "epochs.jsonl")
        self.final: dict[str, Any] | None = None  # the board's TRAIN_STATUS at the end
        self.saved: str | None = None  # what the SAVE to flash at the end did
        self.steps_file = append_to(folder / "steps.jsonl")
        self.epochs_file = append_to(folder / "epochs.jsonl")

    def close(self) -> None:
        self.steps_file.close()
        self.epochs_file.close()

    @property
    def retransmits(self) -> int:
        """Frames the link sent again so far (the host twin has no link: 0)."""
        return self.link.stats.retransmits if self.link is not None else 0

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
            write_row(f, row)
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
                    write_row(f, {"utc": utc, "file": name, "to_samples_trained": count, "row": row})
            os.fsync(f.fileno())
        self.steps_file.close()
        self.epochs_file.close()
        kept = (("steps.jsonl", keep_steps), ("epochs.jsonl", keep_epochs), (CHECKPOINTS, keep_ckpt))
        for name, rows in kept:
            tmp = self.folder / f"{name}.tmp"
            with open(tmp, "w") as f:
                for row in rows:
                    write_row(f, row)
            os.replace(tmp, self.folder / name)
        self.steps, self.epochs, self.checkpoints = keep_steps, keep_epochs, keep_ckpt
        self.steps_file = append_to(self.folder / "steps.jsonl")
        self.epochs_file = append_to(self.folder / "epochs.jsonl")
        return {
            "to_samples_trained": count,
            "to": match[0]["what"],
            "steps": len(moved["steps.jsonl"]),
            "epochs": [e["epoch"] for e in moved["epochs.jsonl"]],
            "checkpoints": len(moved[CHECKPOINTS]),
        }

    def status(self) -> dict[str, Any]:
        return self.training.status()

    @property
    def classifies(self) -> bool:
        """Whether the session's loss scores classes (ce, bce: accuracy) or not (mse)."""
        return self.inp.head.loss != "mse"

    def held_out(self, epoch: int) -> dict[str, Any]:
        """Held-out samples evaluated on the device (EVAL trains nothing): the metrics of the
        session's loss (pytools/train/evaluate.py): accuracy for ce/bce; for mse the mean
        reconstruction error (each sample's loss is its anomaly score) and, when the labels
        mark normal (0) and anomalous samples, the ROC AUC. "correct" counts right predictions."""
        y = self.inp.y_held
        rs = self.held_out_results(epoch)
        correct = sum(int(r.correct) for r in rs)
        m = metrics(self.inp.head, [r.loss for r in rs], [r.prediction for r in rs], [int(v) for v in y])
        m.pop("anomaly_scores", None)
        return {**m, "correct": correct}

    def held_out_results(self, epoch: int) -> list[Any]:
        """Each held-out sample's result (correct, loss, prediction), by an EVAL on the device.
        The one place held-out samples are scored: a subclass scores them elsewhere (the fleet's
        board clients: on a host twin holding the board's state, pytools/fleet/client.py)."""
        x, y = self.inp.x_held, self.inp.y_held
        rs: list[Any] = []
        bar = progress(range(len(y)), desc=f"epoch {epoch} held-out", unit="sample")
        for k in bar:
            rs.append(self.training.evaluate(k, x[k], int(y[k])))
            if self.classifies:
                bar.set_postfix(acc=f"{sum(int(r.correct) for r in rs) / (k + 1):.3f}", refresh=False)
            else:
                bar.set_postfix(mse=f"{np.mean([r.loss for r in rs]):.4g}", refresh=False)
        bar.close()
        return rs

    def evaluate(self, epoch: int) -> tuple[int, float]:
        """Held-out samples evaluated on the device: (right, mean loss)."""
        m = self.held_out(epoch)
        return int(m["correct"]), float(m["mean_loss"])  # type: ignore[arg-type]

    def _held_out_fields(self, m: dict[str, Any]) -> dict[str, Any]:
        """An epoch line's held-out figures, for the session's loss."""
        n = len(self.inp.y_held)
        row: dict[str, Any] = {
            "held_out_accuracy": m["correct"] / n if self.classifies else None,
            "held_out_correct": m["correct"] if self.classifies else None,
            "held_out_samples": n,
            "held_out_loss": m["mean_loss"],
        }
        if not self.classifies:
            row["held_out_auc"] = m.get("auc")
            row["held_out_threshold_accuracy"] = m.get("threshold_accuracy")
        return row

    def held_out_text(self, row: dict[str, Any]) -> str:
        """An epoch line's held-out figures in words."""
        if self.classifies:
            n = row["held_out_samples"]
            return f"held-out accuracy {row['held_out_accuracy']:.3f} ({row['held_out_correct']}/{n})"
        auc = row.get("held_out_auc")
        text = f"held-out reconstruction error (mse) {row['held_out_loss']:.4g}"
        if auc is not None:
            text += f", ROC AUC {auc:.3f} (best threshold: {row['held_out_threshold_accuracy']:.3f} right)"
        return text

    def before(self) -> None:
        if any(e["epoch"] == 0 for e in self.epochs):
            return  # done before this process was started (a resumed session)
        row = {
            "epoch": 0,
            **self._held_out_fields(self.held_out(0)),
            "train_loss": None,
            "train_accuracy": None,
            "steps": 0,
        }
        self._epoch_row(row)
        print(f"epoch 0   {self.held_out_text(row)}, before training")

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
                "retransmits": self.retransmits,
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
        bar = progress(range(start, n), desc=f"epoch {epoch}/{epochs} train", unit="step")
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
            live = {"loss": f"{r.loss:.4g}", "epoch mean": f"{np.mean([s['loss'] for s in mine]):.4g}"}
            if self.classifies:
                live["acc"] = f"{np.mean([s['prediction'] == s['label'] for s in mine]):.3f}"
            bar.set_postfix(live, refresh=False)
        bar.close()
        seconds = time.monotonic() - t0
        if self.save_every is None:  # the default: a checkpoint at each epoch's end
            self.checkpoint(epoch)
        mine = [s for s in self.steps if s["epoch"] == epoch]
        losses = [s["loss"] for s in mine]
        hits = sum(s["prediction"] == s["label"] for s in mine)
        held = self._held_out_fields(self.held_out(epoch))
        cost = median([s["cost"] for s in mine])
        row = {
            "epoch": epoch,
            **held,
            "train_loss": float(np.mean(losses)),
            "train_accuracy": hits / n if self.classifies else None,
            "steps": n,
            "median_cost": cost,
            "train_seconds": round(seconds, 3),
            "retransmits": self.retransmits,
        }
        self._epoch_row(row)
        train_acc = f", accuracy {hits / n:.3f}" if self.classifies else ""
        print(
            f"epoch {epoch}   {self.held_out_text(row)}; training: mean loss {np.mean(losses):.4g}"
            f"{train_acc}; per step {cost:,.0f} {self.unit} {self.where}, "
            f"{1000 * seconds / max(1, n - start):.1f} ms in all"
        )

    def _step_row(self, row: dict[str, Any]) -> None:
        self.steps.append(row)
        write_row(self.steps_file, row)

    def _epoch_row(self, row: dict[str, Any]) -> None:
        self.epochs.append(row)
        write_row(self.epochs_file, row)


class BoardLog:
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


def saved_text(saved: dict[str, Any] | None, error: str | None) -> str:
    """What the save to flash at the end did, in words (a board that cannot save says why, and
    the session still completes: its results are in the folder)."""
    if saved is None:
        return f"trained state NOT saved to flash: {error}"
    return (
        f"trained state saved ({saved['length']:,} B, {saved['samples_trained']:,} samples trained) to "
        f"slot {saved['slot']}, sequence {saved['sequence']}: the board restores it at boot"
    )
