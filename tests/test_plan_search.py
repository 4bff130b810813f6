"""`invoke plan` on a tiny model and data set: sklearn digits with the digits CNN (4 trainable
layers, so the whole search space, 4 biases x 5^3 ratios, can also be enumerated).

What must hold:
- the budget: no chosen scheme is over it, by the real compiler and by the linker;
- the result is at least as good as the best single part that fits (and than the exhaustive
  optimum can be, up to the search finding it: on this space it does);
- the memory of every scored candidate is the compiler's figure (firmware static RAM from the
  linker + planned arena), which linking a few candidates confirms;
- the files: a scheme that loads back, a memory report, a PNG, and the analysis as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.plan.contribution import analyze
from pytools.plan.finetune import load
from pytools.plan.run import fit_steps, parse_budget, plan
from pytools.plan.search import Gains, Memory, evolve, exhaustive, scheme_of
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme

BOARD = "mps2_an500"
STEPS = 600  # short: the test checks the machinery, not the gains' precision
# Budgets above the classifier base (about 25 KB: firmware static RAM + the base's arena),
# below a full update (about 36 KB). Relative, so firmware that grows does not move them.
OVER_BASE = (300, 2_300, 4_300)


@pytest.fixture(scope="module")
def setup() -> tuple:
    board = load_board(BOARD)
    d = load("digits", None, validation=True)
    mem = Memory(d.graph, board, d.model_name)
    base = compile_training(d.graph, load_scheme("bias=1,-1=1"), board, d.model_name, link=True)
    assert base.image is not None
    budgets = [base.image.regions["RAM"].used + over for over in OVER_BASE]
    an = analyze(d, board, mem, max(budgets), lr=0.01, steps=STEPS, seeds=(0,), progress=False)
    return board, d, mem, an, budgets


def test_parse_budget() -> None:
    assert parse_budget("64KB") == parse_budget("64KiB") == parse_budget("64k") == 65_536
    assert parse_budget("0.5MB") == 524_288
    assert parse_budget("30000") == 30_000
    with pytest.raises(Exception, match="budget"):
        parse_budget("lots")


def test_validation_split_is_not_the_held_out_part(setup: tuple) -> None:
    _, d, _, _, _ = setup
    held = load("digits", None, validation=False)
    assert len(d.y_train) + len(d.y_eval) == len(held.y_train)  # both from the fine-tuning part
    train_rows = {r.tobytes() for r in held.x_train}
    assert all(x.tobytes() in train_rows for x in d.x_eval)
    assert set(d.y_eval.tolist()) == set(range(10))


def test_analysis_measures_every_part(setup: tuple) -> None:
    _, _, _, an, _ = setup
    n = len(an.layers)
    assert an.layers == ["CONV_2D", "CONV_2D", "FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert an.base == "classifier" and an.weight_gain[n - 1] == {1.0: 0.0}
    # fine-tuning the classifier on all ten classes beats the pretrained model (digits 0-4 only)
    assert an.base_accuracy > an.pretrained + 0.05, (an.pretrained, an.base_accuracy)
    measured = len(an.bias_gain) - 2 + sum(len(w) for w in an.weight_gain[: n - 1])
    assert measured + len(an.skipped) == (n - 1) + 4 * (n - 1)
    # the gains differ: they come from real runs, not a constant
    assert len({round(g, 6) for w in an.weight_gain for g in w.values()}) > 3


@pytest.mark.parametrize("which", range(len(OVER_BASE)))
def test_search_respects_the_budget_and_beats_single_parts(setup: tuple, which: int) -> None:
    board, d, mem, an, budgets = setup
    budget = budgets[which]
    gains = an.gains()
    res = evolve(gains, mem, budget, seed=1, progress=False)
    chosen = scheme_of(res.genome)
    # every candidate holds the base the gains were measured on: the classifier, its bias
    for g in [res.genome, *(f[0] for f in res.finalists)]:
        assert g[0] >= gains.min_bias and all(g[1 + p] == r for p, r in gains.required.items()), g
    # within the budget by the compiler, and by the linker
    ct = compile_training(d.graph, chosen, board, d.model_name, link=True)
    assert ct.image is not None
    assert ct.image.regions["RAM"].used == res.memory == mem(res.genome) <= budget
    # never worse than the best single part that fits
    feasible = [g for g in gains.singles() if (m := mem(g)) is not None and m <= budget]
    assert feasible
    assert res.score >= max(gains.score(g) for g in feasible) - 1e-12
    assert res.best_single is not None and res.score >= res.best_single[1]
    # the exhaustive optimum: the search finds it on this small space, and it is within budget
    _, s_opt, m_opt = exhaustive(gains, mem, budget)
    assert m_opt <= budget
    assert res.score == pytest.approx(s_opt)
    print(f"\nbudget {budget:,}: {chosen.describe()} {res.score:+.3f} ({res.memory:,} B)")


def test_over_budget_schemes_are_never_chosen() -> None:
    """Planted gains: the best-scoring parts are the ones that do not fit."""
    board = load_board(BOARD)
    d = load("digits", None, validation=True)
    mem = Memory(d.graph, board, d.model_name)
    n = 4
    # large gains for big weight slices of layer -2 (the 32x256 dense: big), small elsewhere
    weights = [{0.125: 0.01, 0.25: 0.02, 0.5: 0.03, 1.0: 0.04} for _ in range(n)]
    weights[2] = {0.125: 0.05, 0.25: 0.1, 0.5: 1.0, 1.0: 2.0}
    weights[3] = {1.0: 0.0}
    gains = Gains([0.0, 0.0, 0.01, 0.02, 0.03], weights, 1, {3: 1.0})
    big = (1, 0.0, 0.0, 0.5, 1.0)
    budget = mem(big) - 1  # layer -2 at 1/2 (and at 1) no longer fits
    res = evolve(gains, mem, budget, seed=0, progress=False)
    assert res.genome[3] in (0.0, 0.125, 0.25)
    assert mem(res.genome) <= budget
    assert res.score == pytest.approx(exhaustive(gains, mem, budget)[1])
    # and with the budget one byte larger, the big slice is taken
    assert evolve(gains, mem, budget + 1, seed=0, progress=False).genome[3] == 0.5


def test_planner_figures_are_the_linker_s(setup: tuple) -> None:
    board, d, mem, _, _ = setup
    for g in [(1, 0.0, 0.0, 0.0, 1.0), (4, 1.0, 0.5, 0.25, 1.0), (2, 0.0, 0.0, 1.0, 1.0)]:
        ct = compile_training(d.graph, scheme_of(g), board, d.model_name, link=True)
        assert ct.image is not None
        # the linker's RAM is the compiler's figure (firmware + planned arena, overlaps
        # included); the search's price, planned without the overlaps, is never below it
        assert ct.image.regions["RAM"].used == mem.firmware_ram + ct.compiled.arena
        assert ct.image.regions["RAM"].used <= mem(g)


def test_steps_fit_the_time_limit(setup: tuple) -> None:
    board, d, _, _, _ = setup
    said: list[str] = []
    assert fit_steps(d, board, 600, 1, 1e6, said.append) == 600 and not said
    few = fit_steps(d, board, 600, 1, 1e-3, said.append)  # 1 ms for ~20 runs: the floor
    assert few == 50 and "using 50 " in said[0]


def test_invoke_plan_writes_its_files(tmp_path: Path) -> None:
    out = tmp_path / "digits.toml"
    p = plan(load_board(BOARD), "digits", 26_000, out=out, steps=STEPS, progress=False, log=False)
    assert [f.exists() for f in p.files] == [True] * 4
    s = load_scheme(str(out))
    assert (s.bias_layers, s.weights) == (p.scheme.bias_layers, p.scheme.weights)
    assert p.linked_ram <= 26_000
    assert "SRAM" in p.files[1].read_text()
    assert p.files[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads(p.files[3].read_text())
    assert info["memory"] == p.linked_ram and info["budget"] == 26_000
    assert np.isfinite(info["measured_gain"])
    assert p.seconds["total"] < 600
    # the finalists were fine-tuned as a whole; the chosen one is the best measured, and the
    # best single part is among them
    finals = info["finalists"]
    assert info["measured_gain"] == max(f["measured_gain"] for f in finals)
    assert p.result.best_single is not None
    assert list(p.result.best_single[0]) in [f["genome"] for f in finals]
    assert all(f["memory"] <= 26_000 for f in finals)
    # with a budget that holds the whole update, it is a finalist
    big = plan(
        load_board(BOARD),
        "digits",
        64 * 1024,
        out=tmp_path / "big.toml",
        steps=200,
        progress=False,
        log=False,
    )
    full = json.loads(big.files[3].read_text())
    assert [4, 1.0, 1.0, 1.0, 1.0] in [f["genome"] for f in full["finalists"]]
