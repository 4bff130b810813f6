"""The training benchmark (pytools/bench/): measured peak SRAM, the step's cost and its parts
from the same state, and honest reports for steps that do not fit or boards not attached."""

from __future__ import annotations

import dataclasses

import pytest

from pytools import bench, emulator
from pytools.bench import measure
from pytools.boards import load_board
from pytools.build.builder import build_firmware
from pytools.errors import ToolError
from pytools.model.tflite_import import load_tflite
from pytools.paths import ROOT
from pytools.pretrain.zoo import zoo_model, zoo_path
from pytools.train.compile_train import compile_training
from pytools.train.scheme import load_scheme

HEAD_ONLY = str(ROOT / "schemes" / "head_only.toml")


@pytest.fixture(autouse=True)
def _own_run_dir(tmp_path, monkeypatch):
    """Emulators started here are recorded under the test's own directory."""
    monkeypatch.setattr(emulator, "RUN", tmp_path)


def _model(name: str):
    zoo_model(name)  # built with TensorFlow and cached on first use
    return zoo_path(name)


@pytest.mark.emulator
def test_peak_sram_is_the_linker_figure_minus_the_reserved_stack_plus_the_high_water(tmp_path) -> None:
    model = _model("cnn_int8_io")
    out = tmp_path / "bench.md"
    res = bench.run_bench(model, HEAD_ONLY, "mps2_an500", out, steps=3, lr=0.01)
    assert res["fits"] and res["cost"]["unit"] == "instructions"
    mem = res["memory"]

    # Independently: link the same plan again and read the linker's RAM figure; the reserved
    # stack comes from the board file; the high-water mark is what the firmware measured.
    board = load_board("mps2_an500")
    ct = compile_training(load_tflite(model), load_scheme(HEAD_ONLY), board, model.stem, link=False, lr=0.01)
    image = build_firmware(board, ct.compiled.blob, ct.compiled.arena)
    linker_ram = image.regions["RAM"].used
    assert mem["linker_ram"] == linker_ram == mem["firmware_ram_static"]
    assert mem["reserved_thread_stack"] == board.memory.stack_size
    assert 0 < mem["stack_high_water"] < board.memory.stack_size
    assert mem["peak_sram"] == linker_ram - board.memory.stack_size + mem["stack_high_water"]
    assert mem["linker_flash"] == image.regions["FLASH"].used
    assert mem["arena"] == ct.compiled.arena
    assert 0 < sum(mem["arena_breakdown"].values()) <= ct.compiled.arena

    cost, macs = res["cost"], res["macs"]
    assert len(cost["steps"]) == 3 and cost["step"] > 1_000_000
    assert len(cost["per_op"]) == res["operators"]["step"]
    assert macs["forward"] == macs["model_forward"] > 0  # head-only: the forward is the model's
    assert 0 < macs["per_unit"] < 1
    text = out.read_text()
    assert bench.PEAK_FORMULA in text and board.timing_note in text and "does not fit" not in text
    # The zoo model trains on its own kind of data, at the rate given, and the report says both.
    assert "samples of the zoo model's own kind" in text and "learning rate 0.01 (given)" in text
    # Beside the instruction counts: QEMU counts a multi-register transfer as one instruction.
    assert text.count(bench.COUNT_NOTE) >= 2


@pytest.mark.emulator
def test_the_whole_step_is_the_sum_of_its_parts_on_the_same_state() -> None:
    """Each step runs whole, then as forward + backward, and the last also one operator at a time,
    from the same trained state (read back, put back with STATE_LOAD) and the same sample, at a
    learning rate that changes the state. The runs end on the identical loss, and the parts minus
    the extra INVOKEs' measured overhead (empty INVOKEs) are the whole step within one timer tick
    per INVOKE."""
    res = bench.run_bench(
        _model("mobilenet_tiny"), "bias=8,-1=1,-2=0.125,-5=0.25", "mps2_an500", None, steps=3, lr=0.01
    )
    cost = res["cost"]
    assert cost["same_step_mismatches"] == []
    assert len(set(cost["losses"])) > 1  # the steps trained: the state moved between them
    g = cost["granularity"]
    assert g == 40
    # One INVOKE's own cost is real, small, and measured (a mean over empty INVOKEs).
    assert len(cost["empty_invokes"]) == measure.EMPTY_INVOKES
    assert 0 < cost["dispatch_overhead"] < 1_000
    assert all(abs(r) <= cost["split_tolerance"] == 3 * g for r in cost["split_residuals"])
    pc = cost["parts_check"]
    n = res["operators"]["step"]
    assert pc["invokes"] == n and pc["whole"] == cost["steps"][-1] and pc["parts"] == sum(cost["per_op"])
    assert pc["tolerance"] == (n + 1) * g
    assert abs(pc["residual"]) <= pc["tolerance"]
    assert pc["dispatch"] == round((n - 1) * cost["dispatch_overhead"], 1)
    assert "Whole step against its parts" in res["markdown"]
    assert not list(emulator.RUN.glob("bench-*"))  # the emulator's log, record and flash removed


