"""Lowering of the int8 activation operators: LOGISTIC, TANH, HARD_SWISH, RELU, RELU6,
RELU_N1_TO_1 and LEAKY_RELU as operators of their own, and QUANTIZE int8 -> int8.

Each reproduces the parameters TFLite's Prepare computes (kernels/activations.cc,
leaky_relu.cc, quantize.cc), with its float and double arithmetic where they differ:
- LOGISTIC and TANH: TFLite's int8 reference kernels look the output up in a 256-entry
  table built at prepare time (LUTPopulate: dequantize in float, expf / tanhf, multiply by
  1 / output scale, round half away, add the zero point, clamp). The table is built here
  with the same float32 operations and the C library's own expf / tanhf (the one TFLite
  calls on this machine), and becomes a constant operand of the lookup kernel.
- HARD_SWISH: the 16-bit fixed-point multipliers of HardSwishPrepare.
- RELU family: ReluPrepare's multiplier and QuantizedReluX's clamp range.
- LEAKY_RELU: the identity and alpha multipliers of leaky_relu.cc.
- QUANTIZE with an int8 input: quantize.cc's requantization multiplier.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections.abc import Callable
from functools import cache

import numpy as np

from pytools.model.ir import Graph, ModelError, Op, Tensor
from pytools.model.kernels import KernelCall, Operand
from pytools.model.lowering import lowers
from pytools.model.lowering._checks import expect_shape, int8_per_tensor, nonempty, operands
from pytools.model.quant import quantize_multiplier, round_half_away

F32 = np.float32


def _unary(graph: Graph, op: Op) -> tuple[Tensor, Tensor, float, int, float, int]:
    (x,), (out,) = operands(graph, op, 1)
    si, zi = int8_per_tensor(op, x, "input")
    so, zo = int8_per_tensor(op, out, "output")
    nonempty(op, x, "input")
    expect_shape(op, out, x.shape)
    return x, out, si, zi, so, zo


def _io(x: Tensor, out: Tensor) -> list[Operand]:
    return [Operand(tensor=x.index), Operand(tensor=out.index, is_output=True)]


def _f32_ratio(a: float, b: float) -> float:
    """a / b divided in float32 (TFLite's `input->params.scale / output->params.scale`
    assigned to a double), then promoted to double."""
    return float(F32(a) / F32(b))


# ------------------------------------------------------------------ LOGISTIC, TANH (tables)


@cache
def _libm_function(name: str) -> Callable[[float], float]:
    """The C library's float function (expf, tanhf): the one TFLite's kernels call."""
    path = ctypes.util.find_library("m")
    fn = getattr(ctypes.CDLL(path), name)
    fn.restype = ctypes.c_float
    fn.argtypes = [ctypes.c_float]
    return fn


def _sigmoid(v: np.float32) -> np.float32:
    return F32(1.0) / (F32(1.0) + F32(_libm_function("expf")(float(-v))))


def _tanh(v: np.float32) -> np.float32:
    return F32(_libm_function("tanhf")(float(v)))


def lut_table(si: float, zi: int, so: float, zo: int, fn: Callable[[np.float32], np.float32]) -> np.ndarray:
    """TFLite's LUTPopulate<int8_t> (kernels/activations.cc prepares LOGISTIC, TANH with it): the
    int8 output for every int8 input, indexed by the input's byte (uint8)."""
    table = np.zeros(256, dtype=np.int8)
    inverse_scale = F32(1.0) / F32(so)
    for val in range(-128, 128):
        dequantized = F32(si) * F32(val - zi)
        rescaled = F32(round_half_away(float(fn(dequantized) * inverse_scale)))
        quantized = int(rescaled + F32(zo))
        table[val & 0xFF] = max(-128, min(127, quantized))
    return table


# TFLite's int8 LOGISTIC and TANH accept only these output quantizations (the output range
# of the function, full int8 resolution).
_LUT_OPS = {"LOGISTIC": (_sigmoid, 1.0 / 256, -128), "TANH": (_tanh, 1.0 / 128, 0)}


@lowers("LOGISTIC", "TANH")
def lower_lookup(graph: Graph, op: Op) -> KernelCall:
    x, out, si, zi, so, zo = _unary(graph, op)
    fn, want_scale, want_zp = _LUT_OPS[op.kind]
    if so != F32(want_scale) or zo != want_zp:
        raise ModelError(
            f"{op.where()}: output '{out.name}' has scale {so} and zero point {zo}; int8 {op.kind} needs "
            f"scale {want_scale} and zero point {want_zp} (TFLite's converter gives these)"
        )
    table = lut_table(si, zi, so, zo, fn)
    return KernelCall(
        "lookup_s8",
        {"count": math.prod(x.shape)},
        [Operand(tensor=x.index), Operand(data=table), Operand(tensor=out.index, is_output=True)],
    )


