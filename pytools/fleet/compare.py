"""docs/FLEET.md's comparison: local-only fine-tuning against the fleet, from a fleet folder.

For each client of a finished fleet (its settings in config.json), local-only is the same
int8 sparse update (same scheme, lr, constant schedule, seed) trained on the client's own
samples alone for as many epochs as the fleet had rounds, on the host twin (bit-exact with the
boards), scored on the same held-out samples. The fleet's rows come from its results.json: the
final global model on each client's held-out samples, and fleet + one personalisation epoch.

    .venv/bin/python -m pytools.fleet.compare sessions/fleet-<time>   (writes docs/FLEET.md's table)
    .venv/bin/python -m pytools.fleet.compare sessions/fleet-<time> --section
        prints the comparison as a Markdown section for docs/RESULTS.md (results_section()):
        the table, the commands that regenerate it, and where the fleet loses, each statement
        computed from the numbers in the table
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path

from pytools.fleet import partition as partitions
from pytools.paths import ROOT
from pytools.session import run_training_session

MARK_BEGIN = "<!-- fleet-comparison: begin -->"
MARK_END = "<!-- fleet-comparison: end -->"


def local_only(folder: Path) -> dict[int, float]:
    s = json.loads((folder / "config.json").read_text())["settings"]
    part = partitions.parse(s["partition"], s["dataset"], s["split"])
    if part.kind != "users":
        raise SystemExit("the comparison runs on HAPT's users partition (each client a user's own data)")
    out = {}
    for k in range(s["boards"]):
        with tempfile.TemporaryDirectory() as tmp:
            session = run_training_session(
                "host",
                dataset=s["dataset"],
                scheme=s["scheme"],
                epochs=s["rounds"],
                lr=s["lr"],
                lr_schedule="constant",
                split=partitions.user_split(k, s["boards"]),
                model=Path(s["model"]) if s["model"] else None,
                out_dir=Path(tmp) / "s",
                seed=s["seed"],
                held_out=s["held_out"],
                save=False,
            )
            rows = [json.loads(x) for x in (session / "epochs.jsonl").read_text().splitlines()]
            out[k] = rows[-1]["held_out_accuracy"]
    return out


def cloud(folder: Path) -> dict[int, float]:
    """The cloud baseline: the float backbone, the whole network fine-tuned in TensorFlow on all
    clients' fine-tuning samples together (plain SGD, batch 1, shuffled, as many passes as the
    fleet had rounds, the fleet's lr decayed linearly as the results' cloud rows), scored on each
    client's held-out samples."""
    import os

    import numpy as np

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from pytools.plan.finetune import load
    from pytools.results import float_backbone
    from pytools.session import subset
    from pytools.train import schedule as schedules

    s = json.loads((folder / "config.json").read_text())["settings"]
    users = [partitions.user_split(k, s["boards"]) for k in range(s["boards"])]
    parts = [load(s["dataset"], Path(s["model"]) if s["model"] else None, u, validation=False) for u in users]
    x = np.concatenate([d.x_float_train for d in parts])
    y = np.concatenate([d.y_train for d in parts])
    keras.utils.set_random_seed(s["seed"])
    from pytools.pretrain import backbones

    names = [n for n, b in backbones.BACKBONES.items() if b.dataset == s["dataset"]]
    if s["model"] or not names:
        raise SystemExit(f"the cloud baseline needs the float weights of {s['dataset']}'s own backbone")
    model = float_backbone(names[0])
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # batch 1: frozen statistics, as the results' cloud rows
    steps = s["rounds"] * len(y)
    model.compile(
        optimizer=keras.optimizers.SGD(schedules.keras_lr("linear", s["lr"], steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(),
    )
    rng = np.random.default_rng(s["seed"])
    order = np.concatenate([rng.permutation(len(y)) for _ in range(s["rounds"])])
    model.fit(x[order], y[order], batch_size=1, epochs=1, shuffle=False, verbose=0)
    out = {}
    for k, d in enumerate(parts):
        keep = subset(d.y_eval, s["held_out"])
        pred = np.argmax(model.predict(d.x_float_eval[keep], verbose=0, batch_size=256), axis=-1)
        out[k] = float(np.mean(pred == d.y_eval[keep]))
    return out


def table(folder: Path, local: dict[int, float], cloud_acc: dict[int, float]) -> str:
    res = json.loads((folder / "results.json").read_text())
    s = res["settings"]
    last = res["rounds"][-1]
    glob = {int(k): v for k, v in last["global_accuracy_per_client"].items()}
    pers = {int(k): v for k, v in res["personalised_accuracy_per_client"].items()}
    first = {int(k): v for k, v in res["rounds"][0]["local_accuracy"].items()}
    users = [partitions.HAPT_USERS[k] for k in range(s["boards"])]

    def row(name: str, d: dict[int, float], note: str) -> str:
        vals = [d.get(k) for k in range(s["boards"])]
        cells = " | ".join("—" if v is None else f"{100 * v:.1f}" for v in vals)
        got = [v for v in vals if v is not None]
        mean = f"{100 * sum(got) / len(got):.1f}" if got else "—"
        worst = f"{100 * min(got):.1f}" if got else "—"
        return f"| {name} | {cells} | {mean} | {worst} | {note} |"

    head = " | ".join(f"user {u}" for u in users)
    lines = [
        f"Fleet: `{folder.name}`, {s['boards']} clients on {s['board']}, {s['rounds']} rounds, scheme "
        f"`{s['scheme']}`, lr {s['lr']:g}, rounding {s['rounding']}, held-out samples per client: "
        f"{s['held_out'] or 'all'}.",
        "",
        f"| held-out accuracy (%) | {head} | mean | worst | bytes sent per client per round |",
        "|---|" + "---|" * (len(users) + 3),
        row(
            "local only (int8 sparse, own data, as many epochs as rounds)",
            local,
            "0 (nothing leaves the board)",
        ),
        row("one local epoch (the fleet's round 1, before any averaging)", first, "—"),
        row("fleet: final global model (sparse-slice FedAvg)", glob, f"{res['slice_bytes']:,} B"),
        row("fleet + one local personalisation epoch", pers, f"{res['slice_bytes']:,} B"),
        row(
            "cloud baseline: float, whole network, all clients' data centralised",
            cloud_acc,
            "all samples leave the boards",
        ),
        "| full model, for reference |" + " |" * (len(users) + 2) + f" {res['model_bytes']:,} B (.tflite) |",
    ]
    return "\n".join(lines) + "\n"


def fleet_command(s: dict) -> str:
    """The `invoke fleet` command line of the fleet run these settings record."""
    return (
        f"invoke fleet --boards {s['boards']} --dataset {s['dataset']} --split {s['split'] or 'users'} "
        f"--rounds {s['rounds']} --board {s['board']} --lr {s['lr']:g}"
    )


def _per_client(d: dict) -> dict[int, float]:
    return {int(k): float(v) for k, v in d.items()}


def losses(folder: Path, local: dict[int, float], cloud_acc: dict[int, float]) -> list[str]:
    """Where the fleet loses, in words, from the fleet's results and the baselines: every
    client whose accuracy is below local-only or cloud training, the bytes it costs, the time."""
    res = json.loads((folder / "results.json").read_text())
    cfg = json.loads((folder / "config.json").read_text())
    s = res["settings"]
    users = {k: partitions.HAPT_USERS[k] for k in range(s["boards"])}
    glob = _per_client(res["rounds"][-1]["global_accuracy_per_client"])
    pers = _per_client(res["personalised_accuracy_per_client"])

    def pct(v: float) -> str:
        return f"{100 * v:.1f} %"

    def worse(a: dict[int, float], b: dict[int, float]) -> list[str]:
        return [
            f"user {users[k]} ({pct(a[k])} against {pct(b[k])})" for k in sorted(a) if k in b and a[k] < b[k]
        ]

    def mean(d: dict[int, float]) -> float:
        return sum(d.values()) / len(d) if d else float("nan")

    out = []
    for name, acc in (("the fleet's global model", glob), ("fleet + personalisation", pers)):
        for other, ref in (("local-only training", local), ("the cloud baseline", cloud_acc)):
            w = worse(acc, ref)
            if w:
                out.append(
                    f"**Accuracy, {name} below {other}** on {len(w)} of {len(acc)} users: {', '.join(w)}."
                )
            else:
                out.append(
                    f"Accuracy, {name} against {other}: below on no user (mean {pct(mean(acc))} against "
                    f"{pct(mean(ref))})."
                )
    ties = [k for k in sorted(glob) if k in local and glob[k] == local[k]]
    if ties:
        out.append(
            f"**No gain from federating** on {len(ties)} of {len(glob)} users: the global model only "
            f"ties local-only training there ({', '.join(f'user {users[k]}' for k in ties)}), while each "
            "client sent and received its slice every round."
        )
    w = worse(pers, glob)
    if w:
        out.append(f"**The personalisation epoch loses** against the global model on {', '.join(w)}.")
    sl, full = res["slice_bytes"], res["model_bytes"]
    out.append(
        f"**Bytes**: each client sends its trained slice, {sl:,} B per round, and receives as much "
        f"({2 * sl * s['rounds']:,} B over {s['rounds']} rounds, plus the personalisation's download); "
        f"that is {100 * sl / full:.0f} % of the {full:,}-byte .tflite per round. Local-only training "
        "sends nothing; the cloud baseline sends every sample."
    )
    if cfg.get("flower_seconds"):
        train = [
            x["train-seconds"]
            for r in range(1, s["rounds"] + 1)
            for x in _train_rows(folder)
            if x["round"] == r and "train-seconds" in x
        ]
        per_round = max(train) if train else None
        out.append(
            f"**Time**: the run took {cfg['flower_seconds']:.0f} s on Flower for {s['rounds']} rounds "
            "and the personalisation epoch"
            + (
                f" (the slowest board's local epoch alone: {per_round:.0f} s a round)"
                if per_round is not None
                else ""
            )
            + "; every round waits for the slowest board, and Flower starts a process per message."
        )
    return out


def _train_rows(folder: Path) -> list[dict]:
    rows = [json.loads(x) for x in (folder / "rounds.jsonl").read_text().splitlines() if x.strip()]
    return [x for x in rows if x.get("phase") == "train" and "error" not in x]


def results_section(folder: Path, heading: str = "##") -> str:
    """The fleet comparison as a Markdown section for docs/RESULTS.md: the table (local-only,
    fleet, fleet + personalisation, cloud; bytes per round against the full model), the
    commands that regenerate it, and where the fleet loses (computed from the numbers)."""
    local, cloud_acc = baselines(folder)
    lines = [
        f"{heading} Fleet learning: sparse-slice FedAvg on Flower against local and cloud training",
        "",
        "Regenerate with",
        "",
        "```",
        fleet_command(json.loads((folder / "results.json").read_text())["settings"]),
        ".venv/bin/python -m pytools.fleet.compare sessions/fleet-<time> --section",
        "```",
        "",
        "(local-only runs on the host twin, bit-exact with the boards; the cloud baseline fine-tunes "
        "the float backbone in TensorFlow; details in docs/FLEET.md).",
        "",
        table(folder, local, cloud_acc),
        "Where the fleet loses:",
        "",
        *[f"- {x}" for x in losses(folder, local, cloud_acc)],
    ]
    return "\n".join(lines) + "\n"


def baselines(folder: Path) -> tuple[dict[int, float], dict[int, float]]:
    """Local-only and cloud accuracies per client; they depend only on the fleet's settings,
    so they are computed once and kept in the folder (baselines.json)."""
    cache = folder / "baselines.json"
    if cache.exists():
        got = json.loads(cache.read_text())
        local, cloud_acc = ({int(k): v for k, v in got[n].items()} for n in ("local_only", "cloud"))
        return local, cloud_acc
    local, cloud_acc = local_only(folder), cloud(folder)
    cache.write_text(json.dumps({"local_only": local, "cloud": cloud_acc}, indent=2) + "\n")
    return local, cloud_acc


def main(argv: list[str]) -> None:
    folder = Path(argv[0])
    # The baselines' sessions print their progress: on stderr, so that --section's stdout is
    # the Markdown section alone (`... --section > fleet-section.md`).
    with contextlib.redirect_stdout(sys.stderr):
        local, cloud_acc = baselines(folder)
    if len(argv) > 1 and argv[1] == "--baselines-only":
        return
    if len(argv) > 1 and argv[1] == "--section":
        print(results_section(folder), end="")
        return
    text = table(folder, local, cloud_acc)
    doc = ROOT / "docs" / "FLEET.md"
    body = doc.read_text()
    start, end = body.index(MARK_BEGIN) + len(MARK_BEGIN), body.index(MARK_END)
    doc.write_text(body[:start] + "\n" + text + body[end:])
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
