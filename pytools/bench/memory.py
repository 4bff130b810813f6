"""A training plan's memory figures: the arena and its categories (compile_train), the
linker's RAM and flash for the image, and the overflow when it does not link. Peak SRAM
itself needs the running board's stack high-water (measure.py adds it)."""

from __future__ import annotations

import re
from typing import Any

from pytools.model.planner import align_up
from pytools.train.compile_train import CATEGORIES, CompiledTraining, arena_profile, category, lifetimes

PEAK_FORMULA = "peak SRAM = linker static RAM - reserved thread stack + measured thread-stack high-water"
# The measured high-water must stay below this share of the reserved thread stack (as
# `invoke hil` requires): the kernels' buffers are arena scratch, so the stack holds only call
# frames, and boards/*.toml reserve what those need with a margin.
STACK_MARGIN = 0.9
_OVERFLOW = re.compile(r"(\w+) overflowed by ([\d,]+) bytes")


def live_tensors(ct: CompiledTraining, step: int) -> list[tuple[str, tuple[int, ...], int, str]]:
    """(name, shape, bytes, category) of the arena tensors alive at an operator, largest first."""
    g = ct.train.graph
    out = [
        (
            g.tensor(t).name,
            g.tensor(t).shape,
            align_up(g.tensor(t).nbytes),
            category(ct.train, t, g.tensor(t).name),
        )
        for t, (a, b) in lifetimes(ct).items()
        if a <= step <= b
    ]
    return sorted(out, key=lambda x: -x[2])


def memory_figures(ct: CompiledTraining) -> dict[str, Any]:
    """Everything known about memory before the board runs: arena, its breakdown at the busiest
    operator and at the busiest backward one, linker RAM/flash (or the overflow)."""
    m, c = ct.board.memory, ct.compiled
    assert ct.base is not None
    base_ram, base_flash = ct.base.regions["RAM"].used, ct.base.regions["FLASH"].used
    prof = arena_profile(ct)
    nf = ct.train.n_forward
    back = max(range(nf, len(prof)), key=lambda i: sum(prof[i].values()), default=nf)
    g = ct.train.graph
    mem: dict[str, Any] = {
        "unit": "bytes",
        "ram_limit": m.ram_size,
        "flash_limit": m.flash_size,
        "arena": c.arena,
        "arena_peak_operator": ct.peak_step,
        "forward_operators": nf,  # operators [0, nf) are the forward pass (and its patches)
        "arena_peak_kind": g.ops[ct.peak_step].kind if ct.peak_step < len(g.ops) else "end",
        "arena_breakdown": {k: ct.breakdown[k] for k in CATEGORIES},
        "arena_peak_tensors": live_tensors(ct, ct.peak_step),
        "arena_backward_peak_operator": back,
        "arena_backward_peak_kind": g.ops[back].kind if back < len(g.ops) else "end",
        "arena_backward_breakdown": prof[back] if back < len(prof) else {},
        "inference_activations": max(
            (p["activations"] + p["scratch"] for p in prof[:nf]), default=0
        ),  # forward activations + scratch at their busiest forward operator
        "trainable_state": ct.breakdown["state total"],
        "flash_weights": ct.breakdown["flash weights"],
        "plan_bytes": len(c.blob),
        "firmware_ram": base_ram,
        "firmware_flash": base_flash,
        "reserved_thread_stack": m.stack_size,
        "reserved_handler_stack": m.handler_stack_size,
    }
    if ct.image is not None:
        mem["linker_ram"] = ct.image.regions["RAM"].used
        mem["linker_flash"] = ct.image.regions["FLASH"].used
        mem["ram_source"] = mem["flash_source"] = "linker"
        mem["overflow"] = {}
    else:
        mem["linker_ram"] = base_ram + c.arena  # what the image would need; the link failed
        mem["linker_flash"] = base_flash + len(c.blob)
        mem["ram_source"] = "sum of the firmware's RAM and the arena; the link failed"
        mem["flash_source"] = "sum of the firmware's flash and the plan; the link failed"
        mem["overflow"] = {r: int(n.replace(",", "")) for r, n in _OVERFLOW.findall(ct.link_error)}
    return mem


def check_stack(high_water: int, reserved: int, board: str) -> None:
    """Fails loudly when a step came near the end of the reserved thread stack (an overflow
    itself faults on the MPU guard below the RAM, docs/architecture.md)."""
    if high_water >= STACK_MARGIN * reserved:
        from pytools.errors import ToolError

        raise ToolError(
            f"the thread stack's high-water, {high_water:,} B, is over {STACK_MARGIN:.0%} of the "
            f"{reserved:,} B that boards/{board}.toml reserves (stack_size): raise stack_size, or "
            "find the kernel keeping a buffer on the stack (they belong in X_scratch_size)"
        )
