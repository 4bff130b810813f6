"""docs/operators.md is generated from firmware/kernels/ops.def (invoke ops-table), and the
copies of ops.def's facts elsewhere agree with it."""

from __future__ import annotations

from pytools.model.ir import SUPPORTED_OPS
from pytools.model.kernels import KERNELS_DIR, backward_ops, forward_kernels, op_defs
from pytools.model.ops_table import OUT, render
from pytools.train.autodiff import BACKWARD_OK, PASS_THROUGH


def test_the_committed_table_is_the_generated_one() -> None:
    assert OUT.read_text() == render(), "docs/operators.md is stale: run `invoke ops-table`"


def test_the_table_has_a_row_per_supported_operator() -> None:
    text = render()
    for op in SUPPORTED_OPS:
        assert f"\n| {op} | {op_defs()[op].code}" in text, op


def test_supported_ops_are_the_builtin_lines_of_ops_def() -> None:
    names = list(op_defs())
    assert list(SUPPORTED_OPS) == [n for n in names if n in SUPPORTED_OPS]  # ops.def's order
    assert {"CONV_2D", "MUL", "LOGISTIC", "HARD_SWISH", "QUANTIZE"} <= set(SUPPORTED_OPS)
    assert not {"CLAMP_MASK", "QUANTIZE_S8", "CONV_2D_GRAD_INPUT", "WINDOW_COPY"} & set(SUPPORTED_OPS)
    assert [d.kernel for d in forward_kernels("QUANTIZE")] == ["quantize_f32_s8", "requantize_s8"]


def test_every_kernel_has_its_files() -> None:
    for d in op_defs().values():
        for ext in ("def", "h", "c"):
            assert (KERNELS_DIR / f"{d.kernel}.{ext}").exists(), (d.tflite, d.kernel, ext)


def test_backward_lines_agree_with_autodiff() -> None:
    """Every operator a scheme may train through has its backward operators in ops.def (but
    RESHAPE and the others whose gradient is their output's bytes), and no other has input
    gradients."""
    for op in SUPPORTED_OPS:
        bwd = {d.tflite for d in backward_ops(op)}
        if op in BACKWARD_OK and op not in PASS_THROUGH:
            assert bwd, op
        if op not in BACKWARD_OK:
            assert not any("GRAD_INPUT" in n for n in bwd), op
