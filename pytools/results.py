"""`invoke results`: regenerates docs/RESULTS.md and docs/results/ from scratch.

For each transfer task, rows:
    pretrained                   the backbone before fine-tuning (int8, host twin)
    float32 cloud baseline       the float Keras backbone, the whole network fine-tuned in
                                 TensorFlow (plain SGD, batch 1, the same sample order
                                 and lr schedule, BatchNorm frozen; op determinism, seeded,
                                 one thread: the same numbers on any machine of the kind)
    int8 classifier only         scheme "bias=1,-1=1"
    int8 biases only             biases of every trainable layer
    int8 sparse, no QAS          ours' scheme with qas = false
    int8 sparse + QAS (ours)     the scheme `invoke plan` chooses under the task's budget
    int8 full update             every bias and every weight, if the step fits the board
Every int8 row runs on the host twin (the board's C, bit-identical with the board for the same
plan, seed and sample order).

A task's runs ("units") are its seeds (SEEDS) on each of its splits, or, where the held-out set
is too small to resolve a point (TaskSpec.resplits: BasicMotions, 40 recordings), repeated
stratified splits of all its recordings, one seed each. Each row's learning rate is the grid
value with the best MEAN validation accuracy over the units (the validation part of each
unit's fine-tuning data, never its held-out part); ours and the cloud baseline use every
unit, the other rows (not part of the verdict) the first GRID_SEEDS_OTHERS seed(s) of each split
(repeated splits: the first GRID_SPLITS_OTHERS). `invoke results --dry-run` counts every run
(plan_of_work) and estimates its CPU time from COSTS, measured per model. The table
gives the mean and a 95 % Student-t interval over the task's replicates (seeds; users; splits),
and the verdict "ours vs cloud" comes from the t interval of the paired difference over the
same replicates, against MARGIN points. It is checked again with each of the two rows' lr
flipped to its grid runner-up.

Peak training SRAM is the linker's total for the firmware with the step linked in: its static
RAM (stacks, link buffers, runtime) plus the planned training arena, as `invoke compile`
reports it.

Runs go to a pool of WORKERS spawned processes, longest first (WorkModel's estimate); every run
is deterministic on its own (fresh model, seeded order), so the pool's scheduling changes
nothing. The firmware and the host twin are built once, before the pool starts. A task's
`invoke plan` is reused from build/results/plans/ when every input it depends on is identical
(plan_key; a fresh clone plans every task).

Tasks whose backbone or data set is not available here are listed with the reason; the
table holds what exists.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import datasets
from pytools.boards import Board
from pytools.errors import ToolError
from pytools.model.tflite_import import import_tflite
from pytools.paths import BUILD, ROOT
from pytools.plan.finetune import Data, load, orders, run, validation_split
from pytools.plan.run import plan
from pytools.train import schedule as schedules
from pytools.train.compile_train import compile_training
from pytools.train.scheme import Scheme, parse_scheme_text, trainable_ops

# Before anything here (or in a spawned worker, which imports this module first) loads
# TensorFlow: oneDNN off, as pytools/pretrain/zoo.py builds the backbones (its kernels' sums
# depend on the CPU), and no C++ chatter.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DOCS = ROOT / "docs"
OUT_MD = DOCS / "RESULTS.md"
OUT_DIR = DOCS / "results"
# The fleet comparison (issue 17) is made by its own runs (`invoke fleet`, then
# `python -m pytools.fleet.compare FOLDER --section > docs/fleet/results-section.md`): far too
# long to redo inside `invoke results`, so RESULTS.md carries that file as it was written.
FLEET_SECTION = DOCS / "fleet" / "results-section.md"
SEEDS = (0, 1, 2, 3, 4)  # sample-order seeds of every row (and of the lr choice of ours and the cloud)
# The rows outside the verdict (classifier only, biases only, no QAS, full update) choose their
# lr on the first seed of each split (BasicMotions: the first 5 of its resplits): their figures
# are still over every unit, but no claim rests on their lr being the best to the last point.
GRID_SEEDS_OTHERS = 1
GRID_SPLITS_OTHERS = 5
MARGIN = 1.0  # points: "within" means ours is at most this far below the cloud baseline
CONFIDENCE = 0.95
WORKERS = 2  # processes running the fine-tuning runs (the sandbox has 2 cores)
NO_QAS_LR_FACTORS = (1.0, 1e2, 1e4, 1e6)  # without QAS the same lr moves weights s_W^2 times less
LR_FACTORS = (1 / 3, 1.0, 3.0)
# Plain float SGD at batch 1 wants a small lr (fashion_mbv2: 0.003); a best lr at the task's lr
# (the grid's top) is extended upwards by GRID_EXTEND (0.03, 0.1), so 3.0 need not be run always.
CLOUD_LR_FACTORS = (0.1, 1 / 3, 1.0)
GRID_STEPS = 1000  # at most this many steps per learning-rate trial (1500 until the 30-min budget: issue 18)
GRID_EXTEND = 2  # a best lr at a grid's edge: try up to this many more steps beyond it


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
    # > 0: the held-out set is too small to resolve a point (BasicMotions: 40 samples, 2.5 points
    # each), so the units are this many stratified splits of all the split's recordings (its
    # fine-tuning and held-out parts pooled, each split holding out as many of each class as the
    # original held-out part), split r trained with seed r.
    resplits: int = 0


@dataclass
class Row:
    name: str
    scheme: str  # inline scheme, or a description
    lr: float = 0.0
    accuracy: list[float] = field(default_factory=list)  # held out, one per unit (TaskResult.units)
    sram: int | None = None  # linker's RAM total, bytes
    note: str = ""
    grid: dict[str, float] = field(default_factory=dict)  # lr (repr) -> mean validation accuracy
    runner_up: float | None = None  # the grid's second-best lr
    runner_up_accuracy: list[float] = field(default_factory=list)  # held out at runner_up (ours, cloud)


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
    model = digits.digits_cnn(None)
    if cache.exists():
        w = np.load(cache)
        model.set_weights([w[f"w{i}"] for i in range(len(w.files))])
        return model
    pre = digits.split().pretrain
    trained = model_zoo.train_keras(
        digits.digits_cnn, pre.x, pre.y, digits.PRETRAIN_EPOCHS, digits.PRETRAIN_LR
    )
    model = digits.digits_cnn(None)
    model.set_weights(trained.get_weights())
    _save_weights(cache, trained.get_weights())
    return model


def _save_weights(cache: Path, weights: list[np.ndarray]) -> None:
    """Written whole or not at all (a temporary file renamed): a reader never sees half a file."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **{f"w{i}": w for i, w in enumerate(weights)})
    os.replace(tmp, cache)


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
            trained, _ = backbones.train_backbone(spec, data.pretrain.x, data.pretrain.y)
            info = json.loads((backbones.MODELS / f"{name}.json").read_text())
            pred = np.argmax(trained.predict(data.held_out.x, batch_size=256, verbose=0), axis=1)
            acc = float(np.mean(pred == data.held_out.y))
            if abs(acc - info["float_accuracy"]) > 0.005:
                raise ToolError(
                    f"{name}: retrained float backbone scores {acc:.4f}, models/{name}.json says "
                    f"{info['float_accuracy']}: not the same weights"
                )
            _save_weights(cache, trained.get_weights())
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
        resplits=20,
        missing=_backbone_missing("hapt_cnn1d"),
    ),
]


# ---------------------------------------------------------------- units and data

CLOUD = "float32, whole network (cloud baseline)"
OURS = "int8 sparse + QAS (ours)"
VERDICT_ROWS = (CLOUD, OURS)


@dataclass(frozen=True)
class Unit:
    """One run of a row: a split (a user, for personalisation), a resplit of it or None, a seed."""

    split: str
    resplit: int | None
    seed: int


def units(spec: TaskSpec) -> list[Unit]:
    if spec.resplits:
        return [Unit(spec.splits[0], r, r) for r in range(spec.resplits)]
    return [Unit(s, None, seed) for s in spec.splits for seed in SEEDS]


