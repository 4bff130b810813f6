"""Support for tests/kernels/conv/test_conv_grads.py: random int8 conv / depthwise / fully connected
layers with an upstream gradient, calls of the backward and update kernels, the float reference
in TensorFlow (autodiff of the dequantized layer), the stochastic-rounding generator, and a
bare-metal harness that runs the same kernel calls on the emulated Cortex-M7.

Notation as the kernels' headers: x_real = s_x (x_q - z_x), W_real[c] = s_W[c] (W_q[c] - z_W),
b_real[c] = s_W[c] s_x b_q[c], z = layer(x_real, W_real) + b_real, G_y = s_g g_q,
G_z = G_y * mask, L = sum(G_z * z).
"""

from __future__ import annotations

import math
import struct
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pytools.model.ir import Graph, Op, Tensor
from pytools.model.kernels import KernelCall, Operand, params_layout, run_kernel
from pytools.model.lowering import lower
from tests.kernels.support import quant

KINDS = ("conv", "dw", "fc")
FORWARD = {"conv": "conv2d_s8", "dw": "depthwise_conv2d_s8", "fc": "fully_connected_s8"}
# E[(x - zp)^2] for x uniform on int8.
_X_VAR = (256**2 - 1) / 12


# --- Random layers -----------------------------------------------------------------------


@dataclass
class Layer:
    """One quantized layer, its saved input, an upstream gradient and a training slice."""

    kind: str
    graph: Graph
    forward: KernelCall  # the inference lowering (train_rows = 0)
    x_q: np.ndarray  # int8 input, the layer's input shape
    z_x: int
    s_x: float
    w_flash: np.ndarray  # int8 weights as the model stores them (conv [oc,fh,fw,ic], dw [1,fh,fw,oc])
    z_w: int  # weights zero point (per-tensor fully connected only)
    s_w: np.ndarray  # float32 [1] or [channels]
    b_flash: np.ndarray | None  # int32 [channels], None: no bias
    g_q: np.ndarray  # int8 upstream gradient, the output's shape
    s_g: float
    mask: np.ndarray | None  # bool, the output's shape; None: no mask
    train_rows: int
    train_bias_rows: int
    w_ram: np.ndarray  # the trained slice's current values (conv [r,fh,fw,ic], dw [fh,fw,r], fc [r,in];
    # conv with train_cols: [oc,fh,fw,train_cols])
    b_ram: np.ndarray  # int32 [train_bias_rows]
    extra: dict[str, Any] = field(default_factory=dict)
    train_cols: int = 0  # conv: input channels [0, train_cols) of every row trained (train_rows = 0)

    @property
    def channels(self) -> int:
        return int(self.s_w_full.size)

    @property
    def per_channel(self) -> bool:
        return self.s_w.size > 1

    @property
    def s_w_full(self) -> np.ndarray:
        n = self.w_flash.shape[3] if self.kind == "dw" else self.w_flash.shape[0]
        return np.broadcast_to(self.s_w, (n,)).astype(np.float32)

    def w_effective(self) -> np.ndarray:
        """The weights the layer computes with: trained rows from RAM, the rest from flash."""
        w = self.w_flash.copy()
        r = self.train_rows
        if self.train_cols:
            w[..., : self.train_cols] = self.w_ram
        elif self.kind == "dw":
            w[0, :, :, :r] = self.w_ram
        else:
            w[:r] = self.w_ram
        return w

    def b_effective(self) -> np.ndarray:
        b = np.zeros(self.channels, np.int32) if self.b_flash is None else self.b_flash.copy()
        b[: self.train_bias_rows] = self.b_ram
        return b

    def mask_bits(self) -> np.ndarray:
        """The mask packed 1 bit per element, LSB first (grad.h)."""
        if self.mask is None:
            return np.zeros(0, np.uint8)
        return np.packbits(self.mask.reshape(-1).astype(np.uint8), bitorder="little")


def _graph(kind: str, x_shape, x_q, w, w_q, bias, out_shape, out_q, options) -> Graph:
    tensors = [
        Tensor(0, "input", tuple(x_shape), "int8", x_q),
        Tensor(1, "filter", tuple(w.shape), "int8", w_q, data=w),
    ]
    if bias is not None:
        tensors.append(Tensor(2, "bias", (bias[0].size,), "int32", bias[1], data=bias[0]))
    out = len(tensors)
    tensors.append(Tensor(out, "output", tuple(out_shape), "int8", out_q))
    inputs = list(range(out)) if bias is not None else [0, 1, -1]
    return Graph(tensors, [Op(0, kind, inputs, [out], options)], inputs=[0], outputs=[out])


def _out_size(padding: str, size: int, filt: int, stride: int, dilation: int) -> int:
    if padding == "SAME":
        return math.ceil(size / stride)
    return math.ceil((size - (filt - 1) * dilation) / stride)


def _scales(rng: np.random.Generator, n: int, per_channel: bool) -> np.ndarray:
    if not per_channel:
        return np.array([10 ** rng.uniform(-3, -1)], np.float32)
    return (10 ** rng.uniform(-3.5, -1.0, n)).astype(np.float32)


