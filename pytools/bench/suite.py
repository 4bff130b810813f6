"""The benchmark suite behind BENCHMARKS.md (`invoke bench --suite`): the project's zoo models
and backbones with a head-only and a sparse scheme each, MobileNetV2-w0.35 at 128x128 against
the NUCLEO-F746ZG, MCUNet-5FPS with MIT's 49kb scheme against MIT's engine, and the optimized
kernels against the reference kernels, one run_bench per
row; the document says the command, the date and the commit it was made at."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytools.bench.measure import run_bench
from pytools.bench.memory import PEAK_FORMULA
from pytools.bench.report import (
    COMPARISON_HEAD,
    COUNT_NOTE,
    comparison_rows,
    count_note,
    kb,
    layer_table,
    mega,
    pointwise_rate,
)
from pytools.bench.samples import BACKBONES, Samples
from pytools.boards import load_board
from pytools.errors import ToolError
from pytools.paths import ROOT
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme


@dataclass(frozen=True)
class Entry:
    model: Path
    scheme: str
    label: str
    samples: Samples | None = None


SUITE_SAMPLES = 16
# The suite measures the model as given: with lr 0 the measured steps run every kernel of the
# step (updates included) but do not change the model, so every step costs what a step of that
# model costs. A zero update costs a little less than a real one: MobileNetV2's step, 0.27 M of
# 203.6 M instructions (0.13 %), measured once per operator on the same sample.
SUITE_LR = 0.0


def _zoo_entries() -> list[Entry]:
    """The project's zoo (pytools/pretrain/zoo.py) with a head-only and a sparse scheme each."""
    try:
        from pytools.pretrain.zoo import zoo_model, zoo_path
    except ImportError as e:
        raise ToolError(
            "the benchmark suite builds its models with pytools/pretrain/zoo.py (TensorFlow): "
            "run ./setup.sh first"
        ) from e
    from pytools.pretrain.zoo import ZOO

    sparse = {
        "cnn_int8_io": "bias=2,-1=1,-2=0.25",  # MAX_POOL and PAD below: no backward kernel
        "mobilenet_tiny": "bias=8,-1=1,-2=0.125,-5=0.25",
        "mlp": "bias=2,-1=1,-2=0.25",
    }
    out = []
    for name, sp in sparse.items():
        zoo_model(name)  # built (with TensorFlow) and cached on first use
        data = ZOO[name].data(SUITE_SAMPLES, 2)  # unseen samples of the model's own kind
        out.append(Entry(zoo_path(name), str(ROOT / "schemes" / "head_only.toml"), "head only", data))
        out.append(Entry(zoo_path(name), sp, "sparse", data))
    return out + _backbone_entries()


# The committed backbones (models/, invoke pretrain) with the schemes invoke plan chose for
# them under 64 KB (samples.BACKBONES), on held-out samples of their transfer data sets.
def _backbone_entries() -> list[Entry]:
    import datasets

    out = []
    for name, (scheme, dataset, split) in BACKBONES.items():
        held = datasets.load_split(dataset, split).held_out
        data = (held.x[:SUITE_SAMPLES].astype(np.float32), held.y[:SUITE_SAMPLES])
        model = ROOT / "models" / f"{name}.tflite"
        out.append(Entry(model, str(ROOT / "schemes" / "head_only.toml"), "head only", data))
        out.append(Entry(model, str(ROOT / scheme), "sparse", data))
    return out


MBV2_SCHEME = "schemes/mbv2_sparse.toml"
# The same scheme plus 1/8 of the final 1x1 conv (112 -> 1280): 17,920 B more trainable state.
MBV2_LARGER = "bias=20,-1=1,-2=0.125,-5=0.25,-8=0.125,-11=0.25,-14=0.125,patch=0-5x4+6-9x2"
# MBV2_SCHEME streams its input, patches #6-#12 and plans within an arena budget (its file says
# why); the comparison row runs the same trained layers with the input resident, as the scheme
# did before streaming: the first stages in patches #0-#5 4x4 and #6-#9 2x2, no budget (the
# compiler then takes each exact memory saver where it shrinks the arena).
MBV2_RESIDENT_OPTIONS = "patch=0-5x4+6-9x2"


def mbv2_resident() -> str:
    """The resident-input variant inline: MBV2_SCHEME's trained layers (read from it, not
    restated) without its streaming and budget, and MBV2_RESIDENT_OPTIONS."""
    layers = dataclasses.replace(load_scheme(str(ROOT / MBV2_SCHEME)), stream_input=False, arena_budget=None)
    return f"{layers.inline()},{MBV2_RESIDENT_OPTIONS}"


