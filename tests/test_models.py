"""Whole models, bit-exact with TFLite's reference interpreter on the host twin and on the
emulated board: the third-party models of ../shared/models and the TensorFlow-built zoo."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from pytools import emulator
from pytools.boards import load_board
from pytools.build.builder import build_firmware
from pytools.link.client import BoardRefused, Link
from pytools.link.protocol import Msg, layout
from pytools.model.board_runner import BoardModel
from pytools.model.compiler import compile_graph
from pytools.model.host_twin import HostTwin, io_tensors, tensor_table
from pytools.model.oracle import run_tflite
from pytools.model.tflite_import import import_tflite
from pytools.paths import SHARED_MODELS

SHARED = ["vww_96_int8.tflite", "pretrainedResnet_quant.tflite"]


def shared_model(name: str) -> bytes:
    path = SHARED_MODELS / name
    if not path.exists():
        pytest.skip(f"{path} is absent (third-party models live in ../shared/models beside the checkout)")
    return path.read_bytes()


def random_inputs(blob: bytes, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    tensors = tensor_table(blob)
    spec = tensors[io_tensors(blob)[0][0]]
    if spec["dtype_name"] == "float32":
        return [rng.normal(0, 1, spec["shape"]).astype(np.float32) for _ in range(n)]
    return [rng.integers(-128, 128, spec["shape"], dtype=np.int8) for _ in range(n)]


def compile_model(model: bytes, name: str, board: str = "mps2_an500"):
    return compile_graph(import_tflite(model, name), load_board(board), name)


@pytest.mark.parametrize("name", SHARED)
def test_shared_model_is_bit_exact_on_the_host_twin(name: str) -> None:
    model = shared_model(name)
    compiled = compile_model(model, Path(name).stem)
    twin = HostTwin(compiled.blob)
    for x in random_inputs(compiled.blob, np.random.default_rng(1), 5):
        np.testing.assert_array_equal(twin.invoke([x])[0], run_tflite(model, [x])[0])


class EmulatedModel:
    """A model's firmware running on a fresh emulated board, with a link to it."""

    def __init__(self, compiled) -> None:
        board = load_board("mps2_an500")
        image = build_firmware(board, compiled.blob, compiled.arena)
        self.name = f"test-model-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.emu = emulator.start(board, image.elf, name=self.name)
        self.link = Link.open(self.emu.url)
        ins, outs = io_tensors(compiled.blob)
        self.model = BoardModel(self.link, tensor_table(compiled.blob), ins, outs)

    def close(self) -> None:
        self.link.close()
        emulator.stop(self.name)


@pytest.mark.emulator
@pytest.mark.parametrize("name", SHARED)
def test_shared_model_is_bit_exact_on_the_emulated_board(name: str) -> None:
    model = shared_model(name)
    compiled = compile_model(model, Path(name).stem)
    twin = HostTwin(compiled.blob)
    board = EmulatedModel(compiled)
    try:
        costs = []
        for x in random_inputs(compiled.blob, np.random.default_rng(2), 2):
            out, report = board.model.invoke([x])
            np.testing.assert_array_equal(out[0], run_tflite(model, [x])[0])
            np.testing.assert_array_equal(out[0], twin.invoke([x])[0])
            costs.append(report["cost"])
        assert report["counter_unit"] == 1 and min(costs) > 1_000_000
        # -icount shift=0: the same work costs the same to within the 40-instruction tick
        # and the 1 ms tick interrupts that land inside the run.
        assert max(costs) - min(costs) < 0.001 * min(costs)
    finally:
        board.close()


