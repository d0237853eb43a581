"""The C vector math layer (csrc/vecmath.h): accuracy, special values, tails, FP flags.

tests/c/test_vecmath.c is compiled once per target this machine can run and executed; it
sweeps every function against libm (float32, reference in double) and long double
(float64), checks exact special values, lane independence, masked tails against a guard
page and spurious floating-point flags, and exits 1 on any failure (its output is shown
on failure).  Targets:

* baseline  -- no flags (x86-64: SSE2), the wheel's baseline
* generic   -- -DFL_VEC_FORCE_GENERIC: plain vector extensions, no intrinsics (the path a
               non-x86, non-aarch64 build takes)
* avx2      -- -mavx2 -mfma, when /proc/cpuinfo has avx2 and fma
* avx512    -- -mavx512f -mavx512bw -mavx512dq -mavx512vl, when the CPU has all four
* aarch64   -- aarch64-linux-gnu-gcc + qemu-aarch64 (Debian: gcc-aarch64-linux-gnu,
               qemu-user), when both are installed; NEON, run under qemu-user

Sweep size (by default the whole file needs ~15 s of CPU on a Zen 5 core -- about 2.5 s
per target to compile and run -- so ~15-45 s wall depending on what else runs):

* default: 2^22 float32 bit patterns per function spread over all 2^32, +-4096 ulps around
  each threshold, 400k float64 inputs; aarch64 under qemu: 2^18 and 15k.
* FASTLOSS_VECMATH_SWEEP=full  every float32 bit pattern per function (2^32: ~8 min of
  CPU per target) and 4M float64 samples; aarch64 stays reduced (qemu + software
  binary128 long double).
* FASTLOSS_VECMATH_ARGS="--f32-log2 26 --f64 2000000"  explicit arguments for the x86
  binaries (see the header of test_vecmath.c).
* CC  the C compiler (default: cc, gcc or clang, the first found).

The header is found relative to this file (../csrc); when the tests run from an installed
package without the source tree, they skip.
"""
import os
import platform
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
SOURCE = Path(__file__).resolve().parent / "c" / "test_vecmath.c"

BASE_FLAGS = ["-O2", "-std=c11", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror"]

X86_TARGETS = {
    "baseline": ([], set()),
    "generic": (["-DFL_VEC_FORCE_GENERIC"], set()),
    "avx2": (["-mavx2", "-mfma"], {"avx2", "fma"}),
    "avx512": (["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl"],
               {"avx512f", "avx512bw", "avx512dq", "avx512vl"}),
}

QUICK_ARGS = ["--f32-log2", "22", "--f64", "400000"]
FULL_ARGS = ["--f32-log2", "32", "--f64", "4000000", "--dense", "65536"]
QEMU_ARGS = ["--f32-log2", "18", "--f64", "15000", "--dense", "512"]


def _sweep_args():
    if os.environ.get("FASTLOSS_VECMATH_ARGS"):
        return shlex.split(os.environ["FASTLOSS_VECMATH_ARGS"])
    if os.environ.get("FASTLOSS_VECMATH_SWEEP", "quick") == "full":
        return FULL_ARGS
    return QUICK_ARGS


def _cc():
    for name in [os.environ.get("CC"), "cc", "gcc", "clang"]:
        if name and shutil.which(name.split()[0]):
            return shlex.split(name)
    return None


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _is_x86_64():
    return platform.machine().lower() in ("x86_64", "amd64")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    if not (CSRC / "vecmath.h").is_file() or not SOURCE.is_file():
        pytest.skip(f"source tree not available ({CSRC}/vecmath.h): installed-package run")
    return tmp_path_factory.mktemp("vecmath")


def _compile(cc, flags, out):
    cmd = [*cc, *BASE_FLAGS, *flags, f"-I{CSRC}", str(SOURCE), "-o", str(out), "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"compile failed: {shlex.join(cmd)}\n{res.stderr}"
    return cmd


def _run(cmd, timeout):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    print(res.stdout)  # shown by pytest on failure, and with -s
    assert res.returncode == 0, (
        f"{shlex.join(cmd)} exited {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res.stdout


@pytest.mark.parametrize("target", list(X86_TARGETS))
def test_vecmath_x86(build_dir, target):
    if not _is_x86_64():
        pytest.skip(f"x86-64 targets; this machine is {platform.machine()}")
    cc = _cc()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc, clang; or set CC)")
    flags, needs = X86_TARGETS[target]
    missing = needs - _cpu_flags()
    if missing:
        pytest.skip(f"CPU lacks {', '.join(sorted(missing))} (from /proc/cpuinfo)")
    exe = build_dir / f"test_vecmath_{target}"
    _compile(cc, flags, exe)
    out = _run([str(exe), *_sweep_args()], timeout=3600)
    want = {"baseline": "sse2", "generic": "generic", "avx2": "avx2", "avx512": "avx512"}
    assert f"vecmath target {want[target]}:" in out


def test_vecmath_native_non_x86(build_dir):
    """On a non-x86 host (e.g. an aarch64 runner), the native build."""
    if _is_x86_64():
        pytest.skip("x86-64 host: covered by test_vecmath_x86")
    cc = _cc()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc, clang; or set CC)")
    exe = build_dir / "test_vecmath_native"
    _compile(cc, [], exe)
    _run([str(exe), *QEMU_ARGS], timeout=3600)


def test_vecmath_aarch64_qemu(build_dir):
    cross = shutil.which("aarch64-linux-gnu-gcc")
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if not (cross and qemu):
        pytest.skip("needs aarch64-linux-gnu-gcc and qemu-aarch64 "
                    "(apt-get install gcc-aarch64-linux-gnu qemu-user)")
    if platform.machine().lower() in ("aarch64", "arm64"):
        pytest.skip("aarch64 host: covered by test_vecmath_native_non_x86")
    exe = build_dir / "test_vecmath_aarch64"
    _compile([cross], [], exe)
    sysroot = Path("/usr/aarch64-linux-gnu")
    cmd = [qemu, *(["-L", str(sysroot)] if sysroot.is_dir() else []), str(exe), *QEMU_ARGS]
    out = _run(cmd, timeout=3600)
    assert "vecmath target neon:" in out
