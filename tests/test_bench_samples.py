"""What the benchmark trains on and at which rate (pytools/bench/samples.py, learning_rate.py):
a user's .npz or data set through the loader `invoke train` uses, the model's own kind by
default, a rate checked on the host twin not to diverge. No board runs here."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from datasets import DataError
from pytools.bench import learning_rate, measure, samples
from pytools.boards import load_board
from pytools.errors import ToolError
from pytools.model.tflite_import import load_tflite
from pytools.pretrain.zoo import ZOO, zoo_model, zoo_path
from pytools.session import load_data, model_inputs
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme

SCHEME = "bias=2,-1=1,-2=0.25"


@pytest.fixture(scope="module")
def mlp():
    zoo_model("mlp")
    path = zoo_path("mlp")
    graph = load_tflite(path)
    ct = compile_training(
        graph, load_scheme(SCHEME), load_board("mps2_an500"), path.stem, link=False, lr=0.01
    )
    return path, graph, ct


def _choose(path, graph, ct, **kw):
    args = dict(samples=None, samples_file="", dataset="", label_column=None, count=8, seed=0)
    return measure.choose_samples(path, graph, lambda: ct, **(args | kw))


def test_an_npz_is_read_by_the_train_loader_and_its_samples_are_the_ones_trained_on(mlp, tmp_path) -> None:
    path, graph, ct = mlp
    x, y = ZOO["mlp"].data(40, 7)
    f = tmp_path / "mine.npz"
    np.savez(f, x=x, y=y)
    choice = _choose(path, graph, ct, samples_file=str(f))
    # The same file through the loader `invoke train` uses: its fine-tuning part, same order.
    data = load_data(str(f), graph, None, 0)
    part = data.parts.finetune
    assert len(choice) == 8
    want = data.inputs(graph, part, np.arange(len(part.y)))
    rows = [
        int(np.flatnonzero((want.reshape(len(want), -1) == xi.reshape(1, -1)).all(1))[0]) for xi in choice.x
    ]
    assert np.array_equal(choice.y, part.y[rows])  # every chosen sample is one of the file's, with its label
    assert len(set(choice.y.tolist())) > 1  # the classes in turn, not the first class only
    assert "mine.npz" in choice.description and "your file" in choice.description
    # x_train / y_train (with a test part) works the same way.
    g = tmp_path / "split.npz"
    np.savez(g, x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    assert len(_choose(path, graph, ct, samples_file=str(g))) == 8


def test_bad_samples_are_refused_with_one_line_that_says_what_to_do(mlp, tmp_path) -> None:
    path, graph, ct = mlp
    csv = tmp_path / "mine.csv"
    csv.write_text("1,2,3\n")
    with pytest.raises(ToolError, match=r"--samples .*mine.csv: give an .npz .* goes to --dataset"):
        _choose(path, graph, ct, samples_file=str(csv))
    bad = tmp_path / "shape.npz"
    np.savez(bad, x=np.zeros((10, 5), np.float32), y=np.zeros(10, np.int64))
    with pytest.raises((ToolError, DataError), match=r"shape\.npz") as e:
        _choose(path, graph, ct, samples_file=str(bad))
    assert "\n" not in str(e.value)
    with pytest.raises(ToolError, match="not both"):
        _choose(path, graph, ct, samples_file=str(bad), dataset="digits")


def test_default_samples_are_the_model_s_own_kind(mlp, tmp_path) -> None:
    path, graph, ct = mlp
    own = _choose(path, graph, ct)
    x, y = ZOO["mlp"].data(8, 0)
    assert np.array_equal(own.x, model_inputs(graph, x)) and np.array_equal(own.y, y)
    assert "zoo model's own kind" in own.description
    # The same model under another name is a user's model: seeded inputs labelled by its own
    # prediction on the host twin.
    mine = tmp_path / "my_model.tflite"
    shutil.copy(path, mine)
    drawn = _choose(mine, graph, ct, seed=3)
    from pytools.train.trainer import Trainer

    tr = Trainer(ct)
    assert [tr.predict(xi) for xi in drawn.x] == drawn.y.tolist()
    assert "the model's own prediction" in drawn.description
    assert np.array_equal(_choose(mine, graph, ct, seed=3).x, drawn.x)  # seeded
    assert not np.array_equal(_choose(mine, graph, ct, seed=4).x, drawn.x)


def test_a_built_in_data_set_of_the_wrong_shape_is_refused(mlp) -> None:
    path, graph, ct = mlp
    with pytest.raises(
        ToolError, match=r"--dataset mnist: its samples are \(28, 28(, 1)?\), the model takes"
    ):
        _choose(path, graph, ct, dataset="mnist")


def test_the_rate_is_the_first_that_does_not_diverge_on_the_twin(mlp, monkeypatch) -> None:
    path, graph, ct = mlp
    choice = _choose(path, graph, ct)
    compiled = []

    def compile_at(lr: float):
        compiled.append(lr)
        return compile_training(graph, load_scheme(SCHEME), load_board(None), path.stem, link=False, lr=lr)

    real = learning_rate.check_rate(compile_at, choice, None)
    assert real.how == "chosen" and real.lr in learning_rate.CANDIDATES and not real.diverged
    lr, before, after, diverged = real.tried[-1]
    assert lr == real.lr and np.isfinite(before) and np.isfinite(after) and not diverged
    assert compiled == [t[0] for t in real.tried]  # each rate's own plan: what the board runs

    # The rule itself: a candidate whose loss grows is passed over, and a given rate that
    # diverges is kept (the user asked for it) but the report says so in bold.
    outcome = {0.01: (1.0, 9.0, True), 0.005: (1.0, 0.8, False)}
    monkeypatch.setattr(learning_rate, "trial", lambda ct_, ch: outcome.get(ct_, (1.0, 0.5, False)))
    chosen = learning_rate.check_rate(lambda lr: lr, choice, None)  # the "plan" is its rate here
    assert chosen.lr == 0.005 and [t[0] for t in chosen.tried] == [0.01, 0.005]
    assert "0.01: mean loss 1.000 -> 9.000 (diverging)" in chosen.sentence()
    given = learning_rate.check_rate(lambda lr: lr, choice, 0.01)
    assert given.diverged and "**At lr 0.01 the steps diverge" in given.sentence()
    zero = learning_rate.check_rate(lambda lr: pytest.fail("lr 0 needs no trial"), choice, 0.0)
    assert zero.lr == 0 and "does not change" in zero.sentence()
    assert learning_rate.GROWTH * 1.0 + learning_rate.SLACK < 9.0


def test_the_trial_flags_a_loss_that_blows_up(mlp) -> None:
    """Random labels at the largest rate the tools accept: the twin's loss on the samples grows."""
    path, graph, ct = mlp
    choice = _choose(path, graph, ct)
    rng = np.random.default_rng(0)
    wrong = samples.SampleChoice(choice.x, rng.integers(0, 10, len(choice)), "random labels")
    hot = compile_training(graph, load_scheme(SCHEME), load_board(None), path.stem, link=False, lr=1.0)
    before, after, diverged = learning_rate.trial(hot, wrong)
    cool = compile_training(graph, load_scheme(SCHEME), load_board(None), path.stem, link=False, lr=0.001)
    b2, a2, d2 = learning_rate.trial(cool, choice)
    assert not d2 and a2 <= b2 * learning_rate.GROWTH + learning_rate.SLACK
    assert diverged and after > before, (before, after)


