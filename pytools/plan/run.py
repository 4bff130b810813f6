"""`invoke plan`: contribution analysis, then the evolutionary search under a memory budget.

Writes next to the scheme file (--out, default schemes/<model>-<dataset>-<budget>.toml):
    <out>.toml          the scheme, with its predicted gain and memory as comments
    <out>.memory.txt    its memory report (`invoke compile`'s, linked: the linker's totals)
    <out>.png           the analysis: gain of biases per k, of each layer's weights per ratio,
                        the chosen scheme marked
    <out>.json          the analysis and the search's result (for `invoke results`)
"""

from __future__ import annotations

import json
import math
import re
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pytools.boards import Board
from pytools.errors import ToolError
from pytools.paths import ROOT
from pytools.plan.contribution import Analysis, analyze
from pytools.plan.finetune import Data, compile_for, load, run
from pytools.plan.search import Memory, Result, evolve, scheme_of
from pytools.progress import progress as progress_bar
from pytools.train.compile_train import compile_training, report
from pytools.train.scheme import Scheme, trainable_ops

SCHEMES = ROOT / "schemes"
DEFAULT_LR = 0.01  # as `invoke train`'s default
DEFAULT_STEPS = 500  # fine-tuning steps per measured part
EVAL_LIMIT = 400  # validation samples per measurement
MAX_SECONDS = 480.0  # the fine-tuning runs' share of the 10 minutes `invoke plan` may take
FINALISTS = 6


