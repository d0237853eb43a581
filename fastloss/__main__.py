"""python -m fastloss: a short demonstration and timing against the NumPy reference.

Generates data (no download), runs each core loss family with its gradient
(return_grad=True), checks fastloss against fastloss.reference, and prints the time per
call of both and the speed-up.  Takes a few seconds on a 2-core machine.
"""
import argparse
import platform
import sys
import time

import numpy as np

import fastloss
from fastloss import reference


def _cases(dtype, scale, rng):
    """(name, shape text, fastloss call, reference call) with both calls on the same data."""
    def sized(n):
        return max(1, int(n * scale))

    n_el = sized(2_000_000)
    x = rng.standard_normal(n_el).astype(dtype) * 3
    y = (rng.random(n_el) < 0.3).astype(dtype)
    y_reg = x + rng.standard_normal(n_el).astype(dtype)

    n_rows, n_cls = sized(16_384), 1000
    logits = rng.standard_normal((n_rows, n_cls)).astype(dtype) * 2
    labels = rng.integers(0, n_cls, n_rows)

    small_logits = rng.standard_normal((32, 10)).astype(dtype)
    small_labels = rng.integers(0, 10, 32)

    b = max(1, sized(8))
    seg = rng.standard_normal((b, 4, 128, 128)).astype(dtype)
    seg_labels = rng.integers(0, 4, (b, 128, 128))

    def pair(name, shape, fn, args, kwargs):
        return (name, shape,
                lambda: getattr(fastloss, fn)(*args, return_grad=True, **kwargs),
                lambda: getattr(reference, fn)(*args, return_grad=True, **kwargs))

    return [
        pair("cross_entropy", f"({n_rows}, {n_cls})", "cross_entropy", (logits, labels), {}),
        pair("cross_entropy small call", "(32, 10)", "cross_entropy",
             (small_logits, small_labels), {}),
        pair("softmax_focal_loss", f"({n_rows}, {n_cls})", "softmax_focal_loss",
             (logits, labels), {"gamma": 2.0}),
        pair("binary_cross_entropy_with_logits", f"({n_el},)",
             "binary_cross_entropy_with_logits", (x, y), {}),
        pair("sigmoid_focal_loss", f"({n_el},)", "sigmoid_focal_loss", (x, y),
             {"alpha": 0.25, "gamma": 2.0}),
        pair("huber_loss", f"({n_el},)", "huber_loss", (x, y_reg), {"delta": 1.0}),
        pair("dice_loss softmax", f"({b}, 4, 128, 128)", "dice_loss", (seg, seg_labels),
             {"activation": "softmax"}),
    ]


def _time_per_call(fn, budget):
    """Best of several timed runs, each of enough calls to last about budget / 5 seconds."""
    fn()  # warm up (and first-touch allocation)
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    number = max(1, int(budget / 5 / one))
    best = float("inf")
    deadline = time.perf_counter() + budget
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
        if time.perf_counter() > deadline:
            break
    return best


def _agree(a, b, dtype):
    """Max relative deviation between fastloss's and the reference's (loss, grad)."""
    (la, ga), (lb, gb) = a, b
    scale = max(float(np.max(np.abs(gb))), np.finfo(dtype).tiny)
    dl = abs(float(la) - float(lb)) / max(abs(float(lb)), np.finfo(dtype).tiny)
    dg = float(np.max(np.abs(ga - gb))) / scale
    return max(dl, dg)


def _fmt_time(t):
    if t < 1e-3:
        return f"{t * 1e6:8.1f} us"
    if t < 1:
        return f"{t * 1e3:8.2f} ms"
    return f"{t:8.2f} s "


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m fastloss",
        description="Run each fastloss loss family (loss + gradient in one call, "
                    "mean reduction) on generated data, check it against the NumPy "
                    "reference (fastloss.reference), and print the time per call of both "
                    "and the speed-up.  For the full benchmark suite see bench/report.py.")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="element type of the generated data (default: float32)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the problem sizes by this factor (default: 1.0)")
    parser.add_argument("--budget", type=float, default=0.4,
                        help="seconds of timing per measurement (default: 0.4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.budget <= 0:
        parser.error("--scale and --budget must be positive")

    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(args.seed)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    print(f"fastloss {fastloss.__version__}  numpy {np.__version__}  "
          f"python {platform.python_version()}  {platform.machine()}  dtype {dtype}")
    print("each call: loss (mean) and gradient, return_grad=True\n")
    header = (f"{'loss':34s} {'shape':>18s} {'fastloss':>11s} {'numpy ref':>11s} "
              f"{'speed-up':>9s}  check")
    print(header)
    print("-" * len(header))
    failed = False
    for name, shape, fast, ref in _cases(dtype, args.scale, rng):
        dev = _agree(fast(), ref(), dtype)
        ok = dev <= tol
        failed |= not ok
        t_fast = _time_per_call(fast, args.budget)
        t_ref = _time_per_call(ref, args.budget)
        print(f"{name:34s} {shape:>18s} {_fmt_time(t_fast)} {_fmt_time(t_ref)} "
              f"{t_ref / t_fast:8.1f}x  {'ok' if ok else 'MISMATCH'} ({dev:.1e})")
    print("\ncheck: max relative deviation of loss and gradient from the reference "
          f"(tolerance {tol:g})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
