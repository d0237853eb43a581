"""Every CPU target this machine supports (issue 4): the kernel tests pass under each, the
targets agree with each other within the stated bounds, and FASTLOSS_TARGET is honoured
or refused with an ImportError.

The process running the suite uses the best target (or whatever FASTLOSS_TARGET says);
the other supported targets run in subprocesses, which re-import fastloss with
FASTLOSS_TARGET set (the dispatch table is filled once, at import).
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastloss

HERE = os.path.dirname(os.path.abspath(__file__))
INFO = fastloss._dispatch_info()
ACTIVE = INFO["target"]
OTHERS = [t for t in INFO["supported"] if t != ACTIVE]
UNSUPPORTED = [t for t in INFO["targets"] if t not in INFO["supported"]]

# The kernel-level test files (every loss family, the API and ufunc layers, threads);
# the slow, resource and property files run once, under the active target.
KERNEL_TESTS = ["test_binary.py", "test_focal.py", "test_regression.py", "test_cross_entropy.py",
                "test_dice.py", "test_api.py", "test_ufuncs.py", "test_threads.py"]

IN_SUBPROCESS = os.environ.get("FASTLOSS_TARGET_SUBRUN") == "1"


def _env(target):
    env = dict(os.environ)
    env["FASTLOSS_TARGET"] = target
    env["FASTLOSS_TARGET_SUBRUN"] = "1"
    # the fastloss this process imported (installed or built in place), first on the path
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(fastloss.__file__)))]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _run(args, target, timeout):
    # cwd = tests/: `python -c` / `-m` put the cwd first on sys.path, and the source tree's
    # fastloss/ (no compiled extensions when the package is pip-installed) must not shadow
    # the installed one
    return subprocess.run([sys.executable, *args], env=_env(target), cwd=HERE,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(IN_SUBPROCESS, reason="already inside a per-target run")
@pytest.mark.parametrize("target", OTHERS or [None])
def test_kernel_suite_passes_under_target(target):
    if target is None:
        pytest.skip(f"this CPU supports only the active target {ACTIVE!r}")
    r = _run(["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly",
              *[os.path.join(HERE, f) for f in KERNEL_TESTS]], target, timeout=1200)
    tail = "\n".join((r.stdout + r.stderr).splitlines()[-30:])
    assert r.returncode == 0, f"FASTLOSS_TARGET={target}: the kernel tests failed:\n{tail}"


# ------------------------------------------------------------------ cross-target agreement

# Each target computes these in its own process; the results come back as JSON lists of
# float64 (float32 values are exact in float64).
_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import fastloss
    assert fastloss._dispatch_info()["target"] == sys.argv[1]
    rng = np.random.default_rng(20261205)
    out = {}
    for dt in (np.float32, np.float64):
        n = 4099  # not a multiple of any vector width: tails included
        x = (rng.standard_normal(n) * rng.choice([0.1, 1.0, 8.0, 60.0], n)).astype(dt)
        y = rng.random(n).astype(dt)
        yh = (rng.random(n) < 0.4).astype(dt)
        p = rng.random(n).astype(dt)
        z = (rng.standard_normal((97, 13)) * 4).astype(dt)
        lab = rng.integers(0, 13, 97)
        img = (rng.standard_normal((2, 3, 9, 11)) * 3).astype(dt)
        seg = rng.integers(0, 3, (2, 9, 11))
        calls = {
            "bce_logits": lambda: fastloss.binary_cross_entropy_with_logits(x, yh, reduction="none", return_grad=True),
            "bce_logits_soft": lambda: fastloss.binary_cross_entropy_with_logits(x, y, reduction="none", return_grad=True),
            "bce": lambda: fastloss.binary_cross_entropy(p, yh, reduction="none", return_grad=True),
            "focal": lambda: fastloss.sigmoid_focal_loss(x, yh, reduction="none", return_grad=True),
            "focal_soft": lambda: fastloss.sigmoid_focal_loss(x, y, gamma=1.5, reduction="none", return_grad=True),
            "huber": lambda: fastloss.huber_loss(x, y, reduction="none", return_grad=True),
            "smooth_l1": lambda: fastloss.smooth_l1_loss(x, y, reduction="none", return_grad=True),
            "ce": lambda: fastloss.cross_entropy(z, lab, reduction="none", return_grad=True),
            "softmax_focal": lambda: fastloss.softmax_focal_loss(z, lab, reduction="none", return_grad=True),
            "dice": lambda: fastloss.dice_loss(img, seg, activation="softmax", reduction="none", return_grad=True),
            "bce_logits_mean": lambda: fastloss.binary_cross_entropy_with_logits(x, yh, return_grad=True),
        }
        for name, f in calls.items():
            loss, grad = f()
            out[f"{name}/{np.dtype(dt).name}"] = [np.asarray(loss, np.float64).ravel().tolist(),
                                                  np.asarray(grad, np.float64).ravel().tolist()]
    json.dump(out, sys.stdout)
""")


