"""depthwise_conv2d_s8_inplace (DEPTHWISE_CONV_2D with its output over its input) against the
reference kernel depthwise_conv2d_s8_ref_run on separate buffers, bit for bit: on the host
(reference and DSP builds), and on the emulated Cortex-M7 and Cortex-M4 with the output
operand the input's very bytes. Both paths of the DSP variant: one call of the 3x3
channel-pair engine (MobileNetV2's 16x16x96 and 64x64x16 shapes), and the bands (odd channel
counts, 1x1/2x2/4x4 maps, 5x5 and 7x7 filters, dilation, top padding 0 to 3, two batches,
trained channels). And the compiler: the in-place variant is chosen only where the planned
arena shrinks (the step's bits unchanged), and a step where it does not pay compiles to the
same plan bytes as without it."""

from __future__ import annotations

import ctypes
import dataclasses

import numpy as np
import pytest

from pytools.model.kernels import KernelCall, host_lib, params_layout, scratch_size
from pytools.model.lowering import lower
from pytools.model.lowering.conv import IN_PLACE_OPTION
from tests.kernels.conv.support import conv_options
from tests.kernels.conv.test_conv_kernels import _graph
from tests.kernels.conv.test_dsp_kernels import TRAINED, _operands, _run, dsp_on_host
from tests.kernels.support import quant

KERNEL = "depthwise_conv2d_s8_inplace"

# (batches, h, w, channels, filter k, dilation, padding, band_rows, trained rows)
CASES = [
    (1, 16, 16, 96, 3, 1, "SAME", 1, 0),  # MobileNetV2 #14 / #18: the one-call path
    (1, 16, 16, 96, 3, 1, "SAME", 4, 40),
    (2, 9, 13, 12, 3, 1, "SAME", 1, 5),  # one call, two batches, a partial last quad
    (1, 12, 10, 24, 3, 1, (0, 2), 1, 0),  # top padding 0 (bottom 2): one call
    (1, 12, 10, 24, 3, 1, (2, 0), 2, 0),  # top padding 2: the bands
    (2, 5, 7, 13, 3, 1, "SAME", 1, 0),  # odd channels: the bands
    (1, 7, 9, 15, 3, 1, "SAME", 3, 7),
    (1, 1, 1, 5, 3, 1, "SAME", 1, 0),
    (1, 2, 2, 9, 3, 1, "SAME", 1, 2),
    (2, 4, 4, 17, 3, 1, "SAME", 2, 0),
    (1, 2, 2, 9, 5, 1, "SAME", 1, 0),
    (1, 9, 6, 8, 5, 1, "SAME", 2, 3),
    (1, 4, 4, 17, 7, 1, "SAME", 1, 0),
    (1, 11, 8, 8, 7, 1, "SAME", 3, 0),
    (1, 10, 9, 6, 7, 1, (3, 3), 100, 0),  # one band holds the map
    (1, 12, 10, 6, 3, 2, "SAME", 1, 0),  # dilation 2: top padding 2
    (1, 13, 11, 7, 3, 3, "SAME", 4, 0),
    # one call on the board's bands (a band's last rows moved up, its input rows written over by
    # then) with a partial last quad spilling onto the next row, band boundaries included
    (1, 24, 13, 8, 3, 1, "SAME", 1, 0),
    (2, 28, 11, 4, 3, 1, "SAME", 1, 0),
]


def _call(i: int) -> tuple[KernelCall, list[np.ndarray]]:
    """The case's in-place call and its operands (a random input, a zeroed output)."""
    n, h, w, c, k, dil, padding, rows, trained = CASES[i]
    rng = np.random.default_rng(7100 + i)
    scales = (0.02 * 10 ** rng.uniform(-0.5, 0.3, c)).astype(np.float32)
    wts = rng.integers(-127, 128, (1, k, k, c), dtype=np.int8)
    bias = (rng.integers(-3000, 3000, c).astype(np.int32), quant(list(0.02 * scales), 0))
    pad = padding if isinstance(padding, str) else "SAME"  # its top padding set below
    g = _graph(
        "DEPTHWISE_CONV_2D",
        (n, h, w, c),
        quant(0.02, int(rng.integers(-30, 100))),
        wts,
        quant(list(scales), 0, 3),
        bias,
        (n, h, w, c),
        quant(float(rng.uniform(0.05, 0.2)), int(rng.integers(-20, 20))),
        conv_options(pad, 1, "RELU6" if i % 2 else "NONE", dilation=dil, depth_multiplier=1),
    )
    call = lower(g, g.ops[0])
    params = dict(call.params, band_rows=rows)
    if not isinstance(padding, str):  # explicit top and bottom padding
        params["pad_h"], params["pad_w"] = padding[0], (k - 1) * dil // 2
    arrays = _operands(g, call, rng)
    if trained:
        params.update(train_rows=trained, train_bias_rows=trained)
        w_idx, b_idx = TRAINED["depthwise_conv2d_s8"]
        arrays[w_idx] = rng.integers(-127, 128, (k * k, trained), dtype=np.int8)
        arrays[b_idx] = rng.integers(-20000, 20000, trained).astype(np.int32)
    return KernelCall(KERNEL, params, call.operands), arrays


