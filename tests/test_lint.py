"""Formatting and lint are part of the suite, so CI keeps the tree clean."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from pytools.paths import FIRMWARE, ROOT


def test_ruff_check() -> None:
    r = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_ruff_format() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", str(ROOT)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout


@pytest.mark.skipif(
    not shutil.which("clang-format"), reason="clang-format not installed (./setup.sh installs it)"
)
def test_clang_format() -> None:
    files = sorted(str(p) for p in FIRMWARE.rglob("*") if p.suffix in {".c", ".h"})
    r = subprocess.run(["clang-format", "--dry-run", "--Werror", *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[:3000]