def test_invoke_bench_takes_samples_and_refuses_what_it_cannot_read(tmp_path) -> None:
    """The one command line: --samples, --lr and --dataset reach run_bench; bad ones get one line."""
    import os
    import subprocess
    import sys

    from pytools.paths import ROOT

    zoo_model("mlp")
    csv = tmp_path / "mine.csv"
    csv.write_text("1,2,3\n")

    def bench(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "TINYTRAIN_RUN_DIR": str(tmp_path)}
        cmd = [sys.executable, "-m", "invoke", "bench", "--model", str(zoo_path("mlp")), "--scheme", SCHEME]
        return subprocess.run(
            cmd + list(args), cwd=ROOT, capture_output=True, text=True, env=env, timeout=300
        )

    r = bench("--samples", str(csv))
    assert r.returncode == 1 and "give an .npz (x, y or x_train, y_train)" in r.stderr, r.stderr
    r = bench("--lr", "7")
    assert r.returncode == 1 and "--lr 7 is outside" in r.stderr, r.stderr
    r = bench("--dataset", str(tmp_path / "missing.npz"))
    assert r.returncode == 1 and "missing.npz" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (
        not subprocess.run(
            [sys.executable, "-m", "pytools.bench"], cwd=ROOT, capture_output=True, text=True
        ).returncode
        == 0
    )  # no second command line: `python -m pytools.bench` is gone
