"""Learning-rate schedules: the factor each training step multiplies into the plan's lr.

The plan compiles one lr into every update kernel; a schedule scales it per step. The host
computes the factor here, the one definition, and sends it with each TRAIN (its lr_scale
field); the host twin applies the same float32, so board and twin stay bit-identical.

Why decay at all: with batch-1 SGD the weights at the end of a run sit wherever the last few
samples pushed them. On Fashion-MNIST -> MNIST (one epoch, 2,500 steps) a constant lr left
held-out accuracy at 73.9 / 87.8 / 90.6 % for three sample orders; decaying it linearly to 0
gave 90.9 / 89.0 / 89.7 %. The cloud baseline in docs/RESULTS.md gets the same line (Keras'
PolynomialDecay with power 1).
"""

from __future__ import annotations

import numpy as np

SCHEDULES = ("linear", "constant")
DEFAULT = "linear"


def check(schedule: str) -> str:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule '{schedule}'; known: {', '.join(SCHEDULES)}")
    return schedule


def lr_scale(schedule: str, step: int, steps: int) -> float:
    """The factor of step `step` (0-based) of a run of `steps`, as a float32 value.

    linear: 1 - step / steps, so the first step trains at the plan's lr and the last at
    lr / steps (0 at and beyond `steps`). constant: 1."""
    if check(schedule) == "constant":
        return 1.0
    if steps <= 0:
        raise ValueError(f"a linear lr schedule needs the run's length in steps, got {steps}")
    return float(np.float32(max(0.0, 1.0 - step / steps)))


def keras_lr(schedule: str, lr: float, steps: int) -> object:
    """The same schedule for a Keras optimizer (the float cloud baseline)."""
    import keras

    if check(schedule) == "constant" or steps <= 0:
        return lr
    return keras.optimizers.schedules.PolynomialDecay(lr, decay_steps=steps, end_learning_rate=0.0, power=1.0)
