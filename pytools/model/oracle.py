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
