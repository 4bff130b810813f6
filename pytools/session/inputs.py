"""A session's inputs: the data set, the model, the scheme, and the training step compiled for
the board (prepare()), all checked before any board is touched."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import datasets
from pytools.boards import Board
from pytools.build.builder import FirmwareImage
from pytools.errors import ToolError
from pytools.model.ir import Graph, ModelError
from pytools.model.tflite_import import import_tflite
from pytools.paths import ROOT
from pytools.session.plots import require_matplotlib
from pytools.train.compile_train import CompiledTraining, check_fits, compile_training, report
from pytools.train.scheme import Scheme, load_scheme

DEFAULT_SCHEME = "bias=3,-1=1,-2=0.5"
DEFAULT_SPLIT = "writers"
SCHEMES = ROOT / "schemes"


def default_model(dataset: str) -> tuple[bytes, str, str]:
    """The pretrained model for a data set: (bytes, name, where it comes from)."""
    if dataset == "digits":
        # The builder lives with the tests (it trains with TensorFlow once, then is cached).
        from pytools.pretrain import digits as digits_model

        data = digits_model.pretrained_model()
        where = f"pretrained on digits 0-4 of the first 7 writers, cached at {digits_model.model_path()}"
        return data, digits_model.NAME, where
    raise ToolError(f"there is no pretrained model for the dataset '{dataset}': give one with --model")


def load_model(model: Path | None, dataset: str) -> tuple[bytes, str, str]:
    if model is None:
        return default_model(dataset)
    path = Path(model)
    if not path.is_file():
        raise ToolError(f"no model at {path}")
    return path.read_bytes(), path.stem, str(path)


def resolve_scheme(spec: str) -> Scheme:
    """A scheme: inline (bias=3,-1=1), a .toml file, or the name of one in schemes/."""
    named = SCHEMES / f"{spec}.toml"
    if spec and "=" not in spec and not Path(spec).exists() and named.is_file():
        spec = str(named)
    try:
        return load_scheme(spec)
    except ToolError as e:
        known = ", ".join(sorted(p.stem for p in SCHEMES.glob("*.toml")))
        raise ToolError(
            f"bad scheme: {e}. A scheme is inline (e.g. {DEFAULT_SCHEME}: biases of the last 3 "
            f"layers, all of layer -1, half of layer -2), a .toml file, or one of schemes/: {known}"
        ) from e


def check_classifier(graph: Graph, classes: int, sample_shape: tuple[int, ...], source: str) -> None:
    """Refuses a model that is not a classifier of this data set's samples and classes."""
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
    if int(np.prod(out.shape)) != classes:
        raise ModelError(
            f"{source} outputs {out.shape}: {int(np.prod(out.shape))} classes, the data set has {classes}"
        )
    inp = graph.tensor(graph.inputs[0])
    if int(np.prod(inp.shape)) != int(np.prod(sample_shape)):
        raise ModelError(
            f"{source} takes inputs of shape {inp.shape}; the data set's samples are {sample_shape}"
        )
    if inp.dtype != "float32" and inp.quant is None:
        raise ModelError(f"{source}: its {inp.dtype} input has no quantization to convert samples with")


def model_inputs(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Real-valued samples [n, ...] as the model's input tensor takes them, one per row."""
    t = graph.tensor(graph.inputs[0])
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


@dataclass
class Inputs:
    """Everything a session needs before it touches a board."""

    dataset: str
    split: str
    classes: int
    sizes: dict[str, int]  # of the split's parts
    model_bytes: bytes
    model_name: str
    model_source: str
    graph: Graph
    scheme: Scheme
    ct: CompiledTraining
    image: FirmwareImage
    chosen: np.ndarray  # indices into the fine-tuning part
    x_train: np.ndarray  # the model's input type, one row per sample
    y_train: np.ndarray
    x_held: np.ndarray
    y_held: np.ndarray


def prepare(
    board: Board,
    dataset: str,
    scheme: str,
    lr: float,
    split: str,
    model: Path | None,
    limit: int | None,
    held_out: int | None = None,
) -> Inputs:
    """Steps 1-3: the data, the model, and the training step compiled and linked for the board."""
    ds = datasets.module(dataset)
    parts = datasets.load_split(dataset, split)
    scheme_obj = resolve_scheme(scheme)
    require_matplotlib()
    model_bytes, model_name, model_source = load_model(model, dataset)
    graph = import_tflite(model_bytes, model_name)
    check_classifier(graph, ds.CLASSES, ds.SHAPE, model_source if model else model_name)
    chosen = subset(parts.finetune.y, limit)
    held = subset(parts.held_out.y, held_out)
    print(
        f"data      {dataset} (split {split}): {len(chosen)} of {len(parts.finetune)} fine-tuning samples "
        f"per epoch, {len(held)} of {len(parts.held_out)} held out (pretraining part: {len(parts.pretrain)})"
    )
    print(f"source    {model_name}: {model_source}")
    ct = compile_training(graph, scheme_obj, board, model_name, link=True, lr=lr)
    check_fits(ct)  # a step that does not fit is refused, with the memory breakdown
    assert ct.image is not None
    print(report(ct))
    sizes = {
        "pretrain": len(parts.pretrain),
        "finetune": len(parts.finetune),
        "held_out": len(parts.held_out),
    }
    return Inputs(
        dataset=dataset,
        split=split,
        classes=ds.CLASSES,
        sizes=sizes,
        model_bytes=model_bytes,
        model_name=model_name,
        model_source=model_source,
        graph=graph,
        scheme=scheme_obj,
        ct=ct,
        image=ct.image,
        chosen=chosen,
        x_train=model_inputs(graph, parts.finetune.x[chosen]),
        y_train=parts.finetune.y[chosen],
        x_held=model_inputs(graph, parts.held_out.x[held]),
        y_held=parts.held_out.y[held],
    )
