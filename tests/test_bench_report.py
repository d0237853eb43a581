"""bench/report.py end to end at a tiny scale: it writes its table and JSON, and --isa avx2
runs fastloss, NumPy and torch (when installed) at AVX2 only -- the emulation of an
AVX2-only CPU the README's second speed table comes from."""
import json
import os
import subprocess
import sys

import pytest

import fastloss

REPORT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                      "report.py")


def _run(tmp_path, *extra):
    env = dict(os.environ)
    # the fastloss this process imported (installed or built in place), first on the path
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(fastloss.__file__)))]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for k in ("FASTLOSS_TARGET", "NPY_DISABLE_CPU_FEATURES", "ATEN_CPU_CAPABILITY",
              "FASTLOSS_BENCH_ISA"):
        env.pop(k, None)
    r = subprocess.run([sys.executable, REPORT, "--scale", "0.0005", "--repeats", "1",
                        "--min-time", "0.001", "--out", str(tmp_path), *extra],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    with open(tmp_path / "report.json") as f:
        return json.load(f)["meta"], (tmp_path / "report.md").read_text()


@pytest.mark.skipif(not os.path.exists(REPORT), reason="bench/ is not next to tests/ "
                    "(installed tests without the repository)")
def test_report_native(tmp_path):
    meta, md = _run(tmp_path)
    assert meta["isa"] == "native"
    assert meta["target"] == fastloss._dispatch_info()["target"]
    assert f"kernels: {meta['target']}" in md and "| cross_entropy (" in md


@pytest.mark.skipif(not os.path.exists(REPORT), reason="bench/ is not next to tests/")
@pytest.mark.skipif("avx2" not in fastloss._dispatch_info()["supported"],
                    reason="this CPU has no AVX2")
def test_report_isa_avx2_restricts_every_library(tmp_path):
    meta, md = _run(tmp_path, "--isa", "avx2")
    assert meta["isa"] == "avx2" and meta["target"] == "avx2"
    assert "AVX512" not in meta["numpy_simd"] and "X86_V4" not in meta["numpy_simd"]
    if meta["torch"] != "not installed":
        assert meta["torch_simd"] in ("AVX2", "DEFAULT"), meta["torch_simd"]
    assert "kernels: avx2" in md
