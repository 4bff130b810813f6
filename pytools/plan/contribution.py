"""Contribution analysis on the host twin (method.md section 4).

Every part of a possible scheme is measured by actually fine-tuning with it, on the host twin
(the board's C), from the pretrained model, for a short fixed number of steps with fixed
seeds, on the training part of the fine-tuning split, and evaluating on the validation part.

The base: the classifier (all of layer -1's weights and its bias) is always trained, because a
transfer to new classes needs a new head (and the results table's "classifier only" row is
exactly this base). Each part's gain is the validation accuracy of base + part minus that of
the base alone:
  - biases of the last k layers, k = 1 .. K (k = 1 is the base; K: every trainable layer, or
    up to the first k the compiler refuses, e.g. an operator without a backward kernel);
  - each other layer's weights at each channel ratio of scheme.RATIOS.
A part that does not fit the memory budget even with the base alone is not measured (it can
never be chosen). With base="none" the parts are measured alone, against the pretrained model.
The held-out part of the data set is never touched here.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from pytools.boards import Board
from pytools.errors import ToolError
from pytools.plan.finetune import Data, compile_for, run
from pytools.plan.search import Gains, Genome, Memory, scheme_of
from pytools.progress import progress as progress_bar
from pytools.train.scheme import RATIOS, trainable_ops

BASES = ("classifier", "none")


@dataclass
class Analysis:
    model: str
    layers: list[str]  # the trainable layers' operator kinds, layer -n first
    lr: float
    steps: int
    seeds: list[int]
    base: str  # "classifier" or "none"
    pretrained: float  # the pretrained model's validation accuracy
    base_accuracy: float  # the base's (pretrained, for "none"); gains are over this
    bias_gain: list[float]  # [k] for k = 0 .. K (k below the base's: 0, unused)
    weight_gain: list[dict[float, float]]  # [pos][ratio], pos 0 = layer -n
    memory: dict[str, int] = field(default_factory=dict)  # part -> bytes (with the base)
    skipped: dict[str, str] = field(default_factory=dict)  # part -> why it was not measured
    seconds: float = 0.0
    runs: int = 0

    def gains(self) -> Gains:
        n = len(self.layers)
        if self.base == "classifier":
            return Gains(self.bias_gain, self.weight_gain, 1, {n - 1: 1.0})
        return Gains(self.bias_gain, self.weight_gain)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weight_gain"] = [{str(r): g for r, g in w.items()} for w in self.weight_gain]  # JSON keys
        return d

    @staticmethod
    def from_dict(d: dict) -> Analysis:
        d = {**d, "weight_gain": [{float(r): g for r, g in w.items()} for w in d["weight_gain"]]}
        return Analysis(**d)


def analyze(
    d: Data,
    board: Board,
    memory: Memory,
    budget: int,
    lr: float,
    steps: int,
    seeds: tuple[int, ...] = (0,),
    eval_limit: int | None = None,
    base: str = "classifier",
    progress: bool = True,
) -> Analysis:
    t0 = time.monotonic()
    ops = trainable_ops(d.graph)
    n = len(ops)
    an = Analysis(
        d.model_name, [d.graph.ops[i].kind for i in ops], lr, steps, list(seeds), base, 0.0, 0.0, [], []
    )
    an.weight_gain = [{} for _ in range(n)]
    gains = an.gains()
    base_g = gains.base()
    an.bias_gain = [0.0] * (gains.min_bias + 1)
    parts: list[tuple[str, Genome]] = [(str(k), (k, *base_g[1:])) for k in range(gains.min_bias + 1, n + 1)]
    for pos in range(n):
        for r in RATIOS if pos not in gains.required else ():
            g = list(base_g)
            g[1 + pos] = r
            parts.append((f"{pos - n}@{r:g}", tuple(g)))

    def accuracy(g: Genome, k_steps: int) -> float:
        ct = compile_for(d.graph, scheme_of(g if any(g) else (1, *g[1:])), board, d.model_name, lr, d.loss)
        accs = []
        for s in seeds:
            accs.append(run(ct, d, k_steps, s, eval_limit)[0])
            an.runs += 1
            if not k_steps:
                break  # the pretrained accuracy does not depend on the seed
        return float(np.mean(accs))

    an.pretrained = accuracy(base_g, 0)
    if any(base_g):
        m = memory(base_g)
        if m is None or m > budget:
            why = memory.errors.get(base_g, f"it needs {m:,} B")
            raise ToolError(
                f"the base ({scheme_of(base_g).describe()}) does not fit the budget of {budget:,} B: {why}"
            )
        an.memory["base"] = m
    an.base_accuracy = accuracy(base_g, steps) if any(base_g) else an.pretrained
    bias_open = True
    for name, g in progress_bar(parts, desc="contribution", unit="run", disable=not progress, leave=False):
        is_bias = g[0] > gains.min_bias
        if is_bias and not bias_open:
            an.skipped[name] = "a smaller k was refused or over the budget"
            continue
        m = memory(g)
        if m is None or m > budget:
            an.skipped[name] = (
                memory.errors[g].splitlines()[0] if m is None else f"needs {m:,} B, over the budget"
            )
            bias_open = bias_open and not is_bias
            continue
        an.memory[name] = m
        gain = accuracy(g, steps) - an.base_accuracy
        if is_bias:
            an.bias_gain.append(gain)
        else:
            pos = next(i for i in range(n) if g[1 + i] != base_g[1 + i])
            an.weight_gain[pos][g[1 + pos]] = gain
    for pos, r in gains.required.items():
        an.weight_gain[pos][r] = 0.0  # part of the base
    an.seconds = time.monotonic() - t0
    return an
