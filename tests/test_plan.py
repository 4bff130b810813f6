"""The plan format and the runtime's checks: a bad plan is refused before anything runs."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from pytools.boards import load_board
from pytools.model.compiler import compile_graph
from pytools.model.host_twin import HostTwin
from pytools.model.ir import Graph, ModelError, Op, Tensor
from pytools.model.plan import format_constants, layouts, read_header
from pytools.paths import FIRMWARE
from tests.kernels.support import quant, run_ours


def small_graph() -> Graph:
    rng = np.random.default_rng(3)
    t = [
        Tensor(0, "in", (1, 6, 6, 2), "int8", quant(0.05, 3)),
        Tensor(
            1,
            "w",
            (3, 3, 3, 2),
            "int8",
            quant([0.02, 0.01, 0.03], 0),
            rng.integers(-127, 128, (3, 3, 3, 2), dtype=np.int8),
        ),
        Tensor(
            2,
            "b",
            (3,),
            "int32",
            quant([0.001, 0.0005, 0.0015], 0),
            rng.integers(-500, 500, 3, dtype=np.int32),
        ),
        Tensor(3, "c", (1, 6, 6, 3), "int8", quant(0.08, -2)),
        Tensor(4, "shape", (2,), "int32", None, np.array([1, 108], dtype=np.int32)),
        Tensor(5, "flat", (1, 108), "int8", quant(0.08, -2)),
    ]
    ops = [
        Op(0, "CONV_2D", [0, 1, 2], [3], dict(padding="SAME", stride_h=1, stride_w=1, activation="RELU")),
        Op(1, "RESHAPE", [3, 4], [5], dict(new_shape=[1, 108])),
    ]
    return Graph(t, ops, [0], [5], name="small")


@pytest.fixture(scope="module")
def blob() -> bytes:
    return compile_graph(small_graph(), load_board("mps2_an500"), "small").blob


def test_plan_struct_sizes_match_c(tmp_path) -> None:
    src = tmp_path / "sizes.c"
    src.write_text(
        '#include <stdio.h>\n#include "plan_format.h"\nint main(void) {\n'
        + "".join(f'    printf("{n} %zu\\n", sizeof(struct plan_{n}));\n' for n in layouts())
        + "    return 0;\n}\n"
    )
    exe = tmp_path / "sizes"
    inc = [f"-I{FIRMWARE / d}" for d in ("runtime", "common")]
    subprocess.run(["gcc", "-std=c11", *inc, str(src), "-o", str(exe)], check=True)
    out = subprocess.run([exe], capture_output=True, text=True).stdout
    assert {k: int(v) for k, v in (ln.split() for ln in out.splitlines())} == {
        n: lay.size for n, lay in layouts().items()
    }


def test_the_host_twin_runs_a_plan_like_the_op_by_op_reference(blob: bytes) -> None:
    g = small_graph()
    twin = HostTwin(blob)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.integers(-128, 128, (1, 6, 6, 2), dtype=np.int8)
        np.testing.assert_array_equal(twin.invoke([x])[0], run_ours(g, [x])[0])


def test_reshape_aliases_its_input_and_costs_no_arena(blob: bytes) -> None:
    h = read_header(blob)
    compiled = compile_graph(small_graph(), load_board("mps2_an500"), "small")
    (conv_scratch,) = [t.size for t in compiled.plan.tensors if t.name.startswith("scratch")]
    # input 72 B and conv output 108 B, both 16-aligned: 80 + 112, and the conv kernel's planned
    # buffers (16-aligned; alive with both); the reshape adds nothing
    assert h["arena_size"] == 80 + 112 + (conv_scratch + 15) // 16 * 16


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:200], "plan says"),
        (lambda b: b[:20], "shorter than its header"),
        (lambda b: b"XXXX" + b[4:], "not a plan"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "plan CRC"),
    ],
    ids=["truncated", "too-short", "magic", "crc"],
)
def test_damaged_plans_are_refused_with_the_reason(blob: bytes, mutate, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        HostTwin(mutate(blob))


def test_a_plan_of_another_format_version_is_refused(blob: bytes) -> None:
    version = format_constants()["PLAN_FORMAT_VERSION"]
    b = bytearray(blob)
    b[4] += 1  # version field
    with pytest.raises(ModelError, match=f"plan format v{version + 1}, this firmware runs v{version}"):
        HostTwin(bytes(b))


def test_wrong_input_shape_or_type_is_a_clear_error(blob: bytes) -> None:
    twin = HostTwin(blob)
    with pytest.raises(ModelError, match=r"input 0 must be int8 with shape \(1, 6, 6, 2\)"):
        twin.invoke([np.zeros((1, 6, 6, 2), np.float32)])
    with pytest.raises(ModelError, match="takes 1 input"):
        twin.invoke([])
