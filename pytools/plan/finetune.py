"""Fine-tuning on the host twin (the board's own C through ctypes), shared by the planner's
contribution analysis and `invoke results`.

A run: compile the step for a scheme (the real compiler, link=False: the host twin needs
only the plan), one SGD step per sample in a seeded order, then held-out (or validation)
accuracy from the forward pass. The host twin is bit-identical with the board for the same
plan, seed and sample order (tests/test_training.py), so these numbers are the board's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import datasets
from pytools.boards import Board
from pytools.errors import ToolError
from pytools.model.ir import Graph
from pytools.model.tflite_import import import_tflite
from pytools.train import schedule as schedules
from pytools.train.compile_train import CompiledTraining, compile_training
from pytools.train.scheme import Scheme
from pytools.train.trainer import Trainer

VALIDATION_FRACTION = 0.3  # of the fine-tuning part, held back for the planner's analysis


@dataclass
class Data:
    """A pretrained model and a data set's parts, as the model's integer inputs."""

    model_name: str
    model: bytes
    graph: Graph
    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    eval_name: str  # "validation" (the planner) or "held-out" (results)
    x_float_train: np.ndarray | None = None  # the real-valued samples (the float path's inputs)
    x_float_eval: np.ndarray | None = None
    loss: str = "auto"  # the training loss (pytools/train/losses.py), as `invoke plan --loss`


def upscale28(x: np.ndarray) -> np.ndarray:
    """sklearn digits (8x8, [0, 1]) as a 28x28 backbone takes them: each pixel a 3x3 block
    (24x24), then a 2-pixel empty border, as MNIST centres a 20x20 digit in 28x28."""
    big = np.kron(x[..., 0], np.ones((3, 3), np.float32))
    return np.pad(big, ((0, 0), (2, 2), (2, 2)))[..., None].astype(np.float32)


def watch_to_hapt(x: np.ndarray) -> np.ndarray:
    """BasicMotions recordings (10 s at 10 Hz, accelerometer in m/s^2) as the HAPT backbone's
    windows (2.56 s at 50 Hz, accelerometer in g): acceleration / 9.80665, linear interpolation
    to 50 Hz, the centre 128 samples. Gyroscopes are rad/s in both."""
    x = np.asarray(x, np.float32)[:, 0]  # [n, 100, 6]
    t_in = np.arange(x.shape[1]) / 10.0
    t_out = np.arange(x.shape[1] * 5) / 50.0
    up = np.stack([[np.interp(t_out, t_in, r[:, c]) for c in range(r.shape[1])] for r in x])  # [n, 6, 500]
    start = (up.shape[2] - 128) // 2
    w = up[:, :, start : start + 128].transpose(0, 2, 1).copy()
    w[:, :, :3] /= 9.80665
    return w[:, None].astype(np.float32)


ADAPTERS = {
    "upscale28": upscale28,
    "watch_to_hapt": watch_to_hapt,
}  # name -> samples as a backbone takes them


def load(
    dataset: str,
    model: Path | None,
    split: str | None = None,
    validation: bool = True,
    adapt: str | None = None,
    label_column: str | None = None,
) -> Data:
    """The data set and a model for it. validation=True: train on part of the fine-tuning split
    and evaluate on the rest (the planner never sees the held-out part); False: train on the whole
    fine-tuning split and evaluate on the held-out part. adapt: an ADAPTERS name, applied to the
    samples first. A model whose head has more outputs than the data set has classes is accepted
    (the extra outputs are simply never the label)."""
    from pytools.session import check_classifier, load_data, load_model, model_inputs

    blob, name, source = load_model(model, dataset)
    graph = import_tflite(blob, name)
    data = load_data(dataset, graph, split, 0, label_column)  # the session's resolution of --dataset
    parts = data.parts
    fx, hx = parts.finetune.x, parts.held_out.x
    if adapt:
        if adapt not in ADAPTERS:
            raise ToolError(f"unknown adapter '{adapt}'; known: {', '.join(ADAPTERS)}")
        fx, hx = ADAPTERS[adapt](fx), ADAPTERS[adapt](hx)
    outputs = int(np.prod(graph.tensor(graph.outputs[0]).shape))
    check_classifier(graph, max(data.classes, outputs), fx.shape[1:], source)
    y = parts.finetune.y

    def inputs(part: datasets.Part, x: np.ndarray, which: np.ndarray) -> np.ndarray:
        # The user's own data through its loader (never quantized twice); adapted samples are real.
        if adapt:
            return model_inputs(graph, x[which])
        return data.inputs(graph, part, which)

    every_f, every_h = np.arange(len(fx)), np.arange(len(hx))
    if not validation:
        return Data(
            name,
            blob,
            graph,
            inputs(parts.finetune, fx, every_f),
            y,
            inputs(parts.held_out, hx, every_h),
            parts.held_out.y,
            "held-out",
            fx,
            hx,
        )
    train, val = validation_split(y)
    return Data(
        name,
        blob,
        graph,
        inputs(parts.finetune, fx, train),
        y[train],
        inputs(parts.finetune, fx, val),
        y[val],
        "validation",
        fx[train],
        fx[val],
    )


def validation_split(y: np.ndarray, fraction: float = VALIDATION_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) of the fine-tuning part: a fixed, class-stratified draw."""
    rng = np.random.default_rng(12345)
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        val += rng.choice(idx, size=max(1, round(fraction * len(idx))), replace=False).tolist()
    mask = np.zeros(len(y), bool)
    mask[val] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def orders(n: int, steps: int, seed: int) -> np.ndarray:
    """The sample order: whole seeded permutations (one per epoch), cut at `steps`."""
    rng = np.random.default_rng(seed)
    epochs = -(-steps // n)
    if epochs == 0:
        return np.zeros(0, np.int64)
    return np.concatenate([rng.permutation(n) for _ in range(epochs)])[:steps]


def compile_for(
    graph: Graph, scheme: Scheme, board: Board, name: str, lr: float, loss: str = "auto"
) -> CompiledTraining:
    return compile_training(graph, scheme, board, name, link=False, lr=lr, loss=loss)


def accuracy(tr: Trainer, x: np.ndarray, y: np.ndarray) -> float:
    if not len(y):
        return float("nan")
    return float(np.mean([tr.predict(xi) == yi for xi, yi in zip(x, y, strict=True)]))


def run(
    ct: CompiledTraining,
    d: Data,
    steps: int,
    seed: int,
    eval_limit: int | None = None,
    schedule: str = schedules.DEFAULT,
) -> tuple[float, float]:
    """Fine-tunes a fresh copy of the compiled step for `steps` samples, its lr following
    `schedule` over those steps; (accuracy, mean loss of the last epoch's steps) on d's
    evaluation part (its first eval_limit samples)."""
    tr = Trainer(ct)
    losses = [
        tr.step(d.x_train[i], int(d.y_train[i]), schedules.lr_scale(schedule, t, steps))[0]
        for t, i in enumerate(orders(len(d.y_train), steps, seed))
    ]
    k = len(d.y_eval) if eval_limit is None else eval_limit
    tail = losses[-len(d.y_train) :] if losses else [float("nan")]
    return accuracy(tr, d.x_eval[:k], d.y_eval[:k]), float(np.mean(tail))