def _results(target):
    r = _run(["-c", _SCRIPT, target], target, timeout=300)
    assert r.returncode == 0, f"FASTLOSS_TARGET={target}: {r.stderr[-2000:]}"
    return json.loads(r.stdout)


def _ulps(a, b, dtype):
    """|a - b| in ulps of dtype at max(|a|, |b|, tiny); NaN where both are NaN -> 0."""
    a, b = np.asarray(a), np.asarray(b)
    both_nan = np.isnan(a) & np.isnan(b)
    mag = np.maximum(np.maximum(np.abs(a), np.abs(b)), np.finfo(dtype).tiny)
    sp = np.spacing(mag.astype(dtype)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        err = np.abs(a - b) / sp
    err[both_nan] = 0.0
    err[(a == b)] = 0.0
    return err


@pytest.mark.skipif(IN_SUBPROCESS, reason="already inside a per-target run")
@pytest.mark.parametrize("target", OTHERS or [None])
def test_targets_agree_within_stated_bounds(target):
    """Per element, two targets differ by at most the sum of their error bounds: 4 ulp
    each for the losses and gradients, so 8 ulp at the value's magnitude (float32 and
    float64 alike); gradients that are differences (sigmoid(x) - y, softmax - onehot)
    are compared at the magnitude of their terms (1 for probabilities, the weights)."""
    if target is None:
        pytest.skip(f"this CPU supports only the active target {ACTIVE!r}")
    mine, theirs = _results(ACTIVE), _results(target)
    assert mine.keys() == theirs.keys()
    for key in mine:
        dtype = np.float32 if key.endswith("float32") else np.float64
        for part, a, b in zip(("loss", "grad"), mine[key], theirs[key]):
            a, b = np.asarray(a), np.asarray(b)
            assert a.shape == b.shape, key
            assert np.array_equal(np.isnan(a), np.isnan(b)), f"{key} {part}: NaN positions differ"
            err = _ulps(a, b, dtype)
            if part == "grad":
                # difference terms: measure at least at the scale of the largest term
                scale = np.max(np.abs(np.concatenate([a, b])[np.isfinite(np.concatenate([a, b]))]),
                               initial=0.0)
                err = np.minimum(err, np.abs(a - b) / np.spacing(dtype(max(scale, 1e-30))))
            worst = int(np.nanargmax(err)) if err.size else 0
            assert err.size == 0 or err[worst] <= 8, (
                f"{key} {part}: {ACTIVE} vs {target} differ by {err[worst]:.3g} ulp at {worst}: "
                f"{a[worst]!r} vs {b[worst]!r}")


# ------------------------------------------------------------------ FASTLOSS_TARGET

def test_forced_target_is_used():
    target = INFO["supported"][0]  # the baseline: every CPU has it
    r = _run(["-c", "import fastloss, sys; sys.stdout.write(fastloss._dispatch_info()['target'])"],
             target, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == target


@pytest.mark.parametrize("target", ["no-such-target"] + UNSUPPORTED)
def test_unknown_or_unsupported_target_is_an_import_error(target):
    r = _run(["-c", "import fastloss"], target, timeout=120)
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "FASTLOSS_TARGET" in r.stderr, r.stderr[-1000:]
    assert ("not a target of this build" in r.stderr) or ("does not support" in r.stderr)
