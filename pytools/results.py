"""`invoke results`: regenerates docs/RESULTS.md and docs/results/ from scratch.

For each transfer task, rows:
    pretrained                   the backbone before fine-tuning (int8, host twin)
    float32 cloud baseline       the float Keras backbone, the whole network fine-tuned in
                                 TensorFlow (plain SGD, batch 1, the same sample order
                                 and lr schedule, BatchNorm frozen)
    int8 classifier only         scheme "bias=1,-1=1"
    int8 biases only             biases of every trainable layer
    int8 sparse, no QAS          ours' scheme with qas = false
    int8 sparse + QAS (ours)     the scheme `invoke plan` chooses under the task's budget
    int8 full update             every bias and every weight, if the step fits the board
Every int8 row runs on the host twin (the board's C, bit-identical with the board for the same
plan, seed and sample order). Each row's learning rate is chosen from a small grid on the
validation part of the fine-tuning split (one seed); the table's accuracy is on the held-out
part: mean and standard deviation over three sample-order seeds, training on the whole
fine-tuning split. Peak training SRAM is the linker's total for the firmware with the step
linked in: its static RAM (stacks, link buffers, runtime) plus the planned training arena,
as `invoke compile` reports it.

Tasks whose backbone or data set is not available here are listed with the reason; the
table holds what exists.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import datasets
from pytools.boards import Board
from pytools.errors import ToolError
from pytools.model.tflite_import import import_tflite
from pytools.paths import BUILD, ROOT
from pytools.plan.finetune import Data, load, orders, run
from pytools.plan.run import plan
from pytools.progress import progress as progress_bar
from pytools.train import schedule as schedules
from pytools.train.compile_train import compile_training
from pytools.train.scheme import Scheme, parse_scheme_text, trainable_ops

DOCS = ROOT / "docs"
OUT_MD = DOCS / "RESULTS.md"
OUT_DIR = DOCS / "results"
SEEDS = (0, 1, 2)
NO_QAS_LR_FACTORS = (1.0, 1e2, 1e4, 1e6)  # without QAS the same lr moves weights s_W^2 times less
LR_FACTORS = (1 / 3, 1.0, 3.0)
CLOUD_LR_FACTORS = (0.1, 1 / 3, 1.0, 3.0)  # plain float SGD at batch 1 wants a small lr (fashion_mbv2: 0.003)
GRID_STEPS = 1500  # at most this many steps per learning-rate trial


@dataclass
class TaskSpec:
    name: str
    title: str
    dataset: str
    splits: list[str]  # one split, or several (personalisation: one per user), each its own run
    model: Callable[[], tuple[str, bytes]]  # the int8 backbone to fine-tune: (name, .tflite)
    keras: Callable[[], Any]  # the float Keras backbone (free batch), the same pretrained weights
    budget: int  # memory budget of `invoke plan`, bytes
    lr: float = 0.01
    epochs: int = 5
    plan_steps: int = 1000
    plan_seeds: tuple[int, ...] = (0, 1)
    # No time limit on the plan's fine-tuning runs (invoke plan has 480 s): a limit fits the
    # steps to the machine's speed, and the chosen scheme then depended on the load.
    plan_seconds: float = math.inf
    plan_split: str | None = None  # the split `invoke plan` analyses (default: the first of splits)
    adapt: str | None = None  # finetune.ADAPTERS name: the samples as the backbone takes them
    lr_grid: bool = (
        True  # False: the int8 rows with QAS train at `lr` (the cloud and no-QAS rows keep their grids)
    )
    missing: Callable[[], str] = lambda: ""  # why the task cannot run here ("" = it can)
    schedule: str = schedules.DEFAULT  # every row's lr schedule (pytools/train/schedule.py)


@dataclass
class Row:
    name: str
    scheme: str  # inline scheme, or a description
    lr: float = 0.0
    accuracy: list[float] = field(default_factory=list)  # held out, one per seed
    sram: int | None = None  # linker's RAM total, bytes
    note: str = ""


# ---------------------------------------------------------------- backbones


def _digits_model() -> tuple[str, bytes]:
    from pytools.pretrain import digits

    return digits.NAME, digits.pretrained_model()


def _digits_keras() -> Any:
    """The digits CNN in float, as pytools/pretrain/digits.py trains it (seeded, deterministic:
    the weights the cached .tflite was exported from), cached as weights."""
    from pytools.pretrain import digits
    from pytools.pretrain import zoo as model_zoo

    cache = BUILD / "results" / f"digits_float-{digits.cache_key()}.npz"
    model = digits._digits_cnn(None)
    if cache.exists():
        w = np.load(cache)
        model.set_weights([w[f"w{i}"] for i in range(len(w.files))])
        return model
    pre = digits.split().pretrain
    trained = model_zoo._train(digits._digits_cnn, pre.x, pre.y, digits.PRETRAIN_EPOCHS, digits.PRETRAIN_LR)
    model = digits._digits_cnn(None)
    model.set_weights(trained.get_weights())
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **{f"w{i}": w for i, w in enumerate(trained.get_weights())})
    return model


def _backbone_model(name: str) -> Callable[[], tuple[str, bytes]]:
    def f() -> tuple[str, bytes]:
        from pytools.pretrain import backbones  # branch `data`

        return name, backbones.model_path(name).read_bytes()

    return f


def _backbone_keras(name: str) -> Callable[[], Any]:
    """The backbone's float Keras model. backbones.py keeps only the .tflite, so the float
    weights come from its own seeded, deterministic training, run once and cached (keyed by the
    .tflite's hash; its float accuracy is checked against models/<name>.json)."""

    def f() -> Any:
        import hashlib

        from pytools.pretrain import backbones

        spec = backbones.BACKBONES[name]
        key = hashlib.sha256(backbones.model_path(name).read_bytes()).hexdigest()[:16]
        cache = BUILD / "results" / f"{name}-float-{key}.npz"
        model = spec.make(None)
        if not cache.exists():
            data = datasets.load_split(spec.dataset, spec.split)
            trained, _ = backbones._train(spec, data.pretrain.x, data.pretrain.y)
            info = json.loads((backbones.MODELS / f"{name}.json").read_text())
            pred = np.argmax(trained.predict(data.held_out.x, batch_size=256, verbose=0), axis=1)
            acc = float(np.mean(pred == data.held_out.y))
            if abs(acc - info["float_accuracy"]) > 0.005:
                raise ToolError(
                    f"{name}: retrained float backbone scores {acc:.4f}, models/{name}.json says "
                    f"{info['float_accuracy']}: not the same weights"
                )
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **{f"w{i}": w for i, w in enumerate(trained.get_weights())})
        w = np.load(cache)
        model.set_weights([w[f"w{i}"] for i in range(len(w.files))])
        return model

    return f