def test_a_step_that_does_not_fit_is_reported_not_raised(monkeypatch) -> None:
    real = load_board("mps2_an500")
    small = dataclasses.replace(
        real, name="mps2_an500_tiny_ram", memory=dataclasses.replace(real.memory, ram_size=32 * 1024)
    )
    monkeypatch.setattr(measure, "load_board", lambda name: small)
    started = []
    monkeypatch.setattr(emulator, "start", lambda *a, **k: started.append(a))
    res = bench.run_bench(_model("cnn_int8_io"), HEAD_ONLY, "mps2_an500_tiny_ram", None, lr=0.0)
    mem = res["memory"]
    assert not res["fits"] and res["cost"] is None and not started
    assert mem["overflow"]["RAM"] == mem["linker_ram"] - small.memory.ram_size > 0
    assert mem["arena_breakdown"]["activations"] > 0
    assert f"over RAM by {mem['overflow']['RAM']:,} B" in res["markdown"]
    assert "does not fit" in res["markdown"]


def test_a_real_board_is_refused_unless_attached(monkeypatch) -> None:
    from pytools import connect

    def no_stlink() -> str:
        raise ToolError("no ST-LINK virtual COM port found")

    monkeypatch.setattr(connect, "find_stlink_port", no_stlink)
    with pytest.raises(ToolError, match="real board and none is attached"):
        bench.run_bench(_model("mlp"), HEAD_ONLY, "nucleo_f746zg", None)
    res = bench.run_bench(_model("mlp"), HEAD_ONLY, "nucleo_f746zg", None, link_only=True)
    assert res["fits"] and res["cost"] is None and res["memory"]["linker_ram"] > 0
    assert "CPU cycles at 216 MHz" in res["timing_note"]