def replicate(spec: TaskSpec, u: Unit) -> str:
    """The unit's replicate, the level the intervals are over: the user where a task has several
    splits (its seeds averaged), else the resplit, else the seed."""
    if len(spec.splits) > 1:
        return u.split
    return f"split {u.resplit}" if u.resplit is not None else f"seed {u.seed}"


def replicate_kind(spec: TaskSpec) -> str:
    if len(spec.splits) > 1:
        return f"{len(spec.splits)} users (each the mean of {len(SEEDS)} seeds)"
    if spec.resplits:
        return f"{spec.resplits} repeated stratified splits (split r trained with seed r)"
    return f"{len(SEEDS)} seeds"


def _grid_units(spec: TaskSpec, label: str) -> list[Unit]:
    """The units a row's lr grid runs on: every unit for the verdict's rows (their lr is chosen by
    the mean over the same units as their figures); the first GRID_SEEDS_OTHERS seeds of each
    split (or the first GRID_SPLITS_OTHERS resplits) for the rows outside the verdict."""
    us = units(spec)
    if label in VERDICT_ROWS:
        return us
    if spec.resplits:
        return [u for u in us if u.resplit is not None and u.resplit < GRID_SPLITS_OTHERS]
    return [u for u in us if u.seed in SEEDS[:GRID_SEEDS_OTHERS]]


def _data(spec: TaskSpec, split: str, model: Path, validation: bool, resplit: int | None = None) -> Data:
    if resplit is None:
        return load(spec.dataset, model, split, validation=validation, adapt=spec.adapt)
    return resplit_data(
        load(spec.dataset, model, split, validation=False, adapt=spec.adapt), resplit, validation
    )


def resplit_data(d: Data, r: int, validation: bool) -> Data:
    """Split r of d's fine-tuning and held-out samples pooled: a seeded, class-stratified draw
    holding out as many of each class as d's held-out part; validation=True: the fine-tuning
    part of it split as finetune.validation_split does (train / validation)."""
    assert d.x_float_train is not None and d.x_float_eval is not None
    x = np.concatenate([d.x_train, d.x_eval])
    xf = np.concatenate([d.x_float_train, d.x_float_eval])
    y = np.concatenate([d.y_train, d.y_eval])
    rng = np.random.default_rng(r)
    held = np.zeros(len(y), bool)
    for c in np.unique(y):
        k = int(np.sum(d.y_eval == c))
        held[rng.choice(np.flatnonzero(y == c), size=k, replace=False)] = True
    train, ev = np.flatnonzero(~held), np.flatnonzero(held)
    name = "held-out"
    if validation:
        t, v = validation_split(y[train])
        train, ev, name = train[t], train[v], "validation"
    return Data(d.model_name, d.model, d.graph, x[train], y[train], x[ev], y[ev], name, xf[train], xf[ev])


# ---------------------------------------------------------------- runs


def int8_accuracy(
    d: Data, board: Board, scheme: Scheme, lr: float, steps: int, seed: int, schedule: str = schedules.DEFAULT
) -> float:
    ct = compile_training(d.graph, scheme, board, d.model_name, link=False, lr=lr)
    return run(ct, d, steps, seed, schedule=schedule)[0]


def _deterministic_tf() -> bool:
    """TensorFlow with op determinism (zoo.import_tf) on one thread: a reduction's order then does not
    depend on the machine's core count, so another machine of the kind gets the same numbers.
    TensorFlow takes the setting only before it initialises (measured: the float backbones trained
    on all cores and on one thread differ); True if this process's TensorFlow is single-threaded.
    Where something else initialised it first (a test session) it keeps its setting: runs there
    are still deterministic on this machine; `invoke results` itself checks with
    single_threaded_tf() before anything loads TensorFlow."""
    from pytools.pretrain.zoo import import_tf

    tf = import_tf()
    tf.get_logger().setLevel("ERROR")  # nor Keras' retracing notes
    threading = tf.config.threading
    if threading.get_intra_op_parallelism_threads() == threading.get_inter_op_parallelism_threads() == 1:
        return True
    try:
        threading.set_intra_op_parallelism_threads(1)
        threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        return False
    return True


def single_threaded_tf() -> None:
    """`invoke results`' TensorFlow single-threaded, or a ToolError saying why it cannot be."""
    if not _deterministic_tf():
        raise ToolError(
            "TensorFlow was initialised in this process before `invoke results` could make it "
            "single-threaded, so its float runs would depend on the core count; call "
            "results.single_threaded_tf() before anything uses TensorFlow"
        )


def float_accuracy(
    keras_model: Callable[[], Any],
    d: Data,
    lr: float,
    steps: int,
    seed: int,
    schedule: str = schedules.DEFAULT,
) -> float:
    """The whole float network fine-tuned in TensorFlow: plain SGD, batch 1, the int8 path's
    sample order and lr schedule, sparse categorical cross-entropy on its softmax output.
    Deterministic: op determinism, keras.utils.set_random_seed(seed), one thread, no XLA."""
    _deterministic_tf()
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
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(), jit_compile=False)
    order = orders(len(d.y_train), steps, seed)
    assert d.x_float_train is not None and d.x_float_eval is not None
    if steps:
        model.fit(d.x_float_train[order], d.y_train[order], batch_size=1, epochs=1, shuffle=False, verbose=0)
    pred = np.argmax(model.predict(d.x_float_eval, verbose=0, batch_size=256), axis=-1)
    return float(np.mean(pred == d.y_eval))


def _sram(graph: Any, name: str, board: Board, scheme: Scheme) -> tuple[int | None, str]:
    ct = compile_training(graph, scheme, board, name, link=True)
    if ct.image is None:
        total = ct.base.regions["RAM"].used + ct.compiled.arena if ct.base else 0
        return None, f"does not fit {board.name}: {total:,} B of {board.memory.ram_size:,}"
    return ct.image.regions["RAM"].used, ""


@dataclass(frozen=True)
class Job:
    """One fine-tuning run (or, steps0, the pretrained model's accuracy) of a task's unit."""

    task: str
    row: int  # the row's index in the task's rows (-1: pretrained)
    unit: Unit
    validation: bool
    scheme: Scheme | None = field(compare=False, hash=False)  # None: the float cloud baseline
    lr: float = 0.0
    steps0: bool = False


# The pool's workers are spawned (a fork after TensorFlow has loaded can deadlock): each gets
# the context as picklable parts (a task spec's fields but its closures, which come back from
# TASKS by name) and keeps its own caches of data and compiled steps.
_CTX: dict[str, Any] = {}
_DATA: dict[tuple, Data] = {}
_STEPS: dict[tuple, Any] = {}
_CLOSURES = ("model", "keras", "missing")


def _context(specs: list[TaskSpec], board: Board, model_paths: dict[str, Path]) -> tuple:
    fields = [{k: v for k, v in s.__dict__.items() if k not in _CLOSURES} for s in specs]
    return fields, board, model_paths


def _set_context(fields: list[dict[str, Any]], board: Board, model_paths: dict[str, Path]) -> None:
    import dataclasses

    known = {t.name: t for t in TASKS}
    specs = [dataclasses.replace(known[f["name"]], **f) for f in fields]
    _CTX.update(specs={s.name: s for s in specs}, board=board, paths=model_paths)
    _DATA.clear()
    _STEPS.clear()


def _job_data(spec: TaskSpec, u: Unit, validation: bool) -> Data:
    key = (spec.name, u.split, u.resplit, validation)
    if key not in _DATA:
        _DATA[key] = _data(spec, u.split, _CTX["paths"][spec.name], validation, u.resplit)
    return _DATA[key]


def steps_of(spec: TaskSpec, d: Data) -> int:
    """A run's length: the task's epochs over the training part (capped at GRID_STEPS on the
    validation runs of the lr choice)."""
    return run_steps(spec, len(d.y_train), d.eval_name == "validation")


def run_steps(spec: TaskSpec, n_train: int, validation: bool) -> int:
    steps = spec.epochs * n_train
    return min(steps, GRID_STEPS) if validation else steps


