"""depthwise_conv2d_s8_grad_input_2pass's keep: input channels [0, keep) keep their int32
accumulators from pass 1 and pass 2 only rounds them; the others are computed again. Every keep
from 0 to the channel count gives the one-pass kernel's int8 gradient and scale, bit for bit,
from the reference and the DSP variant on the host and on the emulated Cortex-M7 and Cortex-M4;
the scratch grows by the kept accumulators and keep 0 plans today's bytes."""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import pytest

from pytools.model.kernels import KernelCall, host_lib, run_kernel, scratch_size
from tests.kernels import grad_support as gs
from tests.kernels.conv.support import run_variant

KERNEL = "depthwise_conv2d_s8_grad_input_2pass"

# Small odd shapes (h, w, channels, stride, filter, batches, multiplier, mask, trained rows; SAME
# padding unless pad says VALID):
# both strides, rows packed (4 or 8 columns a phase: the kept rows go straight into their place)
# or not, 5x5 filters, two batches (no int16 keeping), a depth multiplier of 2 (the reference's
# path in both variants), an unmasked one, a slice of trained rows.
CASES: list[dict[str, Any]] = [
    dict(h=5, w=7, in_c=5, sh=1, f=3, n=1, mult=1, mask=True, train=0),
    dict(h=7, w=5, in_c=7, sh=2, f=3, n=1, mult=1, mask=True, train=3),
    dict(h=4, w=4, in_c=9, sh=1, f=3, n=1, mult=1, mask=True, train=0),
    dict(h=8, w=8, in_c=6, sh=2, f=3, n=1, mult=1, mask=True, train=2),
    dict(h=9, w=9, in_c=3, sh=1, f=3, n=2, mult=1, mask=True, train=0),
    dict(h=6, w=5, in_c=5, sh=2, f=5, n=1, mult=1, mask=False, train=0),
    dict(h=5, w=5, in_c=3, sh=1, f=3, n=1, mult=2, mask=True, train=1),
    dict(h=3, w=9, in_c=11, sh=1, f=3, n=1, mult=1, mask=True, train=11),
    # channels a multiple of 4 on maps up to 8x8 with the channel-quad engine's buffers within the
    # scratch (enough channels: the keep-0 scratch grows with them): the DSP variant's quads
    dict(h=4, w=4, in_c=144, sh=1, f=3, n=1, mult=1, mask=True, train=0),
    dict(h=7, w=5, in_c=96, sh=2, f=3, n=1, mult=1, mask=True, train=6),
    dict(h=8, w=8, in_c=96, sh=2, f=3, n=1, mult=1, mask=True, train=10),
    dict(h=6, w=6, in_c=120, sh=1, f=3, n=2, mult=1, mask=False, train=0),
    dict(h=5, w=7, in_c=8, sh=1, f=3, n=1, mult=1, mask=True, train=0),  # too few: the planes
    dict(h=5, w=5, in_c=128, sh=2, f=3, n=1, mult=1, mask=True, train=0, pad="VALID"),
    # the quads over two batches with a mask (each batch's mask bits and sums in the output bytes)
    dict(h=8, w=8, in_c=128, sh=1, f=3, n=2, mult=1, mask=True, train=5),
]


def _layer(i: int) -> gs.Layer:
    c = CASES[i]
    return gs.make_layer(
        "dw",
        600 + i,
        h=c["h"],
        w=c["w"],
        in_c=c["in_c"],
        mult=c["mult"],
        fh=c["f"],
        fw=c["f"],
        sh=c["sh"],
        sw=c["sh"],
        n=c["n"],
        padding=c.get("pad", "SAME"),
        has_mask=c["mask"],
        train_rows=c["train"],
    )


def _calls(i: int) -> tuple[KernelCall, list[np.ndarray], list[KernelCall]]:
    """The one-pass call, its operands, and the two-pass call at every keep from 0 to input_c."""
    call, values = gs.grad_input_call(_layer(i))
    channels = call.params["input_c"]
    two = [KernelCall(KERNEL, {**call.params, "keep": k}, call.operands) for k in range(channels + 1)]
    return call, values, two


def _one_pass(call: KernelCall, values: list[np.ndarray]) -> tuple[np.ndarray, bytes]:
    out = run_variant(call, values, "ref")
    return out[6], out[7].tobytes()


