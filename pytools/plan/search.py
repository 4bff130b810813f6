"""The evolutionary search for a sparse-update scheme under a memory budget.

A candidate (genome) is (k, r_-n, ..., r_-1): biases of the last k layers, and for each
trainable layer a channel ratio (0 = frozen, or one of scheme.RATIOS that the contribution
analysis measured). Its score is the summed gain of its parts (contribution.py), as in the
paper; its memory is the real compiler's figure for that very scheme (Memory below), never an
estimate, and a candidate over the budget is never kept as the best.

The search is a plain genetic algorithm: the population starts from every single-part
candidate that fits (each k alone, each layer at each ratio alone) plus random sparse ones;
each generation keeps the best half (elitism), and breeds the rest by uniform crossover of
two tournament winners and per-gene mutation. Starting from the singles, with elitism, the
result is never worse than the best single part that fits.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pytools.boards import Board
from pytools.build.builder import build_firmware
from pytools.errors import ToolError
from pytools.model.ir import Graph, ModelError
from pytools.progress import progress as progress_bar
from pytools.train.scheme import Scheme, trainable_ops

Genome = tuple[int, ...]  # (k, ratio of layer -n, ..., ratio of layer -1); ratio 0.0 = frozen


def scheme_of(genome: Genome, qas: bool = True) -> Scheme:
    n = len(genome) - 1
    weights = {pos - n: float(r) for pos, r in enumerate(genome[1:]) if r}
    return Scheme(int(genome[0]), weights, qas=qas)


def genome_of(scheme: Scheme, n: int) -> Genome:
    return (scheme.bias_layers, *(scheme.weights.get(pos - n, 0.0) for pos in range(n)))


class Memory:
    """Peak training SRAM of a scheme, in bytes: the firmware's static RAM (linked once, from
    the linker) plus the training step's arena as the real planner lays it out (the arena holds
    the trainable state too). Linking the step into the firmware gives exactly this sum
    (`invoke compile` reports it); plan.py checks it for the chosen scheme. Cached per scheme."""

    def __init__(self, graph: Graph, board: Board, name: str, loss: str = "auto") -> None:
        self.graph, self.board, self.name, self.loss = graph, board, name, loss
        self.n = len(trainable_ops(graph))
        self.firmware_ram = build_firmware(board).regions["RAM"].used
        self.cache: dict[Genome, int | None] = {}
        self.errors: dict[Genome, str] = {}
        self.compiles = 0

    def __call__(self, genome: Genome) -> int | None:
        """Bytes, or None if the compiler refuses the scheme (the reason is in self.errors)."""
        if genome not in self.cache:
            from pytools.train.compile_train import compile_training

            self.compiles += 1
            try:
                # Without the planner's exact overlaps: ~10x cheaper, and never smaller than
                # the final plan (invoke plan's report compiles the chosen scheme with them).
                ct = compile_training(
                    self.graph,
                    scheme_of(genome),
                    self.board,
                    self.name,
                    link=False,
                    loss=self.loss,
                    overlap=False,
                )
                self.cache[genome] = self.firmware_ram + ct.compiled.arena
            except (ModelError, ToolError) as e:
                self.cache[genome] = None
                self.errors[genome] = str(e)
        return self.cache[genome]


@dataclass
class Gains:
    """What each part of a scheme gains, from the contribution analysis, and what every
    candidate must contain (the base the gains were measured on top of)."""

    bias: list[float]  # bias[k]: biases of the last k layers (k = 0 .. len - 1)
    weights: list[dict[float, float]]  # weights[pos][ratio], pos 0 = layer -n; measured ratios only
    min_bias: int = 0  # every candidate updates at least this many biases
    required: dict[int, float] = field(default_factory=dict)  # pos -> ratio every candidate has

    def ks(self) -> list[int]:
        return list(range(self.min_bias, len(self.bias)))

    def choices(self, pos: int) -> list[float]:
        return [self.required[pos]] if pos in self.required else [0.0, *sorted(self.weights[pos])]

    def base(self) -> Genome:
        n = len(self.weights)
        return (self.min_bias, *(self.required.get(pos, 0.0) for pos in range(n)))

    def score(self, g: Genome) -> float:
        return self.bias[g[0]] + sum(self.weights[pos][r] for pos, r in enumerate(g[1:]) if r)

    def singles(self) -> list[Genome]:
        """The base alone, and the base plus each measured part."""
        base = self.base()
        out = [(k, *base[1:]) for k in self.ks()]
        for pos in range(len(self.weights)):
            for r in self.choices(pos):
                g = list(base)
                g[1 + pos] = r
                out.append(tuple(g))
        return list(dict.fromkeys(out))


@dataclass
class Result:
    genome: Genome
    score: float
    memory: int
    evaluated: int  # distinct candidates scored
    compiles: int  # distinct schemes compiled
    history: list[float] = field(default_factory=list)  # best score after each generation
    best_single: tuple[Genome, float] | None = None  # the best single part that fits
    finalists: list[tuple[Genome, float, int]] = field(default_factory=list)  # best scored, best first


def _better(a: tuple[float, int], b: tuple[float, int]) -> bool:
    """Higher score; at equal score, less memory."""
    return a[0] > b[0] + 1e-12 or (abs(a[0] - b[0]) <= 1e-12 and a[1] < b[1])


def evolve(
    gains: Gains,
    memory: Callable[[Genome], int | None],
    budget: int,
    population: int = 40,
    generations: int = 60,
    patience: int = 15,
    seed: int = 0,
    progress: bool = True,
    finalists: int = 6,
) -> Result:
    rng = np.random.default_rng(seed)
    n = len(gains.weights)
    ks = gains.ks()
    choices = [gains.choices(pos) for pos in range(n)]
    fitness: dict[Genome, tuple[float, int] | None] = {}

    def fit(g: Genome) -> tuple[float, int] | None:
        if g not in fitness:
            empty = g[0] == 0 and not any(g[1:])
            m = None if empty else memory(g)
            fitness[g] = None if m is None or m > budget else (gains.score(g), m)
        return fitness[g]

    def key(g: Genome) -> tuple[float, int]:
        f = fit(g)
        return (f[0], -f[1]) if f else (-np.inf, 0)

    def random_genome() -> Genome:
        genes = [c[rng.integers(len(c))] if rng.random() < 0.3 else c[0] for c in choices]
        return (int(rng.choice(ks)), *genes)

    def mutate(g: Genome) -> Genome:
        out = list(g)
        rate = 1.5 / (n + 1)
        if rng.random() < rate:
            out[0] = (
                int(np.clip(out[0] + rng.integers(-3, 4), ks[0], ks[-1]))
                if rng.random() < 0.7
                else int(rng.choice(ks))
            )
        for pos in range(n):
            if rng.random() < rate:
                out[1 + pos] = choices[pos][rng.integers(len(choices[pos]))]
        return tuple(out)

    def tournament(pool: list[Genome]) -> Genome:
        a, b = (pool[i] for i in rng.integers(len(pool), size=2))
        return a if key(a) >= key(b) else b

    singles = [g for g in gains.singles() if fit(g)]
    best_single = max(singles, key=key, default=None)
    pop = list(dict.fromkeys(singles))
    while len(pop) < population:
        pop.append(random_genome())
    history: list[float] = []
    best: Genome | None = None
    stale = 0
    bar = progress_bar(range(generations), desc="search", unit="gen", disable=not progress, leave=False)
    for _ in bar:
        pop = sorted(set(pop), key=key, reverse=True)
        top = pop[0]
        if fit(top) and (best is None or _better(fit(top), fit(best))):
            best, stale = top, 0
        else:
            stale += 1
        history.append(fit(best)[0] if best else float("nan"))
        bar.set_postfix(best=f"{history[-1]:.3f}", compiled=getattr(memory, "compiles", len(fitness)))
        if stale >= patience:
            break
        elite = pop[: max(2, population // 2)]
        children: list[Genome] = []
        while len(elite) + len(children) < population:
            a, b = tournament(elite), tournament(elite)
            child = tuple(a[i] if rng.random() < 0.5 else b[i] for i in range(n + 1))
            children.append(mutate(child))
        pop = elite + children
    bar.close()
    if best is None:
        raise ToolError(f"no scheme fits the budget of {budget:,} B (the smallest candidates do not)")
    ranked = sorted((g for g, f in fitness.items() if f), key=key, reverse=True)[:finalists]
    if best_single and best_single not in ranked:
        ranked.append(best_single)
    return Result(
        best,
        fit(best)[0],
        fit(best)[1],
        len(fitness),
        getattr(memory, "compiles", len(fitness)),
        history,
        (best_single, fit(best_single)[0]) if best_single else None,
        [(g, fit(g)[0], fit(g)[1]) for g in ranked],
    )


def exhaustive(
    gains: Gains, memory: Callable[[Genome], int | None], budget: int
) -> tuple[Genome, float, int]:
    """The true optimum by enumeration (small models only: for tests)."""
    choices = [gains.choices(pos) for pos in range(len(gains.weights))]
    best: tuple[Genome, float, int] | None = None
    for k in gains.ks():
        for rs in itertools.product(*choices):
            g = (k, *rs)
            if k == 0 and not any(rs):
                continue
            m = memory(g)
            if m is None or m > budget:
                continue
            s = gains.score(g)
            if best is None or _better((s, m), (best[1], best[2])):
                best = (g, s, m)
    if best is None:
        raise ToolError(f"no scheme fits the budget of {budget:,} B")
    return best
