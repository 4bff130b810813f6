"""Running a compiled training step, on the host twin or on a board, one sample at a time."""

from __future__ import annotations

import numpy as np

from pytools.model.board_runner import BoardTraining
from pytools.model.host_twin import HostTwin, tensor_table
from pytools.train.compile_train import CompiledTraining


class Trainer:
    """step(x, label) -> (loss, prediction); predict(x) -> class; state() -> trained tensors.

    backend is a HostTwin, or, on a board whose firmware embeds the same plan (the same C, so
    bit-identical): a BoardTraining (the training messages: each step is a TRAIN of the board's
    next sample id, trained exactly once) or a BoardModel (generic TENSOR_WRITE and INVOKE, for
    any plan). Both board backends read the trained state with ARENA_READ.
    """

    def __init__(self, ct: CompiledTraining, backend: object | None = None) -> None:
        self.ct = ct
        self.backend = backend if backend is not None else HostTwin(ct.compiled.blob)
        self.tensors = tensor_table(ct.compiled.blob)
        ids = ct.compiled.plan_ids
        self.logits = ids[ct.train.logits]
        self.n_forward = ct.train.n_forward
        self.loss_end = ct.train.loss_end or None
        self.prediction = ids[ct.train.prediction]
        self.state_ids = {ct.train.graph.tensor(t).name: ids[t] for t in ct.train.state}

    def _invoke(
        self, x: np.ndarray, label: int | np.ndarray, end: int | None = None, lr_scale: float = 1.0
    ) -> list[np.ndarray]:
        if np.ndim(label):  # a regression's float32 target vector (pytools/train/losses.py)
            lab = np.asarray(label, dtype=np.float32)
        else:
            lab = np.array([label], dtype=np.int32)
        if isinstance(self.backend, HostTwin):
            return self.backend.invoke([x, lab], 0, end, lr_scale=lr_scale)
        if lr_scale != 1.0:
            raise ValueError("INVOKE trains at the plan's lr; a schedule needs the TRAIN messages")
        outs, _ = self.backend.invoke([x, lab], end=end)
        return outs

    def step(self, x: np.ndarray, label: int | np.ndarray, lr_scale: float = 1.0) -> tuple[float, int]:
        """One SGD step at the plan's lr times lr_scale (pytools/train/schedule.py). label: the
        class (0/1 for one sigmoid output; ignored by an autoencoder's MSE), or a float32
        target vector for a regression's MSE."""
        if isinstance(self.backend, BoardTraining):
            r = self.backend.train(self.backend.status()["samples_trained"], x, label, lr_scale=lr_scale)
            return r.loss, r.prediction
        loss, pred = self._invoke(x, label, lr_scale=lr_scale)
        return float(loss.reshape(-1)[0]), int(pred.reshape(-1)[0])

    def _tensor(self, tid: int) -> np.ndarray:
        t = self.tensors[tid]
        if isinstance(self.backend, HostTwin):
            return self.backend.tensor(tid)
        raw = self.backend.arena_bytes(t["offset"], t["size"])
        return np.frombuffer(raw, dtype=t["dtype_name"]).reshape(t["shape"])

    def evaluate(self, x: np.ndarray, label: int | np.ndarray) -> tuple[float, int]:
        """(loss, prediction) without training: the forward pass and the loss head only. For
        an autoencoder's MSE the loss is the sample's anomaly score (reconstruction error)."""
        if isinstance(self.backend, BoardTraining):
            r = self.backend.evaluate(0, x, int(label))
            return r.loss, r.prediction
        loss, pred = self._invoke(x, label, end=self.loss_end)
        return float(loss.reshape(-1)[0]), int(pred.reshape(-1)[0])

    def predict(self, x: np.ndarray) -> int:
        """The loss head's prediction (argmax of the un-clamped logits; logit > 0 for one
        sigmoid output), with no label, as the board's PREDICT."""
        if isinstance(self.backend, BoardTraining):
            return self.backend.predict(0, x).prediction
        if self.loss_end is None:  # a TrainGraph from before the loss heads: argmax of int8
            self._invoke(x, 0, end=self.n_forward)
            return int(np.argmax(self._tensor(self.logits).reshape(-1)))
        no_label = np.full(
            self.tensors[self.ct.compiled.plan_ids[self.ct.train.label]]["shape"], np.nan, np.float32
        )
        self._invoke(x, -1 if self.ct.train.head.target != "vector" else no_label, end=self.loss_end)
        return int(self._tensor(self.prediction).reshape(-1)[0])

    def forward_output(self, x: np.ndarray) -> np.ndarray:
        """The forward pass alone (no loss, no update): the int8 values of the tensor the loss is
        about (the logits, or an autoencoder's reconstruction), as the model computes them. Read
        before the loss head runs, which may reuse their buffer. Not on BoardTraining."""
        self._invoke(x, 0, end=self.n_forward)
        return self._tensor(self.logits).copy()

    def state(self) -> dict[str, np.ndarray]:
        return {name: self._tensor(tid).copy() for name, tid in self.state_ids.items()}