def parse_budget(text: str) -> int:
    """'64KB' / '64KiB' / '64k' -> 65,536 bytes (K = 1024, as the boards' sizes); '0.5MB'; '65536'."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)(i?[bB])?\s*", text)
    if not m:
        raise ToolError(f"budget '{text}': give bytes, or KB / MB (e.g. 64KB)")
    scale = {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def scheme_toml(s: Scheme, comment: str) -> str:
    lines = [f"# {line}" for line in comment.splitlines()]
    lines.append(f"bias_layers = {s.bias_layers}")
    if not s.qas:
        lines.append("qas = false")
    lines.append("[weights]")
    lines += [f"{k} = {r}" for k, r in sorted(s.weights.items())]
    return "\n".join(lines) + "\n"


@dataclass
class Plan:
    scheme: Scheme
    analysis: Analysis
    result: Result
    measured_gain: float  # the chosen scheme fine-tuned as a whole, on the validation part
    memory: int  # its peak training SRAM (bytes)
    memory_report: str
    linked_ram: int
    seconds: dict[str, float]
    files: list[Path]


def plot(an: Analysis, chosen: Scheme, budget: int, memory: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(an.layers)
    required = an.gains().required
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1, 2.2]})
    ks = list(range(len(an.bias_gain)))
    a.plot(ks, [100 * g for g in an.bias_gain], "o-", color="tab:blue")
    if chosen.bias_layers:
        a.plot(
            [chosen.bias_layers],
            [100 * an.bias_gain[chosen.bias_layers]],
            "o",
            ms=14,
            mfc="none",
            mec="red",
            mew=2,
        )
    a.set_xlabel("biases of the last k layers")
    a.set_ylabel(f"validation accuracy gain over the {an.base} base (points)")
    a.set_title("biases")
    a.axhline(0, color="grey", lw=0.5)
    width = 0.2
    colors = ("#c6dbef", "#6baed6", "#2171b5", "#08306b")
    for j, r in enumerate((0.125, 0.25, 0.5, 1.0)):
        xs = [pos for pos in range(n) if r in an.weight_gain[pos] and pos not in required]
        ys = [100 * an.weight_gain[pos][r] for pos in xs]
        edge = ["red" if chosen.weights.get(pos - n) == r else "none" for pos in xs]
        b.bar(
            [x + (j - 1.5) * width for x in xs],
            ys,
            width,
            color=colors[j],
            edgecolor=edge,
            linewidth=2,
            label=f"ratio {r:g}",
        )
    b.set_xticks(
        range(n),
        [
            f"{pos - n}\n{an.layers[pos].replace('_2D', '').lower()}"
            + ("\n(base)" if pos in required else "")
            for pos in range(n)
        ],
        fontsize=7,
    )
    b.set_xlabel("layer (from the end) and its weights' channel ratio; red: chosen")
    b.set_title(f"weights of one layer (with the {an.base} base)")
    b.axhline(0, color="grey", lw=0.5)
    from matplotlib.patches import Patch

    handles = [
        Patch(color=c, label=f"ratio {r:g}") for c, r in zip(colors, (0.125, 0.25, 0.5, 1.0), strict=True)
    ]
    b.legend(handles=[*handles, Patch(facecolor="white", edgecolor="red", lw=2, label="chosen")], fontsize=8)
    fig.suptitle(
        textwrap.fill(
            f"{an.model}: contribution analysis ({an.steps} steps, lr {an.lr:g}, seeds {an.seeds}); "
            f"chosen: {chosen.describe()}; {memory:,} B of {budget:,} B",
            150,
        ),
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fit_steps(
    d: Data, board: Board, steps: int, n_seeds: int, max_seconds: float, say: Callable[..., None]
) -> int:
    """Steps per run such that every run (each part, the base, the finalists; each seed) fits
    max_seconds. One probe times the costliest kind of step: every bias and the classifier,
    which backpropagates through every layer."""
    if math.isinf(max_seconds):  # no limit: the steps asked for (reproducible on any machine)
        return steps
    n = len(trainable_ops(d.graph))
    ct = compile_for(d.graph, Scheme(n, {-1: 1.0}), board, d.model_name, DEFAULT_LR, d.loss)
    probe = min(steps, 100)
    t = time.monotonic()
    run(ct, d, probe, 0, 0)
    t_step = (time.monotonic() - t) / max(probe, 1)
    t = time.monotonic()
    run(ct, d, 0, 0, min(EVAL_LIMIT, len(d.y_eval)))
    t_eval = time.monotonic() - t
    runs = (n + 4 * (n - 1) + 1 + FINALISTS + 1) * n_seeds
    per_run = max_seconds / runs
    fitted = max(50, int((per_run - t_eval) / t_step))
    if fitted < steps:
        say(
            f"time      {t_step * 1e3:.2f} ms per step, {t_eval:.1f} s per evaluation, up to {runs} runs: "
            f"{steps} steps per run would take {runs * (steps * t_step + t_eval):.0f} s; using {fitted} "
            f"(the runs' limit is {max_seconds:.0f} s)"
        )
        return fitted
    return steps


def plan(
    board: Board,
    dataset: str,
    budget: int,
    model: Path | None = None,
    out: Path | None = None,
    lr: float = DEFAULT_LR,
    steps: int = DEFAULT_STEPS,
    seeds: tuple[int, ...] = (0,),
    split: str | None = None,
    search_seed: int = 0,
    base: str = "classifier",
    progress: bool = True,
    log: bool = True,
    max_seconds: float = MAX_SECONDS,
    adapt: str | None = None,
    label_column: str | None = None,
    loss: str = "auto",
    new_head: int = 0,
) -> Plan:
    say = print if log else (lambda *a, **k: None)
    t0 = time.monotonic()
    times: dict[str, float] = {}
    d: Data = load(dataset, model, split, validation=True, adapt=adapt, label_column=label_column)
    d.loss = loss
    if new_head:
        from pytools.train.new_head import replace_head

        d.graph, note = replace_head(d.graph, new_head)
        say(note)
    say(
        f"data      {dataset}: {len(d.y_train)} training / {len(d.y_eval)} validation samples "
        "(of the fine-tuning split)"
    )
    mem = Memory(d.graph, board, d.model_name, d.loss)
    firmware_ram = mem.firmware_ram
    say(
        f"memory    budget {budget:,} B; firmware static RAM {mem.firmware_ram:,} B (linker) "
        "+ each candidate's planned arena"
    )
    steps = fit_steps(d, board, steps, len(seeds), max_seconds, say)
    times["setup"] = time.monotonic() - t0

    t = time.monotonic()
    an = analyze(d, board, mem, budget, lr, steps, seeds, EVAL_LIMIT, base, progress)
    times["contribution analysis"] = time.monotonic() - t
    say(
        f"analysis  {an.runs} fine-tuning runs of {steps} steps on the host twin in "
        f"{an.seconds:.1f} s; validation accuracy: pretrained {an.pretrained:.3f}, "
        f"{an.base} base {an.base_accuracy:.3f}"
    )

    t = time.monotonic()
    res = evolve(an.gains(), mem, budget, seed=search_seed, progress=progress, finalists=FINALISTS)
    times["search"] = time.monotonic() - t
    say(
        f"search    {res.evaluated} candidates scored, {res.compiles} schemes compiled, "
        f"{len(res.history)} generations, {times['search']:.1f} s"
    )

    # The largest candidate (every measured part at its largest ratio, biases of every measured
    # k) is a finalist too when it fits: on small or noisy validation sets the summed gains
    # can miss that it is simply the best.
    gains = an.gains()
    everything = (gains.ks()[-1], *(max(gains.choices(pos)) for pos in range(len(gains.weights))))
    m_all = mem(everything)
    if m_all is not None and m_all <= budget and everything not in [f[0] for f in res.finalists]:
        res.finalists.append((everything, gains.score(everything), m_all))

    # The summed gain assumes the parts add up; they do not quite (measured: a scheme's whole gain
    # is well below the sum of its parts'). So the best-scoring few, and the best single part,
    # are fine-tuned as a whole on the same validation runs, and the best measured one is chosen.
    t = time.monotonic()
    finals = []
    for g, score, m in progress_bar(
        res.finalists, desc="finalists", unit="run", disable=not progress, leave=False
    ):
        ct = compile_for(d.graph, scheme_of(g), board, d.model_name, lr, d.loss)
        acc = float(np.mean([run(ct, d, steps, s, EVAL_LIMIT)[0] for s in seeds]))
        # The search priced m without the planner's exact overlaps (search.Memory); the finalist's
        # own plan has them, never more: its real figure, which the linker check below holds.
        exact = firmware_ram + ct.compiled.arena
        if exact > m:  # the planner's overlaps only ever shrink an arena: a planner bug
            raise ToolError(
                f"plan: finalist {list(g)} plans {exact:,} B with the planner's overlaps but was priced"
                f" {m:,} B without them; overlaps must never grow the arena. This is a planner bug:"
                " please report it with the model and the budget."
            )
        finals.append(
            {"genome": list(g), "score": score, "memory": exact, "measured_gain": acc - an.base_accuracy}
        )
    # Ties in measured accuracy (common on small validation sets, where a sample is a whole
    # point) go to the scheme that needs less memory: the same accuracy for less SRAM and fewer
    # instructions. The summed score only breaks ties in memory.
    best = max(finals, key=lambda f: (round(f["measured_gain"], 9), -f["memory"], f["score"]))
    genome, memory, measured = tuple(best["genome"]), best["memory"], best["measured_gain"]
    chosen = scheme_of(genome)
    times["finalists"] = time.monotonic() - t

    t = time.monotonic()
    linked = compile_training(d.graph, chosen, board, d.model_name, link=True, lr=lr, loss=d.loss)
    rep = report(linked)
    linked_ram = linked.image.regions["RAM"].used if linked.image else 0
    if linked_ram != memory:
        raise ToolError(
            f"the planner's figure for {chosen.describe()} ({memory:,} B) is not what the linker "
            f"reports ({linked_ram:,} B)"
        )
    times["check"] = time.monotonic() - t

    budget_name = f"{budget // 1024}KB" if budget % 1024 == 0 else f"{budget}B"
    out = out or SCHEMES / f"{d.model_name}-{dataset}-{budget_name}.toml"
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.with_suffix("")
    files = [out, Path(f"{stem}.memory.txt"), Path(f"{stem}.png"), Path(f"{stem}.json")]
    single = res.best_single
    comment = (
        f"invoke plan --dataset {dataset} --budget {budget_name}: {d.model_name}\n"
        f"{chosen.describe()}\n"
        f"peak training SRAM {memory:,} B of the {budget:,} B budget\n"
        "(firmware static RAM + planned arena; the linker agrees)\n"
        f"summed gain {best['score']:+.3f} (validation accuracy over the {an.base} base,\n"
        f"{an.base_accuracy:.3f}; pretrained {an.pretrained:.3f}); fine-tuned as a whole: {measured:+.3f};\n"
        f"chosen from {len(finals)} finalists fine-tuned as a whole (the search's best scored:\n"
        f"{scheme_of(res.genome).describe()},\n"
        f"summed {res.score:+.3f}, whole {finals[0]['measured_gain']:+.3f})\n"
        "best single part that fits: "
        + (f"{scheme_of(single[0]).describe()} {single[1]:+.3f}" if single else "none")
    )
    out.write_text(scheme_toml(chosen, comment))
    files[1].write_text(rep + "\n")
    plot(an, chosen, budget, memory, files[2])
    times["total"] = time.monotonic() - t0
    summary = {
        "analysis": an.to_dict(),
        "scheme": str(out.name),
        "genome": list(genome),
        "score": best["score"],
        "measured_gain": measured,
        "memory": memory,
        "finalists": finals,
        "search_best": {"genome": list(res.genome), "score": res.score},
        "budget": budget,
        "history": res.history,
        "evaluated": res.evaluated,
        "compiles": res.compiles,
        "seconds": times,
    }
    files[3].write_text(json.dumps(summary, indent=1) + "\n")
    say(rep)
    say(
        f"search's best score: {scheme_of(res.genome).describe()} (summed {res.score:+.3f}, "
        f"whole {finals[0]['measured_gain']:+.3f})"
    )
    say(
        f"chosen    {chosen.describe()}: summed gain {best['score']:+.3f}, "
        f"fine-tuned as a whole {measured:+.3f}"
    )
    if single:
        say(f"          best single part that fits: {scheme_of(single[0]).describe()} ({single[1]:+.3f})")
    say("time      " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    say("wrote     " + ", ".join(str(f) for f in files))
    return Plan(chosen, an, res, measured, memory, rep, linked_ram, times, files)
