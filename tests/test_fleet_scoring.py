"""A board client's held-out scoring runs on the host twin (pytools/fleet/client.py
TwinScoredRun): the session's epoch asks Run.held_out_results, which the fleet overrides, so
the board answers no EVAL for the held-out part (the spot checks are the scorer's)."""

from __future__ import annotations

import types

import numpy as np

from pytools.fleet.client import TwinScoredRun
from pytools.session.loop import Run
from pytools.train.losses import Head


class FakeBoard:
    def __init__(self) -> None:
        self.evals = 0

    def evaluate(self, k: int, x: np.ndarray, y: int, timeout: float | None = None) -> types.SimpleNamespace:
        self.evals += 1
        return types.SimpleNamespace(correct=True, loss=0.5, prediction=0)


def _run(cls: type[Run], scorer_calls: list[dict]) -> tuple[Run, FakeBoard]:
    run = object.__new__(cls)
    state = {"w": np.arange(3)}

    def scorer(st: dict) -> tuple[list, int]:
        scorer_calls.append(st)
        rs = [types.SimpleNamespace(correct=k % 2 == 0, loss=0.25, prediction=0) for k in range(4)]
        return rs, 0

    run.scorer = scorer  # type: ignore[attr-defined]
    run.scored_state = None  # type: ignore[attr-defined]
    run.training = board = FakeBoard()  # type: ignore[attr-defined]
    run.trainer = types.SimpleNamespace(state=lambda: state)  # type: ignore[attr-defined]
    run.inp = types.SimpleNamespace(  # type: ignore[attr-defined]
        x_held=np.zeros((4, 2)), y_held=np.zeros(4, int), head=Head("ce", "", 0, 0, -1, "label")
    )
    return run, board


def test_the_twin_scores_a_board_clients_held_out_samples() -> None:
    calls: list[dict] = []
    run, board = _run(TwinScoredRun, calls)
    m = run.held_out(1)
    assert board.evals == 0 and len(calls) == 1  # no EVAL over the link: the twin scored them
    assert m["correct"] == 2 and m["samples"] == 4 and abs(m["mean_loss"] - 0.25) < 1e-12
    assert run.scored_state is calls[0]  # the state read once is kept for the reply  # type: ignore[attr-defined]


def test_a_plain_session_scores_on_the_board() -> None:
    calls: list[dict] = []
    run, board = _run(Run, calls)
    m = run.held_out(1)
    assert board.evals == 4 and not calls and m["correct"] == 4


def test_a_round_whose_global_model_a_failed_client_never_scored_says_so(tmp_path) -> None:
    """Round r's global model is scored by each client in its round r+1 message: a client that
    fails then leaves round r's figure to the others, and the report names it."""
    import json

    from pytools.fleet import report

    settings = dict(boards=2, board="host", dataset="d", partition="", scheme="s", lr=0.01, rounds=2,
                    rounding="stochastic")  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps({"settings": settings, "model_bytes": 100}))

    def train(r: int, c: int) -> dict:
        return {"round": r, "phase": "train", "client": c, "num-examples": 8, "trained-once": 1,
                "local-accuracy": 1.0, "bytes-sent": 10}  # fmt: skip

    def ev(r: int, c: int) -> dict:
        return {"round": r, "phase": "evaluate", "client": c, "global-correct": 4, "held-out": 4,
                "global-accuracy": 1.0}  # fmt: skip

    rows = [train(1, 0), train(1, 1), ev(1, 0), train(2, 0), ev(2, 0), ev(2, 1)]
    rows.append({"round": 2, "phase": "train", "client": 1, "error": "board reset"})
    (tmp_path / report.ROUNDS_FILE).write_text("".join(json.dumps(x) + "\n" for x in rows))
    res = report.results(tmp_path)
    assert res["rounds"][0]["global_unscored"] == [1] and res["rounds"][1]["global_unscored"] == []
    text = report.summary_text(res)
    assert "round 1:" in text and "clients [1] not scored" in text.split("round 2:")[0]
    assert "not scored" not in text.split("round 2:")[1]
