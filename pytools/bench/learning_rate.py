"""The benchmark's learning rate, checked on the host twin before the board runs.

A step's cost depends on what it trains: at a rate that makes the loss blow up, the logits
saturate, the gradients become zero and the zero-skipping gradient kernels run almost empty
(on MCUNet that made a "whole step" 18 % cheaper than a sane one). So the rate is checked:
TWIN_STEPS steps on the benchmark's own samples, in its order, on the host twin (the board's
C and the same plan compiled at that rate, bit-exact), and the samples' mean loss (forward
pass and loss head, no training) before and after. The steps diverge when that loss is not
finite or grows by more than GROWTH (times, plus SLACK). Without --lr the rate is the first
of CANDIDATES that does not diverge (the method's default 0.01 first); a given rate is
checked and, if it diverges, the report says so in bold. lr 0 runs every kernel (updates
included) without changing the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pytools.bench.samples import Feed, SampleChoice
from pytools.train.compile_train import CompiledTraining

CANDIDATES = (0.01, 0.005, 0.002, 0.001)
TWIN_STEPS = 10
EVAL_SAMPLES = 8
GROWTH, SLACK = 1.25, 0.05


@dataclass
class RateCheck:
    lr: float
    how: str  # "given" or "chosen"
    tried: list[tuple[float, float, float, bool]] = field(default_factory=list)  # lr, before, after, diverged

    @property
    def diverged(self) -> bool:
        return any(d for lr, _, _, d in self.tried if lr == self.lr)

    def sentence(self) -> str:
        """The rate and the evidence, for the report."""
        if self.lr == 0:
            return (
                "learning rate 0 (given): every kernel runs, updates included, and the model does not change."
            )
        rule = f"a loss more than {GROWTH:g}x (+{SLACK:g}) its starting value, or not finite, is diverging"
        trials = "; ".join(
            f"lr {lr:g}: mean loss {b:.3f} -> {a:.3f}{' (diverging)' if d else ''}"
            for lr, b, a, d in self.tried
        )
        head = (
            f"learning rate {self.lr:g} (given)"
            if self.how == "given"
            else f"learning rate {self.lr:g} (chosen: the first of {', '.join(f'{c:g}' for c in CANDIDATES)} "
            "whose steps do not diverge)"
        )
        text = (
            f"{head}. Checked on the host twin (bit-exact with the board): {TWIN_STEPS} steps on these "
            f"samples, in this order, then the loss of the first {EVAL_SAMPLES} without training ({rule}): "
            f"{trials}"
        )
        if self.diverged:
            text += (
                f". **At lr {self.lr:g} the steps diverge: the costs are those of a run that blows up; "
                "give a lower --lr**"
            )
        return text + "."


def _mean_loss(tr: object, feed: Feed, n: int) -> float:
    losses = []
    for i in range(n):
        x = np.asarray(feed.choice.x[i]).reshape(feed.x_shape)
        loss, _ = tr.evaluate(x, feed.label(i)[0] if feed.target is None else feed.label(i))  # type: ignore[attr-defined]
        losses.append(loss)
    return float(np.mean(losses))


def trial(ct: CompiledTraining, choice: SampleChoice) -> tuple[float, float, bool]:
    """(mean loss before, after, diverged) of TWIN_STEPS steps at the plan's lr."""
    from pytools.train.trainer import Trainer

    tr = Trainer(ct)
    feed = Feed(ct, choice)
    n = min(EVAL_SAMPLES, len(choice))
    before = _mean_loss(tr, feed, n)
    for _ in range(TWIN_STEPS):
        x, label = feed.next()
        tr.step(x, label[0] if feed.target is None else label)
    after = _mean_loss(tr, feed, n)
    diverged = not math.isfinite(after) or after > GROWTH * before + SLACK
    return before, after, diverged


def check_rate(
    compile_at: Callable[[float], CompiledTraining], choice: SampleChoice, given: float | None
) -> RateCheck:
    """The benchmark's rate: `given`, checked, or the first candidate that does not diverge.
    compile_at(lr): the training plan at that rate, for the host twin."""
    if given is not None:
        check = RateCheck(given, "given")
        if given > 0:
            check.tried.append((given, *trial(compile_at(given), choice)))
        return check
    check = RateCheck(CANDIDATES[-1], "chosen")
    for lr in CANDIDATES:
        before, after, diverged = trial(compile_at(lr), choice)
        check.tried.append((lr, before, after, diverged))
        if not diverged:
            check.lr = lr
            break
    return check