def _plain(call: KernelCall) -> KernelCall:
    """The layer on its own kernel, depthwise_conv2d_s8."""
    params = {k: v for k, v in call.params.items() if k != "band_rows"}
    return KernelCall("depthwise_conv2d_s8", params, call.operands)


def _reference(call: KernelCall, arrays: list[np.ndarray]) -> np.ndarray:
    """depthwise_conv2d_s8_ref_run on separate input and output buffers."""
    return _run(_plain(call), arrays, "ref")


def _in_place(call: KernelCall, arrays: list[np.ndarray], variant: str = "") -> np.ndarray:
    """The kernel with its output operand pointing at its input's bytes; the input after the
    call (its scratch exactly depthwise_conv2d_s8_inplace_scratch_size, guarded past the end)."""
    a = [x.copy() for x in arrays]
    ptrs = [x.ctypes.data if x.size else None for x in a]
    ptrs[-1] = ptrs[0]
    need = scratch_size(call)
    raw = np.zeros(need + 64 + 16, np.uint8)
    start = -raw.ctypes.data % 16
    scratch = raw[start : start + need + 64]
    scratch[need:] = 0xA5
    fn = getattr(host_lib(), f"{KERNEL}_{variant}_run" if variant else f"{KERNEL}_run")
    fn.restype = None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
    fn(call.packed_params(), (ctypes.c_void_p * len(a))(*ptrs), scratch.ctypes.data)
    assert (scratch[need:] == 0xA5).all(), "wrote past its scratch"
    return a[0]


def _direct(call: KernelCall) -> bool:
    fn = host_lib().depthwise_conv2d_s8_inplace_dsp_direct
    fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_char_p]
    return bool(fn(call.packed_params()))


def test_parameters_start_with_depthwise_conv2d_s8s() -> None:
    """The kernel hands its parameters' prefix to depthwise_conv2d_s8 as that kernel's."""
    mine, theirs = params_layout(KERNEL), params_layout("depthwise_conv2d_s8")
    assert mine.fields[: len(theirs.fields)] == theirs.fields
    assert mine.names[len(theirs.fields) :] == ["band_rows"]


def test_the_compilers_operands_are_the_headers() -> None:
    """compiler.IN_PLACE names the input and output operands by the header enum's numbers."""
    from pytools.model.compiler import IN_PLACE
    from pytools.model.kernels import KERNELS_DIR

    text = (KERNELS_DIR / "depthwise_conv2d_s8.h").read_text()
    assert f"DEPTHWISE_CONV2D_S8_INPUT = {IN_PLACE[KERNEL][0]}," in text
    assert f"DEPTHWISE_CONV2D_S8_OUTPUT = {IN_PLACE[KERNEL][1]}," in text


def test_cases_take_both_paths() -> None:
    direct = [_direct(_call(i)[0]) for i in range(len(CASES))]
    assert direct[:4] == [True, True, True, True] and direct[4:].count(False) >= 10, direct


