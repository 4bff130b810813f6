"""Reporting a benchmark run: the Markdown of one run (memory, cost, MACs, per-operator and
per-layer tables) and the tables the suite (suite.py) builds from several runs.

Every instruction count printed here carries COUNT_NOTE: QEMU counts a multi-register load or
store as one instruction, so the counts are not silicon cycles.
"""

from __future__ import annotations

import re
from typing import Any

from pytools.bench.memory import PEAK_FORMULA
from pytools.errors import ToolError
from pytools.model.ir import Graph, Op
from pytools.train.compile_train import CATEGORIES

# Said beside every instruction count (issue 14): QEMU's -icount counts instructions, not the
# memory beats a multi-register transfer takes on silicon.
COUNT_NOTE = (
    "QEMU counts a multi-register load or store (LDM/STM, PUSH/POP, VLDM/VSTM) as one instruction, "
    "so silicon cycles will differ, most for LDM/STM-heavy code"
)


def count_note(unit: str) -> str:
    """The sentence to put beside counts in `unit` (none for a real board's cycles)."""
    return f"Instruction counts: {COUNT_NOTE}." if unit == "instructions" else ""


def resolution(g: Graph, op: Op) -> str:
    """HxW of an operator's first output (NHWC; a clamp mask: of its activation), or "vector"."""
    t = op.inputs[0] if op.kind == "CLAMP_MASK" else (op.outputs[0] if op.outputs else -1)
    shape = g.tensor(t).shape if t >= 0 else ()
    return f"{shape[1]}x{shape[2]}" if len(shape) == 4 else "vector"


def kb(n: int) -> str:
    return f"{n:,} B ({n / 1024:.1f} KiB)"


def mega(n: float, unit: str = "") -> str:
    return f"{n / 1e6:,.2f} M{' ' + unit if unit else ''}"


