"""The fleet folder's results: results.json, summary.txt and the plots, from rounds.jsonl.

Per round: each client's held-out accuracy on its own data after its local training (its local
model, before averaging) and with the round's global model; the global model's accuracy on
everyone's held-out data (the sum of the clients' correct answers over their held-out samples);
the bytes each client sent (its trained slice) against the full model. After the last round, the
fleet + personalisation accuracy: one more local epoch from the final global state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROUNDS_FILE = "rounds.jsonl"


def _rows(folder: Path) -> list[dict[str, Any]]:
    path = folder / ROUNDS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def results(folder: Path) -> dict[str, Any]:
    cfg = json.loads((folder / "config.json").read_text())
    s = cfg["settings"]
    rows = _rows(folder)
    rounds: list[dict[str, Any]] = []
    for r in range(1, s["rounds"] + 1):
        train = sorted(
            (x for x in rows if x["round"] == r and x["phase"] == "train" and "error" not in x),
            key=lambda x: x["client"],
        )
        ev = sorted(
            (x for x in rows if x["round"] == r and x["phase"] == "evaluate" and "error" not in x),
            key=lambda x: x["client"],
        )
        errors = [x for x in rows if x["round"] == r and "error" in x]
        correct, held = sum(x["global-correct"] for x in ev), sum(x["held-out"] for x in ev)
        rounds.append(
            {
                "round": r,
                "clients_trained": [x["client"] for x in train],
                "samples": sum(x["num-examples"] for x in train),
                "all_trained_once": all(x["trained-once"] == 1 for x in train),
                "local_accuracy": {x["client"]: x["local-accuracy"] for x in train},
                "global_accuracy_per_client": {x["client"]: x["global-accuracy"] for x in ev},
                "global_accuracy": correct / held if held else None,
                # A round's global model is scored by each client when the next message brings it:
                # a client that failed then is missing here, and the figure says so.
                "global_unscored": sorted(set(range(s["boards"])) - {x["client"] for x in ev}),
                "bytes_sent": {x["client"]: x["bytes-sent"] for x in train},
                "failures": [x["error"][:300] for x in errors],
            }
        )
    pers = sorted(
        (x for x in rows if x["phase"] == "personalise" and "error" not in x), key=lambda x: x["client"]
    )
    p_correct, p_held = sum(x["local-correct"] for x in pers), sum(x["held-out"] for x in pers)
    slice_bytes = max((x["bytes-sent"] for x in rows if "bytes-sent" in x), default=0)
    return {
        "settings": s,
        "model_bytes": cfg.get("model_bytes"),
        "slice_bytes": slice_bytes,
        "rounds": rounds,
        "final_global_accuracy": rounds[-1]["global_accuracy"] if rounds else None,
        "personalised_accuracy_per_client": {x["client"]: x["local-accuracy"] for x in pers},
        "personalised_accuracy": p_correct / p_held if p_held else None,
    }


def _plots(folder: Path, res: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = res["rounds"]
    xs = [r["round"] for r in rounds]
    clients = sorted(
        {int(c) for r in rounds for c in r["local_accuracy"]}
        | {int(c) for r in rounds for c in r["global_accuracy_per_client"]}
    )
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for c in clients:
        loc = [r["local_accuracy"].get(c, r["local_accuracy"].get(str(c))) for r in rounds]
        glo = [
            r["global_accuracy_per_client"].get(c, r["global_accuracy_per_client"].get(str(c)))
            for r in rounds
        ]
        line = ax[0].plot(
            xs, [float("nan") if v is None else v for v in loc], "o--", label=f"client {c} local"
        )[0]
        ax[0].plot(
            xs,
            [float("nan") if v is None else v for v in glo],
            "s-",
            color=line.get_color(),
            label=f"client {c} global",
        )
    ax[0].set_xlabel("round")
    ax[0].set_ylabel("held-out accuracy on the client's own data")
    ax[0].set_title("per client: local model (dashed), global model (solid)")
    ax[0].legend(fontsize=6, ncol=2)
    ax[1].plot(
        xs, [r["global_accuracy"] for r in rounds], "o-", label="global model, everyone's held-out data"
    )
    if res["personalised_accuracy"] is not None:
        ax[1].axhline(
            res["personalised_accuracy"], color="C2", ls="--", label="fleet + personalisation epoch"
        )
    ax[1].set_xlabel("round")
    ax[1].set_ylabel("accuracy")
    ax[1].set_title("per round")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "accuracy.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for c in clients:
        ax.plot(
            xs,
            [r["bytes_sent"].get(c, r["bytes_sent"].get(str(c), 0)) for r in rounds],
            "o-",
            label=f"client {c}",
        )
    if res["model_bytes"]:
        ax.axhline(res["model_bytes"], color="k", ls=":", label="full model (.tflite)")
    ax.set_xlabel("round")
    ax.set_ylabel("bytes sent by the client")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "bytes.png", dpi=110)
    plt.close(fig)


def summary_text(res: dict[str, Any]) -> str:
    s = res["settings"]
    lines = [
        f"fleet of {s['boards']} clients on {s['board']}: {s['dataset']}, "
        f"partition {s['partition'] or 'default'}, "
        f"scheme {s['scheme']}, lr {s['lr']:g}, {s['rounds']} rounds, rounding {s['rounding']}",
    ]
    for r in res["rounds"]:
        loc = ", ".join(f"{c}: {v:.3f}" for c, v in sorted(r["local_accuracy"].items()))
        glo = "-" if r["global_accuracy"] is None else f"{r['global_accuracy']:.3f}"
        if r["global_accuracy"] is not None and r.get("global_unscored"):
            glo += f" (clients {r['global_unscored']} not scored: they failed before scoring it)"
        lines.append(
            f"round {r['round']}: clients {r['clients_trained']} trained {r['samples']} samples "
            f"(each once: {r['all_trained_once']}); local accuracy {{{loc}}}; global accuracy {glo}"
        )
        for f in r["failures"]:
            lines.append(f"  failure: {f.splitlines()[0] if f else f}")
    if res["slice_bytes"]:
        lines.append(
            f"bytes sent per client per round: {res['slice_bytes']:,} (the trained slice) against "
            f"{res['model_bytes']:,} for the full model"
        )
    fg, pa = res["final_global_accuracy"], res["personalised_accuracy"]
    lines.append(f"final global accuracy: {'-' if fg is None else f'{fg:.3f}'}")
    lines.append(f"fleet + personalisation epoch: {'-' if pa is None else f'{pa:.3f}'}")
    return "\n".join(lines) + "\n"


def write_report(folder: Path) -> Path:
    res = results(folder)
    (folder / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    text = summary_text(res)
    (folder / "summary.txt").write_text(text)
    _plots(folder, res)
    print(text, end="")
    print(f"folder    {folder}")
    return folder