PAPER = {"peak_kb": 141, "ms": 373, "clock_hz": 216_000_000}
# Issue 7's bars for MobileNetV2 (issue 14, item 6): peak SRAM and instructions per step.
MBV2_BARS = {"peak_sram": 100 * 1024, "step": 40_000_000}
# MIT's engine (TinyEngine's training demo) on MCUNet-5FPS 128x128 with its "49kb" scheme, as
# issue 14 measured it on this emulated board; the bars are issue 14's ratios of these.
MCUNET_SCHEME = "schemes/mcunet_49kb.toml"
MIT_ENGINE = {"arena_kb": 189.8, "weights_kb": 47.7, "peak_kb": 237.5, "step": 106e6, "inference": 65e6}
MCUNET_BARS = {"peak_sram": 0.6, "step": 0.5}


def write_benchmarks(out_md: Path, board_name: str = "mps2_an500", command: str = "") -> dict[str, Any]:
    """Runs the whole suite and writes BENCHMARKS.md; returns every run's result."""
    from pytools.model.tflm import tflm_arena_bytes

    try:
        from pytools.pretrain.mobilenet_v2 import mobilenet_v2_path
        from pytools.pretrain.mobilenet_v2 import samples as mobilenet_v2_samples
    except ImportError as e:
        raise ToolError(
            "the suite builds MobileNetV2 with pytools/pretrain/mobilenet_v2.py: run it from the root"
        ) from e
    t0 = time.monotonic()
    made_at = commit()  # before the runs: the code they measured
    zoo = [
        (e, run_bench(e.model, e.scheme, board_name, None, samples=e.samples, lr=SUITE_LR))
        for e in _zoo_entries()
    ]
    # The same sparse steps with the reference kernels (the firmware without -DKERNELS_DSP=1).
    zoo_ref = {
        id(e): run_bench(
            e.model, e.scheme, board_name, None, samples=e.samples, lr=SUITE_LR, kernels="reference"
        )
        for e, _ in zoo
        if e.label == "sparse"
    }
    mb = mobilenet_v2_path()
    mb_data = mobilenet_v2_samples(SUITE_SAMPLES, 2)
    mb_run = run_bench(mb, str(ROOT / MBV2_SCHEME), board_name, None, samples=mb_data, lr=SUITE_LR)
    mb_ref = run_bench(
        mb, str(ROOT / MBV2_SCHEME), board_name, None, samples=mb_data, lr=SUITE_LR, kernels="reference"
    )
    # The same steps learning, at the rate run_bench checks not to diverge: what consecutive
    # steps then cost.
    mb_learning = run_bench(mb, str(ROOT / MBV2_SCHEME), board_name, None, samples=mb_data, per_op=False)
    mb_nucleo = run_bench(mb, str(ROOT / MBV2_SCHEME), "nucleo_f746zg", None, link_only=True)
    mb_larger = run_bench(mb, MBV2_LARGER, "nucleo_f746zg", None, link_only=True)
    mb_resident = run_bench(mb, mbv2_resident(), board_name, None, samples=mb_data, lr=SUITE_LR, per_op=False)
    if mb_learning["cost"] is not None:
        n_steps = len(mb_learning["cost"]["losses"])
        mb_learning["logit_mask_after"] = logit_mask_after(
            mb, str(ROOT / MBV2_SCHEME), mb_data, n_steps, mb_learning["lr"]
        )
    tflm = tflm_arena_bytes(mb.read_bytes())
    mc_run, mc_nucleo = _mcunet_runs(board_name)
    elapsed = time.monotonic() - t0
    refs = [(e, r, zoo_ref[id(e)]) for e, r in zoo if id(e) in zoo_ref]
    text = _suite_markdown(
        command,
        board_name,
        zoo,
        mb_run,
        mb_learning,
        mb_nucleo,
        mb_larger,
        mb_resident,
        tflm,
        elapsed,
        refs,
        mb_ref,
        made_at,
        (mc_run, mc_nucleo),
    )
    Path(out_md).write_text(text)
    return {
        "zoo": [r for _, r in zoo],
        "zoo_reference": [r for _, _, r in refs],
        "mobilenet_v2_reference": mb_ref,
        "mobilenet_v2": mb_run,
        "mobilenet_v2_learning": mb_learning,
        "mobilenet_v2_nucleo": mb_nucleo,
        "mobilenet_v2_larger": mb_larger,
        "mobilenet_v2_resident": mb_resident,
        "mcunet": mc_run,
        "mcunet_nucleo": mc_nucleo,
        "tflm": tflm,
        "seconds": elapsed,
    }


