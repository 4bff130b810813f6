"""A scheme's arena_budget (pytools/train/arena_budget.py): the exact memory savers (in-place
depthwise, two-pass input gradients and their keeps) chosen to meet the budget at the least
recomputation, from their maximum (the floor) down; a budget below the floor refused with what
holds it; the budgeted step trains bit for bit as the unbudgeted one (the kernels' exactness is
their own tests')."""

from __future__ import annotations

import dataclasses
import random
from functools import partial

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.errors import ToolError
from pytools.model.compiler import compile_graph
from pytools.model.lowering.conv import IN_PLACE_OPTION
from pytools.model.tflite_import import import_tflite
from pytools.pretrain.zoo import zoo_model
from pytools.train import arena_budget
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme, parse_scheme_text
from pytools.train.trainer import Trainer

BOARD = load_board("mps2_an500")
NAME = "mobilenet_tiny"
SCHEME = "bias=12,-1=1,-4=0.5,-7=0.25"


def _compiled(scheme: str):
    return compile_training(
        import_tflite(zoo_model(NAME), NAME), load_scheme(scheme), BOARD, NAME, False, 0.02
    )


def _exact(ct) -> int:
    return compile_graph(ct.train.graph, BOARD, NAME, n_forward=ct.train.n_forward).arena


def _savers_now(ct) -> list[arena_budget.Saver]:
    """The savers as the compiled graph has them (on/keep read from its operators)."""
    g = ct.train.graph
    found = []
    for i, op in enumerate(g.ops):
        if op.options.get(IN_PLACE_OPTION):
            found.append(arena_budget.Saver(i, "in place"))
        elif op.kind in arena_budget.KEEPABLE:
            k = arena_budget.KEEPABLE[op.kind]
            s = arena_budget.Saver(i, op.kind, k.units(g, op), k.macs_per_unit(g, op), "keep" in op.options)
            s.keep = int(op.options.get("keep", 0))
            found.append(s)
    return found


def test_the_key_parses_validates_and_shows(tmp_path) -> None:
    s = parse_scheme_text("bias=3,-1=1,arena_budget=91000")
    assert s.arena_budget == 91000
    assert "arena_budget=91000" in s.inline()
    assert parse_scheme_text(s.inline()).arena_budget == 91000
    assert "91,000 B" in s.describe()
    assert parse_scheme_text("bias=3").arena_budget is None
    assert "arena_budget" not in parse_scheme_text("bias=3").inline()
    f = tmp_path / "s.toml"
    f.write_text("bias_layers = 2\narena_budget = 91000\n")
    assert load_scheme(str(f)).arena_budget == 91000
    for bad in ("0", "-5", "1.5", "91k", "", "true"):
        with pytest.raises(ToolError, match="arena_budget must be a whole number of bytes"):
            parse_scheme_text(f"bias=3,arena_budget={bad}")
    for bad in ('"91000"', "0", "91000.0", "true"):
        f.write_text(f"bias_layers = 2\narena_budget = {bad}\n")
        with pytest.raises(ToolError, match="arena_budget must be a whole number of bytes"):
            load_scheme(str(f))


@pytest.fixture(scope="module")
def floor_and_none() -> tuple[int, int]:
    """mobilenet_tiny's arena with every saver at its maximum, and with none (a budget nothing
    exceeds gives every saver back)."""
    ct = _compiled(f"{SCHEME},arena_budget={10**9}")
    g = ct.train.graph
    found = arena_budget.savers(g, overlap=True)
    b = arena_budget.Budgeted(
        g, found, partial(compile_graph, g, BOARD, NAME, n_forward=ct.train.n_forward), True
    )
    floor = b.compile().arena
    for s in found:
        s.on = False
    none = b.compile().arena
    assert floor < none
    return floor, none