def markdown(res: dict[str, Any], per_op_rows: int = 60) -> str:
    """The report of one run: memory, cost, MACs, each figure with its unit."""
    mem, cost, macs = res["memory"], res["cost"], res["macs"]
    ops = res["operators"]
    lines = [
        f"### {res['model']} on {res['board']}: {res['scheme']} (lr {res['lr']:g})",
        "",
        f"- board: {res['board_description']}; {res['date']}",
        f"- forward kernels: {res['kernels']}"
        + (f"; firmware build {res['build_id']}" if res.get("build_id") else ""),
        f"- step: {ops['step']} operators ({ops['forward']} forward, "
        f"{ops['backward_update']} loss + backward + update)",
    ]
    if res["fits"]:
        lines.append(
            f"- **fits** {res['board']}: SRAM {mem['linker_ram']:,} of {mem['ram_limit']:,} B, "
            f"flash {mem['linker_flash']:,} of {mem['flash_limit']:,} B (linker)"
        )
    else:
        over = ", ".join(f"{r} by {n:,} B" for r, n in mem["overflow"].items()) or "see the link error"
        lines.append(
            f"- **does not fit** {res['board']}: it would need {mem['linker_ram']:,} B of SRAM "
            f"(limit {mem['ram_limit']:,} B) and {mem['linker_flash']:,} B of flash "
            f"(limit {mem['flash_limit']:,} B); the linker refuses it: over {over}"
        )
    lines += ["", "| memory | bytes | source |", "|---|---:|---|"]
    rows = [
        ("arena (planned, whole step)", mem["arena"], "compile_train"),
        ("firmware RAM without a model (stacks, link buffers, .data/.bss)", mem["firmware_ram"], "linker"),
        ("static RAM with the training plan", mem["linker_ram"], mem["ram_source"]),
        ("reserved thread stack", mem["reserved_thread_stack"], "board file / INFO"),
    ]
    if "peak_sram" in mem:
        rows += [
            ("thread-stack high-water (measured)", mem["stack_high_water"], "INFO after the steps"),
            ("**peak SRAM**", mem["peak_sram"], PEAK_FORMULA),
        ]
    rows += [
        ("flash (image with the plan)", mem["linker_flash"], mem["flash_source"]),
        ("of which the plan (weights, tables)", mem["plan_bytes"], "compile_train"),
        ("trainable state in RAM (weight slices, biases, RNG)", mem["trainable_state"], "compile_train"),
    ]
    lines += [f"| {a} | {b:,} | {c} |" for a, b, c in rows]
    bd, back = mem["arena_breakdown"], mem["arena_backward_breakdown"]
    lines += [
        "",
        f"Arena by category (bytes) at its busiest operator (#{mem['arena_peak_operator']}, "
        f"{mem['arena_peak_kind']}) and at the busiest operator of loss + backward + update "
        f"(#{mem['arena_backward_peak_operator']}, {mem['arena_backward_peak_kind']}):",
        "",
        "| category | busiest operator | busiest backward operator |",
        "|---|---:|---:|",
        *[f"| {k} | {bd[k]:,} | {back.get(k, 0):,} |" for k in CATEGORIES],
        f"| total | {sum(bd.values()):,} | {sum(back.values()):,} |",
    ]
    if res.get("samples"):
        lines += ["", f"Samples: {res['samples']}.", "", f"Learning rate: {res['lr_check']}"]
    if cost is None:
        why = "the step does not fit" if not res["fits"] else "memory only (link_only): no board was run"
        lines += ["", f"Cost: not measured ({why})."]
        lines += [
            "",
            f"MACs per step: {macs['step']:,} ({macs['forward']:,} forward, "
            f"{macs['backward_update']:,} backward + update).",
        ]
        return "\n".join(lines)
    u = cost["unit"]
    n = len(cost["forward_steps"])

    def per(m: int, c: int) -> str:
        return f"{m / c:.3f}" if c else ""

    steps = cost["steps"]
    lines += [
        "",
        f"Cost in {u} ({cost['timing_note']}). {count_note(u)}",
        "",
        f"| figure | {u} | MACs | MACs per {u[:-1]} |",
        "|---|---:|---:|---:|",
        f"| **training step**, one INVOKE (median of {len(steps)}; range {min(steps):,} to {max(steps):,}) "
        f"| {cost['step']:,} | {macs['step']:,} | {per(macs['step'], cost['step'])} |",
        f"| forward, operators [0, {ops['forward']}) (median of {n}) | {cost['forward']:,} | "
        f"{macs['forward']:,} | {per(macs['forward'], cost['forward'])} |",
        f"| loss + backward + update, [{ops['forward']}, {ops['step']}) (median of {n}) "
        f"| {cost['backward_update']:,} | {macs['backward_update']:,} | "
        f"{per(macs['backward_update'], cost['backward_update'])} |",
        f"| forward + backward, two INVOKEs per step, same state and sample (median of {n}) "
        f"| {cost['split_sum']:,} | | |",
    ]
    if cost["per_op"]:
        lines.append(
            f"| the last step again as {len(cost['per_op'])} one-operator INVOKEs, same state and sample "
            f"| {cost['per_op_sum']:,} | | |"
        )
    lines.append(
        f"| one empty INVOKE (dispatch overhead, mean of {len(cost['empty_invokes'])}) "
        f"| {cost['dispatch_overhead']:.1f} | | |"
    )
    if "ms_per_step" in cost:
        lines.append(f"| training step in ms at {res['board']}'s clock | {cost['ms_per_step']:.1f} ms | | |")
    lines += ["", whole_and_parts(cost)]
    lines += [
        "",
        f"Loss of each step (whole-step INVOKEs): {', '.join(f'{v:.3f}' for v in cost['losses'])}"
        + (
            "; the split and per-operator runs of each step, from the same state, ended on the "
            "identical loss."
            if not cost["same_step_mismatches"]
            else f"; **the runs of a step did not end alike**: {'; '.join(cost['same_step_mismatches'])}."
        ),
        "",
        f"Each INVOKE is timed by the firmware (timer tick: {cost['granularity']} {u}). Consecutive steps "
        "differ in their sample and in the state the previous step trained, and the gradient kernels skip "
        "zero gradients, so the backward part of a step depends on its data; MACs count every product, "
        "skipped or not.",
    ]
    if cost["per_op"]:
        lines += ["", _per_op_table(res, per_op_rows)]
        share = 0.0 if len(cost["per_op"]) <= per_op_rows else 0.005
        lines += ["", f"Per layer (the same INVOKEs; {u}):", "", layer_table(res, min_share=share)]
        if count_note(u):
            lines += ["", count_note(u)]
    return "\n".join(lines)