@pytest.mark.parametrize("i", range(len(CASES)))
def test_output_over_input_matches_the_reference(i: int) -> None:
    call, arrays = _call(i)
    want = _reference(call, arrays)
    assert np.unique(want).size > min(20, want.size // 2)  # the outputs spread
    np.testing.assert_array_equal(_in_place(call, arrays, "ref"), want)
    with dsp_on_host():
        np.testing.assert_array_equal(_in_place(call, arrays, "dsp"), want)
        np.testing.assert_array_equal(_in_place(call, arrays), want)  # the selector
    # The output apart from the input, as where the planner does not tie them.
    with dsp_on_host():
        np.testing.assert_array_equal(_run(call, arrays, ""), want)
    np.testing.assert_array_equal(_run(call, arrays, "ref"), want)


def test_bands_need_their_rows_of_scratch() -> None:
    """band_rows + pad_h rows of W x C after a band's own scratch, which is no more than the
    layer's (MobileNetV2's 16x16x96 layer in bands of one row: 2 x 1,536 B beside it), and
    far less than the output the arena no longer holds."""
    for i in (0, 1, 5, 13):
        call, arrays = _call(i)
        p = call.params
        plain = scratch_size(_plain(call))
        rows = (p["band_rows"] + p["pad_h"]) * p["input_w"] * p["input_c"]
        assert rows <= scratch_size(call) <= rows + (plain + 7) // 8 * 8, CASES[i]
    call, arrays = _call(0)
    assert scratch_size(call) < arrays[0].nbytes // 6


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"])
def test_output_over_input_is_bit_exact_on_the_emulated_board(tmp_path, board_name: str) -> None:
    """Every case on the Cortex-M7 and Cortex-M4 builds (the channel-pair engine's rows in
    assembly), the output operand the input's bytes, against the reference on the host."""
    from tests.kernels import grad_support as gs

    calls = []
    for i in range(len(CASES)):
        call, arrays = _call(i)
        calls.append((call, [*arrays[:-1], gs.Alias(0)]))
    board = gs.run_on_board(calls, tmp_path, board_name)
    for i, got in enumerate(board):
        call, arrays = _call(i)
        np.testing.assert_array_equal(got[0], _reference(call, arrays), err_msg=str(CASES[i]))


# --- the compiler ----------------------------------------------------------------------------


def _chain_step(scheme: str):
    """Depthwise layers on 16x16x48 (three at stride 1, one at stride 2, then an 8x8 VALID one
    down to the 48 logits) trained on their last `bias=` layers."""
    from pytools.boards import load_board
    from pytools.train.compile_train import compile_training
    from pytools.train.scheme import load_scheme
    from tests.kernels.conv.support import depthwise_chain

    s1 = (3, 1, "SAME", "RELU6", 6.0)
    g = depthwise_chain(16, 16, 48, [s1, s1, s1, (3, 2, "SAME", "RELU6", 6.0), (8, 1, "VALID", "NONE", 3.0)])
    return compile_training(g, load_scheme(scheme), load_board("mps2_an500"), "chain", link=False)


def _without_in_place(ct):
    """The step compiled with every depthwise layer on its own kernel (the in-place choice
    undone, nothing else)."""
    from pytools.model.compiler import compile_graph

    g = ct.train.graph
    chosen = [i for i, op in enumerate(g.ops) if IN_PLACE_OPTION in op.options]
    saved = {i: g.ops[i] for i in chosen}
    for i in chosen:
        options = {k: v for k, v in g.ops[i].options.items() if k != IN_PLACE_OPTION}
        g.ops[i] = dataclasses.replace(g.ops[i], options=options)
    try:
        plain = compile_graph(g, ct.board, ct.name, n_forward=ct.train.n_forward)
    finally:
        for i, op in saved.items():
            g.ops[i] = op
    return chosen, dataclasses.replace(ct, compiled=plain)


def test_in_place_shrinks_the_arena_and_changes_no_bit() -> None:
    from pytools.train.trainer import Trainer

    ct = _chain_step("bias=4")
    chosen, plain = _without_in_place(ct)
    assert len(chosen) == 1 and ct.train.graph.ops[chosen[0]].kind == "DEPTHWISE_CONV_2D", chosen
    assert ct.compiled.arena < plain.compiled.arena, (ct.compiled.arena, plain.compiled.arena)
    # Its output is planned at its input's offset.
    plan = ct.compiled.plan
    op = plan.ops[chosen[0]]
    assert op.code == 54 and plain.compiled.plan.ops[chosen[0]].code == 2  # DEPTHWISE_CONV_2D
    assert plan.tensors[op.operands[0]].offset == plan.tensors[op.operands[7]].offset
    rng = np.random.default_rng(5)
    data = [
        (rng.integers(-128, 128, (1, 16, 16, 48), dtype=np.int8), int(rng.integers(48))) for _ in range(4)
    ]
    a, b = Trainer(ct), Trainer(plain)
    losses = [a.step(x, y) for x, y in data]
    assert losses == [b.step(x, y) for x, y in data] and np.isfinite([loss for loss, _ in losses]).all()
    sa, sb = a.state(), b.state()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


def test_a_step_where_it_does_not_pay_compiles_as_before() -> None:
    """bias=1: layers 1 and 2 could run in place, but the arena does not shrink (the peak is
    elsewhere), so the plan is byte for byte the one compiled without the in-place variant."""
    from pytools.model.inplace import in_place_candidates

    ct = _chain_step("bias=1")
    assert in_place_candidates(ct.train.graph) == [1, 2]
    chosen, plain = _without_in_place(ct)
    assert chosen == []
    assert ct.compiled.blob == plain.compiled.blob


@pytest.mark.emulator
def test_a_compiled_model_in_place_matches_tflite_on_the_emulated_board() -> None:
    """A forward plan whose middle depthwise layers run in place (output tied over input):
    on the emulated Cortex-M7 and on the host twin, against TFLite's reference interpreter."""
    from pytools.boards import load_board
    from pytools.model.compiler import compile_graph
    from pytools.model.host_twin import HostTwin
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_export import write_tflite
    from tests.kernels.conv.support import depthwise_chain
    from tests.kernels.conv.test_dsp_kernels import _on_board
    from tests.test_models import random_inputs

    s1 = (3, 1, "SAME", "RELU6", 6.0)
    g = depthwise_chain(16, 16, 96, [s1, s1, (5, 1, "SAME", "NONE", 3.0), s1], seed=3)
    model = write_tflite(g)
    for i in (1, 2):  # one call of the pair engine; a 5x5 layer in bands
        g.ops[i] = dataclasses.replace(g.ops[i], options={**g.ops[i].options, IN_PLACE_OPTION: 1 + i})
    compiled = compile_graph(g, load_board("mps2_an500"), "dw_in_place")
    plan = compiled.plan
    for i in (1, 2):
        op = plan.ops[i]
        assert op.code == 54 and plan.tensors[op.operands[0]].offset == plan.tensors[op.operands[7]].offset
    inputs = random_inputs(compiled.blob, np.random.default_rng(8), 2)
    want = [run_tflite(model, [x])[0] for x in inputs]
    outs, _ = _on_board(compiled, True, inputs)
    twin = HostTwin(compiled.blob)
    for x, got, w in zip(inputs, outs, want, strict=True):
        assert np.unique(w).size > 20
        np.testing.assert_array_equal(got, w)
        np.testing.assert_array_equal(twin.invoke([x])[0], w)


@pytest.mark.emulator
def test_a_training_step_in_place_on_the_emulated_board_matches_the_twin() -> None:
    """The chain's step with a layer in place (its output tied over its input), trained on the
    emulated Cortex-M7 and on the host twin: the same losses, predictions and trained state."""
    import os
    import uuid

    from pytools import emulator
    from pytools.build.builder import build_firmware
    from pytools.link.client import Link
    from pytools.model.board_runner import BoardModel
    from pytools.model.host_twin import io_tensors, tensor_table
    from pytools.train.trainer import Trainer

    ct = _chain_step("bias=4")
    assert any(op.code == 54 for op in ct.compiled.plan.ops)
    rng = np.random.default_rng(6)
    data = [
        (rng.integers(-128, 128, (1, 16, 16, 48), dtype=np.int8), int(rng.integers(48))) for _ in range(3)
    ]
    twin = Trainer(ct)
    want = [twin.step(x, y) for x, y in data]
    name = f"test-dw-inplace-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    board = ct.board
    emu = emulator.start(board, build_firmware(board, ct.compiled.blob, ct.compiled.arena).elf, name=name)
    try:
        with Link.open(emu.url) as link:
            ins, outs = io_tensors(ct.compiled.blob)
            on_board = Trainer(ct, BoardModel(link, tensor_table(ct.compiled.blob), ins, outs))
            got = [on_board.step(x, y) for x, y in data]
            state = on_board.state()
    finally:
        emulator.stop(name)
    assert got == want
    for k, v in twin.state().items():
        np.testing.assert_array_equal(state[k], v, err_msg=k)


def test_an_input_read_later_is_never_overwritten() -> None:
    """The in-place kernel where its input is still needed (a graph output here, as a later
    reader or a saved activation would be): the compiler does not tie them, and every output
    is TFLite's (on the host twin)."""
    from pytools.boards import load_board
    from pytools.model.compiler import compile_graph
    from pytools.model.host_twin import HostTwin
    from pytools.model.oracle import run_tflite
    from pytools.model.tflite_export import write_tflite
    from tests.kernels.conv.support import depthwise_chain
    from tests.test_models import random_inputs

    s1 = (3, 1, "SAME", "RELU6", 6.0)
    g = depthwise_chain(16, 16, 96, [s1, s1, s1], seed=4)
    kept = g.ops[1].inputs[0]  # layer 1's input, made a graph output as well
    g.outputs = [kept, *g.outputs]
    model = write_tflite(g)
    g.ops[1] = dataclasses.replace(g.ops[1], options={**g.ops[1].options, IN_PLACE_OPTION: 1})
    compiled = compile_graph(g, load_board("mps2_an500"), "dw_not_in_place")
    op = compiled.plan.ops[1]
    assert op.code == 54
    x_at, y_at = (compiled.plan.tensors[op.operands[k]].offset for k in (0, 7))
    assert abs(x_at - y_at) >= 16 * 16 * 96  # apart
    twin = HostTwin(compiled.blob)
    for x in random_inputs(compiled.blob, np.random.default_rng(2), 2):
        for got, want in zip(twin.invoke([x]), run_tflite(model, [x]), strict=True):
            np.testing.assert_array_equal(got, want)