def do_job(job: Job) -> float:
    spec: TaskSpec = _CTX["specs"][job.task]
    d = _job_data(spec, job.unit, job.validation)
    if job.scheme is None:
        return float_accuracy(spec.keras, d, job.lr, steps_of(spec, d), job.unit.seed, spec.schedule)
    key = (d.model_name, repr(job.scheme), job.lr)
    if key not in _STEPS:
        _STEPS[key] = compile_training(
            d.graph, job.scheme, _CTX["board"], d.model_name, link=False, lr=job.lr
        )
    if job.steps0:
        return run(_STEPS[key], d, 0, 0)[0]
    return run(_STEPS[key], d, steps_of(spec, d), job.unit.seed, schedule=spec.schedule)[0]


PLAN_CACHE = BUILD / "results" / "plans"
PLAN_SOURCES = ("pytools", "firmware", "datasets", "boards")  # the code a plan's result depends on
PLAN_FILES = (".toml", ".memory.txt", ".png", ".json")


def plan_key(spec: TaskSpec, board: Board, model: Path) -> str:
    """What a task's plan depends on: its fields, the board, the model's bytes and every source
    file of the planner, the compiler, the kernels and the data loaders (the plan is deterministic:
    no time limit, seeded runs). Any change there plans again."""
    import hashlib

    h = hashlib.sha256()
    h.update(repr(sorted((k, repr(v)) for k, v in spec.__dict__.items() if k not in _CLOSURES)).encode())
    h.update(repr(board).encode())
    h.update(model.read_bytes())
    for top in PLAN_SOURCES:
        for f in sorted((ROOT / top).rglob("*")):
            if f.is_file() and f.suffix in {".py", ".c", ".h", ".def", ".toml", ".ld", ".s", ".S"}:
                h.update(str(f.relative_to(ROOT)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:24]


def _do_plan(spec_name: str, out_dir: Path) -> tuple[Scheme, str]:
    """The task's `invoke plan`, or, when one was made with exactly the same inputs (plan_key),
    its files and summary reused from build/results/plans/."""
    import shutil

    from pytools.train.scheme import load_scheme

    spec: TaskSpec = _CTX["specs"][spec_name]
    cache = PLAN_CACHE / plan_key(spec, _CTX["board"], _CTX["paths"][spec.name])
    names = [f"{spec.name}-plan{ext}" for ext in PLAN_FILES]
    if (cache / "summary.txt").is_file() and all((cache / n).is_file() for n in names):
        for n in names:
            shutil.copyfile(cache / n, out_dir / n)
        summary = (cache / "summary.txt").read_text() + " (reused: planned earlier with identical inputs)"
        return load_scheme(str(out_dir / names[0])), summary
    scheme, summary = _plan_now(spec, out_dir)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copyfile(out_dir / n, tmp / n)
    (tmp / "summary.txt").write_text(summary)
    if not cache.exists():
        os.replace(tmp, cache)
    else:
        shutil.rmtree(tmp)
    return scheme, summary


def _plan_now(spec: TaskSpec, out_dir: Path) -> tuple[Scheme, str]:
    split = spec.plan_split or spec.splits[0]
    p = plan(
        _CTX["board"],
        spec.dataset,
        spec.budget,
        model=_CTX["paths"][spec.name],
        out=out_dir / f"{spec.name}-plan.toml",
        lr=spec.lr,
        steps=spec.plan_steps,
        seeds=spec.plan_seeds,
        split=split,
        progress=False,
        log=False,
        adapt=spec.adapt,
        max_seconds=spec.plan_seconds,
    )
    summary = (
        f"`invoke plan` under {spec.budget // 1024} KB (on the validation part of split `{split}`): "
        f"{p.scheme.describe()} "
        f"({p.memory:,} B; {p.analysis.runs} analysis runs, {p.result.compiles} schemes "
        f"compiled, {p.seconds['total']:.0f} s)"
    )
    return p.scheme, summary


def _plan_job(args: tuple[str, Path]) -> tuple[Scheme, str]:
    return _do_plan(*args)


class Pool:
    """Runs jobs on `workers` spawned processes (in this process when workers == 1), results in
    the jobs' order, with a progress bar."""

    def __init__(self, workers: int, progress: bool, context: tuple) -> None:
        self.progress = progress
        self.pool = None
        _set_context(*context)
        if workers > 1:
            import multiprocessing

            self.pool = multiprocessing.get_context("spawn").Pool(workers, _set_context, context)

    def map(
        self,
        fn: Callable[[Any], Any],
        jobs: list[Any],
        desc: str,
        cost: Callable[[Any], float] | None = None,
    ) -> list[Any]:
        """cost: a job's estimated seconds; the jobs then start longest first, so that a phase
        does not end with one core idle while the other finishes a long job started last."""
        bar = tqdm(total=len(jobs), desc=desc, disable=not self.progress, unit="run", leave=False)
        out: list[Any] = [None] * len(jobs)
        order = list(range(len(jobs)))
        if cost is not None:
            order.sort(key=lambda i: -cost(jobs[i]))
        if self.pool is None:
            for i in order:
                out[i] = fn(jobs[i])
                bar.update()
        else:
            for i, r in self.pool.imap_unordered(_indexed, [(fn, i, jobs[i]) for i in order]):
                out[i] = r
                bar.update()
        bar.close()
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()


def _indexed(args: tuple[Callable[[Any], Any], int, Any]) -> tuple[int, Any]:
    fn, i, job = args
    return i, fn(job)


@dataclass
class TaskResult:
    spec: TaskSpec
    rows: list[Row]
    units: list[Unit]
    pretrained: dict[str, float]  # replicate -> accuracy
    held_out: dict[str, int]  # split (or "split r") -> held-out samples
    plan_summary: str
    seconds: float
    section: str = ""  # its Markdown section, as written (a partial rerun keeps it verbatim)


def _row_plan(spec: TaskSpec, ours: Scheme, n: int) -> list[tuple[str, Scheme | None]]:
    return [
        (CLOUD, None),
        ("int8 classifier only", parse_scheme_text("bias=1,-1=1")),
        ("int8 biases only", Scheme(n)),
        ("int8 sparse, no QAS", Scheme(ours.bias_layers, dict(ours.weights), qas=False)),
        (OURS, ours),
        ("int8 full update", Scheme(n, {-i: 1.0 for i in range(1, n + 1)})),
    ]


def _factors(spec: TaskSpec, scheme: Scheme | None) -> tuple[float, ...]:
    if scheme is None:
        return CLOUD_LR_FACTORS
    if not scheme.qas:
        return NO_QAS_LR_FACTORS
    return LR_FACTORS if spec.lr_grid else (1.0,)


def grid_jobs(spec: TaskSpec, k: int, label: str, scheme: Scheme | None) -> list[Job]:
    """Row k's learning-rate grid: each factor's lr on each of the row's grid units (none
    without a grid)."""
    fs = _factors(spec, scheme)
    if len(fs) < 2:
        return []
    return [Job(spec.name, k, u, True, scheme, f * spec.lr) for f in fs for u in _grid_units(spec, label)]


def pretrained_jobs(spec: TaskSpec) -> list[Job]:
    """The backbone's held-out accuracy before fine-tuning: once per split (or resplit)."""
    us = units(spec)
    return [
        Job(spec.name, -1, u, False, Scheme(1), spec.lr, steps0=True)
        for u in us
        if u.seed == us[0].seed or spec.resplits
    ]


def held_jobs(spec: TaskSpec, k: int, scheme: Scheme | None, lrs: list[float]) -> list[Job]:
    """Row k's held-out runs: every unit at its chosen lr (and, for the verdict's rows, at the
    runner-up)."""
    return [Job(spec.name, k, u, False, scheme, lr) for lr in lrs for u in units(spec)]


def _grid_means(acc: dict[Job, float], task: str, row: int) -> dict[float, float]:
    """A row's grid: lr -> mean validation accuracy over the units it was run on."""
    grid: dict[float, list[float]] = {}
    for j, a in acc.items():
        if j.task == task and j.row == row and j.validation:
            grid.setdefault(j.lr, []).append(a)
    return {lr: float(np.mean(v)) for lr, v in grid.items()}


def _ranked(grid: dict[float, float], base: float) -> list[float]:
    """The grid's lrs, best mean validation accuracy first; ties to the lr nearer the task's."""
    return sorted(grid, key=lambda k: (-round(grid[k], 12), abs(np.log(k / base)), k))


def run_tasks(
    specs: list[TaskSpec],
    board: Board,
    progress: bool = True,
    out_dir: Path = OUT_DIR,
    workers: int = WORKERS,
) -> list[TaskResult]:
    """Every task's rows, all tasks' runs of one phase (plans; the lr grids; held-out runs) in
    one pool so both cores stay busy."""
    t0 = time.monotonic()
    paths: dict[str, Path] = {}
    n_ops: dict[str, int] = {}
    graphs: dict[str, Any] = {}
    names: dict[str, str] = {}
    # TensorFlow's settings before anything loads it: a backbone not yet cached is built
    # with TensorFlow by spec.model() (a fresh clone's digits CNN).
    _deterministic_tf()
    for spec in specs:
        name, blob = spec.model()
        paths[spec.name] = BUILD / "results" / f"{name}.tflite"
        paths[spec.name].parent.mkdir(parents=True, exist_ok=True)
        if not paths[spec.name].exists() or paths[spec.name].read_bytes() != blob:
            paths[spec.name].write_bytes(blob)
        spec.keras()  # the float weights built and cached here, once, not by each worker
        graphs[spec.name] = import_tflite(blob, name)
        names[spec.name] = name
        n_ops[spec.name] = len(trainable_ops(graphs[spec.name]))
    out_dir.mkdir(parents=True, exist_ok=True)
    work = WorkModel(specs)
    cost = work.job_seconds
    # The firmware and the host twin built here, once, before any worker needs them: two plan
    # workers used to compile the same 102 C files into the same folder at once.
    first = specs[0]
    _sram(graphs[first.name], names[first.name], board, parse_scheme_text("bias=1,-1=1"))
    _set_context(*_context(specs, board, paths))
    do_job(pretrained_jobs(first)[0])
    pool = Pool(workers, progress, _context(specs, board, paths))
    acc: dict[Job, float] = {}
    try:
        planned = pool.map(
            _plan_job, [(s.name, out_dir) for s in specs], "plans", lambda a: work.plan_seconds(a[0])
        )
        rows: dict[str, list[tuple[Row, Scheme | None]]] = {}
        grid: list[Job] = []
        for spec, (ours, _) in zip(specs, planned, strict=True):
            rows[spec.name] = []
            for k, (label, scheme) in enumerate(_row_plan(spec, ours, n_ops[spec.name])):
                row = Row(label, scheme.describe() if scheme else "all layers, float32")
                rows[spec.name].append((row, scheme))
                if scheme is not None:
                    row.sram, why = _sram(graphs[spec.name], names[spec.name], board, scheme)
                    if row.sram is None and label == "int8 full update":
                        row.note = why
                        continue
                grid += grid_jobs(spec, k, label, scheme)
        pre_jobs = [j for s in specs for j in pretrained_jobs(s)]
        got = pool.map(do_job, grid + pre_jobs, "lr grids", cost)
        acc.update(zip(grid + pre_jobs, got, strict=True))
        for round_ in range(GRID_EXTEND):
            # A best lr at the grid's edge may not be the best: one more step beyond it.
            more = []
            for spec in specs:
                for k, (row, scheme) in enumerate(rows[spec.name]):
                    means = _grid_means(acc, spec.name, k)
                    if len(means) < 2:
                        continue
                    best, tried = _ranked(means, spec.lr)[0], sorted(means)
                    fs = _factors(spec, scheme)
                    ratio = fs[-1] / fs[-2]
                    new = best * ratio if best == tried[-1] else best / ratio if best == tried[0] else None
                    if new is not None:
                        more += [Job(spec.name, k, u, True, scheme, new) for u in _grid_units(spec, row.name)]
            if not more:
                break
            got = pool.map(do_job, more, f"lr grids, edges {round_ + 1}", cost)
            acc.update(zip(more, got, strict=True))
        held: list[Job] = []
        for spec in specs:
            for k, (row, scheme) in enumerate(rows[spec.name]):
                if row.note:
                    continue
                means = _grid_means(acc, spec.name, k)
                if means:
                    ranked = _ranked(means, spec.lr)
                    row.grid = {repr(lr): means[lr] for lr in sorted(means)}
                    row.lr = ranked[0]
                    if row.name in VERDICT_ROWS:
                        row.runner_up = ranked[1]
                else:
                    row.lr = spec.lr
                lrs = [row.lr] + ([row.runner_up] if row.runner_up is not None else [])
                held += held_jobs(spec, k, scheme, lrs)
        got = pool.map(do_job, held, "held-out runs", cost)
        acc.update(zip(held, got, strict=True))
    finally:
        pool.close()
    out = []
    for spec, (_, summary) in zip(specs, planned, strict=True):
        us = units(spec)
        for k, (row, _) in enumerate(rows[spec.name]):
            if row.note:
                continue
            row.accuracy = [acc[Job(spec.name, k, u, False, None, row.lr)] for u in us]
            if row.runner_up is not None:
                row.runner_up_accuracy = [acc[Job(spec.name, k, u, False, None, row.runner_up)] for u in us]
        pre: dict[str, list[float]] = {}
        for j in pre_jobs:
            if j.task == spec.name:
                pre.setdefault(replicate(spec, j.unit), []).append(acc[j])
        out.append(
            TaskResult(
                spec,
                [r for r, _ in rows[spec.name]],
                us,
                {key: float(np.mean(v)) for key, v in pre.items()},
                _held_out_sizes(spec),
                summary,
                0.0,
            )
        )
    seconds = time.monotonic() - t0
    for tr in out:  # the phases are shared: each task's time is its share of the runs
        tr.seconds = seconds / len(out)
    return out


def _held_out_sizes(spec: TaskSpec) -> dict[str, int]:
    if spec.resplits:
        n = len(datasets.load_split(spec.dataset, spec.splits[0]).held_out)
        return {f"split {r}": n for r in range(spec.resplits)}
    return {s: len(datasets.load_split(spec.dataset, s).held_out) for s in spec.splits}


def run_task(
    spec: TaskSpec, board: Board, progress: bool = True, out_dir: Path = OUT_DIR, workers: int = WORKERS
) -> TaskResult:
    return run_tasks([spec], board, progress, out_dir, workers)[0]


# ---------------------------------------------------------------- the plan of work


@dataclass(frozen=True)
class Cost:
    """CPU seconds of the pieces of a run, for one model (one process, one core)."""

    int8_step: float  # one training step on the host twin
    int8_eval: float  # one sample's forward pass on the host twin
    compile: float  # compiling a step (link=False), as each int8 job and each planner candidate does
    float_step: float  # one Keras SGD step at batch 1 (model.fit)
    float_fixed: float  # a float run's model build and compile
    float_eval: float  # one sample's float prediction (batch 256)


# Measured 2026-12-06 with time.process_time() around single runs in one process (CPU time, not
# wall time: the shared machine was at load 3-7 on its 2 cores): 300-500 steps of ours' scheme
# on the host twin, and of the float model in TensorFlow, then a forward pass over 100-500
# samples, per model; two sessions, the larger figure of each kept (fashion_mbv2's float step
# measured 2.66 and 5.04 ms). A model not listed (a user's) is costed as the costliest one.
COSTS = {
    "digits_cnn": Cost(0.05e-3, 0.06e-3, 0.05, 1.68e-3, 0.16, 0.20e-3),
    "fashion_mbv2": Cost(2.16e-3, 1.46e-3, 0.08, 5.04e-3, 1.08, 0.69e-3),
    "hapt_cnn1d": Cost(0.44e-3, 0.29e-3, 0.01, 2.14e-3, 0.61, 0.20e-3),
}
SETUP_SECONDS = 60.0  # serial: imports, two spawned workers loading TensorFlow, weights, SRAM links
PLAN_COMPILES = 1000  # schemes a plan's search compiles, at most (fashion_mbv2 measured 998)
BUDGET_SECONDS = 30 * 60  # issue 18: the full `invoke results` on the 2-core sandbox


@dataclass(frozen=True)
class Work:
    """One line of the plan of work: a task's stage, its runs and their estimated CPU seconds."""

    task: str
    stage: str
    runs: int
    cpu_seconds: float
    longest: float  # the stage's costliest run, seconds


class WorkModel:
    """The runs a set of tasks makes, and their CPU cost from COSTS and the data sets' sizes
    (no model is trained): what `invoke results --dry-run` prints, and the pool's longest-first
    order."""

    def __init__(self, specs: list[TaskSpec]) -> None:
        self.specs = {s.name: s for s in specs}
        self._sizes: dict[tuple, tuple[int, int, int, int]] = {}
        self._models: dict[str, tuple[str, int]] = {}

    def model(self, spec: TaskSpec) -> tuple[str, int]:
        """(model name, trainable layers)."""
        if spec.name not in self._models:
            name, blob = spec.model()
            self._models[spec.name] = (name, len(trainable_ops(import_tflite(blob, name))))
        return self._models[spec.name]

    def cost(self, spec: TaskSpec) -> Cost:
        return COSTS.get(self.model(spec)[0], max(COSTS.values(), key=lambda c: c.int8_step))

    def sizes(self, spec: TaskSpec, split: str, resplit: bool) -> tuple[int, int, int, int]:
        """(training, held-out, validation-training, validation) samples of a unit."""
        key = (spec.dataset, split, resplit)
        if key not in self._sizes:
            ds = datasets.load_split(spec.dataset, split)
            y_train, n_held = ds.finetune.y, len(ds.held_out)
            if resplit:  # pooled, then as many of each class held out as the held-out part
                y_all = np.concatenate([ds.finetune.y, ds.held_out.y])
                cs = np.unique(y_all)
                n_train = {c: int(np.sum(y_all == c) - np.sum(ds.held_out.y == c)) for c in cs}
                y_train = np.concatenate([np.full(n_train[c], c) for c in cs])
            t, v = validation_split(y_train)
            self._sizes[key] = (len(y_train), n_held, len(t), len(v))
        return self._sizes[key]

    def job_seconds(self, job: Job) -> float:
        spec = self.specs[job.task]
        c = self.cost(spec)
        n_train, n_held, n_vtrain, n_val = self.sizes(spec, job.unit.split, job.unit.resplit is not None)
        steps = 0 if job.steps0 else run_steps(spec, n_vtrain if job.validation else n_train, job.validation)
        n_eval = n_val if job.validation else n_held
        if job.scheme is None:
            return c.float_fixed + steps * c.float_step + n_eval * c.float_eval
        return c.compile + steps * c.int8_step + n_eval * c.int8_eval

    def plan_seconds(self, task: str) -> float:
        """`invoke plan`'s runs (plan.run.fit_steps' count, an upper bound) and its search's compiles."""
        from pytools.plan.run import EVAL_LIMIT, FINALISTS

        spec = self.specs[task]
        c = self.cost(spec)
        n = self.model(spec)[1]
        n_val = self.sizes(spec, spec.plan_split or spec.splits[0], False)[3]
        runs = (n + 4 * (n - 1) + 1 + FINALISTS + 1) * len(spec.plan_seeds)
        per_run = c.compile + spec.plan_steps * c.int8_step + min(EVAL_LIMIT, n_val) * c.int8_eval
        return runs * per_run + PLAN_COMPILES * c.compile

    def plan_runs(self, task: str) -> int:
        from pytools.plan.run import FINALISTS

        spec = self.specs[task]
        n = self.model(spec)[1]
        return (n + 4 * (n - 1) + 1 + FINALISTS + 1) * len(spec.plan_seeds)


def plan_of_work(specs: list[TaskSpec]) -> list[Work]:
    """Every run `run_tasks(specs)` makes, per task and stage, counted from the same functions
    it uses (grid_jobs, pretrained_jobs, held_jobs), without running any. Where the count
    depends on results, the upper bound: every row has a runner-up-free grid edge to extend
    GRID_EXTEND times ("lr grid edges, at most") and the full update fits the board."""
    work = WorkModel(specs)
    out: list[Work] = []

    def add(task: str, stage: str, jobs: list[Job]) -> None:
        secs = [work.job_seconds(j) for j in jobs]
        out.append(Work(task, stage, len(jobs), float(sum(secs)), max(secs, default=0.0)))

    for spec in specs:
        p = work.plan_seconds(spec.name)
        out.append(Work(spec.name, "plan", work.plan_runs(spec.name), p, p))
        n = work.model(spec)[1]
        grid: list[Job] = []
        edges: list[Job] = []
        held: list[Job] = []
        for k, (label, scheme) in enumerate(_row_plan(spec, Scheme(1), n)):
            g = grid_jobs(spec, k, label, scheme)
            grid += g
            fs = _factors(spec, scheme)
            if g:
                top = max(fs) * spec.lr * (fs[-1] / fs[-2])
                edges += [
                    Job(spec.name, k, u, True, scheme, top * (fs[-1] / fs[-2]) ** r)
                    for r in range(GRID_EXTEND)
                    for u in _grid_units(spec, label)
                ]
            lrs = [spec.lr, 2 * spec.lr] if g and label in VERDICT_ROWS else [spec.lr]
            held += held_jobs(spec, k, scheme, lrs)
        add(spec.name, "pretrained", pretrained_jobs(spec))
        add(spec.name, "lr grid", grid)
        add(spec.name, "lr grid edges, at most", edges)
        add(spec.name, "held out", held)
    return out


def chosen_tasks(only: list[str] | None) -> list[TaskSpec]:
    chosen = [t for t in TASKS if not only or t.name in only]
    if only and len(chosen) != len(only):
        raise ToolError(f"unknown task in {only}; tasks: {', '.join(t.name for t in TASKS)}")
    return chosen


def dry_run_text(only: list[str] | None = None) -> str:
    """`invoke results --dry-run`: the plan of work of the tasks that can run here."""
    specs = chosen_tasks(only)
    runnable = [s for s in specs if not s.missing()]
    text = format_plan_of_work(plan_of_work(runnable)) if runnable else "nothing to run"
    skipped = [f"{s.name}: not run ({s.missing()})" for s in specs if s not in runnable]
    return "\n".join([*skipped, text])


def estimated_seconds(work: list[Work], workers: int = WORKERS) -> float:
    """Wall seconds on `workers` cores: the serial setup, then each phase (plans; grids and the
    pretrained runs; the edges; the held-out runs), all tasks' runs of a phase in one pool,
    longest first: list scheduling finishes a phase within its CPU seconds / workers plus
    (1 - 1 / workers) of its longest run (Graham's bound)."""
    phases = {
        "plan": ("plan",),
        "grid": ("lr grid", "pretrained"),
        "edges": ("lr grid edges, at most",),
        "held": ("held out",),
    }
    total = SETUP_SECONDS
    for stages in phases.values():
        ws = [w for w in work if w.stage in stages]
        longest = max((w.longest for w in ws), default=0.0)
        total += sum(w.cpu_seconds for w in ws) / workers + (1 - 1 / workers) * longest
    return total


def format_plan_of_work(work: list[Work], workers: int = WORKERS) -> str:
    lines = [f"{'task':<22} {'stage':<24} {'runs':>6} {'CPU s':>8}"]
    for w in work:
        lines.append(f"{w.task:<22} {w.stage:<24} {w.runs:>6} {w.cpu_seconds:>8.0f}")
    runs = sum(w.runs for w in work if w.stage != "plan")
    cpu = sum(w.cpu_seconds for w in work)
    est = estimated_seconds(work, workers)
    lines += [
        f"{'all':<22} {'fine-tuning runs':<24} {runs:>6} {cpu:>8.0f}",
        f"estimated: {est / 60:.1f} min on {workers} cores ({cpu / 60:.1f} CPU min + "
        f"{SETUP_SECONDS:.0f} s setup; budget {BUDGET_SECONDS / 60:.0f} min). CPU costs per step: COSTS in "
        "pytools/results.py; not counted: a first build of the firmware and the host twin, and pretraining "
        "backbones not yet in build/.",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- statistics


def per_replicate(tr: TaskResult, accs: list[float]) -> np.ndarray:
    """A row's accuracies (one per unit) averaged per replicate, in the units' order."""
    groups: dict[str, list[float]] = {}
    for u, a in zip(tr.units, accs, strict=True):
        groups.setdefault(replicate(tr.spec, u), []).append(a)
    return np.array([np.mean(v) for v in groups.values()])


def t_interval(x: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean of x (its replicates)."""
    from scipy import stats

    x = np.asarray(x, float)
    m = float(np.mean(x))
    if len(x) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * np.std(x, ddof=1) / np.sqrt(len(x)))
    return m, m - half, m + half


@dataclass
class Verdict:
    word: str  # "better", "within", "worse", "inconclusive"
    diff: tuple[float, float, float]  # ours - cloud, points: mean, low, high

    def text(self) -> str:
        m, lo, hi = self.diff
        what = {
            "better": "better (the whole interval above 0)",
            "within": f"within {MARGIN:g} point (the interval's low end above -{MARGIN:g}: target met)",
            "worse": f"**worse** (the whole interval below -{MARGIN:g}: target not met)",
            "behind": (
                f"**behind** (the whole interval below 0, but it spans -{MARGIN:g}: target not shown met)"
            ),
            "inconclusive": f"inconclusive (the interval spans -{MARGIN:g})",
        }[self.word]
        return f"{m:+.1f} points [{lo:+.1f}, {hi:+.1f}]: {what}"


# The verdict's words, as the table and each section say them.
ROBUST_TEXT = {
    "better": "better than the cloud",
    "within": f"within {MARGIN:g} point of the cloud",
    "worse": f"worse than the cloud by more than {MARGIN:g} point",
    "behind": f"behind the cloud (by more than 0, not shown to be within {MARGIN:g} point)",
    "inconclusive": "inconclusive",
}


def verdict(ours: list[float], cloud: list[float], tr: TaskResult) -> Verdict:
    """From the interval of the paired difference ours - cloud over the replicates (the same
    seeds, users or splits, the same sample orders), in points, against MARGIN."""
    d = 100 * (per_replicate(tr, ours) - per_replicate(tr, cloud))
    m, lo, hi = t_interval(d)
    if lo > 0:
        word = "better"
    elif hi < -MARGIN:
        word = "worse"
    elif lo >= -MARGIN:
        word = "within"
    elif hi < 0:
        word = "behind"
    else:
        word = "inconclusive"
    return Verdict(word, (m, lo, hi))


# What each verdict word claims: "better" (the interval above 0) also meets "within" (its low end
# at or above -MARGIN); "inconclusive" claims nothing.
# "worse" (the interval below -MARGIN) also meets "behind" (the interval below 0).
CLAIMS = {
    "better": ("better", "within"),
    "within": ("within",),
    "worse": ("worse", "behind"),
    "behind": ("behind",),
    "inconclusive": (),
}


def robust_word(words: list[str]) -> str:
    """The strongest claim every one of the verdicts makes (the chosen lrs and each single lr
    flipped to its runner-up): better, within, worse, behind, or inconclusive when they share none."""
    shared = set(CLAIMS["better"] + CLAIMS["worse"])
    for w in words:
        shared &= set(CLAIMS[w])
    return next((w for w in ("better", "within", "worse", "behind") if w in shared), "inconclusive")


def _row(tr: TaskResult, name: str) -> Row:
    return next(r for r in tr.rows if r.name == name)


def verdicts(tr: TaskResult) -> dict[str, Verdict]:
    """The verdict as chosen, and with each verdict row's lr flipped to its grid runner-up."""
    ours, cloud = _row(tr, OURS), _row(tr, CLOUD)
    out = {"chosen": verdict(ours.accuracy, cloud.accuracy, tr)}
    if ours.runner_up_accuracy:
        out[f"ours at its runner-up lr {ours.runner_up:g}"] = verdict(
            ours.runner_up_accuracy, cloud.accuracy, tr
        )
    if cloud.runner_up_accuracy:
        out[f"the cloud at its runner-up lr {cloud.runner_up:g}"] = verdict(
            ours.accuracy, cloud.runner_up_accuracy, tr
        )
    return out


# ---------------------------------------------------------------- the report


def _fmt_acc(tr: TaskResult, accs: list[float]) -> str:
    if not accs:
        return "—"
    m, lo, hi = t_interval(100 * per_replicate(tr, accs))
    return f"{m:.1f} [{max(lo, 0.0):.1f}, {min(hi, 100.0):.1f}]"  # an accuracy stays in [0, 100]


def _plot(tr: TaskResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r.name for r in tr.rows]
    cis = [t_interval(100 * per_replicate(tr, r.accuracy)) if r.accuracy else (np.nan,) * 3 for r in tr.rows]
    means = [c[0] for c in cis]
    errs = np.array([[c[0] - c[1], c[2] - c[0]] if np.isfinite(c[1]) else [0, 0] for c in cis]).T
    pre = 100 * np.mean(list(tr.pretrained.values()))
    fig, ax = plt.subplots(figsize=(9, 3.8))
    colors = ["grey", "#9ecae1", "#6baed6", "#fdae6b", "#e6550d", "#31a354"]
    ax.barh(range(len(labels))[::-1], means, xerr=errs, color=colors[: len(labels)], capsize=3)
    ax.axvline(pre, color="black", ls="--", lw=1, label=f"pretrained {pre:.1f}")
    ax.set_yticks(range(len(labels))[::-1], labels, fontsize=8)
    ax.set_xlabel(f"held-out accuracy (%), mean and 95 % t interval over {replicate_kind(tr.spec)}")
    ax.set_title(tr.spec.title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _held_text(tr: TaskResult) -> str:
    spec, sizes = tr.spec, tr.held_out
    if spec.resplits:
        n = next(iter(sizes.values()))
        ds = datasets.load_split(spec.dataset, spec.splits[0])
        total = len(ds.finetune) + len(ds.held_out)
        return (
            f"{n} samples held out by each of {spec.resplits} repeated stratified splits of all {total} "
            f"recordings of split `{spec.splits[0]}` (as many of each class as its own held-out part; "
            f"{n} samples alone resolve only {100 / n:.1f} points): {n * spec.resplits} held-out predictions "
            "per row and lr"
        )
    if len(sizes) > 1:
        return (
            f"{min(sizes.values())}-{max(sizes.values())} samples per user ({sum(sizes.values())} in all; "
            "each user's later recording)"
        )
    return f"{next(iter(sizes.values()))} samples"


def _task_md(tr: TaskResult) -> list[str]:
    spec = tr.spec
    lines = [f"## {spec.title}", ""]
    multi = len(spec.splits) > 1
    ds = datasets.load_split(spec.dataset, spec.splits[0])
    lines.append(
        f"Data: `{spec.dataset}`, split `{spec.splits[0]}`"
        + (f" (and {len(spec.splits) - 1} more, one run each)" if multi else "")
        + f": fine-tuning on {len(ds.finetune)} samples, {spec.epochs} epoch(s), batch 1; "
        f"held out: {_held_text(tr)}. {tr.plan_summary}."
    )
    lines += [
        "",
        f"Accuracy: mean and 95 % Student-t interval over {replicate_kind(spec)}"
        + ("; worst user: the lowest user mean" if multi else "")
        + ". lr: the grid value with the best mean validation accuracy (runner-up in brackets for the "
        "verdict's rows).",
        "",
    ]
    pre = tr.pretrained
    pre_txt = f"{100 * np.mean(list(pre.values())):.1f}" + (
        f" | {100 * min(pre.values()):.1f}" if multi else ""
    )
    head = "| | scheme | lr | held-out accuracy (%) | peak training SRAM |"
    if multi:
        head = "| | scheme | lr | mean over users (%) | worst user (%) | peak training SRAM |"
    lines += [head, "|---|---|---|---|---|" + ("---|" if multi else "")]
    lines.append(f"| pretrained | — | — | {pre_txt} | — |")
    for r in tr.rows:
        sram = f"{r.sram:,} B" if r.sram else ("— (cloud)" if r.name == CLOUD else r.note or "—")
        bold = "**" if r.name == OURS else ""
        lr = (
            "—"
            if not r.accuracy
            else f"{r.lr:g}" + (f" ({r.runner_up:g})" if r.runner_up is not None else "")
        )
        acc = _fmt_acc(tr, r.accuracy)
        cells = f"{bold}{acc}{bold}"
        if multi:
            worst = f"{100 * min(per_replicate(tr, r.accuracy)):.1f}" if r.accuracy else "—"
            cells += f" | {worst}"
        lines.append(f"| {bold}{r.name}{bold} | {r.scheme} | {lr} | {cells} | {sram} |")
    lines.append("")
    grids = [
        f"{r.name}: " + ", ".join(f"{float(lr):g} {100 * v:.1f}" for lr, v in r.grid.items())
        for r in tr.rows
        if r.grid
    ]
    if grids:
        lines += ["Validation grids (lr: mean validation accuracy %): " + "; ".join(grids) + ".", ""]
    lines += _verdict_md(tr)
    lines += [
        "",
        f"![{spec.name}](results/{spec.name}.png)",
        f"![{spec.name} plan](results/{spec.name}-plan.png)",
        "",
    ]
    return lines


def _mean(tr: TaskResult, name: str) -> float:
    r = _row(tr, name)
    return float(np.mean(per_replicate(tr, r.accuracy))) if r.accuracy else float("nan")


def _verdict_md(tr: TaskResult) -> list[str]:
    vs = verdicts(tr)
    chosen = vs.pop("chosen")
    ours = _mean(tr, OURS)
    word = robust_word([chosen.word] + [v.word for v in vs.values()])
    out = [
        f"**Verdict: {ROBUST_TEXT[word]}** "
        + (
            "(at the chosen lrs and with each lr flipped to its runner-up)."
            if vs
            else "(no runner-up: no lr grid)."
        )
    ]
    out.append(f"Ours against the cloud baseline (paired over {replicate_kind(tr.spec)}): {chosen.text()}.")
    flips = [f"{k}: {v.text()}" for k, v in vs.items()]
    changed = [k for k, v in vs.items() if v.word != chosen.word]
    if flips:
        out.append(
            "Each lr choice flipped to its runner-up: "
            + "; ".join(flips)
            + ". "
            + (
                f"The word at the chosen lrs ({chosen.word}) does not hold at {'; '.join(changed)}, so the "
                f"verdict is the claim they all make: {word}."
                if changed
                else "The same word each time."
            )
            + f" The epochs ({tr.spec.epochs}) and the sample orders are the task's, the same for every "
            "row, not chosen."
        )
    others = [
        ("classifier only", "int8 classifier only"),
        ("biases only", "int8 biases only"),
        ("the same scheme without QAS", "int8 sparse, no QAS"),
    ]
    out.append(
        "Ours against "
        + ", ".join(f"{k} {100 * (ours - _mean(tr, n)):+.1f}" for k, n in others)
        + " points (means)."
    )
    full = _row(tr, "int8 full update")
    if full.accuracy:
        out.append(
            "The int8 full update (no memory budget) against the cloud baseline: "
            f"{verdict(full.accuracy, _row(tr, CLOUD).accuracy, tr).text()}."
        )
    return out


def _summary(tr: TaskResult) -> dict[str, Any]:
    """The figures the README quotes, from the same rows as the section."""
    cols = {"cloud": CLOUD, "classifier": "int8 classifier only", "biases": "int8 biases only", "ours": OURS}
    out: dict[str, Any] = {k: _fmt_acc(tr, _row(tr, n).accuracy) for k, n in cols.items()}
    v = verdicts(tr)
    out["verdict"] = ROBUST_TEXT[robust_word([x.word for x in v.values()])]
    out["chosen"] = v["chosen"].text()
    out["robust"] = all(x.word == v["chosen"].word for x in v.values())
    return out


README = ROOT / "README.md"
README_BEGIN = "<!-- invoke results: begin (generated from docs/results/*.json; do not edit) -->"
README_END = "<!-- invoke results: end -->"


def readme_table(results: list[TaskResult]) -> str:
    lines = [
        README_BEGIN,
        "| task | cloud float32 | int8 classifier only | int8 biases only | ours (planned sparse + QAS) "
        "| ours - cloud at the chosen lrs, points [95 %] | verdict (holds with each lr at its runner-up) |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for tr in results:
        s = _summary(tr)
        lines.append(
            f"| {tr.spec.title} | {s['cloud']} | {s['classifier']} | {s['biases']} | **{s['ours']}** | "
            f"{s['chosen'].replace('**', '')} | {s['verdict']} |"
        )
    lines.append(README_END)
    return "\n".join(lines)


def update_readme(results: list[TaskResult], readme: Path = README) -> None:
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ToolError(
            f"{readme} lacks the markers {README_BEGIN!r} ... {README_END!r} around the results table: "
            "put them back where the table goes"
        )
    a = text.index(README_BEGIN)
    b = text.index(README_END) + len(README_END)
    readme.write_text(text[:a] + readme_table(results) + text[b:])


def _to_json(tr: TaskResult) -> str:
    return (
        json.dumps(
            {
                "units": [u.__dict__ for u in tr.units],
                "pretrained": tr.pretrained,
                "held_out": tr.held_out,
                "rows": [{**r.__dict__} for r in tr.rows],
                "seconds": tr.seconds,
                "plan_summary": tr.plan_summary,
                "section": tr.section,
            },
            indent=1,
        )
        + "\n"
    )


def write(
    results: list[TaskResult],
    skipped: list[tuple[TaskSpec, str]],
    seconds: float,
    command: str,
    md: Path = OUT_MD,
    out_dir: Path = OUT_DIR,
    kept: list[str] | None = None,
    cpu_seconds: float | None = None,
    readme: Path | None = README,
    generated: str | None = None,
) -> None:
    """kept: tasks whose results come from an earlier run's JSON: their sections are copied
    verbatim (byte for byte), their files are not rewritten. generated: the report's provenance
    sentence when it is not this run's (render)."""
    kept = kept or []
    out_dir.mkdir(parents=True, exist_ok=True)
    for tr in results:
        if tr.spec.name in kept:
            continue
        tr.section = "\n".join(_task_md(tr))
        if generated is None:  # a render changes the words, not the runs the plots show
            _plot(tr, out_dir / f"{tr.spec.name}.png")
        (out_dir / f"{tr.spec.name}.json").write_text(_to_json(tr))
    cpu = ""
    if cpu_seconds is not None:
        cpu = f", {cpu_seconds / 60:.1f} min of CPU (user + sys, all processes)"
    if generated is None:
        generated = (
            f"Generated by `{command}` on {dt.date.today().isoformat()} in {seconds / 60:.1f} min{cpu} "
            f"(2-core sandbox, {WORKERS} worker processes); regenerate with the same command. "
            "Do not edit by hand."
        )
    lines = [
        "# Results: on-device int8 fine-tuning against float fine-tuning in the cloud",
        "",
        generated,
        *(
            [
                "",
                f"Tasks {', '.join(f'`{k}`' for k in kept)} were not run this time: their sections are "
                "an earlier run's, copied verbatim (docs/results/<task>.json); `invoke results` alone "
                "reruns every task.",
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
        "epochs, sample orders and lr schedule, BatchNorm frozen (in inference mode: batch-1 statistics "
        "wreck it); deterministic: TensorFlow's op determinism, `keras.utils.set_random_seed(seed)`, one "
        "thread, no XLA, oneDNN off;",
        "- **int8 classifier only**: the last layer's weights and bias (`bias=1,-1=1`);",
        "- **int8 biases only**: the biases of every trainable layer;",
        "- **int8 sparse, no QAS**: our scheme with `qas = false` (plain SGD on the integers);",
        "- **int8 sparse + QAS (ours)**: the scheme `invoke plan` chooses under the task's memory budget "
        "(its analysis plot and scheme file are in docs/results/);",
        "- **int8 full update**: every bias and every weight, where the step fits the board.",
        "",
        "Every int8 row runs on the host twin: the board's C kernels and plan, bit-identical with the "
        "board for the same plan, seed and sample order. Peak training SRAM is the linker's RAM total "
        "for the firmware with the training step linked in: its static RAM (stacks, link buffers, "
        "runtime) plus the planned training arena (activations, saved activations, masks, gradients, "
        "trainable state), as `invoke compile` reports it.",
        "",
        f"Seeds and intervals: every row is run with the sample-order seeds {', '.join(map(str, SEEDS))} on "
        "the whole fine-tuning part, and scored on the held-out part (writers, users or recordings "
        "nobody trains on; each task states its size). Where a task's held-out part is too small to "
        "resolve the differences claimed (BasicMotions: 40 samples, 2.5 points each), the runs are "
        "instead repeated stratified splits of all its recordings, split r trained with seed r. A row's "
        f"figure is the mean and the {CONFIDENCE:.0%} Student-t interval (t quantile with n - 1 degrees of "
        "freedom times the standard error) over the task's replicates: its seeds; its users (each the "
        "mean of its seeds); its splits. An accuracy interval reaching past 100 % (or below 0 %) is "
        "shown cut at 100 (or 0): the t interval assumes a spread that accuracies near 100 % do not have.",
        "",
        f"Verdict: ours against the cloud baseline is the mean and {CONFIDENCE:.0%} t interval of the "
        "paired difference over the same replicates (both rows see the same seeds, splits and sample "
        f"orders): **better** if the whole interval is above 0, **within** {MARGIN:g} point (the target) "
        f"if its low end is at or above -{MARGIN:g}, **worse** if the whole interval is below -{MARGIN:g}, "
        f"**behind** if the whole interval is below 0 but spans -{MARGIN:g}, **inconclusive** if it spans "
        f"both -{MARGIN:g} and 0. This is computed three times: at the chosen lrs, with "
        "ours' lr flipped to its grid runner-up (by mean validation accuracy), and with the cloud's "
        "flipped to its runner-up. A task's verdict is the strongest claim all three make (better also "
        "meets within; worse also meets behind); where they share none it is **inconclusive**, and the "
        "section says which flip breaks "
        "it. So no verdict changes when any single lr choice moves to its runner-up. The epochs and "
        "the sample orders are fixed per task, the same for every row, not chosen.",
        "",
        "Learning rates: chosen on validation data only: each unit's fine-tuning part split 70/30 "
        "(class-stratified, `pytools/plan/finetune.py` validation_split), trained on the 70 % (at most "
        f"{GRID_STEPS} steps) and scored on the 30 %; a row's lr is the grid value with the best MEAN "
        "validation accuracy over the same seeds (or splits, or users and seeds) as its table figure "
        f"(the rows outside the verdict, whose lr no claim rests on: over the first {GRID_SEEDS_OTHERS} "
        f"seed(s) of each split, or the first {GRID_SPLITS_OTHERS} repeated splits, to save CPU time); a "
        f"best lr at a grid's edge gets up to {GRID_EXTEND} more grid steps beyond it. "
        f"Grids: the task lr times {', '.join(f'{f:.3g}' for f in LR_FACTORS)}; the cloud baseline the "
        f"task lr times {', '.join(f'{f:.3g}' for f in CLOUD_LR_FACTORS)}; the row without QAS the task "
        f"lr times {', '.join(f'{f:g}' for f in NO_QAS_LR_FACTORS)} (without QAS the right lr differs per "
        "layer by s_W^2, which no single lr fixes: that is what QAS is for). `invoke plan` also sees only "
        "the validation part of its split (BasicMotions: the archive's TRAIN recordings, some of which "
        "the repeated splits then hold out: the scheme, not the scores, was chosen on them).",
        "",
        "Learning-rate schedule: every row, the cloud baseline included, decays its lr linearly "
        "from the chosen lr to 0 over the run (`pytools/train/schedule.py`; Keras' PolynomialDecay "
        "with power 1 in the cloud). On the board the host sends each step's factor with its TRAIN.",
        "",
    ]
    for tr in results:
        lines += tr.section.split("\n")
    if FLEET_SECTION.is_file():
        lines += [
            *FLEET_SECTION.read_text().rstrip().split("\n"),
            "",
            f"(This section is {FLEET_SECTION.relative_to(ROOT)}, copied verbatim: the fleet's own runs "
            "make it, with the commands above, not `invoke results`.)",
            "",
        ]
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
    if readme is not None:
        update_readme(results, readme)


def load_result(spec: TaskSpec, out_dir: Path = OUT_DIR) -> TaskResult | None:
    """A task's result as an earlier run wrote it (docs/results/<task>.json); None if none, or
    if it predates the per-unit format (then the task must be rerun)."""
    path = out_dir / f"{spec.name}.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    if "units" not in d or not d.get("section"):
        return None
    return TaskResult(
        spec,
        [Row(**r) for r in d["rows"]],
        [Unit(**u) for u in d["units"]],
        d["pretrained"],
        d["held_out"],
        d["plan_summary"],
        d["seconds"],
        d["section"],
    )


def render(md: Path = OUT_MD, out_dir: Path = OUT_DIR, readme: Path | None = README) -> list[TaskResult]:
    """`invoke results --render`: rewrites RESULTS.md, the README's table and each task's section
    from the runs stored in docs/results/*.json, running nothing: for a change to how results are
    reported (verdict rules, wording), not to what was measured. The provenance line says both
    the run the figures come from and the render."""
    loaded = [(spec, load_result(spec, out_dir)) for spec in TASKS]
    missing = [spec.name for spec, tr in loaded if tr is None]
    if missing:
        raise ToolError(
            f"no stored run of {', '.join(missing)} in {out_dir}: `invoke results` (or "
            f"`invoke results --tasks {','.join(missing)}`) runs them; --render only rewrites the report"
        )
    earlier = md.read_text().splitlines() if md.is_file() else []
    run_line = next((line for line in earlier if line.startswith(("Generated by", "Figures from"))), "")
    if run_line.startswith("Figures from"):  # an earlier render: keep the run it names
        run_line = run_line.split(" Rendered by", 1)[0].removeprefix("Figures from ").rstrip(".")
    else:
        run_line = run_line.split("; regenerate", 1)[0].removeprefix("Generated by ")
    generated = (
        f"Figures from {run_line or 'an earlier `invoke results`'}. Rendered by `invoke results --render` on "
        f"{dt.date.today().isoformat()} from the runs stored in docs/results/*.json (the report's "
        "rules and words as the code has them now; nothing rerun). Regenerate everything with "
        "`invoke results`. Do not edit by hand."
    )
    results = [tr for _, tr in loaded if tr is not None]
    write(
        results,
        [],
        0.0,
        "invoke results --render",
        md=md,
        out_dir=out_dir,
        readme=readme,
        generated=generated,
    )
    return results


def _cpu_seconds() -> float:
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def run_all(
    board: Board, only: list[str] | None = None, progress: bool = True
) -> tuple[list[TaskResult], float]:
    """Runs every task (or those in `only`) and writes RESULTS.md. With `only`, the other tasks
    keep the sections an earlier run wrote (docs/results/<task>.json), byte for byte, said so in
    the report, so the table stays whole."""
    t0, c0 = time.monotonic(), _cpu_seconds()
    chosen = chosen_tasks(only)
    skipped: list[tuple[TaskSpec, str]] = []
    runnable = []
    for spec in chosen:
        why = spec.missing()
        if why:
            print(f"{spec.name}: not run ({why})")
            skipped.append((spec, why))
        else:
            runnable.append(spec)
    results = run_tasks(runnable, board, progress) if runnable else []
    if results:  # the runs, kept before anything can fail in the report (build/, not committed)
        import pickle

        (BUILD / "results" / "last_run.pkl").write_bytes(
            pickle.dumps(
                [(tr.spec.name, {k: v for k, v in tr.__dict__.items() if k != "spec"}) for tr in results]
            )
        )
    for tr in results:
        print(f"{tr.spec.name}:")
        for r in tr.rows:
            print(f"  {r.name:<42} lr {r.lr:<8g} {_fmt_acc(tr, r.accuracy):>20}  {r.sram or r.note or '-'}")
        print(f"  verdict: {_summary(tr)['verdict']} (at the chosen lrs: {verdicts(tr)['chosen'].text()})")
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
    write(results, skipped, seconds, cmd, kept=kept, cpu_seconds=_cpu_seconds() - c0)
    return results, seconds