def float_backbone(name: str) -> Any:
    """The backbone's float Keras model, its weights as pretrained (the fleet comparison's cloud
    baseline starts from it too: pytools/fleet/compare.py)."""
    return _backbone_keras(name)()


def _backbone_missing(name: str, extra: str = "") -> Callable[[], str]:
    def f() -> str:
        try:
            from pytools.pretrain import backbones
        except ImportError:
            return (
                "the pretrained backbones (pytools/pretrain/backbones.py, branch `data`) are not in this tree"
            )
        if not backbones.model_path(name).exists():
            return f"models/{name}.tflite does not exist (run `invoke pretrain`)"
        return extra

    return f


TASKS = [
    TaskSpec(
        "digits",
        "Digits CNN (sklearn digits 0-4, first 7 writers) -> sklearn digits 0-9, new writers",
        "digits",
        ["writers"],
        _digits_model,
        _digits_keras,
        budget=28 * 1024,
    ),
    TaskSpec(
        "fashion_to_mnist",
        "1. Fashion-MNIST backbone -> MNIST digits (new classes, new domain)",
        "mnist",
        ["transfer"],
        _backbone_model("fashion_mbv2"),
        _backbone_keras("fashion_mbv2"),
        budget=64 * 1024,
        epochs=1,
        plan_steps=300,
        plan_seeds=(0,),
        missing=_backbone_missing("fashion_mbv2"),
    ),
    TaskSpec(
        "fashion_to_digits",
        "2. Fashion-MNIST backbone -> sklearn digits (43 new writers, 8x8 upscaled, few-shot)",
        "digits",
        ["writers"],
        _backbone_model("fashion_mbv2"),
        _backbone_keras("fashion_mbv2"),
        budget=64 * 1024,
        plan_seeds=(0,),
        plan_steps=300,
        adapt="upscale28",
        missing=_backbone_missing("fashion_mbv2"),
    ),
    TaskSpec(
        "hapt_users",
        "3. HAPT backbone -> each of users 21-30 (personalisation)",
        "hapt",
        [f"user{u}" for u in range(21, 31)],
        _backbone_model("hapt_cnn1d"),
        _backbone_keras("hapt_cnn1d"),
        budget=64 * 1024,
        plan_split="users",  # one scheme for every user: planned on all ten users' first recordings
        plan_seeds=(0,),
        missing=_backbone_missing("hapt_cnn1d"),
    ),
    TaskSpec(
        "hapt_to_basicmotions",
        "4. HAPT backbone -> BasicMotions (smartwatch, four new classes)",
        "basic_motions",
        ["standard"],
        _backbone_model("hapt_cnn1d"),
        _backbone_keras("hapt_cnn1d"),
        budget=64 * 1024,
        plan_seeds=(0,),
        adapt="watch_to_hapt",
        missing=_backbone_missing("hapt_cnn1d"),
    ),
]


