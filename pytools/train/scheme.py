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

[weights] slices a layer's OUTPUT channels (the first ones: rows of the filter, depthwise:
channels). A CONV_2D may instead train the first fraction of its INPUT channels, for every
output channel (MIT's MCUNet schemes slice the 1x1 expansion convs so):

    [input_channels]
    -7 = 0.5        # the first half of its input channels, all output channels

(inline "-7=in:0.5"). Only the trained input channels of the layer's input are kept for the
backward pass. A layer is in [weights] or in [input_channels], not both.

A scheme may also run the model's frozen first stage patch by patch
(pytools/model/lowering/patch.py), which decides the peak memory at high resolution:

    [[patch]]
    start = 0       # the model's forward operators #0..#5 form a stage
    until = 5
    patches = 4     # its output computed in 4 x 4 spatial patches
    [[patch]]       # a second stage, #6..#9 in 2 x 2
    start = 6
    until = 9
    patches = 2

(inline: "patch=0-5x4+6-9x2"), or `patch = "auto"` (inline "patch=auto"): the compiler
searches stage ends and patch counts (pytools.model.lowering.patch.choose) and keeps the
smallest planned arena whose stages recompute at most `patch_budget` (default 0.5, inline
"patch_budget=0.25") of their own MACs, or no patching when none plans a smaller arena than
the unpatched step; the compile report says what it chose and why. Stage numbers count the
model's own operators (a PAD folded into its convolution, pytools/model/lowering/fold.py,
numbers as that convolution).

`stream_input = true` (inline "stream_input=true"; default false) streams the model's input
into the first patch stage a band of rows at a time (pytools/model/lowering/stream.py)
instead of holding the whole input in the arena: the arena keeps only the band the stage's
patches read at once, and the runtime's caller writes each band's new rows (INPUT_ROWS
operators; the board asks the host for them). It needs a patch stage that starts at
operator #0 and an int8 input that nothing else reads (a trained first layer would keep
it for its backward pass); the compiler says why otherwise.

`conv_two_pass = true` (inline "conv_two_pass=true"; default false) lets the compiler run a
1x1 stride-1 conv's input gradient in two passes (CONV_2D_GRAD_INPUT_2PASS: the same bits, the
int32 accumulators of only as many pixels as the arena allows, the rest computed twice) where
that shrinks the planned arena. It trades instructions for memory, so a scheme asks for it.

`arena_budget = 91000` (inline "arena_budget=91000"; bytes) asks for a planned arena of at most
that many bytes at the least recomputation: the compiler starts from every exact memory saver at
its maximum (in-place depthwise, two-pass input gradients keeping nothing) and gives them back,
the most expensive first, while the arena stays within it (pytools/train/arena_budget.py); a
budget below that floor is refused, saying what holds it.

`gradients = "float32"` (inline "gradients=float32") is the float-gradient build option:
the backward pass keeps float32 gradients instead of int8 ones with a dynamic scale, only
to compare accuracy against (docs/training.md). The default is "int8".

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
from pytools.model.lowering.patch import Patching

TRAINABLE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
RATIOS = (0.125, 0.25, 0.5, 1.0)


