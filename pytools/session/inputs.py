"""A session's inputs: the data set, the model, the scheme, and the training step compiled for
the board (prepare()), all checked before any board is touched."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import datasets
from datasets import files
from pytools.boards import Board
from pytools.build.builder import FirmwareImage
from pytools.errors import ToolError
from pytools.model.ir import Graph, ModelError
from pytools.model.tflite_import import import_tflite
from pytools.paths import ROOT
from pytools.progress import progress
from pytools.session.lr_sweep import sweep_lr
from pytools.session.plots import require_matplotlib
from pytools.train import schedule as schedules
from pytools.train.compile_train import CompiledTraining, check_fits, compile_training, report
from pytools.train.losses import LOSSES, Head, choose, label_classes
from pytools.train.new_head import replace_head
from pytools.train.scheme import Scheme, load_scheme, named_scheme

DEFAULT_SCHEME = "bias=3,-1=1,-2=0.5"
DEFAULT_DATASET = "digits"
DEFAULT_LR = 0.01  # the Python API's; `invoke train` without --lr sweeps (lr_sweep.py)
SCHEMES = ROOT / "schemes"
# Default epochs: about this many training steps in all, in 1 to MAX_DEFAULT_EPOCHS passes
# (digits' 381 fine-tuning samples: 3 epochs; HAPT's 1,945: 1; one HAPT user's 215: 5).
DEFAULT_STEPS = 1000
MAX_DEFAULT_EPOCHS = 5


def default_split(dataset: str) -> str:
    """A built-in data set's default split: the first it lists (datasets/<name>.py SPLITS)."""
    return datasets.module(dataset).SPLITS[0]


def default_epochs(finetune_samples: int) -> int:
    """Epochs when none are given: about DEFAULT_STEPS steps, at least 1, at most MAX_DEFAULT_EPOCHS."""
    return max(1, min(MAX_DEFAULT_EPOCHS, math.ceil(DEFAULT_STEPS / max(1, finetune_samples))))


def default_model(dataset: str) -> tuple[bytes, str, str]:
    """The pretrained model for a data set: (bytes, name, where it comes from). digits: the
    small CNN pretrained on digits 0-4 (built once); any other data set: the backbone in
    models/ pretrained on its pretraining part (pytools/pretrain/backbones.py), if one is."""
    datasets.module(dataset)  # an unknown name is said as such (a DataError listing the known ones)
    if dataset == "digits":
        # The builder lives with the tests (it trains with TensorFlow once, then is cached).
        from pytools.pretrain import digits as digits_model

        data = digits_model.pretrained_model()
        where = f"pretrained on digits 0-4 of the first 7 writers, cached at {digits_model.model_path()}"
        return data, digits_model.NAME, where
    from pytools.pretrain.backbones import BACKBONES, model_path

    for name, spec in BACKBONES.items():
        path = model_path(name)
        if spec.dataset == dataset and path.is_file():
            where = f"{path}, pretrained on the '{spec.split}' split's pretraining part of {dataset}"
            return path.read_bytes(), name, where
    raise ToolError(f"there is no pretrained model for the dataset '{dataset}': give one with --model")


def load_model(model: Path | None, dataset: str) -> tuple[bytes, str, str]:
    if model is None:
        if is_user_data(dataset):
            raise ToolError(
                f"--dataset {dataset} is your own data: give the model to fine-tune on it with --model "
                "(an int8 .tflite classifier whose input takes one sample)"
            )
        return default_model(dataset)
    path = Path(model)
    if not path.is_file():
        raise ToolError(f"no model at {path}")
    return path.read_bytes(), path.stem, str(path)


def resolve_scheme(spec: str) -> Scheme:
    """A scheme: inline (bias=3,-1=1), a .toml file, or the name of one in schemes/."""
    spec = named_scheme(spec, SCHEMES)
    try:
        return load_scheme(spec)
    except ToolError as e:
        known = ", ".join(sorted(p.stem for p in SCHEMES.glob("*.toml")))
        raise ToolError(
            f"bad scheme: {e}. A scheme is inline (e.g. {DEFAULT_SCHEME}: biases of the last 3 "
            f"layers, all of layer -1, half of layer -2), a .toml file, or one of schemes/: {known}"
        ) from e