# ---------------------------------------------------------------- runs


def _data(spec: TaskSpec, split: str, model: Path, validation: bool) -> Data:
    return load(spec.dataset, model, split, validation=validation, adapt=spec.adapt)


def int8_accuracy(
    d: Data, board: Board, scheme: Scheme, lr: float, steps: int, seed: int, schedule: str = schedules.DEFAULT
) -> float:
    ct = compile_training(d.graph, scheme, board, d.model_name, link=False, lr=lr)
    return run(ct, d, steps, seed, schedule=schedule)[0]


def float_accuracy(
    keras_model: Callable[[], Any],
    d: Data,
    lr: float,
    steps: int,
    seed: int,
    schedule: str = schedules.DEFAULT,
) -> float:
    """The whole float network fine-tuned in TensorFlow: plain SGD, batch 1, the int8 path's
    sample order and lr schedule, sparse categorical cross-entropy on its softmax output."""
    import os

    from pytools.pretrain.zoo import _tf

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads: no C++ chatter
    _tf().get_logger().setLevel("ERROR")  # nor Keras' retracing notes
    import keras

    keras.utils.set_random_seed(seed)
    model = keras_model()
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            # Frozen, i.e. in inference mode: batch-1 statistics would wreck it (measured:
            # fashion_mbv2 -> MNIST fell to 16 % with BatchNorm training at batch 1); the int8
            # model has it folded into the convolutions anyway.
            layer.trainable = False
    opt = keras.optimizers.SGD(schedules.keras_lr(schedule, lr, steps))
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy())
    order = orders(len(d.y_train), steps, seed)
    assert d.x_float_train is not None and d.x_float_eval is not None
    if steps:
        model.fit(d.x_float_train[order], d.y_train[order], batch_size=1, epochs=1, shuffle=False, verbose=0)
    pred = np.argmax(model.predict(d.x_float_eval, verbose=0, batch_size=256), axis=-1)
    return float(np.mean(pred == d.y_eval))


def _sram(d: Data, board: Board, scheme: Scheme) -> tuple[int | None, str]:
    ct = compile_training(d.graph, scheme, board, d.model_name, link=True)
    if ct.image is None:
        total = ct.base.regions["RAM"].used + ct.compiled.arena if ct.base else 0
        return None, f"does not fit {board.name}: {total:,} B of {board.memory.ram_size:,}"
    return ct.image.regions["RAM"].used, ""


