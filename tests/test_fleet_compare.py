"""The fleet comparison as a Markdown section for docs/RESULTS.md (pytools/fleet/compare.py
results_section): its table, its regenerating command, and where the fleet loses, computed
from a fleet folder's numbers (here a small folder written by the test, with its baselines)."""

from __future__ import annotations

import json
from pathlib import Path

from pytools.fleet.compare import results_section


def _folder(tmp_path: Path) -> Path:
    f = tmp_path / "fleet-x"
    f.mkdir()
    settings = {"boards": 2, "board": "mps2_an500", "rounds": 2, "scheme": "s", "lr": 0.01}
    settings |= {
        "rounding": "stochastic",
        "held_out": None,
        "partition": "",
        "dataset": "hapt",
        "split": None,
    }
    rounds = [
        {
            "round": r,
            "local_accuracy": {"0": 0.9, "1": 0.8},
            "global_accuracy_per_client": {"0": 0.95, "1": 0.7},
        }
        for r in (1, 2)
    ]
    res = {
        "settings": settings,
        "rounds": rounds,
        "personalised_accuracy_per_client": {"0": 0.96, "1": 0.65},
        "slice_bytes": 1000,
        "model_bytes": 4000,
    }
    (f / "results.json").write_text(json.dumps(res))
    (f / "config.json").write_text(json.dumps({"settings": settings, "flower_seconds": 200.0}))
    rows = [
        {"round": r, "phase": "train", "client": k, "train-seconds": 30.0 + k} for r in (1, 2) for k in (0, 1)
    ]
    (f / "rounds.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    (f / "baselines.json").write_text(
        json.dumps({"local_only": {"0": 0.9, "1": 0.75}, "cloud": {"0": 0.99, "1": 0.6}})
    )
    return f


def test_the_results_section_states_where_the_fleet_loses_from_the_numbers(tmp_path) -> None:
    text = results_section(_folder(tmp_path))
    assert text.startswith("## Fleet learning") and "--section" in text
    # the command of the run the folder holds (2 boards, 2 rounds), not one fixed line
    command = "invoke fleet --boards 2 --dataset hapt --split users --rounds 2 --board mps2_an500 --lr 0.01"
    assert command in text
    assert "| fleet: final global model (sparse-slice FedAvg) | 95.0 | 70.0 | 82.5 | 70.0 | 1,000 B |" in text
    assert "| full model, for reference | | | | | 4,000 B (.tflite) |" in text
    # user 22 (client 1): global 70 % < local-only 75 %; user 21: global 95 % < cloud 99 %
    below = "**Accuracy, the fleet's global model below"
    assert f"{below} local-only training** on 1 of 2 users: user 22 (70.0 % against 75.0 %)" in text
    assert f"{below} the cloud baseline** on 1 of 2 users: user 21 (95.0 % against 99.0 %)" in text
    assert (
        "**The personalisation epoch loses** against the global model on user 22 (65.0 % against 70.0 %)"
        in text
    )
    assert "No gain from federating" not in text  # no user ties local-only here
    assert "1,000 B per round" in text and "25 % of the 4,000-byte .tflite" in text
    assert "took 200 s on Flower" in text and "31 s a round" in text
