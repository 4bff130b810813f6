"""Sweeps of the gradient kernels' assembly helpers on the emulated boards, where the assembly
runs (the host sweeps in test_dsp_grads.py and test_grad_update_spatial.py compile the C).

grad_dsp.c's assembly requantization (dsp_grad_requantize_s32's loops: dsp_max_abs4 and
dsp_round4, shared by the conv and depthwise input gradients and grad_add) against grad.c's
grad_requantize_s32 ON the emulated boards, where the assembly runs (the host sweep in
test_dsp_grads.py compiles the C loops only).

The sweep runs on the board itself: both functions from the firmware build's objects, on every
value of [-M, M] for maxima at the edges of dsp_round4's two loops (M = 128, 1023, 1024 and a
few above, odd and even: the ties of an even M are where the sign matters), and on random arrays
at every magnitude with values on and beside the rounding ties, INT32_MIN and INT32_MAX."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.kernels import grad_support as gs
from tests.kernels.conv.support import xorshift64_c

_HARNESS_C = (
    gs.SEMIHOST_C
    + r"""
static char *put_u32(char *s, uint32_t v) {
    char d[10];
    int n = 0;
    do d[n++] = (char)('0' + v % 10u);
    while ((v /= 10u) != 0u);
    while (n) *s++ = d[--n];
    return s;
}

static void report(uint32_t checks, uint32_t bad) {
    char msg[32], *s = put_u32(msg, checks);
    *s++ = ' ';
    s = put_u32(s, bad);
    *s++ = '\n';
    *s = 0;
    (void)semihost(0x04u, msg);
}

int main(void);
"""
    + gs.BOOT_C
)

_REQUANT_C = (
    r"""
#include <stdint.h>
#include <string.h>

#include "dsp.h"
#include "grad.h"
"""
    + xorshift64_c(0x9E3779B97F4A7C15)
    + _HARNESS_C
    + r"""

#define MAX_N 12288
static int32_t acc[MAX_N];
static int8_t a[MAX_N], b[MAX_N];
static uint32_t checks, bad;

static void compare(size_t n) {
    const float sa = grad_requantize_s32(acc, n, 0.37f, a);
    const float sb = dsp_grad_requantize_s32(acc, n, 0.37f, b);
    for (size_t i = 0; i < n; ++i, ++checks) bad += a[i] != b[i];
    bad += sa != sb;
}

int main(void) {
    /* every v in [-M, M] (M itself included, so the maximum is M) */
    static const uint32_t ms[] = {128, 129, 1022, 1023, 1024, 1025, 1026, 1027,
                                  2047, 2048, 3000, 4095, 4096, 5001, 6000};
    for (size_t k = 0; k < sizeof ms / sizeof ms[0]; ++k) {
        const int32_t m = (int32_t)ms[k];
        size_t n = 0;
        for (int32_t v = -m; v <= m; ++v) acc[n++] = v;
        compare(n);
    }
    /* random arrays, every magnitude, the extremes, ties */
    for (uint32_t r = 0; r < ROUNDS; ++r) {
        const size_t n = 1 + (size_t)(rnd() % 512);
        const int bits = 1 + (int)(rnd() % 31);
        for (size_t i = 0; i < n; ++i) acc[i] = (int32_t)(rnd() >> 32) >> (32 - bits);
        if (r % 7 == 0) acc[rnd() % n] = INT32_MIN;
        if (r % 7 == 1) acc[rnd() % n] = INT32_MAX;
        uint32_t m = 0;
        for (size_t i = 0; i < n; ++i) {
            const uint32_t v = acc[i] < 0 ? 0u - (uint32_t)acc[i] : (uint32_t)acc[i];
            if (v > m) m = v;
        }
        if (r % 3 == 0 && m > 1) m &= ~1u; /* an even maximum: the ties that need the sign */
        for (size_t i = 0; i < n; ++i) {
            if (acc[i] == INT32_MIN) continue;
            const int32_t v = acc[i] < 0 ? -acc[i] : acc[i];
            if ((uint32_t)v > m) acc[i] = acc[i] < 0 ? -(int32_t)m : (int32_t)m;
        }
        for (size_t i = 0; i < n && m > 0; i += 3) {
            const uint64_t k = rnd() % 128, target = k * m + m / 2 + (rnd() % 3) - 1;
            const uint64_t v = target / 127;
            if (v <= m) acc[i] = (rnd() & 1) ? (int32_t)v : -(int32_t)v;
        }
        compare(n);
    }
    report(checks, bad);
    return bad != 0;
}
"""
)

_BIAS_STEP_C = (
    r"""
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "conv2d_s8_grad_update_dsp.h"
"""
    + xorshift64_c(0x0123456789ABCDEF)
    + _HARNESS_C
    + r"""
