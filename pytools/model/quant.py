"""TFLite's quantization arithmetic on the host side: multipliers, shifts, activation ranges.

These reproduce tensorflow/lite/kernels/internal/quantization_util.cc and kernel_util.cc
exactly (same float -> double promotions, same rounding), because the C kernels are only
bit-exact with TFLite if they are given the very same integers.
"""

from __future__ import annotations

import math

import numpy as np

from pytools.model.ir import Quant


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = q / 2^31 * 2^shift, q a Q31 int32."""
    if real == 0.0:
        return 0, 0
    frac, shift = math.frexp(real)
    q = math.floor(abs(frac) * (1 << 31) + 0.5) * (1 if frac >= 0 else -1)  # std::round
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def f32(x: float | np.floating) -> float:
    """A value as TFLite holds it (float32), promoted to double as its C++ does."""
    return float(np.float32(x))


def activation_range(activation: str, quant: Quant) -> tuple[int, int]:
    """TFLite CalculateActivationRangeQuantized for an int8 output."""
    qmin, qmax = -128, 127
    scale, zp = f32(quant.scale[0]), int(quant.zero_point[0])

    def q(v: float) -> int:
        # TFLite divides in float32 (f / scale with both float); in double some scales
        # (0.4, 2.4, ...) land a clamp one quantum off.
        return zp + int(round_half_away(float(np.float32(v) / np.float32(scale))))

    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, q(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise ValueError(f"unknown activation {activation}")


def round_half_away(x: float) -> float:
    """std::round / TfLiteRound: halves go away from zero (Python's round() goes to even)."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)