def _weights(rng: np.random.Generator, shape: tuple[int, ...], scales: np.ndarray, axis: int) -> np.ndarray:
    """int8 weights whose range shrinks as the channel's scale grows (trained per-channel
    filters use the whole int8 range on each channel; this keeps the channels' real outputs
    alike while their scales differ by orders of magnitude)."""
    ranges = np.clip(np.round(127 * scales.min() / scales), 1, 127)
    bshape = [1] * len(shape)
    bshape[axis] = -1
    r = ranges.reshape(bshape) if scales.size > 1 else ranges[0]
    return np.round(rng.uniform(-1, 1, shape) * r).astype(np.int8)


def make_layer(kind: str, seed: int, **force: Any) -> Layer:
    """A random layer (seeded). `force` pins any of: n, h, w, in_c, out_c, mult, fh, fw, sh,
    sw, dh, dw, padding, per_channel, bias, has_mask, density, train_rows, train_cols (conv: an
    input-channel slice instead of rows), train_bias_rows, depth, units, batches, z_w."""
    rng = np.random.default_rng({"conv": 11000, "dw": 12000, "fc": 13000}[kind] + seed)

    def pick(name: str, value: Any) -> Any:
        return force.get(name, value)

    s_x = float(np.float32(10 ** rng.uniform(-2.5, -0.5)))
    z_x = int(pick("z_x", int(rng.integers(-128, 128))))
    per_channel = bool(pick("per_channel", rng.random() < 0.8))
    has_bias = bool(pick("bias", rng.random() < 0.75))
    z_w = 0
    if kind == "fc":
        batches = int(pick("batches", rng.integers(1, 6)))
        depth = int(pick("depth", rng.integers(1, 120)))
        units = int(pick("units", rng.integers(1, 40)))
        channels = units
        s_w = _scales(rng, units, per_channel)
        if not per_channel:
            z_w = int(pick("z_w", rng.integers(-10, 11) if rng.random() < 0.4 else 0))
        w = _weights(rng, (units, depth), s_w, 0)
        x_shape, out_shape, taps = (batches, depth), (batches, units), depth
        options: dict[str, Any] = {"activation": "NONE", "keep_num_dims": False}
        op_kind = "FULLY_CONNECTED"
    else:
        n = int(pick("n", rng.integers(1, 3)))
        fh, fw = (int(pick(k, v)) for k, v in zip(("fh", "fw"), rng.choice([1, 2, 3, 3, 5], 2), strict=True))
        sh, sw = (int(pick(k, v)) for k, v in zip(("sh", "sw"), rng.integers(1, 4, 2), strict=True))
        dh, dw = (int(pick(k, v)) for k, v in zip(("dh", "dw"), rng.choice([1, 1, 2, 3], 2), strict=True))
        if "h" in force or "w" in force:  # a pinned size must fit the filter: no dilation
            dh, dw = int(force.get("dh", 1)), int(force.get("dw", 1))
        padding = str(pick("padding", rng.choice(["SAME", "VALID"])))
        h = int(pick("h", rng.integers((fh - 1) * dh + 1, (fh - 1) * dh + 9)))
        wd = int(pick("w", rng.integers((fw - 1) * dw + 1, (fw - 1) * dw + 9)))
        oh, ow = _out_size(padding, h, fh, sh, dh), _out_size(padding, wd, fw, sw, dw)
        options = {
            "padding": padding,
            "stride_h": sh,
            "stride_w": sw,
            "dilation_h": dh,
            "dilation_w": dw,
            "activation": "NONE",
        }
        if kind == "conv":
            in_c = int(pick("in_c", rng.integers(1, 25)))
            out_c = int(pick("out_c", rng.integers(1, 25)))
            s_w = _scales(rng, out_c, per_channel)
            w = _weights(rng, (out_c, fh, fw, in_c), s_w, 0)
            taps = fh * fw * in_c
            op_kind = "CONV_2D"
        else:
            in_c = int(pick("in_c", rng.integers(1, 17)))
            mult = int(pick("mult", rng.integers(1, 4)))
            out_c = in_c * mult
            s_w = _scales(rng, out_c, per_channel)
            w = _weights(rng, (1, fh, fw, out_c), s_w, 3)
            taps = fh * fw
            options["depth_multiplier"] = mult
            op_kind = "DEPTHWISE_CONV_2D"
        channels = out_c
        x_shape, out_shape = (n, h, wd, in_c), (n, oh, ow, out_c)

    # Bias of about one accumulator standard deviation; an output scale of ~25 quanta per
    # standard deviation (only the forward lowering needs it).
    acc_std = math.sqrt(taps * _X_VAR) * 40
    b_flash = np.round(rng.normal(0, acc_std, channels)).astype(np.int32) if has_bias else None
    s_out = float(s_x * np.median(s_w) * acc_std * 10 ** rng.uniform(-0.3, 0.3) / 25)
    axis = 3 if kind == "dw" else 0
    w_quant = quant([float(v) for v in s_w], z_w, axis)
    bias = None
    if b_flash is not None:
        bias = (b_flash, quant([float(np.float32(s_x) * s) for s in np.broadcast_to(s_w, (channels,))], 0))
    graph = _graph(
        op_kind,
        x_shape,
        quant(s_x, z_x),
        w,
        w_quant,
        bias,
        out_shape,
        quant(s_out, int(rng.integers(-20, 20))),
        options,
    )
    forward = lower(graph, graph.ops[0])

    x_q = rng.integers(-128, 128, x_shape, dtype=np.int8)
    s_g = float(np.float32(10 ** rng.uniform(-4, -1)))
    g_q = rng.integers(-127, 128, out_shape).astype(np.int8)
    g_q[rng.random(out_shape) < 0.15] = 0
    mask = None
    if bool(pick("has_mask", rng.random() < 0.75)):
        mask = rng.random(out_shape) < float(pick("density", rng.uniform(0.5, 0.95)))

    r_choices = [0, channels, channels, int(rng.integers(0, channels + 1)), max(1, channels // 4)]
    train_rows = int(pick("train_rows", r_choices[int(rng.integers(0, len(r_choices)))]))
    train_bias_rows = int(
        pick("train_bias_rows", [0, channels, int(rng.integers(0, channels + 1))][rng.integers(0, 3)])
    )
    # A kernel trusts its parameters (the compiler never asks for rows a layer does not have):
    # a test that did would read and write past the buffers.
    assert 0 <= train_rows <= channels and 0 <= train_bias_rows <= channels, "rows past the layer's"
    train_cols = int(force.get("train_cols", 0))
    assert not train_cols or (kind == "conv" and 0 < train_cols <= w.shape[3]), "train_cols: conv only"
    if train_cols:
        train_rows = 0
    # The RAM copies differ from flash (as after some training steps), so a kernel reading the
    # wrong copy is caught.
    if train_cols:
        w_ram = w[..., :train_cols].copy()
    elif kind == "dw":
        w_ram = w[0, :, :, :train_rows].copy()
    else:
        w_ram = w[:train_rows].copy()
    w_ram = np.clip(w_ram.astype(np.int32) + rng.integers(-30, 31, w_ram.shape), -127, 127).astype(np.int8)
    base = np.zeros(channels, np.int32) if b_flash is None else b_flash
    b_ram = (base[:train_bias_rows] + rng.integers(-5000, 5001, train_bias_rows)).astype(np.int32)
    return Layer(
        kind,
        graph,
        forward,
        x_q,
        z_x,
        s_x,
        w,
        z_w,
        s_w.astype(np.float32),
        b_flash,
        g_q,
        s_g,
        mask,
        train_rows,
        train_bias_rows,
        np.ascontiguousarray(w_ram),
        b_ram,
        train_cols=train_cols,
    )


def without_training(layer: Layer) -> Layer:
    """The same layer with no trained slice (every weight and bias from flash)."""
    empty = np.zeros(
        (*layer.w_ram.shape[:2], 0) if layer.kind == "dw" else (0, *layer.w_flash.shape[1:]), np.int8
    )
    return replace(
        layer, train_rows=0, train_cols=0, train_bias_rows=0, w_ram=empty, b_ram=np.zeros(0, np.int32)
    )


# --- Kernel calls --------------------------------------------------------------------------


def _params(kernel: str, layer: Layer, **extra: Any) -> dict[str, Any]:
    """The kernel's parameters: the geometry the forward lowering computed, plus extra."""
    names = params_layout(kernel).names
    p = {k: v for k, v in layer.forward.params.items() if k in names}
    p.update({k: v for k, v in extra.items() if k in names})
    missing = set(names) - set(p)
    assert not missing, f"{kernel}: no value for {sorted(missing)}"
    return p


def _call(
    kernel: str, params: dict[str, Any], values: list[np.ndarray]
) -> tuple[KernelCall, list[np.ndarray]]:
    values = [np.ascontiguousarray(v) for v in values]
    return KernelCall(kernel, params, [Operand(data=v) for v in values]), values


def grad_input_call(layer: Layer, has_mask: bool | None = None) -> tuple[KernelCall, list[np.ndarray]]:
    """Operands: grad_output, its scale, mask, filter, trained filter, weight scales,
    grad_input (out), grad_input scale (out)."""
    kernel = FORWARD[layer.kind] + "_grad_input"
    use_mask = layer.mask is not None if has_mask is None else has_mask
    params = _params(
        kernel,
        layer,
        has_mask=int(use_mask),
        per_channel=int(layer.per_channel),
        train_rows=layer.train_rows,
        train_cols=layer.train_cols,
        train_bias_rows=0,
        filter_offset=-layer.z_w,
        grad_broadcast=0,
    )
    values = [
        layer.g_q,
        np.array([layer.s_g], np.float32),
        layer.mask_bits(),
        layer.w_flash,
        layer.w_ram,
        layer.s_w,
        np.zeros(layer.x_q.shape, np.int8),
        np.zeros(1, np.float32),
    ]
    return _call(kernel, params, values)


def run_grad_input(layer: Layer, has_mask: bool | None = None) -> tuple[np.ndarray, float]:
    """(G_x as int8, its scale) from the C kernel."""
    call, values = grad_input_call(layer, has_mask)
    run_kernel(call, values)
    return values[6], float(values[7][0])


GUARD = 64  # bytes of sentinel after each in-place operand


@dataclass
class UpdateResult:
    w: np.ndarray  # the trained slice after the step
    b: np.ndarray  # the trained bias after the step
    rng_state: int
    guards_intact: bool


def update_call(
    layer: Layer,
    lr: float,
    update_weights: bool,
    update_bias: bool,
    rng_state: int,
    has_mask: bool | None = None,
) -> tuple[KernelCall, list[np.ndarray]]:
    """Operands: grad_output, its scale, mask, input, weight scales, trained filter (in/out),
    trained bias (in/out), rng state (in/out). The in/out operands are views into buffers
    with GUARD sentinel bytes after them (values[-3:] hold the whole buffers' views)."""
    kernel = FORWARD[layer.kind] + "_grad_update"
    use_mask = layer.mask is not None if has_mask is None else has_mask
    params = _params(
        kernel,
        layer,
        has_mask=int(use_mask),
        per_channel=int(layer.per_channel),
        train_rows=layer.train_rows,
        train_cols=layer.train_cols,
        train_bias_rows=layer.train_bias_rows,
        update_weights=int(update_weights),
        update_bias=int(update_bias),
        lr=lr,
        input_scale=layer.s_x,
        grad_broadcast=0,
    )
    wbuf = np.full(layer.w_ram.size + GUARD, 0x5A, np.int8)
    wbuf[: layer.w_ram.size] = layer.w_ram.reshape(-1)
    bbuf = np.full(layer.b_ram.size + GUARD // 4, 0x5A5A5A5A, np.int32)
    bbuf[: layer.b_ram.size] = layer.b_ram
    values = [
        layer.g_q,
        np.array([layer.s_g], np.float32),
        layer.mask_bits(),
        saved_input(layer) if update_weights else np.zeros(0, np.int8),
        layer.s_w,
        wbuf[: layer.w_ram.size],
        bbuf[: layer.b_ram.size],
        np.array([rng_state], np.uint32),
    ]
    call = KernelCall(kernel, params, [Operand(data=v) for v in values])
    return call, [*values, wbuf, bbuf]


def saved_input(layer: Layer) -> np.ndarray:
    """The input the update reads: x_q, or its first train_cols channels (all the forward
    pass keeps for an input-channel slice)."""
    return np.ascontiguousarray(layer.x_q[..., : layer.train_cols]) if layer.train_cols else layer.x_q


def run_update(
    layer: Layer,
    lr: float,
    update_weights: bool = True,
    update_bias: bool = True,
    rng_state: int = 0x1234567,
    has_mask: bool | None = None,
) -> UpdateResult:
    call, values = update_call(layer, lr, update_weights, update_bias, rng_state, has_mask)
    run_kernel(call, values[:8])
    wbuf, bbuf = values[8], values[9]
    n_w, n_b = layer.w_ram.size, layer.b_ram.size
    intact = bool(np.all(wbuf[n_w:] == 0x5A) and np.all(bbuf[n_b:] == 0x5A5A5A5A))
    return UpdateResult(
        values[5].reshape(layer.w_ram.shape).copy(), values[6].copy(), int(values[7][0]), intact
    )


def forward_call(layer: Layer, trained: bool) -> tuple[KernelCall, list[np.ndarray]]:
    """The forward kernel on x_q: with the trained slice in its RAM operands (trained), or
    the inference lowering of the layer with the effective weights/bias as its constants."""
    fwd = layer.forward
    params = dict(fwd.params)
    values = []
    for o in fwd.operands:
        if o.data is not None:
            values.append(np.ascontiguousarray(o.data))
        elif o.is_output:
            values.append(np.zeros(layer.graph.tensor(o.tensor).shape, np.int8))
        elif o.tensor == 0:
            values.append(layer.x_q)
        else:
            values.append(np.ascontiguousarray(layer.graph.tensor(o.tensor).data))
    k_trained = len(values) - 3  # trained filter, trained bias, output are the last three
    if trained:
        params.update(train_rows=layer.train_rows, train_bias_rows=layer.train_bias_rows)
        if "train_cols" in params:
            params["train_cols"] = layer.train_cols
        values[k_trained] = layer.w_ram
        values[k_trained + 1] = layer.b_ram
    else:
        values[1] = layer.w_effective()
        if layer.train_bias_rows or layer.b_flash is not None:
            params["has_bias"] = 1
            values[2] = layer.b_effective()
    return _call(fwd.kernel, params, values)


def run_forward(layer: Layer, trained: bool) -> np.ndarray:
    call, values = forward_call(layer, trained)
    run_kernel(call, values)
    return values[-1]


# --- TensorFlow reference ------------------------------------------------------------------


@dataclass
class Reference:
    dx: np.ndarray  # dL/dx_real
    dw_q: np.ndarray  # G_Wq = dL/dW_q (weights as the kernel's full filter layout)
    db_q: np.ndarray  # G_bq = dL/db_q
    dw_real: np.ndarray  # dL/dW_real
    db_real: np.ndarray  # dL/db_real


def tf_reference(tf: Any, layer: Layer, variant: str = "") -> Reference:
    """Gradients of L = sum(G_z * z) by TensorFlow autodiff of the dequantized float64 layer
    (tf.nn.conv2d / depthwise_conv2d / matmul), with the trained slice's current weights.

    variant deliberately breaks the reference, as a buggy kernel would compute: "flip"
    (filter taps mirrored: correlation vs convolution mixed up; fully connected: the weights
    read transposed), "no_mask" (clamp mask ignored), "no_channel_scales" (one scale for all
    channels)."""
    f64 = tf.float64
    w_q = layer.w_effective().astype(np.float64)
    s_w = layer.s_w_full.astype(np.float64)
    if variant == "no_channel_scales":
        s_w = np.full_like(s_w, s_w.max())
    if variant == "flip":
        if layer.kind == "fc":
            w_q = w_q.reshape(-1)[: w_q.size].reshape(w_q.shape[1], w_q.shape[0]).T.copy()
        else:
            w_q = w_q[:, ::-1, ::-1, :].copy()
    g = layer.s_g * layer.g_q.astype(np.float64)
    if layer.mask is not None and variant != "no_mask":
        g = g * layer.mask
    x = tf.Variable(layer.s_x * (layer.x_q.astype(np.float64) - layer.z_x), dtype=f64)
    wq = tf.Variable(w_q, dtype=f64)
    bq = tf.Variable(layer.b_effective().astype(np.float64), dtype=f64)
    with tf.GradientTape() as tape:
        if layer.kind == "fc":
            w_real = s_w[:, None] * (wq - layer.z_w)
            z = tf.matmul(x, w_real, transpose_b=True)
        else:
            p = layer.forward.params
            if layer.kind == "conv":
                w_real = s_w[:, None, None, None] * wq
            else:
                w_real = s_w[None, None, None, :] * wq
            # Explicit zero padding (the lowering's pad before, enough after), a dilated
            # stride-1 convolution, then every stride-th output: the strided layer.
            _, h, w, c = layer.x_q.shape
            oh, ow = p["output_h"], p["output_w"]
            extra_h = max(
                0, (oh - 1) * p["stride_h"] + (p["filter_h"] - 1) * p["dilation_h"] + 1 - h - p["pad_h"]
            )
            extra_w = max(
                0, (ow - 1) * p["stride_w"] + (p["filter_w"] - 1) * p["dilation_w"] + 1 - w - p["pad_w"]
            )
            xp = tf.pad(x, [[0, 0], [p["pad_h"], extra_h], [p["pad_w"], extra_w], [0, 0]])
            # Dilation as a filter with zeros between the taps (TensorFlow's CPU kernels do
            # not differentiate dilated convolutions): tap (fy, fx) lands at (fy dh, fx dw).
            place_h = np.zeros((p["filter_h"], (p["filter_h"] - 1) * p["dilation_h"] + 1))
            place_h[np.arange(p["filter_h"]), np.arange(p["filter_h"]) * p["dilation_h"]] = 1
            place_w = np.zeros((p["filter_w"], (p["filter_w"] - 1) * p["dilation_w"] + 1))
            place_w[np.arange(p["filter_w"]), np.arange(p["filter_w"]) * p["dilation_w"]] = 1
            if layer.kind == "conv":
                hwio = tf.transpose(w_real, [1, 2, 3, 0])
                hwio = tf.einsum("yxio,yY,xX->YXio", hwio, place_h, place_w)
                z = tf.nn.conv2d(xp, hwio, strides=1, padding="VALID")
            else:
                mult = p["depth_multiplier"]
                hwcm = tf.reshape(w_real[0], [p["filter_h"], p["filter_w"], c, mult])
                hwcm = tf.einsum("yxcm,yY,xX->YXcm", hwcm, place_h, place_w)
                z = tf.nn.depthwise_conv2d(xp, hwcm, strides=[1, 1, 1, 1], padding="VALID")
            z = z[:, :: p["stride_h"], :: p["stride_w"], :][:, :oh, :ow, :]
        b_real = bq * s_w * layer.s_x
        z = z + b_real
        loss = tf.reduce_sum(tf.constant(g) * z)
    dx, dwq, dbq, dwr, dbr = tape.gradient(loss, [x, wq, bq, w_real, b_real])
    return Reference(dx.numpy(), dwq.numpy(), dbq.numpy(), dwr.numpy(), dbr.numpy())


# --- Comparisons ---------------------------------------------------------------------------


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


# int8-requantized input gradients: cosine, and the largest error in output steps (the
# requantization alone contributes <= 0.5 step; the fixed-point folding of the channel scales
# into terms cut to 16 bits, 8 fractional bits at the widest channel (conv2d_s8_grad_input.h's
# CONV_GRAD_MIN_SHIFT_16), adds up to 0.08 step on these layers; with 23 fractional bits it
# added well under 0.01 and the bound was 0.55).
GRAD_INPUT_MIN_COSINE = 0.999
GRAD_INPUT_MAX_ERROR_STEPS = {"dw": 0.6, "conv": 0.6, "fc": 0.6}
GRAD_INPUT_SCALE_RTOL = 0.01


def grad_input_errors(q: np.ndarray, scale: float, ref: np.ndarray) -> tuple[float, float, float]:
    """(cosine, max |ours - ref| in output steps, relative error of the scale vs max|ref|/127)
    of an int8 gradient against the float reference."""
    ours = scale * q.astype(np.float64)
    peak = float(np.abs(ref).max())
    if peak == 0:
        return (1.0 if scale == 0 and not q.any() else 0.0), 0.0, 0.0
    step = peak / 127
    return cosine(ours, ref), float(np.abs(ours - ref).max() / step), abs(scale - step) / step


def grad_input_ok(q: np.ndarray, scale: float, ref: np.ndarray, kind: str) -> bool:
    """Whether a `kind` layer's int8 input gradient is within the tolerances of the float one."""
    cos, err, scale_err = grad_input_errors(q, scale, ref)
    return (
        cos >= GRAD_INPUT_MIN_COSINE
        and err <= GRAD_INPUT_MAX_ERROR_STEPS[kind]
        and scale_err <= GRAD_INPUT_SCALE_RTOL
    )


# --- The stochastic-rounding generator (grad.h), for predicting the kernels' draws ----------


def xorshift32(state: int, n: int) -> tuple[np.ndarray, int]:
    """(the n uniform draws u in [0, 1) grad_stochastic_round takes, the final state)."""
    out = np.empty(n, np.float64)
    x = state & 0xFFFFFFFF
    for i in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out[i] = (x >> 8) / 16777216.0
    return out, x


def draw_layout(layer: Layer) -> np.ndarray:
    """The draws in the trained slice's layout: the update kernels draw once per trained
    weight, conv and fc in memory order, depthwise channel by channel (taps inner)."""
    u, _ = xorshift32(0x1234567, layer.w_ram.size)
    if layer.kind == "dw":
        fh, fw, r = layer.w_ram.shape
        return u.reshape(r, fh, fw).transpose(1, 2, 0)
    return u.reshape(layer.w_ram.shape)


def trained_rows_of(layer: Layer, full: np.ndarray, shift: int = 0) -> np.ndarray:
    """Rows [shift, shift + train_rows) of a full-layer weight array, in the trained slice's
    layout (shift != 0: the off-by-one slice a buggy kernel would update)."""
    r = layer.train_rows
    if layer.train_cols:
        return full[..., shift : shift + layer.train_cols]
    if layer.kind == "dw":
        return full[0, :, :, shift : shift + r]
    return full[shift : shift + r]


# --- The same calls on the emulated Cortex-M7 ------------------------------------------------

HARNESS_KERNELS = [
    "conv2d_s8_grad_input",
    "conv2d_s8_grad_update",
    "depthwise_conv2d_s8_grad_input",
    "depthwise_conv2d_s8_grad_update",
    "fully_connected_s8_grad_input",
    "fully_connected_s8_grad_update",
    "conv2d_s8",
    "depthwise_conv2d_s8",
    "fully_connected_s8",
    "input_rows",  # a streamed input's band (tests/kernels/movement/test_input_rows.py)
    "depthwise_conv2d_s8_inplace",
]


@dataclass(frozen=True)
class Alias:
    """An operand of run_on_board that is an earlier operand's bytes (index: that operand's),
    as the planner places an output over its input (the in-place kernels)."""

    index: int


# The harnesses' link to the emulator: the linker script's symbols, a semihosting call and the
# exit call (SYS_EXIT with ADP_Stopped_ApplicationExit and the code).
SEMIHOST_C = r"""
extern uint32_t __stack_top, __data_start, __data_end, __data_load, __bss_start, __bss_end;

static uint32_t semihost(uint32_t op, const void *arg) {
    register uint32_t r0 __asm("r0") = op;
    register const void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void finish(uint32_t code) {
    uint32_t args[2] = {0x20026u, code};
    for (;;) (void)semihost(0x20u, args);
}
"""

# The harnesses' start-up: .data/.bss set up, the FPU on, main's result to the exit call, any
# fault exit code 6 (needs semihosting's finish(), the linker script's symbols and main()).
BOOT_C = r"""
void Reset_Handler(void);
void Reset_Handler(void) {
    memcpy(&__data_start, &__data_load, (size_t)((char *)&__data_end - (char *)&__data_start));
    memset(&__bss_start, 0, (size_t)((char *)&__bss_end - (char *)&__bss_start));
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: FPU on (hard-float ABI) */
    __asm volatile("dsb\n isb");
    finish((uint32_t)main());
}

static void fault(void) {
    finish(6);
}

__attribute__((section(".vectors"), used)) void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&__stack_top, Reset_Handler, fault, fault, fault, fault, fault};
"""


_HARNESS_C = (
    r"""
/* Bare-metal harness: runs kernel calls from a blob in flash and writes every operand after
 * each call to a host file through semihosting. Generated by tests/kernels/grad_support.py. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernel.h"

#define KERNEL(k) \
    void k##_run(const void *params, void *const *operands, void *scratch); \
    size_t k##_scratch_size(const void *params);
@KERNELS@
#undef KERNEL
#define KERNEL(k) {k##_run, k##_scratch_size},
static const struct {
    kernel_run_fn run;
    kernel_scratch_fn scratch;
} table[] = {@KERNELS@};
#undef KERNEL

extern const uint8_t blob[];
"""
    + SEMIHOST_C
    + r"""
static uint32_t rd(const uint8_t **p) {
    uint32_t v;
    memcpy(&v, *p, 4);
    *p += 4;
    return v;
}

static uint8_t arena[@ARENA@] __attribute__((aligned(16)));

/* Guard bytes behind every operand and behind the scratch (its size as the kernel's
 * _scratch_size gives it): a kernel that writes past either fails the run (exit code 7) with
 * "guard: call C operand I byte J" (operand n: the scratch). */
#define GUARD 64u
#define GUARD_BYTE 0xA5u

static char *put_u32(char *s, uint32_t v) {
    char d[10];
    int n = 0;
    do d[n++] = (char)('0' + v % 10u);
    while ((v /= 10u) != 0u);
    while (n) *s++ = d[--n];
    return s;
}

static void report_guard(uint32_t call, uint32_t operand, uint32_t byte) {
    char msg[64], *s = msg;
    memcpy(s, "guard: call ", 12);
    s = put_u32(s + 12, call);
    memcpy(s, " operand ", 9);
    s = put_u32(s + 9, operand);
    memcpy(s, " byte ", 6);
    s = put_u32(s + 6, byte);
    *s++ = '\n';
    *s = 0;
    (void)semihost(0x04u, msg); /* SYS_WRITE0 */
}

int main(void);
int main(void) {
    const uint8_t *p = blob;
    const uint32_t name_len = rd(&p);
    uint32_t open_args[3] = {(uint32_t)(uintptr_t)p, 5u /* "wb" */, name_len};
    const uint32_t fd = semihost(0x01u, open_args);
    if (fd == 0xFFFFFFFFu) return 3;
    p += (name_len + 1u + 3u) & ~3u;
    const uint32_t calls = rd(&p);
    for (uint32_t c = 0; c < calls; c++) {
        const uint32_t k = rd(&p), params_len = rd(&p);
        const uint8_t *params = p;
        p += (params_len + 3u) & ~3u;
        const uint32_t n = rd(&p);
        void *ops[16];
        uint32_t sizes[16];
        size_t used = 0;
        for (uint32_t i = 0; i < n; i++) {
            sizes[i] = rd(&p);
            if (sizes[i] & 0x80000000u) { /* an alias of operand (low bits) */
                const uint32_t j = sizes[i] & 0xFFu;
                if (j >= i) return 4;
                ops[i] = ops[j];
                sizes[i] = 0; /* no guard of its own, not written back */
                continue;
            }
            if (used + sizes[i] + GUARD > @ARENA@) return 4;
            ops[i] = sizes[i] ? arena + used : NULL;
            memcpy(arena + used, p, sizes[i]);
            memset(arena + used + sizes[i], GUARD_BYTE, GUARD); /* right behind the operand */
            used += (sizes[i] + GUARD + 15u) & ~15u;
            p += (sizes[i] + 3u) & ~3u;
        }
        const size_t need = table[k].scratch(params);
        if (used + need + GUARD > @ARENA@) return 4;
        memset(arena + used + need, GUARD_BYTE, GUARD);
        table[k].run(params, ops, arena + used);
        for (uint32_t i = 0; i <= n; i++) {
            const uint8_t *g = i < n ? (const uint8_t *)ops[i] + sizes[i] : arena + used + need;
            if (i < n && !sizes[i]) continue;
            for (uint32_t j = 0; j < GUARD; j++) {
                if (g[j] != GUARD_BYTE) {
                    report_guard(c, i, j);
                    return 7;
                }
            }
        }
        for (uint32_t i = 0; i < n; i++) {
            uint32_t write_args[3] = {fd, (uint32_t)(uintptr_t)ops[i], sizes[i]};
            if (sizes[i] && semihost(0x05u, write_args) != 0) return 5;
        }
    }
    uint32_t close_args[1] = {fd};
    (void)semihost(0x02u, close_args);
    return 0;
}

"""
    + BOOT_C
)

_HARNESS_LD = """
MEMORY
{{
    FLASH (rx)  : ORIGIN = 0x{flash:08X}, LENGTH = {flash_size}
    RAM   (rwx) : ORIGIN = 0x{ram:08X}, LENGTH = {ram_size}
}}
ENTRY(Reset_Handler)
SECTIONS
{{
    .vectors ORIGIN(FLASH) : {{ KEEP(*(.vectors)) }} > FLASH
    .text : {{ *(.text*) *(.rodata*) . = ALIGN(4); }} > FLASH
    .ARM.exidx : {{ *(.ARM.exidx* .gnu.linkonce.armexidx.*) }} > FLASH
    .data : ALIGN(4) {{ __data_start = .; *(.data*) . = ALIGN(4); __data_end = .; }} > RAM AT > FLASH
    __data_load = LOADADDR(.data);
    .bss (NOLOAD) : ALIGN(16) {{ __bss_start = .; *(.bss*) *(COMMON) . = ALIGN(4); __bss_end = .; }} > RAM
    __stack_top = ORIGIN(RAM) + LENGTH(RAM);
}}
"""

_HARNESS_ARENA = 224 * 1024  # of the board's 320 KB RAM; the rest is stack and statics


def _blob(out_file: Path, calls: list[tuple[KernelCall, list[np.ndarray]]]) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 4)

    name = str(out_file).encode()
    parts = [struct.pack("<I", len(name)), pad(name + b"\0"), struct.pack("<I", len(calls))]
    for call, values in calls:
        params = call.packed_params()
        parts += [struct.pack("<II", HARNESS_KERNELS.index(call.kernel), len(params)), pad(params)]
        parts.append(struct.pack("<I", len(values)))
        for v in values:
            if isinstance(v, Alias):
                parts.append(struct.pack("<I", 0x80000000 | v.index))
                continue
            raw = np.ascontiguousarray(v).tobytes()
            parts += [struct.pack("<I", len(raw)), pad(raw)]
    return b"".join(parts)


def run_on_board(
    calls: list[tuple[KernelCall, list[np.ndarray]]], workdir: Path, board_name: str = "mps2_an500"
) -> list[list[np.ndarray]]:
    """Runs the kernel calls on an emulated board (default QEMU mps2-an500, the Cortex-M7;
    mps2_an386 is the Cortex-M4): the kernels' objects of that board's firmware build, linked
    with a bare-metal harness. Returns every operand after each call, shaped and typed as given.
    Guard bytes right behind every operand and behind the scratch the kernel asks for: a call that
    writes past either fails the run (AssertionError naming the call, operand and byte)."""
    from pytools.boards import load_board
    from pytools.build.builder import CROSS, build_firmware
    from pytools.build.manifest import target_spec
    from pytools.paths import BUILD

    board = load_board(board_name)
    build_firmware(board)  # the firmware must build; its kernel objects are what runs here
    spec = target_spec(board)
    kernel_objs = sorted((BUILD / board.name / "obj").glob("kernels__*.o"))
    assert kernel_objs, "the firmware build left no kernel objects"
    out_file = workdir / "operands.bin"
    (workdir / "blob.bin").write_bytes(_blob(out_file, calls))
    src = workdir / "harness.c"
    kernels = " ".join(f"KERNEL({k})" for k in HARNESS_KERNELS)
    src.write_text(_HARNESS_C.replace("@KERNELS@", kernels).replace("@ARENA@", str(_HARNESS_ARENA)))
    asm = '    .section .rodata.blob, "a"\n    .balign 16\n    .global blob\nblob:\n    .incbin "{}"\n'
    (workdir / "blob.S").write_text(asm.format(workdir / "blob.bin"))
    m = board.memory
    ld = workdir / "harness.ld"
    ld.write_text(
        _HARNESS_LD.format(
            flash=m.flash_origin,
            # The harness checks the kernels' arithmetic, not the board's limits (the session,
            # build and HIL tests do that): its test data and its arena are the same on every
            # board, and QEMU's MPS2 maps 4 MB of code memory (ssram1) and 4 MB of RAM.
            flash_size=max(m.flash_size, 4 * 1024 * 1024),
            ram=m.ram_origin,
            ram_size=max(m.ram_size, _HARNESS_ARENA + 96 * 1024),
        )
    )
    cc = CROSS + "gcc"
    elf = workdir / "harness.elf"
    flags = spec.compile_flags()
    cpu = [f for f in spec.cflags if f.startswith(("-mcpu", "-mfpu", "-mfloat-abi", "-mthumb"))]
    subprocess.run(
        [cc, *flags, "-c", str(src), "-o", str(workdir / "harness.o")],
        check=True,
        capture_output=True,
        text=True,
    )
    subprocess.run([cc, *cpu, "-c", str(workdir / "blob.S"), "-o", str(workdir / "blob.o")], check=True)
    link = [cc, *cpu, "--specs=nano.specs", "--specs=nosys.specs", "-nostartfiles", "-Wl,--gc-sections"]
    link += [f"-T{ld}", str(workdir / "harness.o"), str(workdir / "blob.o"), *map(str, kernel_objs), "-lm"]
    r = subprocess.run([*link, "-o", str(elf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    q = board.qemu
    cmd = ["qemu-system-arm", "-M", q["machine"], "-nographic", "-monitor", "none", "-serial", "null"]
    cmd += ["-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=workdir)
    if r.returncode == 7:  # a guard byte behind an operand or the scratch changed
        said = (r.stdout + r.stderr).strip()
        raise AssertionError(f"a kernel wrote past its operand or scratch ({said})")
    assert r.returncode == 0, f"harness exited with {r.returncode}: {r.stdout}{r.stderr}"
    raw = out_file.read_bytes()
    results, at = [], 0
    for _, values in calls:
        got = []
        for v in values:
            if isinstance(v, Alias):  # not written back: its bytes are operand v.index's
                got.append(got[v.index])
                continue
            nbytes = v.nbytes
            got.append(np.frombuffer(raw[at : at + nbytes], dtype=v.dtype).reshape(v.shape).copy())
            at += nbytes
        results.append(got)
    assert at == len(raw), (at, len(raw))
    return results