def whole_and_parts(cost: dict[str, Any]) -> str:
    """The check that a step measured in parts is the whole step: the parts minus the extra
    INVOKEs' measured dispatch overhead, against the whole, with the tolerance the timer allows."""
    u, g = cost["unit"], cost["granularity"]
    worst = max(cost["split_residuals"], key=abs)
    # results written before the counts: an unstreamed plan's 1 + 2 INVOKEs
    extra, invokes = cost.get("split_extra_invokes", 1), cost.get("split_invokes", 3)
    whose = "INVOKE's" if extra == 1 else "INVOKEs'"
    text = (
        f"**Whole step against its parts.** Each step ran three ways from the same trained state (read "
        f"back, then put back with STATE_LOAD) and the same sample. Forward + backward - "
        f"{extra} extra {whose} overhead "
        f"({cost['dispatch_overhead']:.1f} {u} each) - the whole step: "
        f"{', '.join(f'{r:+,.0f}' for r in cost['split_residuals'])} {u} (worst {worst:+,.0f}; "
        f"tolerance {cost['split_tolerance']}: {invokes} INVOKEs each read to within one {g}-{u[:-1]} "
        "tick)."
    )
    pc = cost.get("parts_check")
    if pc:
        text += (
            f" The last step's {pc['invokes']} one-operator INVOKEs sum to {pc['parts']:,}; minus "
            f"{pc.get('extra_invokes', pc['invokes'] - 1)} extra INVOKEs' overhead "
            f"({pc['dispatch']:,.0f}) that is "
            f"{pc['parts'] - pc['dispatch']:,.0f} against the whole step's {pc['whole']:,}: residual "
            f"{pc['residual']:+,.0f} {u} (tolerance {pc['tolerance']:,}: {pc['invokes'] + 1} INVOKEs, "
            "one tick each)."
        )
    return text


def describe(g: Graph, op: Op) -> str:
    """A forward layer in a few words: kind, filter, input -> output shape."""
    if not op.inputs or op.inputs[0] < 0 or not op.outputs:
        return op.kind
    shape_in = "x".join(map(str, g.tensor(op.inputs[0]).shape[1:]))
    shape_out = "x".join(map(str, g.tensor(op.outputs[0]).shape[1:]))
    k = ""
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(op.inputs) > 1:
        w = g.tensor(op.inputs[1]).shape
        k = f" {w[1]}x{w[2]}" + (
            f"/{op.options.get('stride_h', 1)}" if op.options.get("stride_h", 1) > 1 else ""
        )
    return f"{op.kind}{k} {shape_in} -> {shape_out}"


def layer_of(op: Op, nf: int) -> int:
    if op.index < nf and op.kind != "CLAMP_MASK":
        return op.index
    return int(op.options.get("forward", -1))


def _phase(i: int, kind: str, nf: int) -> str:
    from pytools.train.losses import LOSS_OPS, LOSS_OPS_F32

    return (
        "forward" if i < nf else ("loss" if kind in (*LOSS_OPS, *LOSS_OPS_F32, "LOGITS_S32") else "backward")
    )