def check_input(graph: Graph, sample_shape: tuple[int, ...], source: str) -> None:
    """Refuses a model whose input does not take this data set's samples."""
    inp = graph.tensor(graph.inputs[0])
    if int(np.prod(inp.shape)) != int(np.prod(sample_shape)):
        raise ModelError(
            f"{source} takes inputs of shape {inp.shape}; the data set's samples are {sample_shape}"
        )
    if inp.dtype != "float32" and inp.quant is None:
        raise ModelError(f"{source}: its {inp.dtype} input has no quantization to convert samples with")


def check_classifier(
    graph: Graph, classes: int, sample_shape: tuple[int, ...], source: str, fewer: bool = False
) -> None:
    """Refuses a model that is not a SOFTMAX classifier of this data set's samples and classes
    (the planner's check, pytools/plan/finetune.py; a session takes any loss: check_model).
    fewer: the data set may have fewer classes than the model has outputs (the user's own
    data: it trains on the first K outputs, labels 0 .. K-1)."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelError(
            f"{source} has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
            "a training session needs a classifier with one input and one output"
        )
    producer = {t: op for op in graph.ops for t in op.outputs}
    last = producer.get(graph.outputs[0])
    if last is not None and last.kind == "DEQUANTIZE":
        last = producer.get(last.inputs[0])
    if last is None or last.kind != "SOFTMAX":
        kind = last.kind if last is not None else "no operator"
        raise ModelError(
            f"{source} is not a classifier: its output comes from {kind}, not SOFTMAX "
            "(a training session needs class probabilities to compute a cross-entropy loss)"
        )
    out = graph.tensor(graph.outputs[0])
    outputs = int(np.prod(out.shape))
    if outputs != classes and not (fewer and classes <= outputs):
        raise ModelError(
            f"{source} outputs {out.shape}: {int(np.prod(out.shape))} classes, the data set has {classes}"
        )
    check_input(graph, sample_shape, source)


def check_model(
    graph: Graph, head: Head, classes: int, sample_shape: tuple[int, ...], source: str, fewer: bool = False
) -> None:
    """Refuses a model whose loss (head, pytools/train/losses.py choose()) does not fit this data
    set's samples and labels, saying what would. fewer: the data set may have fewer classes
    than the model has outputs (the user's own data: it trains on the first K, labels 0 .. K-1).

    ce: the data set's classes are the model's outputs; bce: one output takes labels 0 and 1
    (several outputs: one-vs-rest, a label per output); mse on an autoencoder: the labels only
    mark held-out samples as normal (0) or anomalous (non-zero); a regression's mse needs a
    float32 target vector per sample, which a session does not stream."""
    t_out = graph.tensor(head.output)
    per_row = int(t_out.shape[-1]) if t_out.shape else 1
    new_head = f" (or --new-head {classes}: a new {classes}-class head)"
    if head.loss == "ce" and (classes > per_row or (classes != per_row and not fewer)):
        raise ModelError(
            f"{source} has {per_row} outputs (classes), the data set has {classes} classes: give a model "
            f"with {classes} outputs{new_head if head.layer >= 0 else ''}"
        )
    if head.loss == "bce" and per_row == 1 and classes > 2:
        raise ModelError(
            f"--loss bce on {source}'s single output is a binary classifier (labels 0 and 1); the data "
            f"set has {classes} classes: use --loss ce on a model with {classes} outputs"
            + (
                f" (this one: --new-head {classes} --loss ce)"
                if head.layer >= 0 and not _ends_in(graph, head, "LOGISTIC")
                else ""
            )
        )
    if head.loss == "bce" and per_row > 1 and classes > per_row:
        raise ModelError(
            f"--loss bce on {source}'s {per_row} outputs (one-vs-rest) takes labels 0 .. {per_row - 1}; "
            f"the data set has {classes} classes: give a model with {classes} outputs"
        )
    if head.loss == "mse" and head.target != "input":
        raise ModelError(
            f"--loss mse on {source}: its output ({per_row} values) is not the size of its input, so "
            "its targets are float32 vectors, one per sample (a regression); a training session "
            "streams class labels. Train a regression with pytools.train.trainer.Trainer (step(x, "
            "target)), or give an autoencoder (output the size of the input) or a classifier"
            + ("; one logit of a binary classifier: --loss bce (labels 0/1)" if per_row == 1 else "")
        )
    check_input(graph, sample_shape, source)


def _ends_in(graph: Graph, head: Head, kind: str) -> bool:
    """Whether the loss takes its input from an activation of this kind (SOFTMAX, LOGISTIC)."""
    return head.end < len(graph.ops) and graph.ops[head.end].kind == kind


def model_head(graph: Graph, loss: str, new_head: int, seed: int) -> tuple[Graph, Head, str | None]:
    """The model as a session trains it: with a new new_head-class head if asked (seeded by
    the session's seed, so `invoke pull` builds the same one), and the loss it takes (--loss,
    or what auto picks); and the new head's line (None: the model's own head)."""
    note = None
    if new_head:
        graph, note = replace_head(graph, new_head, seed=seed)
    try:
        head = choose(graph, loss)
    except ModelError as e:
        raise ModelError(
            f"{e}; losses are {', '.join(LOSSES)} (auto picks from the model's output)"
        ) from None
    return graph, head, note


def model_inputs(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Real-valued samples [n, ...] as the model's input tensor takes them, one per row."""
    t = graph.tensor(graph.inputs[0])
    if t.dtype != "float32" and np.asarray(x).dtype == np.dtype(t.dtype):
        return np.asarray(x).reshape(len(x), *t.shape)  # already in the model's input type
    x = np.asarray(x, dtype=np.float32).reshape(len(x), *t.shape)
    if t.dtype == "float32":
        return x
    return datasets.quantize(x, float(t.quant.scale[0]), int(t.quant.zero_point[0]), t.dtype)


