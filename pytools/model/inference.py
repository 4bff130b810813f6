"""`invoke infer`: a model over rows of inputs, on the host twin or on a board."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pytools import emulator, validate
from pytools.boards import DEFAULT_BOARD, HOST, Board, load_board
from pytools.connect import open_link, resolve_board
from pytools.errors import ToolError
from pytools.model.board_runner import BoardModel
from pytools.model.host_twin import HostTwin, io_tensors, tensor_table
from pytools.model.pipeline import Converted, check_fits, convert
from pytools.progress import progress


def rows_for(x: np.ndarray, spec: dict, what: str) -> np.ndarray:
    """The input array as rows of the model's input shape (batch 1), checked."""
    shape, dtype = tuple(spec["shape"]), np.dtype(spec["dtype_name"])
    if x.dtype != dtype:
        raise ToolError(f"{what} holds {x.dtype}; the model's input is {dtype} with shape {shape}")
    per_row = int(np.prod(shape))
    if x.size == 0:
        raise ToolError(f"{what} holds no inputs (shape {x.shape}); each row must hold one of shape {shape}")
    if x.shape == shape:
        return x.reshape(1, *shape)
    if x.ndim >= 1 and int(np.prod(x.shape[1:])) == per_row:
        return x.reshape(x.shape[0], *shape)
    raise ToolError(f"{what} has shape {x.shape}; each row must hold one input of shape {shape}")


def run_inference(model: Path, inputs: Path, out: Path, board_name: str | None, port: str | None) -> None:
    # Every file checked before anything is built, started or written (pytools/validate.py).
    x = validate.npy_array(inputs, "--inputs")
    validate.output_file(out, "--out", ".npy")
    if not Path(model).is_file():
        raise ToolError(f"--model: no file at {model}")
    on_host = (board_name or "") == HOST
    board: Board = load_board(DEFAULT_BOARD) if on_host else resolve_board(board_name)
    conv = convert(model, board)
    check_fits(conv)
    blob = conv.compiled.blob
    tensors = tensor_table(blob)
    ins, outs = io_tensors(blob)
    if len(ins) != 1 or len(outs) != 1:
        raise ToolError(
            f"invoke infer runs models with one input and one output; {model.name} has {len(ins)}/{len(outs)}"
        )
    rows = rows_for(x, tensors[ins[0]], str(inputs))
    results: list[np.ndarray] = []
    if on_host:
        twin = HostTwin(blob)
        for row in progress(rows, desc=f"{model.stem} on the host twin", unit="row"):
            results.append(twin.invoke([row])[0])
    else:
        results = _on_board(board, conv, rows, tensors, ins, outs, port)
    np.save(out, np.stack([r.reshape(r.shape[1:]) if r.shape[0] == 1 else r for r in results]))
    print(f"wrote {len(results)} output rows to {out}")


def _on_board(
    board: Board,
    conv: Converted,
    rows: np.ndarray,
    tensors: list[dict],
    ins: list[int],
    outs: list[int],
    port: str | None,
) -> list[np.ndarray]:
    image = conv.image
    name = None
    if board.is_emulated and not port:
        name = f"infer-{os.getpid()}"
        emu = emulator.start(board, image.elf, name=name)
        port = emu.url
    elif not board.is_emulated:
        from pytools.flashing import flash_image

        flash_image(board, image)
    results: list[np.ndarray] = []
    costs: list[int] = []
    try:
        with open_link(board, port) as link:
            bm = BoardModel(link, tensors, ins, outs)
            bar = progress(rows, desc=f"{conv.name} on {board.name}", unit="row")
            for row in bar:
                o, report = bm.invoke([row])
                results.append(o[0])
                costs.append(report["cost"])
                bar.set_postfix(cost=f"{report['cost']:,}")
    finally:
        if name:
            emulator.stop(name)
    unit = "instructions" if board.counter_unit == "instructions" else "cycles"
    print(
        f"cost per inference: {int(np.median(costs)):,} {unit} (median of {len(costs)}; {board.timing_note})"
    )
    return results