def _per_op_table(res: dict[str, Any], max_rows: int) -> str:
    """Per operator for short steps; for long ones, by phase and kind, and forward by resolution."""
    cost, kinds, macs = res["cost"], res["op_kinds"], res["macs"]["per_op"]
    nf, u = res["operators"]["forward"], res["cost"]["unit"]
    total = max(cost["per_op_sum"], 1)
    if len(kinds) <= max_rows:
        rows = [
            f"| {i} | {_phase(i, k, nf)} | {k} | {c:,} | {100 * c / total:.1f} | {m:,} |"
            for i, (k, c, m) in enumerate(zip(kinds, cost["per_op"], macs, strict=True))
        ]
        head = f"Per operator (one INVOKE each, one step; {u}):"
        return "\n".join(
            [head, "", f"| # | phase | operator | {u} | % | MACs |", "|---:|---|---|---:|---:|---:|", *rows]
        )

    def table(title: str, key_head: str, groups: dict[str, list[int]], order: list[str]) -> list[str]:
        rows = [
            f"| {k} | {groups[k][0]} | {groups[k][1]:,} | {100 * groups[k][1] / total:.1f} | "
            f"{groups[k][2]:,} | {groups[k][2] / max(groups[k][1], 1):.3f} |"
            for k in order
        ]
        return [
            title,
            "",
            f"| {key_head} | operators | {u} | % of the step | MACs | MACs per {u[:-1]} |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
        ]

    by_kind: dict[str, list[int]] = {}
    by_res: dict[str, list[int]] = {}
    for i, (k, c, m) in enumerate(zip(kinds, cost["per_op"], macs, strict=True)):
        for groups, key in ((by_kind, f"{_phase(i, k, nf)}: {k}"), (by_res, res["op_resolution"][i])):
            if groups is by_res and i >= nf:
                continue
            g = groups.setdefault(key, [0, 0, 0])
            g[0] += 1
            g[1] += c
            g[2] += m
    kind_order = sorted(by_kind, key=lambda k: -by_kind[k][1])
    lines = table(
        f"Per operator kind (one INVOKE per operator over one step, summed; {u}):",
        "operator",
        by_kind,
        kind_order,
    )
    title = f"Forward pass by output resolution (the same INVOKEs; {u}):"
    lines += ["", *table(title, "output", by_res, list(by_res))]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- per layer

PHASES = ("forward", "backward", "update")


def _op_phase(kind: str, layer: int, index: int, nf: int) -> str:
    """forward (a layer and its clamp mask), backward (input gradients, mask applications),
    update (weight and bias updates), or other (the loss, gradient sums)."""
    if index < nf:
        return "forward"
    if layer < 0:
        return "other"
    return "update" if kind.endswith("_GRAD_UPDATE") else "backward"


def per_layer(res: dict[str, Any]) -> dict[str, Any]:
    """One training step's per-operator costs gathered per forward layer: {"layers": [(index,
    description, {phase: cost}, forward MACs)], "other": cost, "totals": {phase: cost}}. A
    layer's forward includes its clamp mask; its backward, its input gradient (and mask
    application); its update, the weight and bias update."""
    cost = res["cost"]
    if cost is None or not cost["per_op"]:
        raise ToolError("per-layer figures need a run with per_op=True")
    nf = res["operators"]["forward"]
    layers: dict[int, dict[str, int]] = {}
    other = 0
    totals = dict.fromkeys(PHASES, 0)
    for i, (kind, layer, c) in enumerate(zip(res["op_kinds"], res["op_layer"], cost["per_op"], strict=True)):
        phase = _op_phase(kind, layer, i, nf)
        if phase == "other":
            other += c
            continue
        layers.setdefault(layer, dict.fromkeys(PHASES, 0))[phase] += c
        totals[phase] += c
    macs = res["macs"]["per_op"]
    rows = [(i, res["op_desc"][i], layers[i], macs[i]) for i in sorted(layers)]
    return {"layers": rows, "other": other, "totals": totals}


def pointwise_rate(res: dict[str, Any], min_c: int = 0, max_c: int = 1 << 30) -> tuple[int, int]:
    """(MACs, cost) of the forward 1x1 convolutions with min_c <= input channels < max_c."""
    nf = res["operators"]["forward"]
    macs = cost = 0
    for i in range(nf):
        m = re.match(r"CONV_2D 1x1 \d+x\d+x(\d+) ", res["op_desc"][i])
        if res["op_kinds"][i] == "CONV_2D" and m and min_c <= int(m.group(1)) < max_c:
            macs += res["macs"]["per_op"][i]
            cost += res["cost"]["per_op"][i]
    return macs, cost


