"""The host twin behind the board's training messages: `--board host`.

TwinTraining answers what a session asks a board (BoardTraining's train, replay, evaluate,
predict, status and config) by running the same plan on the host twin: the firmware's own
runtime and kernels compiled for this machine (pytools/model/host_twin.py), so every step
computes the bit-identical loss, prediction and update the board would (tests/
test_session_host.py holds a twin session and an emulated board's session to that). It keeps
the board's bookkeeping too: sample ids trained once and in order, the trained count, the
state's CRC-32 as TRAIN_STATUS computes it, every result kept for a replay.

What differs is the cost: the board reports its cycle or instruction counter, the twin the
nanoseconds of the host's clock around the step (the host's speed, not the board's).
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from typing import Any

import numpy as np

from pytools.errors import ToolError
from pytools.model.board_runner import StepResult
from pytools.model.host_twin import HostTwin
from pytools.model.ir import ModelError
from pytools.model.plan import read_header
from pytools.train.compile_train import CompiledTraining
from pytools.train.losses import loss_op_index
from pytools.train.trainer import Trainer


class TwinTraining:
    """BoardTraining's interface (pytools/model/board_runner.py) on the host twin."""

    def __init__(self, ct: CompiledTraining) -> None:
        blob = ct.compiled.blob
        self.twin = HostTwin(blob)
        self.trainer = Trainer(ct, self.twin)  # state() reads the twin's trained state
        ops = ct.compiled.plan.ops
        # The loss head, as firmware/app/train.c finds it (is_loss): pytools/train/losses.py.
        try:
            self.loss_end = loss_op_index(ops) + 1  # [0, loss_end): the loss without training (EVAL)
        except ModelError as e:
            raise ToolError(str(e)) from None
        self.n_forward = ct.train.n_forward
        self.n_ops = len(ops)
        header = read_header(blob)
        self.config: dict[str, Any] = {"plan_crc": header["crc32"], "state_size": header["state_size"]}
        # The state tensors in plan order: TRAIN_STATUS's CRC runs over them in that order.
        self.state_order = sorted(self.trainer.state_ids.values())
        self.trained = 0
        self.kept: dict[int, StepResult] = {}
        self.counts = {"evals": 0, "predicts": 0, "replays": 0}

    def state_crc(self) -> int:
        crc = 0
        for tid in self.state_order:
            crc = zlib.crc32(self.twin.tensor(tid).tobytes(), crc)
        return crc

    def status(self) -> dict[str, Any]:
        return {
            "samples_trained": self.trained,
            "last_id": self.trained - 1 if self.trained else None,
            "state_crc": self.state_crc(),
            "stack_high_water": 0,
            "refused": 0,
            **self.counts,
        }

    def _run(self, x: np.ndarray, label: int, end: int, lr_scale: float = 1.0) -> tuple[float, int, int]:
        """Operators [0, end) on one sample: (loss, prediction, nanoseconds)."""
        lab = np.array([label], dtype=np.int32)
        t0 = time.perf_counter_ns()
        loss, pred = self.twin.invoke([x, lab], 0, end, lr_scale=lr_scale)
        ns = time.perf_counter_ns() - t0
        return float(loss.reshape(-1)[0]), int(pred.reshape(-1)[0]), ns

    def train(
        self,
        sample_id: int,
        x: np.ndarray,
        label: int,
        epoch: int = 0,
        timeout: float | None = None,
        lr_scale: float = 1.0,
    ) -> StepResult:
        """One training step on sample_id, which must be the next one (as the board's TRAIN)."""
        if sample_id < self.trained:
            return self.replay(sample_id, epoch)
        if sample_id > self.trained:
            raise ToolError(
                f"TRAIN {sample_id} skips ahead: the twin has trained {self.trained} samples, "
                f"the next sample id is {self.trained}"
            )
        loss, pred, ns = self._run(x, label, self.n_ops, lr_scale)
        self.trained += 1
        r = StepResult(
            sample_id=sample_id,
            kind="train",
            replayed=False,
            epoch=epoch,
            label=label,
            prediction=pred,
            correct=pred == label,
            loss=loss,
            cost=ns,
            samples_trained=self.trained,
            stack_high_water=0,
            lr_scale=float(np.float32(lr_scale)),  # the board keeps it as a float32
        )
        self.kept[sample_id] = r
        return r

    def replay(
        self, sample_id: int, epoch: int = 0, timeout: float | None = None, lr_scale: float = 1.0
    ) -> StepResult:
        if sample_id not in self.kept:
            raise ToolError(
                f"sample {sample_id} has not been trained on the twin (it trained {self.trained})"
            )
        self.counts["replays"] += 1
        r = self.kept[sample_id]
        return dataclasses.replace(r, replayed=True, samples_trained=self.trained)

    def evaluate(self, sample_id: int, x: np.ndarray, label: int, timeout: float | None = None) -> StepResult:
        """Loss and prediction against the label, without training (the board's EVAL)."""
        loss, pred, ns = self._run(x, label, self.loss_end)
        self.counts["evals"] += 1
        return StepResult(
            sample_id=sample_id,
            kind="eval",
            replayed=False,
            epoch=0,
            label=label,
            prediction=pred,
            correct=pred == label,
            loss=loss,
            cost=ns,
            samples_trained=self.trained,
            stack_high_water=0,
        )