def test_macs_count_the_forward_layers_and_the_backward_of_the_step() -> None:
    graph = load_tflite(_model("mobilenet_tiny"))
    ct = compile_training(
        graph, load_scheme("bias=3,-1=1,-2=0.25"), load_board("mps2_an500"), "mobilenet_tiny", link=False
    )
    macs = bench.step_macs(ct)
    ops = ct.train.graph.ops
    nf = ct.train.n_forward
    assert sum(macs[:nf]) == sum(bench.graph_macs(graph).values())
    fc = next(op for op in graph.ops if op.kind == "FULLY_CONNECTED")
    conv = [op for op in graph.ops if op.kind == "CONV_2D"][-1]  # layer -2
    fc_macs, conv_macs = bench.op_macs(graph, fc), bench.op_macs(graph, conv)
    w = graph.tensor(conv.inputs[1])
    by_kind = {}
    for op, m in zip(ops[nf:], macs[nf:], strict=True):
        by_kind.setdefault(op.kind, []).append(m)
    assert by_kind["FULLY_CONNECTED_GRAD_UPDATE"] == [fc_macs]
    assert by_kind["FULLY_CONNECTED_GRAD_INPUT"] == [fc_macs]
    # layer -2 trains a quarter of its rows; layer -3 (a projection) its bias only
    assert conv_macs * (w.shape[0] // 4) // w.shape[0] in by_kind["CONV_2D_GRAD_UPDATE"]
    assert 0 in by_kind["CONV_2D_GRAD_UPDATE"]


@pytest.mark.emulator
def test_reference_and_optimized_kernels_train_alike_and_the_layers_add_up() -> None:
    """The same sparse steps with the firmware as built (DSP kernels) and without
    -DKERNELS_DSP=1 (reference kernels): identical losses (the kernels are bit-identical, so the
    steps are too), the optimized step cheaper, and the per-layer figures summing to the
    per-operator ones."""
    from pytools.pretrain.zoo import ZOO

    model = _model("mobilenet_tiny")
    scheme = "bias=8,-1=1,-2=0.125,-5=0.25"
    data = ZOO["mobilenet_tiny"].data(4, 2)
    opt = bench.run_bench(model, scheme, "mps2_an500", None, steps=2, samples=data, lr=0.05)
    ref = bench.run_bench(
        model, scheme, "mps2_an500", None, steps=2, samples=data, lr=0.05, kernels="reference"
    )
    assert opt["kernels"].startswith("optimized") and "conv2d_s8_grad_input" in opt["kernels"]
    assert ref["kernels"] == "reference C (non-DSP)"
    assert opt["cost"]["losses"] == ref["cost"]["losses"]
    assert ref["cost"]["step"] > 3 * opt["cost"]["step"]
    for res in (opt, ref):
        layers = bench.per_layer(res)
        assert sum(layers["totals"].values()) + layers["other"] == res["cost"]["per_op_sum"]
        nf = res["operators"]["forward"]
        forward_layers = {i for i in range(nf) if res["op_kinds"][i] != "CLAMP_MASK"}
        assert {i for i, *_ in layers["layers"]} == forward_layers
        assert layers["totals"]["update"] > 0 and layers["totals"]["backward"] > 0
    table = bench.layer_table(opt, ref)
    assert "DEPTHWISE_CONV_2D 3x3" in table and "**total**" in table
    row = bench.comparison_rows("mobilenet_tiny", opt, ref)
    assert f"{ref['cost']['step']:,}" in row and f"{opt['cost']['step']:,}" in row
    with pytest.raises(ToolError, match="kernels must be"):
        bench.run_bench(model, scheme, "mps2_an500", None, kernels="fast")


@pytest.mark.emulator
def test_the_mcunet_section_states_each_ratio_against_mit_and_its_bar() -> None:
    """BENCHMARKS.md section 3 (pytools/bench/suite.py): ours / MIT's for peak SRAM and the step,
    each against issue 14's bar, and the Nucleo link, from the runs' own figures (a small model
    stands in for MCUNet here: the suite runs MCUNet itself)."""
    from pytools.bench import suite

    run = bench.run_bench(_model("mlp"), HEAD_ONLY, "mps2_an500", None, steps=1, lr=0.0)
    nucleo = bench.run_bench(_model("mlp"), HEAD_ONLY, "nucleo_f746zg", None, link_only=True)
    text = "\n".join(suite.mcunet_section(run, nucleo))
    peak = run["memory"]["peak_sram"] / (suite.MIT_ENGINE["peak_kb"] * 1024)
    step = run["cost"]["step"] / suite.MIT_ENGINE["step"]
    assert f"| {peak:.3f}x | <= 0.6x: **met** |" in text  # a tiny model is far under both bars
    assert f"| {step:.3f}x | <= 0.5x: **met** |" in text
    assert f"SRAM {nucleo['memory']['linker_ram']:,} of " in text and "fits" in text
    # Over a bar, the row says so.
    big = dict(run, cost=dict(run["cost"], step=int(suite.MIT_ENGINE["step"] * 0.51)))
    assert "| 0.510x | <= 0.5x: **not met** |" in "\n".join(suite.mcunet_section(big, nucleo))
    assert "QEMU counts a multi-register load or store" in text


def test_a_bar_says_met_or_by_how_much_it_is_missed() -> None:
    from pytools.bench import report, suite

    assert suite._bar_text("peak SRAM", 102_400, 102_400, report.kb) == (
        "peak SRAM 102,400 B (100.0 KiB): **met** (at most 102,400 B (100.0 KiB))"
    )
    assert suite._bar_text("step", 59_800_000, 40_000_000, report.mega) == (
        "step 59.80 M: **not met** (at most 40.00 M; 19.80 M over)"
    )


def test_split_check_counts_a_streamed_steps_invokes() -> None:
    """A streamed step stops at each fetch, so its whole run and its split run take more than 1 + 2
    INVOKEs: the residual subtracts the split's extra ones' overhead, the tolerance is a tick for
    every INVOKE of both ways, and the report says those counts (not "three", "one extra")."""
    from pytools.bench.report import whole_and_parts

    # unstreamed: 1 + 2 INVOKEs, one extra
    assert measure.split_check([1010], [1000], [2], [1], 10.0) == ([0.0], 3)
    # streamed: the whole step 5 INVOKEs, forward + backward 6 (one more stop at nf)
    residuals, invokes = measure.split_check([1013, 1007], [1000, 1000], [6, 6], [5, 5], 10.0)
    assert residuals == [3.0, -3.0] and invokes == 11
    cost = {
        "unit": "instructions",
        "granularity": 40,
        "dispatch_overhead": 10.0,
        "split_residuals": residuals,
        "split_tolerance": invokes * 40,
        "split_extra_invokes": 1,
        "split_invokes": invokes,
    }
    text = whole_and_parts(cost)
    assert "tolerance 440: 11 INVOKEs" in text and "three INVOKEs" not in text
    assert "1 extra INVOKE's overhead" in text