def layer_table(opt: dict[str, Any], ref: dict[str, Any] | None = None, min_share: float = 0.0) -> str:
    """Per layer: forward, backward and update costs of the optimized kernels (and of the
    reference kernels, and the ratio, when ref is given), MACs and MACs per unit. Layers whose
    optimized step share is below min_share are summed in one row."""
    a = per_layer(opt)
    b = per_layer(ref) if ref is not None else None
    u = opt["cost"]["unit"]
    total = max(sum(a["totals"].values()) + a["other"], 1)
    ref_rows = {i: c for i, _, c, _ in b["layers"]} if b else {}
    head = f"| # | layer | forward | backward | update | MACs (forward) | MACs per {u[:-1]} (forward) |"
    sep = "|---:|---|---:|---:|---:|---:|---:|"
    if b:
        head += " reference: forward | backward | update | reference / optimized |"
        sep += "---:|---:|---:|---:|"

    def cells(c: dict[str, int]) -> str:
        return " | ".join(f"{c[ph]:,}" if c[ph] else "" for ph in PHASES)

    lines = [head, sep]
    rest = dict.fromkeys(PHASES, 0)
    rest_ref = dict.fromkeys(PHASES, 0)
    rest_n = 0
    for i, desc, c, m in a["layers"]:
        r = ref_rows.get(i)
        if sum(c.values()) / total < min_share:
            rest_n += 1
            for ph in PHASES:
                rest[ph] += c[ph]
                rest_ref[ph] += r[ph] if r else 0
            continue
        rate = f"{m / c['forward']:.3f}" if m and c["forward"] else ""
        row = f"| {i} | {desc} | {cells(c)} | {m:,} | {rate} |"
        if b and r:
            row += f" {cells(r)} | {sum(r.values()) / max(sum(c.values()), 1):.2f} |"
        lines.append(row)
    if rest_n:
        row = f"| | {rest_n} smaller layers (each < {100 * min_share:g} % of the step) | {cells(rest)} | | |"
        if b:
            row += f" {cells(rest_ref)} | {sum(rest_ref.values()) / max(sum(rest.values()), 1):.2f} |"
        lines.append(row)
    row = f"| | loss and gradient sums | {a['other']:,} | | | | |"
    if b:
        row += f" {b['other']:,} | | | |"
    lines.append(row)
    t = a["totals"]
    row = f"| | **total** | {cells(t)} | | |"
    if b:
        tr = b["totals"]
        row += f" {cells(tr)} | {(sum(tr.values()) + b['other']) / max(total, 1):.2f} |"
    lines.append(row)
    return "\n".join(lines)


def comparison_rows(label: str, opt: dict[str, Any], ref: dict[str, Any]) -> str:
    """One row of the optimized-vs-reference summary: whole step (median), forward, backward,
    update (per-operator sums), the ratio, and the forward 1x1 convolutions' MACs per unit."""
    a, b = per_layer(opt), per_layer(ref)
    ta, tb = a["totals"], b["totals"]
    pm, pc = pointwise_rate(opt)
    rm, rc = pointwise_rate(ref)
    pw = f"{pm / pc:.3f} (reference {rm / rc:.3f})" if pc and rc else "no 1x1 conv"
    so, sr = opt["cost"]["step"], ref["cost"]["step"]
    return (
        f"| {label} | {sr:,} | {so:,} | **{sr / so:.2f}x** | {tb['forward']:,} / {ta['forward']:,} | "
        f"{tb['backward']:,} / {ta['backward']:,} | {tb['update']:,} / {ta['update']:,} | {pw} |"
    )


COMPARISON_HEAD = (
    "| model, scheme | step, reference kernels | step, optimized | reference / optimized | "
    "forward (reference / optimized) | backward | update | forward 1x1 convs: MACs per instruction |\n"
    "|---|---:|---:|---:|---:|---:|---:|---|"
)


# ------------------------------------------------------------------------------- suite