@dataclass
class Scheme:
    bias_layers: int = 0
    weights: dict[int, float] = field(default_factory=dict)  # layer (negative index) -> ratio
    inputs: dict[int, float] = field(default_factory=dict)  # CONV_2D layer -> ratio of input channels
    patch: list[Patching] = field(default_factory=list)  # frozen first stages run in patches
    patch_auto: bool = False  # choose the patching with the smallest planned arena
    patch_budget: float = 0.5  # patch=auto: recomputed MACs at most this fraction of the stages'
    float_gradients: bool = False  # the float-gradient build option (accuracy reference)
    qas: bool = True  # False: SGD on the integers without QAS (an ablation)
    stream_input: bool = False  # the input streamed into the first patch stage in bands of rows
    # 1x1 stride-1 conv input gradients in two passes where that shrinks the planned arena
    # (CONV_2D_GRAD_INPUT_2PASS: the same bits, the pixels memory cannot keep computed twice)
    conv_two_pass: bool = False
    # The arena in bytes the compiler must meet with the exact memory savers (in-place
    # depthwise, two-pass input gradients) at the least recomputation (pytools/train/
    # arena_budget.py); None: each saver where it shrinks the arena, as without a budget.
    arena_budget: int | None = None

    def describe(self) -> str:
        parts = [f"biases of the last {self.bias_layers} layers"] if self.bias_layers else []
        parts += [f"weights of layer {k} at {r:g}" for k, r in sorted(self.weights.items())]
        parts += [
            f"weights of layer {k} at {r:g} of its input channels" for k, r in sorted(self.inputs.items())
        ]
        text = ", ".join(parts) or "nothing"
        if parts and not self.qas:
            text += ", without QAS"
        if self.patch:
            text += "; " + ", ".join(p.describe() for p in self.patch)
        elif self.patch_auto:
            text += f"; first stages in patches (chosen by arena, recompute budget {self.patch_budget:.0%})"
        if self.stream_input:
            text += "; input streamed in bands of rows"
        if self.float_gradients:
            text += "; float32 gradients"
        if self.conv_two_pass:
            text += "; conv input gradients in two passes where that shrinks the arena"
        if self.arena_budget is not None:
            text += f"; arena at most {self.arena_budget:,} B (exact memory savers, least recomputation)"
        return text

    def inline(self) -> str:
        """The command-line form of the layer choice ("bias=2,-1=1,-3=0.25"), plus the
        options that differ from the defaults (patches are not repeated)."""
        parts = [f"bias={self.bias_layers}"] if self.bias_layers else []
        parts += [f"{k}={r:g}" for k, r in sorted(self.weights.items(), reverse=True)]
        parts += [f"{k}=in:{r:g}" for k, r in sorted(self.inputs.items(), reverse=True)]
        if self.float_gradients:
            parts.append("gradients=float32")
        if not self.qas:
            parts.append("qas=0")
        if self.stream_input:
            parts.append("stream_input=true")
        if self.conv_two_pass:
            parts.append("conv_two_pass=true")
        if self.arena_budget is not None:
            parts.append(f"arena_budget={self.arena_budget}")
        return ",".join(parts)

    def restricted_to_last(self, n: int) -> Scheme:
        """The same updates for the last n trainable layers only (no patches)."""
        return Scheme(
            bias_layers=min(self.bias_layers, n),
            weights={k: r for k, r in self.weights.items() if -k <= n},
            inputs={k: r for k, r in self.inputs.items() if -k <= n},
            float_gradients=self.float_gradients,
            qas=self.qas,
        )


@dataclass(frozen=True)
class LayerUpdate:
    op: int  # forward operator index
    layer: int  # negative position among trainable layers
    update_bias: bool
    rows: int  # output channels (depthwise: channels) whose weights are updated; 0 = none
    channels: int  # all output channels (depthwise: channels)
    cols: int = 0  # CONV_2D: input channels [0, cols) of every output channel updated (rows = 0)

    @property
    def weights(self) -> bool:
        """Whether any weight is updated (a row or a column slice)."""
        return bool(self.rows or self.cols)


def _check(scheme: Scheme, where: str) -> Scheme:
    if scheme.bias_layers < 0:
        raise ToolError(f"{where}: bias_layers must be >= 0")
    both = sorted(set(scheme.weights) & set(scheme.inputs))
    if both:
        raise ToolError(
            f"{where}: layer {both[0]} slices both output and input channels; give it one of "
            "[weights] (output channels) or [input_channels]"
        )
    for layer, ratio in [*scheme.weights.items(), *scheme.inputs.items()]:
        if layer >= 0:
            raise ToolError(f"{where}: layer {layer}: count layers from the end (-1 is the classifier)")
        if ratio not in RATIOS:
            raise ToolError(
                f"{where}: layer {layer}: ratio {ratio} is not one of {', '.join(map(str, RATIOS))}"
            )
    return scheme