@dataclass
class TaskResult:
    spec: TaskSpec
    rows: dict[str, list[Row]]  # split -> rows
    pretrained: dict[str, float]
    plan_summary: str
    seconds: float


def run_task(spec: TaskSpec, board: Board, progress: bool = True, out_dir: Path = OUT_DIR) -> TaskResult:
    t0 = time.monotonic()
    name, blob = spec.model()
    n = len(trainable_ops(import_tflite(blob, name)))
    out: dict[str, list[Row]] = {}
    pretrained: dict[str, float] = {}
    plan_summary = ""
    model_path = BUILD / "results" / f"{name}.tflite"
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.write_bytes(blob)
    for split in spec.splits:
        val = _data(spec, split, model_path, validation=True)
        held = _data(spec, split, model_path, validation=False)
        steps_val = min(spec.epochs * len(val.y_train), GRID_STEPS)
        steps = spec.epochs * len(held.y_train)
        if not plan_summary:  # one plan per task (on its first split's validation part)
            p = plan(
                board,
                spec.dataset,
                spec.budget,
                model=model_path,
                out=out_dir / f"{spec.name}-plan.toml",
                lr=spec.lr,
                steps=spec.plan_steps,
                seeds=spec.plan_seeds,
                split=spec.plan_split or split,
                progress=progress,
                log=False,
                adapt=spec.adapt,
                max_seconds=spec.plan_seconds,
            )
            ours = p.scheme
            plan_summary = (
                f"`invoke plan` under {spec.budget // 1024} KB (on split `{spec.plan_split or split}`): "
                f"{ours.describe()} "
                f"({p.memory:,} B; {p.analysis.runs} analysis runs, {p.result.compiles} schemes "
                f"compiled, {p.seconds['total']:.0f} s)"
            )
        no_qas = Scheme(ours.bias_layers, dict(ours.weights), qas=False)
        full = Scheme(n, {-i: 1.0 for i in range(1, n + 1)})
        rows = [
            ("float32, whole network (cloud baseline)", None, "TensorFlow SGD"),
            ("int8 classifier only", parse_scheme_text("bias=1,-1=1"), ""),
            ("int8 biases only", Scheme(n), ""),
            ("int8 sparse, no QAS", no_qas, ""),
            ("int8 sparse + QAS (ours)", ours, ""),
            ("int8 full update", full, ""),
        ]
        pretrained[split] = run(compile_training(held.graph, Scheme(1), board, name, link=False), held, 0, 0)[
            0
        ]
        result: list[Row] = []
        for label, scheme, note in progress_bar(
            rows, desc=f"{spec.name}/{split}", disable=not progress, leave=False
        ):
            row = Row(label, scheme.describe() if scheme else "all layers, float32", note=note)
            if scheme is not None:
                row.sram, why = _sram(held, board, scheme)
                if row.sram is None and scheme is full:
                    row.note = why
                    result.append(row)
                    continue
            factors = LR_FACTORS if scheme is None or scheme.qas else NO_QAS_LR_FACTORS
            if scheme is None:
                factors = CLOUD_LR_FACTORS
            if not spec.lr_grid and scheme is not None and scheme.qas:
                factors = (1.0,)

            def acc(data: Data, lr: float, steps: int, seed: int, s: Scheme | None = scheme) -> float:
                if s is None:
                    return float_accuracy(spec.keras, data, lr, steps, seed, spec.schedule)
                return int8_accuracy(data, board, s, lr, steps, seed, spec.schedule)

            grid = (
                {f * spec.lr: acc(val, f * spec.lr, steps_val, 0) for f in factors}
                if len(factors) > 1
                else {spec.lr: 0.0}
            )
            row.lr = max(grid, key=lambda k: (grid[k], -abs(np.log(k / spec.lr))))
            row.accuracy = [acc(held, row.lr, steps, s) for s in SEEDS]
            result.append(row)
        out[split] = result
    return TaskResult(spec, out, pretrained, plan_summary, time.monotonic() - t0)