# ------------------------------------------------------------------------------ HARD_SWISH


def _downscale_to_int16(multiplier: int) -> int:
    """TFLite DownScaleInt32ToInt16Multiplier: a Q31 multiplier rounded to Q15."""
    if multiplier >= 2**31 - 1 - (1 << 15):
        return 2**15 - 1
    return (multiplier + (1 << 15)) >> 16


@lowers("HARD_SWISH")
def lower_hard_swish(graph: Graph, op: Op) -> KernelCall:
    x, out, si, zi, so, zo = _unary(graph, op)
    # activations.cc HardSwishPrepare, in float as there.
    hires_input_scale = F32(1.0 / 128.0) * F32(si)
    reluish_scale = F32(3.0) / F32(32768.0)
    out_m, out_e = quantize_multiplier(float(hires_input_scale / F32(so)))
    if out_e > 0:
        raise ModelError(
            f"{op.where()}: output '{out.name}' scale {so} is too small for input '{x.name}' scale {si}: "
            "TFLite requires input_scale / 128 / output_scale below 1"
        )
    rel_m, rel_e = quantize_multiplier(float(hires_input_scale / reluish_scale))
    params = {
        "count": math.prod(x.shape),
        "input_zero_point": zi,
        "output_zero_point": zo,
        "reluish_multiplier_fixedpoint": _downscale_to_int16(rel_m),
        "reluish_multiplier_exponent": rel_e,
        "output_multiplier_fixedpoint": _downscale_to_int16(out_m),
        "output_multiplier_exponent": out_e,
    }
    return KernelCall("hard_swish_s8", params, _io(x, out))


# ------------------------------------------------------------------------- the RELU family

# Each operator's range in real values (None: unbounded above).
_RELU_RANGE = {"RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}


@lowers("RELU", "RELU6", "RELU_N1_TO_1")
def lower_relu(graph: Graph, op: Op) -> KernelCall:
    x, out, si, zi, so, zo = _unary(graph, op)
    multiplier, shift = quantize_multiplier(_f32_ratio(si, so))
    lo, hi = _RELU_RANGE[op.kind]
    # QuantizedReluX: zero point + roundf(limit / scale), the division in float.
    act_min = max(-128, zo + int(round_half_away(float(F32(lo) / F32(so)))))
    act_max = 127 if hi is None else min(127, zo + int(round_half_away(float(F32(hi) / F32(so)))))
    params = {
        "count": math.prod(x.shape),
        "input_zero_point": zi,
        "output_zero_point": zo,
        "output_multiplier": multiplier,
        "output_shift": shift,
        "act_min": act_min,
        "act_max": act_max,
    }
    return KernelCall("relu_s8", params, _io(x, out))


@lowers("LEAKY_RELU")
def lower_leaky_relu(graph: Graph, op: Op) -> KernelCall:
    x, out, si, zi, so, zo = _unary(graph, op)
    alpha = F32(op.options.get("alpha", 0.2))
    if not (math.isfinite(alpha) and alpha >= 0.0):
        raise ModelError(f"{op.where()}: alpha {alpha} is not supported; it must be a finite number >= 0")
    # leaky_relu.cc Prepare: both products and quotients in float.
    alpha_m, alpha_s = quantize_multiplier(float(F32(si) * alpha / F32(so)))
    ident_m, ident_s = quantize_multiplier(_f32_ratio(si, so))
    params = {
        "count": math.prod(x.shape),
        "input_zero_point": zi,
        "output_zero_point": zo,
        "identity_multiplier": ident_m,
        "identity_shift": ident_s,
        "alpha_multiplier": alpha_m,
        "alpha_shift": alpha_s,
    }
    return KernelCall("leaky_relu_s8", params, _io(x, out))


# ---------------------------------------------------------------- QUANTIZE int8 -> int8


def lower_requantize(graph: Graph, op: Op) -> KernelCall:
    """QUANTIZE with an int8 input (lowering/elementwise.py's QUANTIZE hands it over)."""
    x, out, si, zi, so, zo = _unary(graph, op)
    multiplier, shift = quantize_multiplier(si / so)  # in double, as quantize.cc
    params = {
        "count": math.prod(x.shape),
        "input_zero_point": zi,
        "output_zero_point": zo,
        "multiplier": multiplier,
        "shift": shift,
    }
    return KernelCall("requantize_s8", params, _io(x, out))