def _patch(s: Scheme, spec: object, where: str) -> None:
    """`patch = "auto"`, [[patch]] tables (start, until, patches), or the inline
    "START-UNTILxPATCHES+..."."""
    if spec == "auto":
        s.patch_auto = True
        return
    try:
        if isinstance(spec, list):
            for table in spec:
                if not isinstance(table, dict) or set(table) != {"start", "until", "patches"}:
                    raise ValueError("each [[patch]] takes start, until and patches")
                s.patch.append(Patching(int(table["start"]), int(table["until"]), int(table["patches"])))
        else:
            for item in str(spec).split("+"):
                span, _, count = item.partition("x")
                start, _, until = span.partition("-")
                s.patch.append(Patching(int(start), int(until), int(count)))
    except (ValueError, TypeError) as e:
        raise ToolError(f'{where}: patch: {e} (give "auto", or stages as start, until, patches)') from e
    for p in s.patch:
        if not 0 <= p.start <= p.until or p.patches < 1:
            raise ToolError(f"{where}: patch: {p.describe()} is not a valid stage")


def _budget(value: object, where: str) -> float:
    """patch_budget: a fraction >= 0 (0.5: the patched stages may recompute half their MACs)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        budget = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ToolError(
            f"{where}: patch_budget must be a number >= 0 (0.5 = half the stages' MACs)"
        ) from None
    if not 0 <= budget <= 100:
        raise ToolError(f"{where}: patch_budget {budget} is outside 0..100 (a fraction of the stages' MACs)")
    return budget


def _arena_budget(value: object, where: str, inline: bool = False) -> int:
    """arena_budget: a whole number of bytes > 0 (TOML: an integer; inline: its digits)."""
    if inline and isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ToolError(
            f"{where}: arena_budget must be a whole number of bytes > 0 (e.g. 91000), not {value!r}"
        )
    return value


def _flag(value: str, where: str) -> bool:
    """An inline on/off option: 1, true, 0 or false."""
    flags = {"1": True, "true": True, "0": False, "false": False}
    if value.lower() not in flags:
        raise ToolError(f"{where} must be true or false (1 or 0), not {value!r}")
    return flags[value.lower()]


def _gradients(value: object, where: str) -> bool:
    if value not in ("int8", "float32"):
        raise ToolError(f'{where}: gradients must be "int8" or "float32", not {value!r}')
    return value == "float32"


def parse_scheme_text(text: str) -> Scheme:
    """The command-line form: "bias=22,-1=1,-3=0.25" (optionally ",patch=22x2")."""
    s = Scheme()
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ToolError(f"scheme item {item!r} is not key=value")
        if key.strip() == "patch":
            _patch(s, value.strip(), f"scheme {text!r}")
            continue
        if key.strip() == "gradients":
            s.float_gradients = _gradients(value.strip(), f"scheme {text!r}")
            continue
        if key.strip() == "patch_budget":
            s.patch_budget = _budget(value.strip(), f"scheme {text!r}")
            continue
        if key.strip() == "arena_budget":
            s.arena_budget = _arena_budget(value.strip(), f"scheme {text!r}", inline=True)
            continue
        if key.strip() in ("stream_input", "conv_two_pass"):
            setattr(s, key.strip(), _flag(value.strip(), f"scheme {text!r}: {key.strip()}"))
            continue
        try:
            if key.strip() == "bias":
                s.bias_layers = int(value)
            elif key.strip() == "qas":
                s.qas = {"1": True, "true": True, "0": False, "false": False}[value.strip().lower()]
            elif value.strip().startswith("in:"):
                s.inputs[int(key)] = float(value.strip()[3:])
            else:
                s.weights[int(key)] = float(value)
        except (ValueError, KeyError) as e:
            raise ToolError(f"scheme item {item!r}: {e}") from e
    return _check(s, f"scheme {text!r}")


def _is_file(path: Path) -> bool:
    """path.is_file(), false for what cannot be a file name at all (longer than the system
    allows, a NUL byte): such a spec is an inline scheme, checked as one."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def named_scheme(spec: str, folder: Path) -> str:
    """A scheme's name in `folder` (e.g. "head_only" for schemes/head_only.toml) as that file's
    path; any other spec as it is. Only a plain name is looked up there: never a path."""
    from pytools.validate import NAME

    if NAME.fullmatch(spec) and ".." not in spec and not _is_file(Path(spec)):
        named = folder / f"{spec}.toml"
        if named.is_file():
            return str(named)
    return spec