def _dsp_quads(call: KernelCall) -> bool:
    """Whether the DSP variant runs its channel-quad engine (depthwise_conv2d_s8_grad_input_2pass_
    dsp_quads: channels a multiple of 4, maps up to 8x8, its buffers within the scratch)."""
    fn = host_lib().depthwise_conv2d_s8_grad_input_2pass_dsp_quads
    fn.argtypes = [ctypes.c_char_p]
    fn.restype = ctypes.c_int32
    return bool(fn(call.packed_params()))


def _dsp_kept(call: KernelCall) -> int:
    """The channels the DSP variant does not compute again (depthwise_conv2d_s8_grad_input_2pass_
    dsp_kept: keep's, and its own int16 ones); -1 where it runs the reference."""
    fn = host_lib().depthwise_conv2d_s8_grad_input_2pass_dsp_kept
    fn.argtypes = [ctypes.c_char_p]
    fn.restype = ctypes.c_int32
    return int(fn(call.packed_params()))


@pytest.mark.parametrize("variant", ["ref", "dsp"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_every_keep_equals_the_one_pass_kernel(case: int, variant: str) -> None:
    call, values, two = _calls(case)
    want, want_scale = _one_pass(call, values)
    assert np.count_nonzero(want) > want.size // 4  # a gradient worth comparing
    for t in two:
        poisoned = [v.copy() for v in values]
        poisoned[6][...] = 99  # every output byte must be written
        poisoned[7][...] = -1.0
        run_kernel(t, poisoned, variant)  # the planned scratch, guarded past its end
        np.testing.assert_array_equal(poisoned[6], want, err_msg=f"keep={t.params['keep']}")
        assert poisoned[7].tobytes() == want_scale, t.params["keep"]


def test_the_dsp_variant_runs_its_own_path_and_keeps_what_it_is_told() -> None:
    """The DSP variant takes these shapes itself (but the multiplier-2 case). With keep = k the
    channel-plane engine computes at least k channels once (the rest: its own int16 keeping);
    the channel-quad engine (3x3, channels a multiple of 4, maps up to 8x8) keeps whole quads, k
    rounded down to a multiple of 4, and at least a quarter of the channels in the output bytes."""
    own = quads = 0
    for case in range(len(CASES)):
        _, _, two = _calls(case)
        kept = [_dsp_kept(t) for t in two]
        c = CASES[case]
        if c["mult"] != 1:
            assert set(kept) == {-1}
            continue
        own += 1
        keeps = [t.params["keep"] for t in two]
        if _dsp_quads(two[0]):
            assert c["in_c"] % 4 == 0 and c["h"] * c["w"] <= 64
            assert all(_dsp_quads(t) for t in two)
            quads += 1
            # and a quarter of the channels (whole quads) in the output bytes between the passes
            assert kept == [max(k & ~3, (c["in_c"] // 4) & ~3) for k in keeps], kept
        else:
            assert all(k >= keep for k, keep in zip(kept, keeps, strict=True)), kept
        assert kept[-1] == len(two) - 1  # keep = input_c: every channel kept
    assert own == len(CASES) - 1 and quads >= 5, quads


@pytest.mark.parametrize("case", range(len(CASES)))
def test_the_scratch_grows_by_the_kept_accumulators(case: int) -> None:
    """keep k adds k channels' int32 accumulators (every batch), rounded up to 8 bytes, to the
    scratch of keep 0, which is the scratch before keep existed (the reference's: one channel's
    plane and the multipliers; or the DSP variant's own layout where that is larger)."""
    call, _, two = _calls(case)
    p = call.params
    plane = p["batches"] * p["input_h"] * p["input_w"]
    base = scratch_size(two[0])
    assert base == scratch_size(KernelCall(KERNEL, call.params, call.operands))  # keep absent: 0
    assert base >= 4 * (plane + p["input_c"] * p["depth_multiplier"])
    for t in two:
        k = t.params["keep"]
        assert scratch_size(t) - base == -(-4 * k * plane // 8) * 8, k
    # a doctored keep stays inside the scratch its own size gives (clamped to [0, input_c])
    for bad, like in ((-3, 0), (p["input_c"] + 5, p["input_c"])):
        t = KernelCall(KERNEL, {**call.params, "keep": bad}, call.operands)
        assert scratch_size(t) == scratch_size(two[like])


@pytest.mark.emulator
@pytest.mark.parametrize("board", ["mps2_an500", "mps2_an386"], ids=["cortex_m7", "cortex_m4"])
def test_every_keep_on_the_emulated_board(board: str, tmp_path, monkeypatch) -> None:
    """The firmware build's objects (DSP variant, its assembly) on the emulated board equal the
    one-pass reference on the host, bit for bit: every keep of the small cases, and of the wide
    ones (the channel quads: the harness's flash holds only so many operands) the keeps around
    each end, the middle and a quad's edges."""
    monkeypatch.setattr(gs, "HARNESS_KERNELS", [*gs.HARNESS_KERNELS, KERNEL])
    calls, wants = [], []
    for case in range(len(CASES)):
        call, values, two = _calls(case)
        want = _one_pass(call, values)
        c = len(two) - 1
        if c > 16:
            keeps = {0, 1, 2, 3, 4, 5, 7, 8, c // 2 - 1, c // 2, c // 2 + 1, c - 5, c - 4, c - 1, c}
            two = [two[k] for k in sorted(keeps)]
        for t in two:
            calls.append((t, values))
            wants.append(want)
    got = gs.run_on_board(calls, tmp_path, board)
    for (t, _), (want, scale), out in zip(calls, wants, got, strict=True):
        np.testing.assert_array_equal(out[6], want, err_msg=f"{board} keep={t.params['keep']}")
        assert out[7].tobytes() == scale, (board, t.params["keep"])


# --- The one-pass operator's channel-quad variant (depthwise_conv2d_s8_grad_input_dsp.c's
# run_quads: 3x3 filters, channels a multiple of 4, maps up to 8x8, its buffers past the
# accumulators), against the reference on the host and on the emulated board.

ONE_PASS = [  # MobileNetV2's 4x4x336, the 8x8 strides, trained rows inside a quad, two batches
    dict(h=4, w=4, in_c=336, sh=1, n=1, mask=True, train=0, pad="SAME"),
    dict(h=8, w=8, in_c=256, sh=1, n=1, mask=True, train=6, pad="SAME"),
    dict(h=8, w=8, in_c=160, sh=2, n=1, mask=False, train=0, pad="SAME"),
    dict(h=5, w=7, in_c=204, sh=2, n=2, mask=True, train=9, pad="VALID"),
]


def _one_pass_quads(i: int) -> tuple[KernelCall, list[np.ndarray]]:
    c = ONE_PASS[i]
    layer = gs.make_layer(
        "dw",
        640 + i,
        h=c["h"],
        w=c["w"],
        in_c=c["in_c"],
        mult=1,
        fh=3,
        fw=3,
        sh=c["sh"],
        sw=c["sh"],
        n=c["n"],
        padding=c["pad"],
        has_mask=c["mask"],
        train_rows=c["train"],
    )
    return gs.grad_input_call(layer)


@pytest.mark.parametrize("i", range(len(ONE_PASS)))
def test_the_one_pass_quads_equal_the_reference(i: int) -> None:
    call, values = _one_pass_quads(i)
    fn = host_lib().depthwise_conv2d_s8_grad_input_dsp_quads
    fn.argtypes = [ctypes.c_char_p]
    fn.restype = ctypes.c_int32
    assert fn(call.packed_params())  # the variant under test runs
    want = run_variant(call, values, "ref")
    assert np.count_nonzero(want[6]) > want[6].size // 4
    got = run_variant(call, values, "dsp")
    np.testing.assert_array_equal(got[6], want[6])
    assert got[7].tobytes() == want[7].tobytes()


@pytest.mark.parametrize("i", range(len(ONE_PASS)))
def test_the_one_pass_quads_keep_every_bit_with_the_output_over_their_scratch(i: int) -> None:
    """The planner may put the one-pass operator's output at its scratch's start
    (compiler.OUTPUT_OVER_SCRATCH): the quads' accumulators are there, their buffers past them."""
    from pytools.model.compiler import output_over_scratch_operand
    from tests.test_scratch_planning import _run_over_scratch

    call, values = _one_pass_quads(i)
    k = output_over_scratch_operand(call.kernel)
    want = run_variant(call, values, "ref")
    got = _run_over_scratch(call, values, "dsp", k)
    np.testing.assert_array_equal(got[k], want[k])
    assert got[k + 1].tobytes() == want[k + 1].tobytes()


@pytest.mark.emulator
@pytest.mark.parametrize("board", ["mps2_an500", "mps2_an386"], ids=["cortex_m7", "cortex_m4"])
def test_the_one_pass_quads_on_the_emulated_board(board: str, tmp_path) -> None:
    calls = [_one_pass_quads(i) for i in range(len(ONE_PASS))]
    got = gs.run_on_board(calls, tmp_path, board)
    for (call, values), out in zip(calls, got, strict=True):
        want = run_variant(call, values, "ref")
        np.testing.assert_array_equal(out[6], want[6], err_msg=board)
        assert out[7].tobytes() == want[7].tobytes(), board
