"""Every kernel's parameter layout as Python packs it (pytools/cdefs.py reading the .def files,
following their #include lines) is the C struct the kernel reads: same size, same offset for
every field. The convolution kernels share their geometry block (conv2d_geometry.def,
depthwise_conv2d_geometry.def): one definition, included, never copied."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess

import pytest

from pytools.cdefs import parse_layouts, strip_comments
from pytools.model.kernels import KERNELS_DIR, params_layout
from pytools.paths import FIRMWARE

KERNELS = sorted(
    p.stem for p in KERNELS_DIR.glob("*.def") if f"PARAMS_BEGIN({p.stem})" in strip_comments(p.read_text())
)
GEOMETRY = {"conv2d_s8": "conv2d_geometry.def", "depthwise_conv2d_s8": "depthwise_conv2d_geometry.def"}


def test_every_kernel_layout_is_its_c_struct(tmp_path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("needs the host gcc")
    lines = ["#include <stddef.h>", "#include <stdio.h>"]
    lines += [f'#include "{k}.h"' for k in KERNELS]
    lines.append("int main(void) {")
    for k in KERNELS:
        lines.append(f'    printf("{k} size %zu\\n", sizeof(struct {k}_params));')
        for name in params_layout(k).names:
            lines.append(f'    printf("{k} {name} %zu\\n", offsetof(struct {k}_params, {name}));')
    lines += ["    return 0;", "}"]
    src = tmp_path / "layouts.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layouts"
    inc = [f"-I{FIRMWARE / d}" for d in ("kernels", "common")]
    subprocess.run(["gcc", "-std=c11", "-DHOST_BUILD", *inc, str(src), "-o", str(exe)], check=True)
    got = {
        tuple(ln.split()[:2]): int(ln.split()[2])
        for ln in subprocess.run([exe], capture_output=True, text=True, check=True).stdout.splitlines()
    }
    want = {}
    for k in KERNELS:
        lay = params_layout(k)
        want[(k, "size")] = lay.size
        for i, (name, _) in enumerate(lay.fields):
            want[(k, name)] = struct.calcsize("<" + "".join(c for _, c in lay.fields[:i]))
    assert got == want
    assert len(KERNELS) > 50  # every kernel, not an empty glob


@pytest.mark.parametrize("family", sorted(GEOMETRY))
def test_conv_kernels_include_their_geometry_block_once(family: str, tmp_path) -> None:
    frag = GEOMETRY[family]
    shutil.copy(KERNELS_DIR / frag, tmp_path / frag)
    (tmp_path / "probe.def").write_text(f'PARAMS_BEGIN(probe)\n#include "{frag}"\nPARAMS_END(probe)\n')
    geometry = parse_layouts(tmp_path / "probe.def", "PARAMS")["probe"].names
    assert len(geometry) == 15
    defs = sorted(KERNELS_DIR.glob(f"{family}*.def"))
    assert len(defs) >= 5
    for d in defs:
        text = strip_comments(d.read_text())
        assert text.count(f'#include "{frag}"') == 1, d.name
        # no geometry field written out again beside the block
        own = re.findall(r"FIELD\(\w+,\s*(\w+)\)", text)
        assert not set(own) & set(geometry), (d.name, set(own) & set(geometry))
        names = params_layout(d.stem).names
        assert names[:15] == geometry, d.name


def test_an_include_that_is_missing_or_circular_is_refused(tmp_path) -> None:
    (tmp_path / "a.def").write_text('PARAMS_BEGIN(a)\n#include "b.def"\nPARAMS_END(a)\n')
    with pytest.raises(ValueError, match=r"b\.def is not in"):
        parse_layouts(tmp_path / "a.def", "PARAMS")
    (tmp_path / "b.def").write_text('FIELD(i32, x)\n#include "b.def"\n')
    with pytest.raises(ValueError, match="includes itself"):
        parse_layouts(tmp_path / "a.def", "PARAMS")