@pytest.mark.emulator
def test_model_commands_refuse_bad_requests_and_change_nothing() -> None:
    compiled = compile_model(shared_model("pretrainedResnet_quant.tflite"), "resnet")
    board = EmulatedModel(compiled)
    try:
        link = board.link
        info = board.model.info
        assert (info["status"], info["n_inputs"], info["n_outputs"]) == (0, 1, 1)
        assert info["arena_size"] == compiled.arena <= info["arena_capacity"]
        size = 32 * 32 * 3
        x = np.random.default_rng(3).integers(-128, 128, (1, 32, 32, 3), dtype=np.int8)
        before, _ = board.model.invoke([x])
        with pytest.raises(
            BoardRefused, match=f"tensor is {size} bytes: 16 bytes at offset {size - 8} do not fit"
        ):
            link.request(
                Msg.TENSOR_WRITE, layout("TENSOR_WRITE").pack(io=0, index=0, offset=size - 8) + bytes(16)
            )
        with pytest.raises(BoardRefused, match="the model has no input 3"):
            link.request(Msg.TENSOR_WRITE, layout("TENSOR_WRITE").pack(io=0, index=3, offset=0) + bytes(4))
        with pytest.raises(BoardRefused, match="payload must be 12 bytes, got 3"):
            link.request(Msg.TENSOR_READ, b"\x01\x00\x00")
        after, _ = board.model.invoke([x])
        np.testing.assert_array_equal(before[0], after[0])  # nothing was corrupted
    finally:
        board.close()


@pytest.mark.emulator
def test_a_firmware_without_a_model_says_so(link: Link) -> None:
    info = layout("MODEL_INFO_RSP").unpack(link.request(Msg.MODEL_INFO).payload)
    assert info["status"] != 0 and "built without a model" in info["message"]
    with pytest.raises(BoardRefused, match="built without a model"):
        link.request(Msg.INVOKE)


# --- The TensorFlow-built zoo (covers every supported op; built once per machine, cached) ---

ZOO = ["cnn_int8_io", "cnn_float_io", "mlp", "mobilenet_tiny", "movement_tiny", "se_net"]


def zoo(name: str) -> bytes:
    from pytools.pretrain.zoo import zoo_model

    return zoo_model(name)


def test_the_zoo_covers_every_supported_op() -> None:
    from pytools.model.ir import SUPPORTED_OPS
    from pytools.pretrain.zoo import NOT_IN_THE_ZOO, op_names

    seen = {op for name in ZOO for op in op_names(zoo(name))}
    # Every zoo model is checked against TFLite Micro too, which has no RELU_N1_TO_1 and whose
    # RELU6 ignores a rescale (pytools/pretrain/zoo.py, _se_net): those two are checked against
    # TFLite's reference in tests/kernels/elementwise/test_activation_kernels.py only.
    assert seen == set(SUPPORTED_OPS) - set(NOT_IN_THE_ZOO), set(SUPPORTED_OPS) - seen


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_is_bit_exact_on_the_host_twin(name: str) -> None:
    model = zoo(name)
    compiled = compile_model(model, name)
    twin = HostTwin(compiled.blob)
    for x in random_inputs(compiled.blob, np.random.default_rng(4), 6):
        np.testing.assert_array_equal(twin.invoke([x])[0], run_tflite(model, [x])[0])


@pytest.mark.emulator
@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_is_bit_exact_on_the_emulated_board(name: str) -> None:
    model = zoo(name)
    compiled = compile_model(model, name)
    board = EmulatedModel(compiled)
    try:
        for x in random_inputs(compiled.blob, np.random.default_rng(5), 2):
            out, _ = board.model.invoke([x])
            np.testing.assert_array_equal(out[0], run_tflite(model, [x])[0])
    finally:
        board.close()


@pytest.mark.parametrize("name", ZOO + SHARED)
def test_our_arena_is_no_larger_than_tflite_micros(name: str) -> None:
    """TFLite Micro's arena (tflite-micro's own report) against ours, for the same model."""
    from pytools.model.tflm import tflm_arena_bytes

    model = shared_model(name) if name.endswith(".tflite") else zoo(name)
    ours = compile_model(model, Path(name).stem).arena
    theirs = tflm_arena_bytes(model)
    # Our arena also holds the optimized kernels' buffers (each kernel's planned scratch, issue
    # 14: no longer on the thread stack), which TFLite Micro's reference kernels keep on the
    # stack or in their persistent part: the whole arena is the like-for-like figure.
    assert ours <= theirs["total"], (ours, theirs)