def _mcunet_runs(board_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """MCUNet-5FPS with MIT's 49kb scheme: the step on the board, and the Nucleo link."""
    from pytools.pretrain.mcunet import mcunet_path
    from pytools.pretrain.mcunet import samples as mcunet_samples

    path = mcunet_path()
    scheme = str(ROOT / MCUNET_SCHEME)
    run = run_bench(path, scheme, board_name, None, samples=mcunet_samples(SUITE_SAMPLES, 5), lr=SUITE_LR)
    return run, run_bench(path, scheme, "nucleo_f746zg", None, link_only=True)


def logit_mask_after(
    model: Path, scheme_spec: str, samples: Samples, n_steps: int, lr: float
) -> tuple[int, int]:
    """(logits strictly inside the int8 range, logits) after n_steps steps on the host twin:
    what a clamp mask on the logits would pass (the step has none: docs/training.md).

    The steps take the samples in the order run_bench gives them to the board (the host twin
    runs the same C, bit-identical), so this is the board's state after its steps.
    """
    from pytools.model.tflite_import import load_tflite
    from pytools.session import model_inputs
    from pytools.train.trainer import Trainer

    ct = compile_training(
        load_tflite(model), load_scheme(scheme_spec), load_board(None), model.stem, link=False, lr=lr
    )
    trainer = Trainer(ct)
    g = ct.train.graph
    xs, ys = samples
    x = model_inputs(g, xs)  # as run_bench quantizes given samples (samples.given)
    for k in range(n_steps):
        trainer.step(x[k % len(ys)], int(ys[k % len(ys)]))
    logits = np.asarray(trainer.backend.tensor(ct.compiled.plan_ids[ct.train.logits])).reshape(-1)
    return int(np.count_nonzero((logits > -128) & (logits < 127))), int(logits.size)


def commit() -> str:
    """The commit the working tree is at (with "+ uncommitted changes" when it differs)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return head + (" + uncommitted changes" if dirty else "")


def _short(name: str) -> str:
    """A TFLite tensor name without its fused-op aliases and model prefix."""
    return "/".join(name.split(";")[0].split("/")[1:]) or name


def _kernels_sentence(kernels: str) -> str:
    if kernels.startswith("reference"):
        return "the firmware's reference (non-DSP, no CMSIS-NN) C kernels"
    if kernels.startswith("optimized"):
        return (
            f"the firmware as built: {kernels.replace('; the rest reference C', '')}, reference C "
            "for every other kernel (section 4 compares them with the reference kernels)"
        )
    return f"the firmware's kernels ({kernels})"


def _suite_markdown(
    command: str,
    board_name: str,
    zoo: list[tuple[Entry, dict[str, Any]]],
    mb: dict[str, Any],
    mb_learning: dict[str, Any],
    mb_nucleo: dict[str, Any],
    mb_larger: dict[str, Any],
    mb_resident: dict[str, Any],
    tflm: dict[str, int],
    elapsed: float,
    refs: list[tuple[Entry, dict[str, Any], dict[str, Any]]] | None = None,
    mb_ref: dict[str, Any] | None = None,
    made_at: str = "",
    mcunet: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> str:
    board = load_board(board_name)
    made_at = made_at or commit()
    lines = [
        "# Benchmarks: one on-device training step",
        "",
        f"Produced by `{command}` (`pytools.bench.write_benchmarks`, one `run_bench` per row; the "
        f"command is repeated at the end) on {mb['date']} at commit {made_at}, in {elapsed:.0f} s on a "
        f"2-core host. Board: **{board.name}** ({board.description}); firmware build "
        f"{mb.get('build_id', '?')}.",
        "",
        f"**Costs are {board.counter_unit}: {board.timing_note}.** They are emulator instruction "
        "counts, not silicon cycles (a real Cortex-M7 adds flash wait states and cache effects and "
        "can dual-issue, so cycles and instructions differ in either direction; and "
        f"{COUNT_NOTE}), of "
        f"{_kernels_sentence(mb['kernels'])}. "
        f"Each step trains on the next of {SUITE_SAMPLES} unseen samples of the model's own kind "
        "(pytools/pretrain/zoo.py's synthetic images or features; 128x128 ones for MobileNetV2; "
        "held-out samples of their transfer data sets for the backbones). The "
        "costs are those of a step of the model as given: the steps run at learning rate 0, so every "
        "kernel runs, updates included, but the measured steps do not change the model (a zero update "
        "costs ~0.1 % less than a real one; section 2 shows MobileNetV2 learning, at a rate checked "
        "not to diverge). The gradient kernels skip zero gradients, so backward costs vary with the "
        "data: the step column is a median of 5 whole steps; section 5 has every step, the range and "
        "the losses. Each step is also measured in parts (forward and backward; the last one operator "
        "by operator) from the same trained state and sample, and the parts add up to the whole step "
        "once the extra INVOKEs' measured overhead is taken off (section 5, \"Whole step against its "
        "parts\"). Memory figures are the linker's, and peak SRAM is measured on the running board: "
        f"{PEAK_FORMULA}. Sizes are in bytes (KiB = 1,024 B); the paper's KB are as the paper gives them.",
        "",
        "## 1. The project's zoo models (pytools/pretrain/zoo.py) and backbones (models/)",
        "",
        "| model | scheme | fits | peak SRAM (B) | arena (B) | trainable state (B) | flash (B) | "
        f"step ({board.counter_unit}) | forward | backward + update | MACs per step | "
        f"MACs per {board.counter_unit[:-1]} |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e, r in zoo:
        mem, cost, macs = r["memory"], r["cost"], r["macs"]
        name = r["model"].rsplit("-", 1)[0]
        if cost is None:
            lines.append(
                f"| {name} | {e.label}: {r['scheme']} | **no** | | {mem['arena']:,} | "
                f"{mem['trainable_state']:,} | {mem['linker_flash']:,} | | | | {macs['step']:,} | |"
            )
            continue
        lines.append(
            f"| {name} | {e.label}: {r['scheme']} | yes | {mem['peak_sram']:,} | "
            f"{mem['arena']:,} | {mem['trainable_state']:,} | {mem['linker_flash']:,} | {cost['step']:,} | "
            f"{cost['forward']:,} | {cost['backward_update']:,} | {macs['step']:,} | {macs['per_unit']:.3f} |"
        )
    lines += [
        "",
        "Sparse schemes, inline (pytools/train/scheme.py) or the file invoke plan wrote: "
        + "; ".join(
            f"{r['model'].rsplit('-', 1)[0]} `{e.scheme.removeprefix(str(ROOT) + '/')}`"
            for e, r in zoo
            if e.label == "sparse"
        )
        + ". Head only: `schemes/head_only.toml` (the classifier's weights and bias).",
    ]
    if count_note(board.counter_unit):
        lines += ["", count_note(board.counter_unit)]
    lines += _mbv2_section(mb, mb_learning, mb_nucleo, mb_larger, tflm)
    lines += _resident_section(mb, mb_resident)
    if mcunet is not None:
        lines += mcunet_section(*mcunet)
    if mb_ref is not None and mb_ref.get("cost") and mb.get("cost"):
        lines += _kernels_section(mb, mb_ref, refs or [])
    lines += ["", "## 5. Every run in detail", ""]
    for _, r in zoo:
        lines += [r["markdown"], ""]
    for _, _, r in refs or []:
        lines += [r["markdown"], ""]
    lines += [mb["markdown"], ""]
    if mb_ref is not None:
        lines += [mb_ref["markdown"], ""]
    lines += [
        mb_learning["markdown"],
        "",
        mb_nucleo["markdown"],
        "",
        mb_larger["markdown"],
        "",
    ]
    for r in mcunet or ():
        lines += [r["markdown"], ""]
    lines += [
        "## 6. How this file was made",
        "",
        f"`{command}` on {mb['date']}, at commit {made_at}, board {board.name}, in {elapsed:.0f} s. "
        "Other engineers may change kernels after that commit: rerun the command to bring the figures "
        "up to date.",
        "",
    ]
    return "\n".join(lines)


def _kernels_section(
    mb: dict[str, Any], mb_ref: dict[str, Any], refs: list[tuple[Entry, dict[str, Any], dict[str, Any]]]
) -> list[str]:
    """Section 3: the optimized kernels against the reference kernels, same models, schemes and
    samples; MobileNetV2 layer by layer."""
    paper_cycles = PAPER["ms"] * PAPER["clock_hz"] // 1000
    so, sr = mb["cost"]["step"], mb_ref["cost"]["step"]
    pm, pc = pointwise_rate(mb)
    nm, nc = pointwise_rate(mb, max_c=32)  # narrow: 8 or 16 input channels
    wm, wc = pointwise_rate(mb, min_c=32)
    rows = [comparison_rows(f"MobileNetV2-w0.35, `{MBV2_SCHEME}`", mb, mb_ref)]
    rows += [comparison_rows(f"{r['model'].rsplit('-', 1)[0]}, {e.label}", r, ref) for e, r, ref in refs]
    return [
        "",
        "## 4. Optimized kernels against the reference kernels",
        "",
        "The same steps (model, scheme, samples, lr 0) on the same emulated board, with the firmware "
        "as firmware/build.toml builds it (`-DKERNELS_DSP=1`: the Cortex-M7 DSP SIMD variants of "
        f"{', '.join(_dsp_kernels(mb['kernels']))}) and with the same firmware built without that "
        "flag (every kernel reference C). Both give bit-identical results (tests/kernels/conv/"
        "test_dsp_kernels.py, conv/test_dsp_grads.py, tests/test_training.py). Step: median of whole "
        "steps; forward, backward, update: sums of one-operator INVOKEs over one step (forward "
        "includes the clamp masks; backward the input gradients; update the weight and bias "
        "updates; the loss and gradient sums are in neither). **Ours are instruction counts on the "
        "emulator (QEMU -icount shift=0), not cycles on silicon.** "
        f"{count_note(mb['cost']['unit'])}",
        "",
        COMPARISON_HEAD,
        *rows,
        "",
        f"Issue 7's bars: the optimized training step at least 3x fewer instructions than the "
        f"reference kernels on MobileNetV2-w0.35: **{sr / so:.2f}x** ({mega(sr)} -> {mega(so)} "
        "instructions); "
        f"the forward 1x1 convolutions at or above 1 MAC per instruction (the DSP limit is 2): "
        f"**{_ratio(pm, pc)}** over all of MobileNetV2's 1x1 convs: {_ratio(wm, wc)} for those with 32 or "
        f"more input channels, {_ratio(nm, nc)} for the narrow ones (fewer than 32 input channels: "
        "per output, the requantization and the widening weigh more against 8 or 16 MACs); "
        "single 1x1 layers such as 16x16x64 -> 64 are held at or above 1.0 by "
        "tests/kernels/conv/test_dsp_kernels.py. The paper's figures, for "
        f"context: {PAPER['peak_kb']} KB and {PAPER['ms']} ms per image on the STM32F746 at 216 MHz "
        f"(= {paper_cycles / 1e6:.1f} M cycles, their own optimized kernels on silicon); ours: "
        f"{mega(so)} instructions per step on the emulator, not comparable unit for unit.",
        "",
        "MobileNetV2-w0.35, layer by layer (one step; instructions; optimized kernels, then the "
        "reference kernels):",
        "",
        layer_table(mb, mb_ref, min_share=0.005),
        "",
        count_note(mb["cost"]["unit"]),
    ]


def _bar_text(what: str, value: float, bar: float, fmt: Any) -> str:
    """'what X: met (<= bar)' or 'what X: not met (bar <= Y, Z over)'."""
    if value <= bar:
        return f"{what} {fmt(value)}: **met** (at most {fmt(bar)})"
    return f"{what} {fmt(value)}: **not met** (at most {fmt(bar)}; {fmt(value - bar)} over)"


def mcunet_section(run: dict[str, Any], nucleo: dict[str, Any]) -> list[str]:
    """Section 3: MCUNet-5FPS with MIT's 49kb scheme against MIT's engine (issue 14's bars)."""
    mem, cost = run["memory"], run["cost"]
    nm = nucleo["memory"]
    mit_peak = MIT_ENGINE["peak_kb"] * 1024
    lines = [
        "",
        "## 3. MCUNet-5FPS at 128x128 with MIT's 49kb scheme, against MIT's engine",
        "",
        "MCUNet-5FPS rebuilt from its published architecture by pytools/pretrain/mcunet.py (a "
        "reconstructed layer table, BatchNorm statistics re-estimated, full-int8 export; the weights "
        f"are not MIT's). Scheme `{MCUNET_SCHEME}` (MIT's 49kb sparse update): {run['scheme']}. MIT's "
        "engine figures are issue 14's, measured on this emulated board; their KB are 1,024 B.",
        "",
        "| figure | MIT's engine | ours | ours / MIT's | issue 14's bar |",
        "|---|---:|---:|---:|---|",
    ]
    verdict = "fits" if nucleo["fits"] else "**does not fit**"
    spare = 1 - nm["linker_flash"] / nm["flash_limit"]
    link = (
        f"nucleo_f746zg link: {verdict}: SRAM {nm['linker_ram']:,} of {nm['ram_limit']:,} B, flash "
        f"{nm['linker_flash']:,} of {nm['flash_limit']:,} B ({spare:.1%} spare)"
    )
    if cost is None or not run["fits"]:
        over = ", ".join(f"{r} over by {n:,} B" for r, n in mem["overflow"].items())
        lines.append(f"| training step on {run['board']} | | not run: does not fit ({over}) | | |")
        return [*lines, "", link + "."]
    peak_ratio = mem["peak_sram"] / mit_peak
    step_ratio = cost["step"] / MIT_ENGINE["step"]
    lines += [
        f"| peak SRAM (measured on {run['board']}) | {MIT_ENGINE['peak_kb']} KB (arena "
        f"{MIT_ENGINE['arena_kb']} + weights {MIT_ENGINE['weights_kb']}) | {kb(mem['peak_sram'])} | "
        f"{peak_ratio:.3f}x | <= {MCUNET_BARS['peak_sram']}x: "
        f"{'**met**' if peak_ratio <= MCUNET_BARS['peak_sram'] else '**not met**'} |",
        f"| {cost['unit']} per training step (median of {len(cost['steps'])}) | "
        f"~{MIT_ENGINE['step'] / 1e6:.0f} M | {mega(cost['step'], cost['unit'])} | {step_ratio:.3f}x | "
        f"<= {MCUNET_BARS['step']}x: {'**met**' if step_ratio <= MCUNET_BARS['step'] else '**not met**'} |",
        f"| of it forward (inference) | ~{MIT_ENGINE['inference'] / 1e6:.0f} M | "
        f"{mega(cost['forward'], cost['unit'])} | {cost['forward'] / MIT_ENGINE['inference']:.3f}x | |",
        f"| of it loss + backward + update | | {mega(cost['backward_update'], cost['unit'])} | | |",
        f"| trainable state in SRAM | | {kb(mem['trainable_state'])} | | |",
        "",
        link + ".",
    ]
    note = count_note(load_board(run["board"]).counter_unit)
    if note:
        lines += ["", note]
    return lines


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def _dsp_kernels(kernels: str) -> list[str]:
    m = re.search(r"\(([^)]*)\)", kernels)
    return m.group(1).split(", ") if m else []


def _resident_section(mb: dict[str, Any], rs: dict[str, Any]) -> list[str]:
    """The MobileNetV2 row's trained layers with the input resident, against the same bars."""
    lines = ["", f"**Input resident** (inline scheme `{mbv2_resident()}`): {rs['scheme']}."]
    cost, mem = rs["cost"], rs["memory"]
    if not rs["fits"] or cost is None:
        over = ", ".join(f"{r} over by {n:,} B" for r, n in mem["overflow"].items())
        return [*lines, f"Not run: it does not fit ({over})."]
    base = mb["memory"]
    bd, back = mem["arena_breakdown"], mem["arena_backward_breakdown"]
    lines[-1] += (
        f" The same training (the same trained layers, bit for bit). Peak SRAM {kb(mem['peak_sram'])} "
        f"(the streamed row above: {kb(base['peak_sram'])}), arena {kb(mem['arena'])} (above: "
        f"{kb(base['arena'])}); a step {mega(cost['step'], cost['unit'])} (median of {len(cost['steps'])}: "
        f"forward {mega(cost['forward'])}, loss + backward + update {mega(cost['backward_update'])}). "
        "Issue 14's bars for it: "
        + _bar_text("peak SRAM", mem["peak_sram"], MBV2_BARS["peak_sram"], kb)
        + "; "
        + _bar_text("instructions per step", cost["step"], MBV2_BARS["step"], mega)
        + f". Its busiest operator is #{mem['arena_peak_operator']} ({mem['arena_peak_kind']}: "
        f"{sum(bd.values()):,} B of live tensors and scratch, {bd['trainable state']:,} of them "
        f"trainable state); the busiest of the backward part #{mem['arena_backward_peak_operator']} "
        f"({mem['arena_backward_peak_kind']}: {back['trainable state']:,} B trainable state, "
        f"{back['gradients']:,} gradients, {back['masks']:,} masks, {back['saved activations']:,} saved "
        f"activations, {back['scratch']:,} scratch)."
    )
    return lines


def _mbv2_section(
    mb: dict[str, Any],
    learning: dict[str, Any],
    nucleo: dict[str, Any],
    larger: dict[str, Any],
    tflm: dict[str, int],
) -> list[str]:
    mem, cost, macs = mb["memory"], mb["cost"], mb["macs"]
    nm, lm = nucleo["memory"], larger["memory"]
    paper_cycles = PAPER["ms"] * PAPER["clock_hz"] // 1000
    budget = 256 * 1024
    lines = [
        "",
        "## 2. MobileNetV2-w0.35 at 128x128, the paper's model, against the NUCLEO-F746ZG",
        "",
        "Keras' own `MobileNetV2(alpha=0.35, input_shape=(128, 128, 3), weights=None)`, batch 1, with a "
        "10-class head (a transfer-learning head; Keras' 1000-class one alone is 1.28 MB of int8 weights), "
        "BatchNorm statistics re-estimated on 64 images, full-int8 export "
        "(pytools/pretrain/mobilenet_v2.py): "
        f"{macs['model_forward'] / 1e6:.1f} M MACs and {mb['model_params'] / 1e6:.2f} M parameters "
        "(the paper's w0.35: 17 M MACs, 0.25 M parameters; Keras keeps the last conv at 1280 channels). "
        f"Scheme `{MBV2_SCHEME}`: {mb['scheme']}.",
        "",
        "| figure | ours | paper (STM32F746 @ 216 MHz, sparse update + reordering) |",
        "|---|---|---|",
    ]
    verdict = "fits" if nucleo["fits"] else "**does not fit**"
    lines.append(
        f"| static SRAM, nucleo_f746zg image (linker) | {kb(nm['linker_ram'])}: {verdict} its "
        f"{nm['ram_limit']:,} B | |"
    )
    persist = load_board("nucleo_f746zg").raw["persist"]
    lines.append(
        f"| flash, nucleo_f746zg image (linker) | {kb(nm['linker_flash'])} of {nm['flash_limit']:,} B, "
        f"counting the {persist['region_size']:,} B the image skips for the trained-state slots "
        "(boards/nucleo_f746zg.toml [persist]) | |"
    )
    if mb["fits"] and cost is not None:
        steps = cost["steps"]
        lines += [
            f"| **peak SRAM**, measured on {mb['board']} (same limits) | {kb(mem['peak_sram'])} | "
            f"{PAPER['peak_kb']} KB |",
            f"| of it: training-plan arena | {kb(mem['arena'])} | |",
            f"| of it: trainable state (in the arena, alive all step) | {kb(mem['trainable_state'])} | |",
            f"| **training step** (median of {len(steps)}) | "
            f"{mega(cost['step'], cost['unit'])} on {mb['board']} "
            f"(range {mega(min(steps))} to {mega(max(steps))}) | {PAPER['ms']} ms = "
            f"{paper_cycles / 1e6:.1f} M cycles |",
            f"| of it forward | {mega(cost['forward'], cost['unit'])} | |",
            f"| of it loss + backward + update | {mega(cost['backward_update'], cost['unit'])} | |",
            f"| MACs per step | {mega(macs['step'])} ({mega(macs['forward'])} forward, "
            f"{mega(macs['backward_update'])} backward) | |",
            f"| MACs per {cost['unit'][:-1]} (ours) / per cycle (paper) | {macs['per_unit']:.3f} "
            f"({macs['forward'] / cost['step']:.3f} counting forward MACs only) | "
            f"{17e6 / paper_cycles:.3f} (their 17 M forward MACs only) |",
        ]
    else:
        over = ", ".join(f"{r} over by {n:,} B" for r, n in mem["overflow"].items())
        lines.append(f"| training step on {mb['board']} | not run: does not fit ({over}) | |")
    lines += [
        f"| TFLite Micro's arena to run inference, same model (tflite-micro `print_allocations`, "
        f"64-bit host) | {kb(tflm['total'])}, of which {tflm['activations']:,} B activations | |",
        f"| our forward activations at their busiest operator | {kb(mem['inference_activations'])} | |",
    ]
    if mb["fits"] and cost is not None:
        lines += [
            "",
            "Issue 14's bars for this row (item 6): "
            + _bar_text("peak SRAM", mem["peak_sram"], MBV2_BARS["peak_sram"], kb)
            + "; "
            + _bar_text("instructions per step", cost["step"], MBV2_BARS["step"], mega)
            + ".",
        ]
    note = count_note(load_board(mb["board"]).counter_unit)
    if note:
        lines += ["", note]

    bd, back = mem["arena_breakdown"], mem["arena_backward_breakdown"]
    top = mem["arena_peak_tensors"][:3]
    top_text = ", ".join(
        f"`{_short(name)}` {'x'.join(map(str, shape))} ({size:,} B, {cat})" for name, shape, size, cat in top
    )
    kept = bd["saved activations"] + bd["masks"] + bd["gradients"]
    where = "in the forward pass" if mem["arena_peak_operator"] < mem.get("forward_operators", 0) else ""
    kept_text = (
        f"No saved activation, mask or gradient is alive at that point ({kept:,} B): they belong to the "
        "late 8x8 and 4x4 layers, which is what sparse update buys."
        if kept == 0
        else f"Beside them, {kept:,} B of saved activations, masks and gradients, kept for the backward "
        "pass of the trained 8x8 and 4x4 layers (sparse update keeps nothing for the layers before)."
    )
    lines += [
        "",
        "**Where the memory goes.** The arena peaks at operator "
        f"#{mem['arena_peak_operator']} ({mem['arena_peak_kind']}){', ' + where if where else ''}, with "
        f"{bd['activations']:,} B of forward activations and {bd['trainable state']:,} B of trainable state "
        f"(weight slices, biases and the RNG live all step); the largest tensors alive there: {top_text}. "
        f"{kept_text} At the busiest operator of the backward part "
        f"(#{mem['arena_backward_peak_operator']}, {mem['arena_backward_peak_kind']}) the arena holds "
        f"{sum(back.values()):,} B: {back['saved activations']:,} saved activations, "
        f"{back['masks']:,} masks, "
        f"{back['gradients']:,} gradients, {back['trainable state']:,} trainable state, "
        f"{back['scratch']:,} scratch, {back['activations']:,} other activations.",
    ]
    inference_floor = mem["inference_activations"] + mem["firmware_ram"]
    para = (
        f"Forward activations alone ({mem['inference_activations']:,} B) plus the firmware's own RAM "
        f"({mem['firmware_ram']:,} B, {mem['reserved_thread_stack']:,} of it the reserved thread stack) "
        f"come to {inference_floor:,} B"
    )
    if inference_floor > budget:
        para += (
            f", more than 256 KB ({budget:,} B) before any training state: a layer-by-layer forward pass "
            "cannot train this model in 256 KB, and the paper's 141 KB is out of reach for it. "
            "Reaching it needs what method.md section 7 describes for the frozen first stages: "
            "patch-based inference (MCUNetV2-style: several layers computed tile by tile, the "
            "receptive-field overlap recomputed) and in-place depthwise convolutions."
        )
    else:
        para += f", within 256 KB ({budget:,} B)."
    if mb["fits"] and cost is not None:
        para += (
            f" On the F746's 320 KB the step does fit, with {nm['ram_limit'] - nm['linker_ram']:,} B "
            "to spare (nucleo_f746zg link)."
        )
    if larger["fits"]:
        para += f" The larger variant `{MBV2_LARGER}` also fits ({lm['linker_ram']:,} B)."
    else:
        over = ", ".join(f"{r} by {n:,} B" for r, n in lm["overflow"].items())
        para += (
            f" The margin is thin: adding 1/8 of the final 1x1 conv's weights (inline scheme "
            f"`{MBV2_LARGER}`, {lm['trainable_state']:,} B of trainable state instead of "
            f"{mem['trainable_state']:,}) does not fit nucleo_f746zg: the linker overflows {over} "
            f"({lm['linker_ram']:,} B needed)."
        )
    lines += ["", para]
    lc = learning["cost"]
    if lc is not None:
        ls = lc["losses"]
        para2 = (
            f"**Learning at lr {learning['lr']:g}.** The same samples at a learning rate that does not "
            f"diverge: {learning['lr_check']} Consecutive steps: whole steps "
            f"{', '.join(mega(v) for v in lc['steps'])} {lc['unit']}; "
            f"their backward + update parts {', '.join(mega(v) for v in lc['backward_update_steps'])}; "
            f"losses {', '.join(f'{v:.3f}' for v in ls)}."
        )
        mask = learning.get("logit_mask_after")
        if mask is not None:
            para2 += (
                f" Replayed on the host twin (bit-identical with the board), {mask[0]} of the {mask[1]} "
                f"logits lie strictly inside the int8 range after these {len(ls)} steps. The loss gradient "
                "passes straight through the logits' int8 saturation (docs/training.md): with a clamp mask "
                "there, saturated logits stopped all learning at this rate, and the gradient kernels, which "
                "skip zeros, made those steps cheaper."
            )
        lines += ["", para2]
    lines += [
        "",
        f"**On time.** The paper's {PAPER['ms']} ms is their engine's optimized kernels on silicon; "
        "ours is an instruction count of our kernels under QEMU. The units differ, so the two rows are "
        f"context, not a like-for-like ratio ({COUNT_NOTE}).",
    ]
    return lines