def subset(y: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of the first `limit` samples, taking the classes in turn (all if limit is None)."""
    if limit is None or limit >= len(y):
        return np.arange(len(y))
    if limit < 1:
        raise ToolError(f"limit must be at least 1, got {limit}")
    rank = np.zeros(len(y), dtype=np.int64)  # how many of the same class come before
    seen: dict[int, int] = {}
    for i, c in enumerate(y.tolist()):
        rank[i] = seen.get(c, 0)
        seen[c] = rank[i] + 1
    order = np.lexsort((np.arange(len(y)), rank))  # by rank, then dataset order
    return np.sort(order[:limit])


# ---------------------------------------------------------------- the data


def is_user_data(spec: str) -> bool:
    """Whether --dataset names the user's own data (a file, a folder, a module:function hook)
    rather than a built-in data set (datasets.names()): datasets.files' rule, the one rule."""
    return files.is_path_spec(spec)


@dataclass
class Data:
    """A session's data, resolved from --dataset and --split by load_data()."""

    spec: str  # as given: a built-in data set's name, a path, or module:function
    kind: str  # "builtin" or "user"
    name: str  # short, for the session folder's name and titles
    split: str  # the built-in split's name, or how the user's data was split
    classes: int
    shape: tuple[int, ...]  # of one sample
    parts: datasets.Split
    details: dict[str, Any] = field(default_factory=dict)  # what the loader reports: into config.json
    user: files.UserData | None = None  # the user's own data as loaded (None: a built-in data set)

    def inputs(self, graph: Graph, part: datasets.Part, which: np.ndarray) -> np.ndarray:
        """Samples `which` of a part, as the model's input tensor takes them, one per row.
        The user's own data goes through its loader's model_inputs (which knows whether the
        file held real values or values already in the model's input type: never quantized
        twice); a built-in data set's real values through model_inputs()."""
        if self.user is None:
            return model_inputs(graph, part.x[which])
        x = self.user.model_inputs(datasets.Part(part.x[which], part.y[which]))
        return np.asarray(x).reshape(len(x), *graph.tensor(graph.inputs[0]).shape)


def check_user_data(spec: str, split: str | None) -> None:
    """The checks on the user's own --dataset that need no model: it exists, no --split (a
    built-in data set's) is given."""
    hook = files.hook.is_hook(spec) and not Path(spec).exists()
    if not hook and not Path(spec).expanduser().exists():
        raise ToolError(
            f"--dataset {spec}: no such file or folder. Give a built-in data set "
            f"({', '.join(datasets.names())}), a .npz or .csv file, a folder with one sub-folder of "
            "images per class, or a module:function that returns the arrays"
        )
    if split:
        raise ToolError(
            f"--split {split}: splits are the built-in data sets' (e.g. hapt: users, user21); your own "
            f"data ({spec}) is split by the tool, seeded, or by its own x_train/x_test"
        )


def _loading_progress(desc: str) -> tuple[Any, Any]:
    """A progress(done, total) callback for datasets.files.load, drawn by pytools/progress.py
    (a bar on a terminal, lines in a log), and a function that closes it (ok: the load worked)."""
    bar: list[Any] = []

    def step(done: int, total: int) -> None:
        if not bar:
            bar.append(progress(iter(()), desc, unit="image", total=total))
        bar[0].update(done - bar[0].n)

    def close(ok: bool) -> None:
        # After an error, only the error's line is said: a log's last progress line is not written
        # and a terminal's bar is cleared.
        if bar and ok:
            bar[0].close()
        elif bar and hasattr(bar[0], "leave"):
            bar[0].leave = False
            bar[0].close()

    return step, close


def _user_data(
    spec: str,
    graph: Graph,
    split: str | None,
    seed: int,
    label_column: str | None,
    outputs: int,
    anomaly: bool = False,
) -> Data:
    """The user's own data, through datasets.files (the loaders of .npz, .csv, image folders
    and module:function hooks), which checks it against the model's input (shape, type,
    quantization) and the labels its loss takes (outputs: losses.label_classes), and splits
    it seeded."""
    check_user_data(spec, split)
    t_in = graph.tensor(graph.inputs[0])
    shape = tuple(t_in.shape[1:]) if len(t_in.shape) > 1 and t_in.shape[0] == 1 else tuple(t_in.shape)
    if t_in.quant is not None:
        scale, zero_point = float(t_in.quant.scale[0]), int(t_in.quant.zero_point[0])
    else:  # a float32 input: nothing to quantize with
        scale, zero_point = 1.0, 0
    step, close = _loading_progress(f"reading {Path(spec).name}")
    try:
        ud = files.load(
            spec,
            input_shape=shape,
            classes=outputs,
            input_dtype=t_in.dtype,
            input_scale=scale,
            input_zero_point=zero_point,
            seed=seed,
            label_column=label_column,
            progress=step,
            anomaly=anomaly,
        )
    except BaseException:
        close(ok=False)
        raise
    close(ok=True)
    hook = files.hook.is_hook(spec) and not Path(spec).exists()
    name = re.sub(r"[^\w.-]+", "_", Path(spec).stem if not hook else spec.replace(":", "-"))
    if ud.split_info.get("method") == "given":
        how = f"as given in {Path(spec).name} ({', '.join(map(str, ud.split_info.get('parts', ())))})"
    else:
        how = f"stratified by the tool (seed {seed})"
    details = {**ud.record(), "seed": seed, "label_column": label_column}
    return Data(spec, "user", name, how, ud.classes, shape, ud.split, details, ud)


def load_data(
    spec: str,
    graph: Graph | None,
    split: str | None,
    seed: int,
    label_column: str | None = None,
    loss: str = "auto",
) -> Data:
    """The one place a session's --dataset is resolved: a built-in data set by name (its own
    default split unless --split names another), or the user's own data (a path or
    module:function, handed to datasets/files.py, split seeded by seed, checked against the
    model's graph, which it needs, with its new head if it has one, and the labels its loss
    takes: losses.label_classes)."""
    if label_column is not None and not is_user_data(spec):
        raise ToolError(
            f"--label-column {label_column}: a label column is chosen in your own CSV files; "
            f"the built-in data set {spec} has its labels"
        )
    if is_user_data(spec):
        if graph is None:
            raise ToolError(
                f"--dataset {spec}: your own data is loaded against the model: load the model first"
            )
        head = choose(graph, loss)
        outputs = label_classes(head, graph)
        if outputs == 0:  # a regression: check_model says why a session cannot train it
            check_model(graph, head, 0, (), "the model")
        try:
            anomaly = head.loss == "mse" and head.target == "input"  # labels mark anomalies only
            return _user_data(spec, graph, split, seed, label_column, outputs, anomaly)
        except datasets.DataError as e:
            if "out of range" not in str(e) or (head.loss == "ce" and head.layer < 0):
                raise
            # The loader counts "outputs" as the labels the loss takes: say what they mean here.
            if head.loss == "ce":
                what = (
                    f"--loss ce on the model's {outputs} outputs takes labels 0 .. {outputs - 1}; "
                    "for K classes give the model a new K-class head: --new-head K"
                )
            elif head.loss == "bce":
                what = (
                    f"--loss bce ({head.why}) on {outputs if outputs > 2 else 'a single'} output"
                    f"{'s' if outputs > 2 else ''} takes labels 0 .. {outputs - 1}"
                    + (" (a binary classifier: 0 or 1)" if outputs == 2 else " (one-vs-rest)")
                    + "; for more classes use --loss ce on a model with one output per class "
                    "(a model ending in logits or SOFTMAX: --new-head K gives it K)"
                )
            else:
                what = f"--loss mse ({head.why}): labels only mark samples normal (0) or anomalous (1)"
            raise datasets.DataError(f"{what}. {e}") from None
    mod = datasets.module(spec)  # a DataError listing the known ones
    split = split or default_split(spec)
    parts = datasets.load_split(spec, split)
    return Data(spec, "builtin", spec, split, mod.CLASSES, tuple(mod.SHAPE), parts)


@dataclass
class Inputs:
    """Everything a session needs before it touches a board."""

    data: Data
    lr: float  # the learning rate the step is compiled with: --lr, or the sweep's choice
    lr_record: dict[str, Any]  # how it was chosen (config.json "lr")
    model_bytes: bytes
    model_name: str
    model_source: str
    graph: Graph  # with its new head, if --new-head gave it one
    head: Head  # the loss and the tensor it is about (pytools/train/losses.py)
    loss_asked: str  # --loss as given (auto: head.why says what it picked)
    new_head: int | None  # --new-head's classes (None: the model's own head)
    head_note: str | None  # what the new head is (replace_head's line)
    scheme: Scheme
    ct: CompiledTraining
    image: FirmwareImage | None  # None on the host twin (nothing is linked for a board)
    chosen: np.ndarray  # indices into the fine-tuning part
    x_train: np.ndarray  # the model's input type, one row per sample
    y_train: np.ndarray
    x_held: np.ndarray
    y_held: np.ndarray

    @property
    def dataset(self) -> str:
        return self.data.spec

    @property
    def split(self) -> str:
        return self.data.split

    @property
    def classes(self) -> int:
        return self.data.classes

    @property
    def sizes(self) -> dict[str, int]:
        """Of the split's parts."""
        p = self.data.parts
        return {"pretrain": len(p.pretrain), "finetune": len(p.finetune), "held_out": len(p.held_out)}


def prepare(
    board: Board,
    dataset: str,
    scheme: str,
    lr: float | None,
    split: str | None,
    model: Path | None,
    limit: int | None,
    held_out: int | None = None,
    seed: int = 0,
    lr_schedule: str = schedules.DEFAULT,
    link: bool = True,
    label_column: str | None = None,
    loss: str = "auto",
    new_head: int = 0,
) -> Inputs:
    """Steps 1-3: the data, the model (with a new new_head-class head if asked: model_head),
    the loss (pytools/train/losses.py: loss, or what auto picks), the learning rate (a sweep on
    the host twin when lr is None), and the training step compiled (and linked for the board,
    unless link is False: the host twin needs only the plan)."""
    # The data is checked before the model: an unknown data set, a wrong split or a missing
    # file is the first thing to say. A built-in data set loads without the model; the user's
    # own is loaded against it (its input shape and outputs).
    user = is_user_data(dataset)
    data = None if user else load_data(dataset, None, split, seed, label_column)
    if user:
        check_user_data(dataset, split)
    scheme_obj = resolve_scheme(scheme)
    require_matplotlib()
    model_bytes, model_name, model_source = load_model(model, dataset)
    graph, head, head_note = model_head(import_tflite(model_bytes, model_name), loss, new_head, seed)
    source = model_source if model else model_name
    if data is None:
        data = load_data(dataset, graph, split, seed, label_column, loss=loss)
    parts = data.parts
    check_model(graph, head, data.classes, data.shape, source, fewer=user)
    if head_note:
        print(head_note)
    print(f"loss      {head.describe()}")
    # The loader's notes (clipping, balance, "trains on the first K" outputs): one line each.
    for note in data.user.notes if data.user is not None else ():
        print(f"note      {note}")
    chosen = subset(parts.finetune.y, limit)
    held = subset(parts.held_out.y, held_out)
    y_chosen = parts.finetune.y[chosen]
    if head.target == "input" and (y_chosen == 0).any() and (y_chosen != 0).any():
        # An autoencoder learns what is normal: the samples labelled anomalous are held-out
        # material (their scores give the ROC AUC), never trained on.
        print(
            f"note      autoencoder (mse, target = the input): trains on the {int((y_chosen == 0).sum())} "
            f"fine-tuning samples labelled normal (0), not the {int((y_chosen != 0).sum())} labelled "
            "anomalous (non-zero)"
        )
        chosen = chosen[y_chosen == 0]
    print(
        f"data      {dataset} (split {data.split}): {len(chosen)} of {len(parts.finetune)} fine-tuning "
        f"samples per epoch, {len(held)} of {len(parts.held_out)} held out (pretraining part: "
        f"{len(parts.pretrain)})"
    )
    print(f"source    {model_name}: {model_source}")
    x_train, y_train = data.inputs(graph, parts.finetune, chosen), parts.finetune.y[chosen]
    if lr is None:
        lr, lr_record = sweep_lr(
            graph, scheme_obj, board, model_name, x_train, y_train, seed, lr_schedule, loss=loss
        )
    else:
        lr_record = {"how": "given (--lr)", "value": lr}
    if link:
        print(
            f"compile   the training step, linked into {board.name}'s firmware (the first build compiles it)"
        )
    ct = compile_training(graph, scheme_obj, board, model_name, link=link, lr=lr, loss=loss)
    check_fits(ct)  # a step that does not fit is refused, with the memory breakdown
    assert ct.image is not None or not link
    print(report(ct))
    return Inputs(
        data=data,
        lr=lr,
        lr_record=lr_record,
        model_bytes=model_bytes,
        model_name=model_name,
        model_source=model_source,
        graph=graph,
        head=head,
        loss_asked=loss,
        new_head=new_head or None,
        head_note=head_note,
        scheme=scheme_obj,
        ct=ct,
        image=ct.image,
        chosen=chosen,
        x_train=x_train,
        y_train=y_train,
        x_held=data.inputs(graph, parts.held_out, held),
        y_held=parts.held_out.y[held],
    )
