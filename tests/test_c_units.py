"""Every C unit test of firmware/tests/, built natively and reported by pytest one by one."""

from __future__ import annotations

import subprocess

import pytest

from pytools.build.builder import build_host_tests

_EXE = build_host_tests()
_NAMES = subprocess.run([_EXE, "--list"], capture_output=True, text=True, check=True).stdout.split()


def test_the_c_harness_found_tests() -> None:
    assert len(_NAMES) >= 20, _NAMES


@pytest.mark.parametrize("name", _NAMES)
def test_c(name: str) -> None:
    r = subprocess.run([_EXE, name], capture_output=True, text=True)
    assert r.returncode == 0 and f"PASS {name}" in r.stdout, r.stdout + r.stderr
