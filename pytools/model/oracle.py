"""The reference: TFLite's own interpreter (ai-edge-litert), with its REFERENCE kernels.

The default resolver applies XNNPACK and optimized kernels, whose rounding differs (conv
and depthwise: +-1 in about 70 % of random cases); bit-exactness is defined against
TFLite's reference kernels (BUILTIN_REF). TFLite Micro agrees with them except for
FULLY_CONNECTED, which TFLite's reference requantizes in double and TFLM in fixed point
(+-1 apart in a third of per-channel cases); the firmware follows TFLite.
"""

from __future__ import annotations

import numpy as np


def run_tflite(model: bytes, inputs: list[np.ndarray], reference: bool = True) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    it = Interpreter(model_content=model, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    for detail, x in zip(it.get_input_details(), inputs, strict=True):
        it.set_tensor(detail["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]


def tflite_predictions(model: bytes, input_shape: tuple[int, ...], xs: np.ndarray) -> np.ndarray:
    """TFLite's own argmax predictions (reference kernels) for each input of xs."""
    return np.array([int(np.argmax(run_tflite(model, [x.reshape(input_shape)])[0])) for x in xs])


def tflite_tensor_values(model: bytes, name: str, xs: np.ndarray) -> list[np.ndarray]:
    """The values of the tensor called name, for each input of xs, in TFLite's interpreter with
    its reference kernels, every tensor kept. A ValueError if the model has no single tensor
    of that name."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_content=model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    it.allocate_tensors()
    found = [d["index"] for d in it.get_tensor_details() if d["name"] == name]
    if len(found) != 1:
        raise ValueError(f"the model has {len(found)} tensors named {name!r}")
    inp = it.get_input_details()[0]
    out = []
    for x in xs:
        it.set_tensor(inp["index"], np.asarray(x, dtype=inp["dtype"]).reshape(inp["shape"]))
        it.invoke()
        out.append(it.get_tensor(found[0]).copy())
    return out
