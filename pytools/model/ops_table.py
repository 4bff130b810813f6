"""docs/operators.md, generated from the one list (firmware/kernels/ops.def): `invoke ops-table`.

One row per TFLite operator the engine runs (the OP lines named after a builtin): its
forward kernel(s), its backward operators and their kernels (BACKWARD lines), whether a
training scheme may train through it (pytools/train/autodiff.py), and the DSP variants (a
kernel X has one when firmware/kernels/X_dsp.c exists). Then the runtime's own operators
that no builtin claims. tests/test_ops_table.py holds the committed file to this output.
"""

from __future__ import annotations

from pathlib import Path

from pytools.model.kernels import OpDef, backward_ops, forward_kernels, forward_ops, has_dsp_variant, op_defs
from pytools.paths import FIRMWARE

OUT = FIRMWARE.parent / "docs" / "operators.md"


def _kernels(defs: list[OpDef]) -> str:
    return "<br>".join(f"`{d.kernel}`" for d in dict.fromkeys(defs)) or "—"


def _dsp(defs: list[OpDef]) -> str:
    return "<br>".join(f"`{d.kernel}_dsp`" for d in dict.fromkeys(defs) if has_dsp_variant(d.kernel)) or "—"


def _backward(defs: list[OpDef], trains_through: bool) -> str:
    if not defs:
        return "none needed (the gradient is the same bytes)" if trains_through else "—"
    return "<br>".join(f"{d.tflite} (`{d.kernel}`)" for d in defs)


def render() -> str:
    from pytools.train.autodiff import BACKWARD_OK

    claimed = set(forward_ops())
    rows = []
    for op in forward_ops():
        fwd, bwd = forward_kernels(op), backward_ops(op)
        claimed.update(d.tflite for d in fwd + bwd)
        through = op in BACKWARD_OK
        codes = ", ".join(str(d.code) for d in fwd)
        rows.append(
            f"| {op} | {codes} | {_kernels(fwd)} | {_dsp(fwd)} | {_backward(bwd, through)} | {_dsp(bwd)} | "
            f"{'yes' if through else 'no'} |"
        )
    own = [d for name, d in op_defs().items() if name not in claimed]
    lines = [
        "# Supported operators",
        "",
        "Generated from `firmware/kernels/ops.def` by `invoke ops-table`; do not edit by hand",
        "(tests/test_ops_table.py fails when this file and ops.def disagree).",
        "",
        "Every operator below imports and runs int8, bit-exact with TFLite's reference kernels,",
        "on the host twin and on the board. *Forward* is the kernel (`firmware/kernels/<kernel>.c`)",
        "of each plan op code; a frozen layer needs only that. *Backward* lists the operators",
        "(and kernels) that `pytools/train/autodiff.py` emits for its gradient; *trained through*",
        "says whether a scheme may train layers below it (its input gradient exists). *DSP* is",
        "the Cortex-M7 SIMD variant (`<kernel>_dsp.c`, bit-identical, chosen by the build).",
        "A model with any other operator is refused with one message naming each of them.",
        "",
        "| operator | op code | forward | DSP (forward) | backward | DSP (backward) | trained through |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "## The runtime's own operators",
        "",
        "No TFLite operator; the training compiler and patch-based execution emit them.",
        "",
        "| operator | op code | kernel | DSP |",
        "|---|---|---|---|",
        *(f"| {d.tflite} | {d.code} | `{d.kernel}` | {_dsp([d])} |" for d in own),
        "",
    ]
    return "\n".join(lines)


def write(path: Path = OUT) -> Path:
    path.write_text(render())
    return path