# ---------------------------------------------------------------- the report


def _fmt_acc(accs: list[float]) -> str:
    if not accs:
        return "—"
    return f"{100 * np.mean(accs):.1f} ± {100 * np.std(accs):.1f}"


def _plot(tr: TaskResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = next(iter(tr.rows.values()))
    labels = [r.name for r in rows]
    means = [
        100 * np.mean([np.mean(tr.rows[s][i].accuracy or [np.nan]) for s in tr.rows])
        for i in range(len(rows))
    ]
    errs = [100 * np.std(rows[i].accuracy) if rows[i].accuracy else 0 for i in range(len(rows))]
    pre = 100 * np.mean(list(tr.pretrained.values()))
    fig, ax = plt.subplots(figsize=(9, 3.8))
    colors = ["grey", "#9ecae1", "#6baed6", "#fdae6b", "#e6550d", "#31a354"]
    ax.barh(range(len(rows))[::-1], means, xerr=errs, color=colors[: len(rows)])
    ax.axvline(pre, color="black", ls="--", lw=1, label=f"pretrained {pre:.1f}")
    ax.set_yticks(range(len(rows))[::-1], labels, fontsize=8)
    ax.set_xlabel("held-out accuracy (%), mean ± std over 3 seeds")
    ax.set_title(tr.spec.title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _task_md(tr: TaskResult) -> list[str]:
    spec = tr.spec
    lines = [f"## {spec.title}", ""]
    multi = len(tr.rows) > 1
    ds = datasets.load_split(spec.dataset, spec.splits[0])
    lines.append(
        f"Data: `{spec.dataset}`, split `{spec.splits[0]}`"
        + (f" (and {len(spec.splits) - 1} more, one run each)" if multi else "")
        + f": fine-tuning on {len(ds.finetune)} samples, {spec.epochs} epoch(s), batch 1; "
        f"held out: {len(ds.held_out)} samples. {tr.plan_summary}."
    )
    lines.append("")
    pre = tr.pretrained
    pre_txt = f"{100 * np.mean(list(pre.values())):.1f}" + (
        f" | {100 * min(pre.values()):.1f}" if multi else ""
    )
    head = "| | scheme | lr | held-out accuracy (%) | peak training SRAM |"
    if multi:
        head = "| | scheme | lr (first user's) | mean over users (%) | worst user (%) | peak training SRAM |"
    lines += [head, "|---|---|---|---|---|" + ("---|" if multi else "")]
    lines.append(f"| pretrained | — | — | {pre_txt} | — |")
    rows0 = next(iter(tr.rows.values()))
    for i, r in enumerate(rows0):
        sram = f"{r.sram:,} B" if r.sram else ("— (cloud)" if "float32" in r.name else r.note or "—")
        bold = "**" if "ours" in r.name else ""
        if multi:
            per_user = [np.mean(tr.rows[s][i].accuracy) for s in tr.rows if tr.rows[s][i].accuracy]
            acc = f"{100 * np.mean(per_user):.1f}" if per_user else "—"
            worst = f"{100 * min(per_user):.1f}" if per_user else "—"
            lines.append(f"| {bold}{r.name}{bold} | {r.scheme} | {r.lr:g} | {acc} | {worst} | {sram} |")
        else:
            acc = _fmt_acc(r.accuracy)
            lines.append(f"| {bold}{r.name}{bold} | {r.scheme} | {r.lr:g} | {bold}{acc}{bold} | {sram} |")
    lines.append("")
    lines += _verdict(tr)
    lines += [
        "",
        f"![{spec.name}](results/{spec.name}.png)",
        f"![{spec.name} plan](results/{spec.name}-plan.png)",
    ]
    lines += ["", f"Task time: {tr.seconds:.0f} s.", ""]
    return lines


def _mean(tr: TaskResult, name: str) -> float:
    vals = [np.mean(r.accuracy) for rows in tr.rows.values() for r in rows if r.name == name and r.accuracy]
    return float(np.mean(vals)) if vals else float("nan")


def _verdict(tr: TaskResult) -> list[str]:
    ours = _mean(tr, "int8 sparse + QAS (ours)")
    cloud = _mean(tr, "float32, whole network (cloud baseline)")
    cls = _mean(tr, "int8 classifier only")
    bias = _mean(tr, "int8 biases only")
    noqas = _mean(tr, "int8 sparse, no QAS")
    full = _mean(tr, "int8 full update")
    gap = 100 * (ours - cloud)
    out = [
        f"Ours against the cloud baseline: {gap:+.1f} points "
        + (
            "(within 1 point: target met)." if gap >= -1 else "(**more than 1 point below: target not met**)."
        ),
        f"Against classifier only {100 * (ours - cls):+.1f}, biases only {100 * (ours - bias):+.1f}, "
        f"the same scheme without QAS {100 * (ours - noqas):+.1f} points.",
    ]
    if np.isfinite(full):
        out.append(
            f"The int8 full update (no memory budget) against the cloud baseline: "
            f"{100 * (full - cloud):+.1f} points."
        )
    return out


def write(
    results: list[TaskResult],
    skipped: list[tuple[TaskSpec, str]],
    seconds: float,
    command: str,
    md: Path = OUT_MD,
    out_dir: Path = OUT_DIR,
    kept: list[str] | None = None,
) -> None:
    """kept: tasks whose results come from an earlier run's JSON (not rewritten here)."""
    kept = kept or []
    out_dir.mkdir(parents=True, exist_ok=True)
    for tr in results:
        if tr.spec.name in kept:
            continue
        _plot(tr, out_dir / f"{tr.spec.name}.png")
        (out_dir / f"{tr.spec.name}.json").write_text(
            json.dumps(
                {
                    "pretrained": tr.pretrained,
                    "rows": {s: [{**r.__dict__} for r in rows] for s, rows in tr.rows.items()},
                    "seconds": tr.seconds,
                    "plan_summary": tr.plan_summary,
                },
                indent=1,
            )
            + "\n"
        )
    lines = [
        "# Results: on-device int8 fine-tuning against float fine-tuning in the cloud",
        "",
        f"Generated by `{command}` on {dt.date.today().isoformat()} in {seconds / 60:.1f} min "
        "(2-core sandbox); regenerate with the same command. Do not edit by hand.",
        *(
            [
                "",
                f"Tasks {', '.join(f'`{k}`' for k in kept)} were not run this time: their sections are "
                "an earlier run's (docs/results/<task>.json); `invoke results` alone reruns every task.",
            ]
            if kept
            else []
        ),
        "",
        "Rows, for each task:",
        "",
        "- **pretrained**: the backbone before fine-tuning (int8, host twin);",
        "- **float32, whole network (cloud baseline)**: the float Keras backbone (the weights the int8 "
        "model was exported from), every layer fine-tuned in TensorFlow: plain SGD, batch 1, the same "
        "epochs and sample order, BatchNorm frozen (in inference mode: batch-1 statistics wreck it);",
        "- **int8 classifier only**: the last layer's weights and bias (`bias=1,-1=1`);",
        "- **int8 biases only**: the biases of every trainable layer;",
        "- **int8 sparse, no QAS**: our scheme with `qas = false` (plain SGD on the integers);",
        "- **int8 sparse + QAS (ours)**: the scheme `invoke plan` chooses under the task's memory budget "
        "(its analysis plot and scheme file are in docs/results/);",
        "- **int8 full update**: every bias and every weight, where the step fits the board.",
        "",
        "Every int8 row runs on the host twin: the board's C kernels and plan, bit-identical with the "
        "board for the same plan, seed and sample order. Accuracy is on the held-out part (writers, "
        "users or recordings nobody trains on): mean ± standard deviation over three sample-order "
        f"seeds ({', '.join(map(str, SEEDS))}), training on the whole fine-tuning split. Peak training "
        "SRAM is the linker's RAM total for the firmware with the training step linked in: its static "
        "RAM (stacks, link buffers, runtime) plus the planned training arena (activations, saved "
        "activations, masks, gradients, trainable state), as `invoke compile` reports it. `invoke "
        "plan`, the learning-rate choice and everything else that is tuned sees only the validation "
        "part of the fine-tuning split, never the held-out part.",
        "",
        "Learning-rate schedule: every row, the cloud baseline included, decays its lr linearly "
        "from the chosen lr to 0 over the run (`pytools/train/schedule.py`; Keras' PolynomialDecay "
        "with power 1 in the cloud). On the board the host sends each step's factor with its TRAIN. "
        "With a constant lr, batch-1 SGD ends wherever the last samples pushed the weights, and the "
        "spread over seeds is wide (see the schedule module's notes).",
        "",
        "Learning rates: each row picks its lr on the validation part (one seed, at most "
        f"{GRID_STEPS} steps) from the task lr times {', '.join(f'{f:.3g}' for f in LR_FACTORS)}; the "
        f"cloud baseline from the task lr times {', '.join(f'{f:.3g}' for f in CLOUD_LR_FACTORS)}; "
        "the row without QAS from the task lr times "
        f"{', '.join(f'{f:g}' for f in NO_QAS_LR_FACTORS)} (without QAS the right lr differs per layer "
        "by s_W^2, which no single lr fixes: that is what QAS is for).",
        "",
    ]
    for tr in results:
        lines += _task_md(tr)
    if skipped:
        lines += ["## Not run here", ""]
        lines += [f"- {s.title}: {why}." for s, why in skipped]
        lines += [
            "",
            "The code runs them as soon as their backbones exist: each task is a `TaskSpec` in "
            "`pytools/results.py` (data set, splits, int8 backbone, float Keras backbone, budget).",
            "",
        ]
    md.write_text("\n".join(lines).rstrip() + "\n")


def load_result(spec: TaskSpec, out_dir: Path = OUT_DIR) -> TaskResult | None:
    """A task's result as an earlier run wrote it (docs/results/<task>.json); None if none."""
    path = out_dir / f"{spec.name}.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    rows = {split: [Row(**r) for r in rs] for split, rs in d["rows"].items()}
    summary = d.get("plan_summary") or f"Scheme chosen by `invoke plan`: results/{spec.name}-plan.toml"
    return TaskResult(spec, rows, d["pretrained"], summary, d.get("seconds", 0.0))


def run_all(
    board: Board, only: list[str] | None = None, progress: bool = True
) -> tuple[list[TaskResult], float]:
    """Runs every task (or those in `only`) and writes RESULTS.md. With `only`, the other tasks
    keep the results an earlier run wrote to docs/results/ (said so in the report), so the table
    stays whole."""
    t0 = time.monotonic()
    chosen = [t for t in TASKS if not only or t.name in only]
    if only and len(chosen) != len(only):
        raise ToolError(f"unknown task in {only}; tasks: {', '.join(t.name for t in TASKS)}")
    results = []
    skipped: list[tuple[TaskSpec, str]] = []
    for spec in chosen:
        why = spec.missing()
        if why:
            print(f"{spec.name}: not run ({why})")
            skipped.append((spec, why))
            continue
        tr = run_task(spec, board, progress)
        print(f"{spec.name}: {tr.seconds:.0f} s")
        for r in next(iter(tr.rows.values())):
            print(f"  {r.name:<42} lr {r.lr:<8g} {_fmt_acc(r.accuracy):>12}  {r.sram or r.note or '-'}")
        results.append(tr)
    seconds = time.monotonic() - t0
    cmd = "invoke results" + (f" --tasks {','.join(only)}" if only else "")
    kept: list[str] = []
    if only:
        fresh = {tr.spec.name: tr for tr in results}
        merged = []
        for spec in TASKS:
            earlier = None if spec.name in fresh else load_result(spec)
            if earlier is not None:
                kept.append(spec.name)
            tr = fresh.get(spec.name, earlier)
            if tr is not None:
                merged.append(tr)
        results = merged
    write(results, skipped, seconds, cmd, kept=kept)
    return results, seconds
