"""Where threads start to pay: python bench/threshold.py [--threads T] [--repeats R]

`n_threads=None` runs a call on one thread below fastloss's PARALLEL_THRESHOLD elements
and on all cores above it (fastloss/_core.pyx).  This script measures, per kernel family,
loss + gradient into a preallocated gradient (float32), the time on 1 thread and on T
threads (default: all cores) for sizes from 16K to 4M elements, interleaved, best of R,
and prints the speed-up and the smallest size from which T threads are at least 1.2x
faster at every larger size.  The threshold should sit at or below the largest of those.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cases import fastloss  # noqa: E402  (the in-place build fallback lives there)


def families(rng):
    """name -> make(n) -> call(n_threads)"""
    def ce(C):
        def make(n):
            N = max(1, n // C)
            x = rng.standard_normal((N, C)).astype(np.float32)
            y = rng.integers(0, C, N)
            g = np.empty_like(x)
            return lambda t: fastloss.cross_entropy(x, y, return_grad=True, grad_out=g,
                                                    n_threads=t)
        return make

    def elementwise(fn, target, **kw):
        def make(n):
            x = rng.standard_normal(n).astype(np.float32)
            y = target(n).astype(np.float32)
            g = np.empty_like(x)
            f = getattr(fastloss, fn)
            return lambda t: f(x, y, return_grad=True, grad_out=g, n_threads=t, **kw)
        return make

    def elementwise_p(fn, target, **kw):  # probabilities in (0, 1)
        def make(n):
            x = rng.uniform(0.01, 0.99, n).astype(np.float32)
            y = target(n).astype(np.float32)
            g = np.empty_like(x)
            f = getattr(fastloss, fn)
            return lambda t: f(x, y, return_grad=True, grad_out=g, n_threads=t, **kw)
        return make

    def dice(n):
        S = 64 * 64
        B = max(1, n // (4 * S))
        x = rng.standard_normal((B, 4, 64, 64)).astype(np.float32)
        y = rng.integers(0, 4, (B, 64, 64))
        g = np.empty_like(x)
        return lambda t: fastloss.dice_loss(x, y, activation="softmax", return_grad=True,
                                            grad_out=g, n_threads=t)

    hard = lambda n: rng.random(n) < 0.3  # noqa: E731
    return {
        "cross_entropy C=10": ce(10),
        "cross_entropy C=1000": ce(1000),
        "bce_with_logits": elementwise("binary_cross_entropy_with_logits", hard),
        "binary_cross_entropy": elementwise_p("binary_cross_entropy", hard),
        "sigmoid_focal": elementwise("sigmoid_focal_loss", hard, alpha=0.25, gamma=2.0),
        "huber": elementwise("huber_loss", lambda n: rng.standard_normal(n)),
        "dice softmax (B, 4, 64, 64)": dice,
    }


def best_time(fn, repeats, min_time=0.02):
    best = float("inf")
    for _ in range(repeats):
        fn()
        k, t0 = 0, time.perf_counter()
        while True:
            fn()
            k += 1
            el = time.perf_counter() - t0
            if el >= min_time:
                break
        best = min(best, el / k)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    sizes = [2**k for k in range(14, 23)]
    print(f"fastloss {fastloss.__version__}, kernels {fastloss._dispatch_info()['target']}, "
          f"1 vs {args.threads} threads, float32 loss + gradient; speed-up per size:")
    print("family".ljust(30) + "".join(f"{n // 1024:>7}K" for n in sizes) + "   pays from")
    for name, make in families(rng).items():
        ratios = []
        for n in sizes:
            call = make(n)
            t1 = best_time(lambda: call(1), args.repeats)
            tn = best_time(lambda: call(args.threads), args.repeats)
            ratios.append(t1 / tn)
        pays = next((n for i, n in enumerate(sizes) if all(r >= 1.2 for r in ratios[i:])), None)
        print(name.ljust(30) + "".join(f"{r:8.2f}" for r in ratios)
              + f"   {pays // 1024 if pays else '-'}{'K' if pays else ''}", flush=True)


if __name__ == "__main__":
    main()