/* dsp_step_bias against conv_grad_step_bias: v at every scale, on and beside the halves,
 * around +-2^31 and +-2^32, infinities and NaN; b anywhere, the extremes included. */
int main(void) {
    uint32_t checks = 0, bad = 0;
    static const int32_t edges[] = {INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX};
    for (uint32_t r = 0; r < ROUNDS; ++r) {
        const int32_t b = r % 5 == 0 ? edges[rnd() % 7] : (int32_t)(rnd() >> 32);
        const int e = (int)(rnd() % 36) - 3;
        float v = ldexpf((float)(rnd() >> 40) / 16777216.0f, e); /* [0, 2^e) */
        switch (r % 9) {
        case 0: v = floorf(v) + 0.5f; break;                  /* a half */
        case 1: v = nextafterf(floorf(v) + 0.5f, 0.0f); break; /* beside it */
        case 2: v = nextafterf(floorf(v) + 0.5f, 1e30f); break;
        case 3: v = ldexpf(1.0f, 31) * (1.0f - ldexpf((float)(rnd() % 4), -24)); break;
        case 4: v = ldexpf(1.0f, 31 + (int)(rnd() % 3)); break;
        case 5: v = (rnd() & 1) ? INFINITY : NAN; break;
        default: break;
        }
        if (rnd() & 1) v = -v;
        ++checks;
        bad += conv_grad_step_bias(b, v) != dsp_step_bias(b, v);
    }
    report(checks, bad);
    return bad != 0;
}
"""
)


def run_sweep_on_board(workdir: Path, board_name: str, source: str, rounds: int) -> tuple[int, int]:
    """Builds the sweep against the board's firmware kernel objects, runs it under QEMU, and
    returns (checks, mismatches)."""
    from pytools.boards import load_board
    from pytools.build.builder import CROSS, build_firmware
    from pytools.build.manifest import target_spec
    from pytools.paths import BUILD

    board = load_board(board_name)
    build_firmware(board)
    spec = target_spec(board)
    objs = sorted((BUILD / board.name / "obj").glob("kernels__*.o"))
    src = workdir / "sweep.c"
    src.write_text(source)
    m = board.memory
    ld = workdir / "sweep.ld"
    ld.write_text(
        gs._HARNESS_LD.format(
            flash=m.flash_origin,
            flash_size=max(m.flash_size, 4 * 1024 * 1024),
            ram=m.ram_origin,
            ram_size=max(m.ram_size, 256 * 1024),
        )
    )
    cc = CROSS + "gcc"
    cpu = [f for f in spec.cflags if f.startswith(("-mcpu", "-mfpu", "-mfloat-abi", "-mthumb"))]
    obj = workdir / "sweep.o"
    subprocess.run(
        [cc, *spec.compile_flags(), f"-DROUNDS={rounds}u", "-c", str(src), "-o", str(obj)], check=True
    )
    elf = workdir / "sweep.elf"
    link = [cc, *cpu, "--specs=nano.specs", "--specs=nosys.specs", "-nostartfiles", "-Wl,--gc-sections"]
    r = subprocess.run(
        [*link, f"-T{ld}", str(obj), *map(str, objs), "-lm", "-o", str(elf)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    q = board.qemu
    cmd = ["qemu-system-arm", "-M", q["machine"], "-nographic", "-monitor", "none", "-serial", "null"]
    cmd += ["-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=workdir)
    words = (p.stdout + p.stderr).split()
    assert p.returncode in (0, 1) and len(words) >= 2, (
        f"sweep exited with {p.returncode}: {p.stdout}{p.stderr}"
    )
    return int(words[-2]), int(words[-1])


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_assembly_requantization_on_the_emulated_boards_is_bit_identical(tmp_path, board_name: str) -> None:
    checks, bad = run_sweep_on_board(tmp_path, board_name, _REQUANT_C, 3000)
    assert bad == 0, f"{bad} of {checks} requantized values differ from grad_requantize_s32"
    assert checks > 500_000


@pytest.mark.emulator
@pytest.mark.parametrize("board_name", ["mps2_an500", "mps2_an386"], ids=["cortex-m7", "cortex-m4"])
def test_bias_step_on_the_emulated_boards_is_bit_identical(tmp_path, board_name: str) -> None:
    """conv2d_s8_grad_update_dsp.h's dsp_step_bias (VCVTA and QADD on the Cortex-M7) against
    conv_grad_step_bias, on the board."""
    checks, bad = run_sweep_on_board(tmp_path, board_name, _BIAS_STEP_C, 200_000)
    assert bad == 0, f"{bad} of {checks} bias steps differ from conv_grad_step_bias"