def test_a_budget_is_met_and_nothing_more_is_recomputed_than_it_needs(floor_and_none) -> None:
    floor, none = floor_and_none
    budget = (floor + none) // 2
    ct = _compiled(f"{SCHEME},arena_budget={budget}")
    assert ct.compiled.arena <= budget
    assert ct.compiled.blob == compile_graph(ct.train.graph, BOARD, NAME, n_forward=ct.train.n_forward).blob
    assert f"arena_budget {budget:,} B" in ct.budget_note and f"floor {floor:,} B" in ct.budget_note
    found = _savers_now(ct)
    g = ct.train.graph
    on = [s for s in found if s.kind != "in place"]
    assert on, "a budget below the unsaved arena needs some two-pass gradient"
    # Minimal: no saver still on can be given back whole, nor keep one more unit, within it.
    for s in on:
        op = g.ops[s.index]
        kind, options = op.kind, dict(op.options)
        op.kind = arena_budget.KEEPABLE[kind].one_pass
        op.options.pop("keep", None)
        assert _exact(ct) > budget, f"#{s.index} could run in one pass"
        op.kind, op.options = kind, options
        if s.keeps and s.keep < s.units - 1:
            op.options["keep"] = s.keep + 1
            assert _exact(ct) > budget, f"#{s.index} could keep {s.keep + 1}"
            op.options["keep"] = s.keep
    # And fewer MACs computed twice than with every saver at its maximum.
    floor_macs = sum(s.most for s in arena_budget.savers(g, overlap=False))
    assert sum(s.recompute for s in found) < floor_macs


def test_a_budget_the_step_meets_unsaved_costs_no_recompute(floor_and_none) -> None:
    _, none = floor_and_none
    ct = _compiled(f"{SCHEME},arena_budget={none}")
    assert not any(op.kind.endswith("_2PASS") or op.options.get(IN_PLACE_OPTION) for op in ct.train.graph.ops)
    assert ct.compiled.arena == none


def test_a_budget_below_the_floor_is_refused_saying_what_holds_it(floor_and_none) -> None:
    floor, _ = floor_and_none
    with pytest.raises(ToolError) as e:
        _compiled(f"{SCHEME},arena_budget={floor - 1000}")
    msg = str(e.value)
    assert f"{floor:,} B" in msg and f"arena_budget = {floor}" in msg
    assert "Step #" in msg and "largest buffers" in msg
    assert "patch" in msg and "stream_input=true" in msg


def test_within_answers_as_the_full_compile_does() -> None:
    """The fast pricing (no-overlap plan, lower bound, overlap search stopped early) agrees
    with compile_graph's arena on random saver settings, at the arena and just below it."""
    ct = _compiled(f"{SCHEME},arena_budget={10**9}")
    g = ct.train.graph
    found = arena_budget.savers(g, overlap=True)
    b = arena_budget.Budgeted(
        g, found, partial(compile_graph, g, BOARD, NAME, n_forward=ct.train.n_forward), True
    )
    rng = random.Random(3)
    searched = 0
    for _ in range(4):
        for s in found:
            s.on = rng.random() < 0.6
        for _ in range(2):  # the second: only keeps changed (re-planned, not re-compiled)
            for s in found:
                s.keep = rng.randrange(s.units) if s.keeps else 0
            exact = b.compile().arena
            above, below = b.bounds()
            assert below <= exact <= above
            for budget in (exact, exact - 16, exact + 16):
                before = b.searches
                assert b.within(budget) == (exact <= budget), (budget, exact)
                searched += b.searches > before
    assert searched  # some answers came from the overlap search, not the bounds alone


@pytest.mark.parametrize("budget_of", [lambda floor, none: floor, lambda floor, none: (floor + none) // 2])
def test_a_budgeted_step_trains_as_the_unbudgeted_one(floor_and_none, budget_of) -> None:
    budget = budget_of(*floor_and_none)
    a_ct, b_ct = _compiled(f"{SCHEME},arena_budget={budget}"), _compiled(SCHEME)
    assert a_ct.compiled.arena < b_ct.compiled.arena
    g = a_ct.train.graph
    x = g.tensor(g.inputs[0])
    rng = np.random.default_rng(5)
    classes = g.tensor(a_ct.train.logits).shape[-1]
    data = [(rng.integers(-128, 128, x.shape, dtype=np.int8), int(rng.integers(classes))) for _ in range(3)]
    a, b = Trainer(a_ct), Trainer(b_ct)
    assert [a.step(x, y) for x, y in data] == [b.step(x, y) for x, y in data]
    sa, sb = a.state(), b.state()
    assert all(sa[k].tobytes() == sb[k].tobytes() for k in sa)


def test_conv_two_pass_changes_nothing_under_a_budget(floor_and_none) -> None:
    floor, none = floor_and_none
    budget = (floor + none) // 2
    a = _compiled(f"{SCHEME},arena_budget={budget}")
    b = _compiled(f"{SCHEME},arena_budget={budget},conv_two_pass=true")
    assert a.compiled.blob == b.compiled.blob
    assert dataclasses.replace(b.scheme, conv_two_pass=False).inline() == a.scheme.inline()
