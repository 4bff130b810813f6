"""FedAvg of the trained sparse slice, in the real-valued domain, back into the int8/int32 layout.

What a board trains is a slice of the model (pytools/export.py, trained_params): the first
`rows` output channels of some layers' int8 weights (depthwise: the first channels) and some
layers' int32 biases. Each is quantized with the model's own per-channel scales, which QAS never
changes: real weight = s_W[c] * q, real bias = s_b[c] * q (s_b = s_W[c] * s_x, TFLite's bias
scale). FedAvg over K clients with n_k samples each is, in real values,

    avg[c] = sum_k n_k * s[c] * q_k[c] / N,   N = sum_k n_k,

and requantized with the same scale it is q[c] = round(avg[c] / s[c]) = round(sum_k n_k q_k[c] / N).
The scales are the plan's (every client runs the same plan, which the boards prove with its
CRC), so this module computes the weighted mean exactly in integers (no float rounding can move a
value across a rounding boundary) and rounds it once:

- "stochastic" (the default): the project's guarantee for on-device updates, deterministic
  stochastic rounding. The mean is rounded up with probability equal to its fractional part,
  the "random" number a counter-based hash of (seed, round, tensor, element), so the result is
  unbiased in expectation and bit-reproducible, whatever order the clients reply in. It matters
  for a sparse fleet: a weight that one client of four moved by one step averages to a quarter
  of a step, which nearest rounding would drop every round; stochastic rounding keeps it in
  expectation, as the board's own SGD keeps sub-LSB updates.
- "nearest": round half to even, the smallest error per value (at most half a step), no
  randomness.

A weighted mean is a convex combination, so it never leaves the range of its inputs: no clamp is
needed (int8 weights stay in [-127, 127], biases in int32), and the module checks it.

State tensors that are not a trained parameter (the board's random-number state for its
stochastic rounding) are not averaged: each client keeps its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pytools.errors import ToolError

ROUNDINGS = ("stochastic", "nearest")
DEFAULT_ROUNDING = "stochastic"


@dataclass(frozen=True)
class SliceTensor:
    """One state tensor of the plan and how it is aggregated."""

    name: str
    kind: str  # "weights", "bias" or "local" (not averaged: each board keeps its own)
    dtype: str  # "int8" or "int32" (local: any)
    shape: tuple[int, ...]
    scale: np.ndarray | None  # float64, broadcastable to shape (None for local tensors)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def slice_layout(ct: object) -> list[SliceTensor]:
    """The plan's state tensors in plan order, each with its kind and real-valued scale."""
    from pytools.export import trained_params

    g = ct.train.graph  # type: ignore[attr-defined]
    params = {p.state_tensor: p for p in trained_params(ct)}  # type: ignore[arg-type]
    ids = ct.compiled.plan_ids  # type: ignore[attr-defined]
    out = []
    for t in sorted(ct.train.state, key=lambda t: ids[t]):  # type: ignore[attr-defined]
        st = g.tensor(t)
        shape = tuple(int(d) for d in st.shape)
        p = params.get(t)
        if p is None:
            out.append(SliceTensor(st.name, "local", st.dtype, shape, None))
            continue
        mt = g.tensor(p.model_tensor)
        if mt.quant is None:
            raise ToolError(f"tensor {mt.name!r} has no quantization: its real values are unknown")
        s = np.asarray(mt.quant.scale, dtype=np.float64).reshape(-1)
        if s.size == 1:
            scale = s.reshape((1,) * len(shape))
        elif p.kind == "weights" and p.op_kind == "DEPTHWISE_CONV_2D":  # [1, kh, kw, C]: channels last
            scale = s[: shape[-1]].reshape((1,) * (len(shape) - 1) + (-1,))
        else:  # [out, ...] weights, or [C] biases: channels first
            scale = s[: shape[0]].reshape((-1,) + (1,) * (len(shape) - 1))
        if np.any(scale <= 0) or not np.all(np.isfinite(scale)):
            raise ToolError(f"tensor {mt.name!r} has a scale <= 0 or not finite: cannot average it")
        out.append(SliceTensor(st.name, p.kind, st.dtype, shape, scale))
    return out


