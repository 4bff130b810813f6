"""What the benchmark's steps train on, and in which order.

Costs depend on the data: the gradient kernels skip zero gradients, so a step on a loss that
blew up (saturated logits, zero gradients) runs almost empty. The samples are therefore the
model's own kind, chosen in this order:

1. `--samples FILE.npz` (x/y or x_train/y_train, as a data set file) or `--dataset NAME|PATH`
   (a built-in data set, or the user's own .npz / .csv / image folder / module:function):
   read by the loader `invoke train` uses (pytools.session.load_data, datasets/files/), so
   the same file means the same samples, checked against the model the same way; the steps
   take the fine-tuning part, the classes in turn;
2. a zoo model (pytools/pretrain/zoo.py), a committed backbone (models/) or the benchmark's
   MobileNetV2: its own data set (synthetic images or features, or held-out samples);
3. any other model: seeded inputs drawn over the input type, each labelled with the model's
   own prediction (a forward pass on the host twin, bit-exact with the board), so the step
   fine-tunes towards what the model already says, as a deployed model's data would.

Every choice says in words what it is (SampleChoice.description), and the report prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pytools.errors import ToolError
from pytools.model.ir import Graph
from pytools.paths import ROOT
from pytools.train.compile_train import CompiledTraining

Samples = tuple[np.ndarray, np.ndarray]  # inputs (n, ...), real-valued; labels (n,)
DEFAULT_COUNT = 16  # samples the steps cycle through

# The committed backbones (models/, invoke pretrain): their transfer data set and split.
BACKBONES = {
    "fashion_mbv2": ("schemes/fashion_mbv2-mnist-64KB.toml", "mnist", "transfer"),
    "hapt_cnn1d": ("schemes/hapt_cnn1d-hapt-64KB.toml", "hapt", "users"),
}


@dataclass(frozen=True)
class SampleChoice:
    """Samples in the model's input type, one per row, their labels (class indices, or float32
    target vectors for a regression's MSE), and what they are, in words."""

    x: np.ndarray
    y: np.ndarray
    description: str

    def __len__(self) -> int:
        return len(self.y)


def _in_model_type(graph: Graph, x: np.ndarray) -> np.ndarray:
    from pytools.session import model_inputs

    t = graph.tensor(graph.inputs[0])
    try:
        return model_inputs(graph, x)
    except ValueError as e:
        raise ToolError(
            f"the samples are {tuple(np.shape(x)[1:])} each, the model takes {tuple(t.shape)}: "
            "give samples of the model's input shape"
        ) from e


def given(graph: Graph, samples: Samples, what: str) -> SampleChoice:
    """Real-valued samples handed over by a caller (the suite, tests), quantized as the model's
    input is."""
    xs, ys = samples
    if len(xs) != len(ys) or len(ys) == 0:
        raise ToolError(f"{what}: {len(xs)} inputs and {len(ys)} labels; give as many of each, at least one")
    return SampleChoice(_in_model_type(graph, np.asarray(xs)), np.asarray(ys), what)


def from_data(
    graph: Graph, spec: str, n: int, seed: int, label_column: str | None = None, option: str = "--dataset"
) -> SampleChoice:
    """The first n samples (the classes in turn) of a data set's fine-tuning part, through the
    loader `invoke train` uses: a built-in data set's name, or the user's own file."""
    from pytools.session import is_user_data, load_data, subset

    if option == "--samples" and Path(spec).suffix.lower() != ".npz":
        raise ToolError(
            f"--samples {spec}: give an .npz (x, y or x_train, y_train); a .csv, an image folder or "
            "a module:function hook goes to --dataset"
        )
    data = load_data(spec, graph, None, seed, label_column)
    part = data.parts.finetune if len(data.parts.finetune) else data.parts.held_out
    if len(part) == 0:
        raise ToolError(f"{option} {spec}: no samples to train on")
    which = subset(np.asarray(part.y), n)
    try:
        x = data.inputs(graph, part, which)
    except ValueError as e:
        t = graph.tensor(graph.inputs[0])
        raise ToolError(
            f"{option} {spec}: its samples are {tuple(part.x.shape[1:])}, the model takes "
            f"{tuple(t.shape)}: give a data set of the model's input shape"
        ) from e
    kind = "your file" if is_user_data(spec) else f"the built-in data set ({data.split} split)"
    what = (
        f"{len(which)} samples of {spec} ({kind}; its fine-tuning part, the classes in turn, "
        "read by the loader `invoke train` uses)"
    )
    return SampleChoice(x, np.asarray(part.y)[which], what)


