"""The libFuzzer harnesses (tests/fuzz/fuzz_<family>.c) as ordinary tests, without clang.

Each harness is compiled with the C compiler as a standalone program (-DFZ_STANDALONE:
a main() instead of libFuzzer) against csrc/<family>.c built for every x86-64 target, then
run over

* tests/fuzz/regressions/<family>/  inputs that once violated an invariant (kept forever),
* tests/fuzz/corpus/<family>/       the committed seed corpus,
* FASTLOSS_FUZZ_REPLAY_RANDOM (default 200) pseudo-random inputs,

so every invariant the fuzzer checks (err_index, NaN rules, cross-target agreement, ...)
is checked by `pytest` too (memory safety only as far as a plain build shows it).
.ci/fuzz does the real fuzzing (clang, libFuzzer, ASan + UBSan, the same kept inputs
replayed first), and .ci/valgrind runs the same programs under memcheck.  .ci/sanitize
leaves this file out (gcc's ASan + UBSan take minutes to compile the Dice kernels).

The harness compares the targets this CPU supports (FASTLOSS_FUZZ_TARGETS restricts
them).  CC picks the compiler (default: cc, gcc or clang, the first found).  The tests skip
when the source tree (csrc/) is not there (installed-package runs) or there is no compiler.
"""
import os
import platform
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CSRC = ROOT / "csrc"
FAMILIES = {"binary": "binary.c", "regression": "regression.c",
            "cross_entropy": "cross_entropy.c", "dice": "overlap.c"}
X86_TARGETS = {
    "baseline": [],
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl"],
}
# setup.py's semantics flags (strict IEEE); -O0 keeps the twelve compilations short
# (~20 s of CPU for all four families, spread over the cores; the inputs are small).
FLAGS = ["-std=c11", "-O0", "-ffp-contract=off", "-fno-math-errno", "-pthread"]


def _cc():
    for name in [os.environ.get("CC"), "cc", "gcc", "clang"]:
        if name and shutil.which(shlex.split(name)[0]):
            return shlex.split(name)
    return None


def _targets():
    if platform.machine().lower() in ("x86_64", "amd64"):
        return X86_TARGETS
    return {"baseline": []}


def _run_all(cmds, jobs):
    """Runs the commands, `jobs` at a time; returns the first failure's message or None."""
    running, failure = [], None
    pending = list(cmds)
    while pending or running:
        while pending and len(running) < jobs:
            cmd = pending.pop(0)
            running.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT, text=True)))
        cmd, proc = running.pop(0)
        out, _ = proc.communicate()
        if proc.returncode != 0 and failure is None:
            failure = f"{shlex.join(cmd)}\n{out}"
    return failure


def build_harnesses(families, out_dir, cc=None):
    """Compiles tests/fuzz/fuzz_<family>.c standalone into out_dir, the kernel objects of
    every target on all cores (the Dice objects take ~4 s each at -O0, the rest ~1 s);
    returns {family: executable}."""
    cc = cc or _cc()
    objs = {family: [] for family in families}
    compile_cmds = []
    for family in families:
        for target, tflags in _targets().items():
            obj = out_dir / f"{family}_{target}.o"
            compile_cmds.append([*cc, "-c", *FLAGS, *tflags, f"-DFL_TARGET={target}",
                                 f"-I{CSRC}", str(CSRC / FAMILIES[family]), "-o", str(obj)])
            objs[family].append(str(obj))
    jobs = max(1, min(os.cpu_count() or 1, 8))
    failure = _run_all(sorted(compile_cmds, key=lambda c: "overlap" not in c[-3]), jobs)
    assert failure is None, failure
    exes = {family: out_dir / f"fuzz_{family}" for family in families}
    failure = _run_all([[*cc, *FLAGS, "-Wall", "-Wextra", "-DFZ_STANDALONE", f"-I{CSRC}",
                         str(HERE / f"fuzz_{family}.c"), *objs[family], "-lm", "-o",
                         str(exes[family])] for family in families], jobs)
    assert failure is None, failure
    return exes


@pytest.fixture(scope="module")
def harnesses(tmp_path_factory):
    if not (CSRC / "fastloss.h").is_file():
        pytest.skip(f"source tree not available ({CSRC}): installed-package run")
    if _cc() is None:
        pytest.skip("no C compiler (cc, gcc, clang; or set CC)")
    return build_harnesses(list(FAMILIES), tmp_path_factory.mktemp("fuzz"))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fuzz_inputs_replay(family, harnesses):
    exe = harnesses[family]
    inputs = [str(d) for d in (HERE / "regressions" / family, HERE / "corpus" / family)
              if d.is_dir()]
    n_random = os.environ.get("FASTLOSS_FUZZ_REPLAY_RANDOM", "200")
    cmd = [str(exe), "-r", n_random, "-s", "1", *inputs]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    print(res.stdout)
    assert res.returncode == 0, (
        f"{shlex.join(cmd)} exited {res.returncode}\n{res.stdout[-4000:]}\n{res.stderr[-8000:]}")
