"""depthwise_conv2d_s8_grad_input_2pass against depthwise_conv2d_s8_grad_input (itself
checked against TensorFlow): the same int8 gradient and scale, bit for bit, with one
channel's accumulators as scratch instead of the whole input's."""

from __future__ import annotations

import numpy as np
import pytest

from pytools.model.kernels import KernelCall, run_kernel, scratch_size
from tests.kernels.grad_support import grad_input_call, make_layer


@pytest.mark.parametrize("seed", range(40))
def test_two_pass_equals_one_pass(seed: int) -> None:
    layer = make_layer("dw", seed, **({"density": 0.0} if seed == 39 else {}))
    call, values = grad_input_call(layer)
    run_kernel(call, values)
    one = values[6].copy(), values[7].copy()
    two_call = KernelCall(call.kernel + "_2pass", call.params, call.operands)
    values[6][...] = 99
    values[7][...] = -1.0
    run_kernel(two_call, values)
    np.testing.assert_array_equal(values[6], one[0])
    assert values[7].tobytes() == one[1].tobytes()  # the float scale, bit for bit
    p = call.params
    plane = p["batches"] * p["input_h"] * p["input_w"]
    assert scratch_size(two_call) == 4 * (plane + p["input_c"] * p["depth_multiplier"])
    assert scratch_size(two_call) <= scratch_size(call)