def own_kind(model_path: Path, graph: Graph, n: int, seed: int) -> SampleChoice | None:
    """The data set of a zoo model, a committed backbone or the benchmark's MobileNetV2,
    recognised by the path it is built or committed at; None for any other model."""
    path = Path(model_path).resolve()
    if path.parent == (ROOT / "models").resolve() and path.stem in BACKBONES:
        import datasets

        _, dataset, split = BACKBONES[path.stem]
        held = datasets.load_split(dataset, split).held_out
        what = f"the first {n} held-out samples of {dataset} ({split} split), the backbone's transfer data"
        return given(graph, (held.x[:n].astype(np.float32), held.y[:n]), what)
    try:
        from pytools.pretrain import mobilenet_v2, zoo
    except ImportError:  # the zoo needs TensorFlow's helpers; any model still gets drawn samples
        return None
    for name, spec in zoo.ZOO.items():
        if path == zoo.zoo_path(name).resolve():
            what = f"{n} unseen samples of the zoo model's own kind (pytools/pretrain/zoo.py, seed {seed})"
            return given(graph, spec.data(n, seed), what)
    if path == (mobilenet_v2.CACHE / f"{mobilenet_v2.NAME}-{mobilenet_v2.cache_key()}.tflite").resolve():
        what = f"{n} unseen 128x128 images of the zoo's synthetic classes (seed {seed})"
        return given(graph, mobilenet_v2.samples(n, seed), what)
    return None


def drawn(ct: CompiledTraining, n: int, seed: int) -> SampleChoice:
    """n seeded inputs drawn uniformly over the input type (normal for a float input), each
    labelled with the model's own prediction on the host twin (a regression's targets: its
    own outputs are not a label, so they are drawn normal and said so)."""
    from pytools.train.trainer import Trainer

    g = ct.train.graph
    t = g.tensor(g.inputs[0])
    rng = np.random.default_rng(seed)
    if t.dtype == "float32":
        x = rng.normal(0.0, 1.0, (n, *t.shape)).astype(np.float32)
    else:
        info = np.iinfo(t.dtype)
        x = rng.integers(info.min, info.max + 1, (n, *t.shape)).astype(t.dtype)
    head = ct.train.head
    if head is not None and head.target == "vector":
        target = g.tensor(ct.train.label)
        y = rng.normal(0.0, 1.0, (n, *target.shape)).astype(np.float32)
        return SampleChoice(x, y, f"{n} seeded inputs (seed {seed}) with targets drawn N(0, 1)")
    tr = Trainer(ct)
    y = np.array([tr.predict(xi) for xi in x], dtype=np.int64)
    what = (
        f"{n} seeded inputs drawn uniformly over the {t.dtype} input (seed {seed}), each labelled with "
        "the model's own prediction (a forward pass on the host twin)"
    )
    return SampleChoice(x, y, what)


class Feed:
    """The samples in turn, as the plan's two inputs: the sample and its label (or target)."""

    def __init__(self, ct: CompiledTraining, choice: SampleChoice) -> None:
        g = ct.train.graph
        head = ct.train.head
        self.target = g.tensor(ct.train.label) if head is not None and head.target == "vector" else None
        self.x_shape = g.tensor(g.inputs[0]).shape
        self.choice = choice
        self.k = 0

    def label(self, i: int) -> np.ndarray:
        y = self.choice.y[i]
        if self.target is not None:
            return np.asarray(y, np.float32).reshape(self.target.shape)
        return np.array([int(y)], dtype=np.int32)

    def next(self) -> list[np.ndarray]:
        i = self.k % len(self.choice)
        self.k += 1
        return [np.asarray(self.choice.x[i]).reshape(self.x_shape), self.label(i)]