def slice_bytes(layout: list[SliceTensor]) -> int:
    """Bytes of the averaged slice (what a client sends and receives per round)."""
    return sum(t.nbytes for t in layout if t.kind != "local")


def _hash_u32(seed: int, rnd: int, tensor: int, n: int) -> np.ndarray:
    """splitmix64 of (seed, round, tensor, element index) for n elements, top 32 bits."""
    with np.errstate(over="ignore"):
        key = np.uint64((seed * 0x9E3779B1 + rnd * 0x85EBCA77 + tensor * 0xC2B2AE3D) & 0xFFFFFFFFFFFFFFFF)
        z = key + np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(32)).astype(np.int64)


def stochastic_u32(seed: int, rnd: int, tensor: int, n: int) -> np.ndarray:
    """The rounding's uniform numbers, as integers h in [0, 2^32): u = h / 2^32 (public so tests
    can build the float reference from the same numbers)."""
    return _hash_u32(seed, rnd, tensor, n)


def round_mean(
    num: np.ndarray, total: int, rounding: str, seed: int = 0, rnd: int = 0, tensor: int = 0
) -> np.ndarray:
    """round(num / total) for int64 num and a positive total, exactly."""
    q = np.floor_divide(num, total)
    r = num - q * total  # 0 <= r < total
    if rounding == "nearest":
        up = (2 * r > total) | ((2 * r == total) & (q % 2 == 1))
    elif rounding == "stochastic":
        h = stochastic_u32(seed, rnd, tensor, num.size).reshape(num.shape)
        up = r * (1 << 32) > h * total  # r / total > h / 2^32
    else:
        raise ToolError(f"unknown rounding {rounding!r}; known: {', '.join(ROUNDINGS)}")
    return q + up.astype(np.int64)


def fedavg(
    layout: list[SliceTensor],
    states: list[dict[str, np.ndarray]],
    counts: list[int],
    rounding: str = DEFAULT_ROUNDING,
    seed: int = 0,
    rnd: int = 0,
) -> dict[str, np.ndarray]:
    """The weighted average of the clients' trained slices (local tensors left out)."""
    if not states or len(states) != len(counts):
        raise ToolError(f"FedAvg needs one sample count per state: {len(states)} states, {len(counts)} n")
    if any(n < 0 for n in counts) or sum(counts) <= 0:
        raise ToolError(f"FedAvg needs sample counts >= 0 with a positive sum, got {counts}")
    if sum(counts) >= 2**31:
        raise ToolError(f"{sum(counts):,} samples in a round: more than the exact int64 sum allows")
    total = int(sum(counts))
    out = {}
    for i, t in enumerate(layout):
        if t.kind == "local":
            continue
        num = np.zeros(t.shape, dtype=np.int64)
        for k, (st, n) in enumerate(zip(states, counts, strict=True)):
            if t.name not in st:
                raise ToolError(f"client {k}'s state has no tensor {t.name!r}: not this plan's slice")
            q = np.asarray(st[t.name])
            if q.shape != t.shape or q.dtype != np.dtype(t.dtype):
                theirs, ours = f"{q.dtype}{list(q.shape)}", f"{t.dtype}{list(t.shape)}"
                raise ToolError(f"client {k}'s {t.name!r} is {theirs}, the plan's {ours}")
            num += q.astype(np.int64) * int(n)
        q = round_mean(num, total, rounding, seed, rnd, i)
        lo = min(int(np.min(s[t.name])) for s in states)
        hi = max(int(np.max(s[t.name])) for s in states)
        assert lo <= int(q.min()) and int(q.max()) <= hi, "a mean left its inputs' range"
        out[t.name] = q.astype(t.dtype)
    return out


def real_values(t: SliceTensor, q: np.ndarray) -> np.ndarray:
    """The tensor's real values (float64): scale * q."""
    assert t.scale is not None
    return t.scale * q.astype(np.float64)
