"""Update schemes: which parameters a training step updates.

A scheme names layers by their position among the model's trainable layers (CONV_2D,
DEPTHWISE_CONV_2D, FULLY_CONNECTED), counted from the end: -1 is the classifier. It is a
small TOML file:

    # biases of the last 22 layers, weights of three layers at channel ratios
    bias_layers = 22
    [weights]
    -1 = 1.0        # the classifier head, all of it
    -3 = 0.25       # a quarter of its output channels (depthwise: channels)
    -7 = 0.125

or the same on the command line: "bias=22,-1=1,-3=0.25,-7=0.125".

`qas = false` (inline "qas=0") turns quantization-aware scaling off, for the ablation only:
the update is then plain SGD on the int8 weights and int32 biases (docs/training.md).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pytools.errors import ToolError
from pytools.model.ir import Graph

TRAINABLE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
RATIOS = (0.125, 0.25, 0.5, 1.0)


@dataclass
class Scheme:
    bias_layers: int = 0
    weights: dict[int, float] = field(default_factory=dict)  # layer (negative index) -> ratio
    qas: bool = True  # False: SGD on the integers without QAS (an ablation)

    def describe(self) -> str:
        parts = [f"biases of the last {self.bias_layers} layers"] if self.bias_layers else []
        parts += [f"weights of layer {k} at {r:g}" for k, r in sorted(self.weights.items())]
        return ", ".join(parts) + ("" if self.qas else ", without QAS") if parts else "nothing"


@dataclass(frozen=True)
class LayerUpdate:
    op: int  # forward operator index
    layer: int  # negative position among trainable layers
    update_bias: bool
    rows: int  # output channels (depthwise: channels) whose weights are updated; 0 = none
    channels: int  # all output channels (depthwise: channels)


def _check(scheme: Scheme, where: str) -> Scheme:
    if scheme.bias_layers < 0:
        raise ToolError(f"{where}: bias_layers must be >= 0")
    for layer, ratio in scheme.weights.items():
        if layer >= 0:
            raise ToolError(f"{where}: layer {layer}: count layers from the end (-1 is the classifier)")
        if ratio not in RATIOS:
            raise ToolError(
                f"{where}: layer {layer}: ratio {ratio} is not one of {', '.join(map(str, RATIOS))}"
            )
    return scheme


def parse_scheme_text(text: str) -> Scheme:
    """The command-line form: "bias=22,-1=1,-3=0.25"."""
    s = Scheme()
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ToolError(f"scheme item '{item}' is not key=value")
        try:
            if key.strip() == "bias":
                s.bias_layers = int(value)
            elif key.strip() == "qas":
                s.qas = {"1": True, "true": True, "0": False, "false": False}[value.strip().lower()]
            else:
                s.weights[int(key)] = float(value)
        except (ValueError, KeyError) as e:
            raise ToolError(f"scheme item '{item}': {e}") from e
    return _check(s, f"scheme '{text}'")


def load_scheme(spec: str) -> Scheme:
    """A scheme file (.toml) or the command-line form."""
    path = Path(spec)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise ToolError(f"no scheme file at {path}")
        try:
            d = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ToolError(f"{path}: not valid TOML: {e}") from e
        unknown = set(d) - {"bias_layers", "weights", "qas"}
        if unknown:
            raise ToolError(
                f"{path}: unknown keys {sorted(unknown)}; a scheme has bias_layers, [weights], qas"
            )
        if not isinstance(d.get("qas", True), bool):
            raise ToolError(f"{path}: qas must be true or false")
        weights = {int(k): float(v) for k, v in d.get("weights", {}).items()}
        return _check(Scheme(int(d.get("bias_layers", 0)), weights, d.get("qas", True)), str(path))
    return parse_scheme_text(spec)


def trainable_ops(graph: Graph) -> list[int]:
    return [op.index for op in graph.ops if op.kind in TRAINABLE]


def resolve(graph: Graph, scheme: Scheme) -> dict[int, LayerUpdate]:
    """Forward op index -> what its step updates, for every layer the scheme touches."""
    layers = trainable_ops(graph)
    n = len(layers)
    if scheme.bias_layers > n:
        raise ToolError(f"scheme asks for biases of {scheme.bias_layers} layers; the model has {n}")
    for layer in scheme.weights:
        if -layer > n:
            raise ToolError(f"scheme names layer {layer}; the model has {n} trainable layers (-1 .. -{n})")
    out: dict[int, LayerUpdate] = {}
    for pos, op_index in enumerate(layers):
        layer = pos - n
        op = graph.ops[op_index]
        w = graph.tensor(op.inputs[1])
        channels = w.shape[-1] if op.kind == "DEPTHWISE_CONV_2D" else w.shape[0]
        has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
        bias = has_bias and -layer <= scheme.bias_layers
        ratio = scheme.weights.get(layer, 0.0)
        rows = math.ceil(channels * ratio) if ratio else 0
        if bias or rows:
            out[op_index] = LayerUpdate(op_index, layer, bias, rows, channels)
    return out
