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
from pytools.model.ir import Graph
from pytools.model.tflite_import import import_tflite
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


def load(dataset: str, model: Path | None, split: str | None = None, validation: bool = True) -> Data:
    """The data set and a model for it. validation=True: train on part of the fine-tuning split
    and evaluate on the rest (the planner never sees the held-out part); False: train on the whole
    fine-tuning split and evaluate on the held-out part."""
    from pytools.session import _load_model, check_classifier, model_inputs

    ds = datasets.module(dataset)
    parts = datasets.load_split(dataset, split)
    blob, name, source = _load_model(model, dataset)
    graph = import_tflite(blob, name)
    check_classifier(graph, ds.CLASSES, ds.SHAPE, source)
    x, y = model_inputs(graph, parts.finetune.x), parts.finetune.y
    if not validation:
        return Data(
            name, blob, graph, x, y, model_inputs(graph, parts.held_out.x), parts.held_out.y, "held-out"
        )
    train, val = validation_split(y)
    return Data(name, blob, graph, x[train], y[train], x[val], y[val], "validation")


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


def compile_for(graph: Graph, scheme: Scheme, board: Board, name: str, lr: float) -> CompiledTraining:
    return compile_training(graph, scheme, board, name, link=False, lr=lr)


def accuracy(tr: Trainer, x: np.ndarray, y: np.ndarray) -> float:
    if not len(y):
        return float("nan")
    return float(np.mean([tr.predict(xi) == yi for xi, yi in zip(x, y, strict=True)]))


def run(
    ct: CompiledTraining, d: Data, steps: int, seed: int, eval_limit: int | None = None
) -> tuple[float, float]:
    """Fine-tunes a fresh copy of the compiled step for `steps` samples; (accuracy, mean loss of
    the last epoch's steps) on d's evaluation part (its first eval_limit samples)."""
    tr = Trainer(ct)
    losses = [tr.step(d.x_train[i], int(d.y_train[i]))[0] for i in orders(len(d.y_train), steps, seed)]
    k = len(d.y_eval) if eval_limit is None else eval_limit
    tail = losses[-len(d.y_train) :] if losses else [float("nan")]
    return accuracy(tr, d.x_eval[:k], d.y_eval[:k]), float(np.mean(tail))
