"""`patch = "auto"` (pytools.model.lowering.patch.choose): the memory-minimal patching under a
recompute budget, or none when no patching lowers the planned arena, and a note that says
which and why. Oracle: the planner's arena of the same step compiled without patches."""

from __future__ import annotations

from pytools.boards import load_board
from pytools.model.tflite_import import import_tflite
from pytools.pretrain.zoo import zoo_model
from pytools.train.compile_train import compile_training, report
from pytools.train.scheme import load_scheme

BOARD = load_board("mps2_an500")


def _compiled(scheme: str):
    return compile_training(
        import_tflite(zoo_model("mobilenet_tiny"), "m"), load_scheme(scheme), BOARD, "m", link=False
    )


def _recomputed(ct) -> float:
    return (ct.patched.patched_macs - ct.patched.stage_macs) / ct.patched.stage_macs


def test_auto_chooses_a_patching_that_saves_memory_and_says_so() -> None:
    plain = _compiled("bias=4,-1=1,-2=0.25")
    auto = _compiled("bias=4,-1=1,-2=0.25,patch=auto")
    assert auto.patching and auto.compiled.arena < plain.compiled.arena
    assert _recomputed(auto) <= 0.5
    assert f"arena {plain.compiled.arena:,} -> " in auto.patch_note
    assert auto.patch_note in report(auto)


def test_auto_keeps_to_the_recompute_budget() -> None:
    free = _compiled("bias=4,-1=1,-2=0.25,patch=auto,patch_budget=100")
    none = _compiled("bias=4,-1=1,-2=0.25,patch=auto,patch_budget=0")
    assert none.patching and _recomputed(none) == 0  # 1x1 stages recompute nothing
    assert free.compiled.arena <= none.compiled.arena
    assert "budget 0%" in none.patch_note


def test_auto_patches_nothing_when_the_peak_is_elsewhere() -> None:
    """Weights trained down to the fourth layer: the backward pass decides the arena, and
    every stage that can run in patches leaves it as it is."""
    scheme = "bias=12,-1=1,-2=1,-3=1,-5=1,-8=1,-10=1,-12=1"
    plain = _compiled(scheme)
    auto = _compiled(scheme + ",patch=auto")
    assert auto.patching == [] and auto.patched is None
    assert auto.compiled.arena == plain.compiled.arena
    assert "none chosen" in auto.patch_note and "not in the first stages" in auto.patch_note