def _whole(value: object, what: str) -> int:
    """An integer from TOML (an int, not a bool or a float)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ToolError(f"{what} must be a whole number, not {value!r}")
    return value


def _ratios(d: dict, name: str, path: Path) -> dict[int, float]:
    """A [weights] or [input_channels] table: layer = ratio lines."""
    table = d.get(name, {})
    if not isinstance(table, dict):
        raise ToolError(f"{path}: {name} must be a table ([{name}], then layer = ratio lines)")
    out = {}
    for k, v in table.items():
        try:
            layer = int(k)
        except ValueError:
            raise ToolError(
                f"{path}: [{name}] key {k!r} is not a layer number (-1 is the classifier)"
            ) from None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ToolError(
                f"{path}: [{name}] {k} = {v!r}: a ratio is a number ({', '.join(map(str, RATIOS))})"
            )
        out[layer] = float(v)
    return out


def _scheme_file(path: Path) -> Scheme:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ToolError(f"{path}: not UTF-8 text (byte {e.start}): a scheme is a TOML text file") from None
    except OSError as e:
        raise ToolError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ToolError(f"{path}: not valid TOML: {e}") from e
    unknown = set(d) - {
        "bias_layers",
        "weights",
        "input_channels",
        "patch",
        "patch_budget",
        "gradients",
        "qas",
        "stream_input",
        "conv_two_pass",
        "arena_budget",
    }
    if unknown:
        raise ToolError(
            f"{path}: unknown keys {sorted(unknown)}; a scheme has bias_layers, [weights], "
            "[input_channels], [[patch]], patch_budget, gradients, qas, stream_input, conv_two_pass "
            "and arena_budget"
        )
    for flag in ("qas", "stream_input", "conv_two_pass"):
        if not isinstance(d.get(flag, True), bool):
            raise ToolError(f"{path}: {flag} must be true or false")
    weights, inputs = _ratios(d, "weights", path), _ratios(d, "input_channels", path)
    scheme = Scheme(
        _whole(d.get("bias_layers", 0), f"{path}: bias_layers"), weights, inputs, qas=d.get("qas", True)
    )
    if "patch" in d:
        _patch(scheme, d["patch"], str(path))
    if "patch_budget" in d:
        scheme.patch_budget = _budget(d["patch_budget"], str(path))
    if "gradients" in d:
        scheme.float_gradients = _gradients(d["gradients"], str(path))
    scheme.stream_input = d.get("stream_input", False)
    scheme.conv_two_pass = d.get("conv_two_pass", False)
    if "arena_budget" in d:
        scheme.arena_budget = _arena_budget(d["arena_budget"], str(path))
    return _check(scheme, str(path))


def load_scheme(spec: str) -> Scheme:
    """A scheme file (.toml) or the command-line form."""
    if not isinstance(spec, str):
        raise ToolError(f"a scheme is a file name or inline text (bias=3,-1=1), not {spec!r}")
    path = Path(spec)
    if path.suffix == ".toml" or _is_file(path):
        if not _is_file(path):
            raise ToolError(f"no scheme file at {path}")
        return _scheme_file(path)
    return parse_scheme_text(spec)


def trainable_ops(graph: Graph) -> list[int]:
    return [op.index for op in graph.ops if op.kind in TRAINABLE]


def resolve(graph: Graph, scheme: Scheme) -> dict[int, LayerUpdate]:
    """Forward op index -> what its step updates, for every layer the scheme touches."""
    layers = trainable_ops(graph)
    n = len(layers)
    if scheme.bias_layers > n:
        raise ToolError(f"scheme asks for biases of {scheme.bias_layers} layers; the model has {n}")
    for layer in [*scheme.weights, *scheme.inputs]:
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
        cols = 0
        if layer in scheme.inputs:
            if op.kind != "CONV_2D":
                raise ToolError(
                    f"scheme slices the input channels of layer {layer}, a {op.kind} ({op.where()}); "
                    "only a CONV_2D takes [input_channels]: give this layer a [weights] ratio"
                )
            cols = math.ceil(w.shape[3] * scheme.inputs[layer])
        if bias or rows or cols:
            out[op_index] = LayerUpdate(op_index, layer, bias, rows, channels, cols)
    return out
