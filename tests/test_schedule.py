"""The learning-rate schedule (pytools/train/schedule.py): the factors each TRAIN carries, and
the same line in Keras for the cloud baseline."""

from __future__ import annotations

import numpy as np
import pytest

from pytools.train import schedule


def test_linear_decays_from_one_to_zero_over_the_run() -> None:
    f = [schedule.lr_scale("linear", t, 4) for t in range(6)]
    assert f == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    # float32 values: what the board receives and the host twin applies are the same bits
    assert schedule.lr_scale("linear", 1, 3) == float(np.float32(2 / 3)) != 2 / 3


def test_constant_is_one() -> None:
    assert {schedule.lr_scale("constant", t, 10) for t in range(20)} == {1.0}


def test_bad_schedules_are_named() -> None:
    with pytest.raises(ValueError, match="unknown lr schedule 'cosine'; known: linear, constant"):
        schedule.lr_scale("cosine", 0, 10)
    with pytest.raises(ValueError, match="needs the run's length"):
        schedule.lr_scale("linear", 0, 0)


def test_the_cloud_baseline_follows_the_same_line() -> None:
    lr, steps = 0.01, 250
    keras_lr = schedule.keras_lr("linear", lr, steps)
    for t in (0, 1, 100, 249, 250, 300):
        want = lr * schedule.lr_scale("linear", t, steps)
        # Keras computes 1 - t / steps in float32 as well: equal up to float32 rounding
        assert float(keras_lr(t)) == pytest.approx(want, abs=lr * 1e-6), t
    assert schedule.keras_lr("constant", lr, steps) == lr
