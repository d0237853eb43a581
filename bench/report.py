"""Benchmark report: python bench/report.py [--scale S] [--repeats R] [--dtype float32]

Runs the standard cases (bench/cases.py) in one process, the contenders interleaved
(fastloss, reference, torch, sklearn, fastloss again, ...) for several repetitions so that
a noisy neighbour hurts all of them alike, and takes each contender's best repetition.
It measures the machine's memory bandwidth in the same run with STREAM's "triad"
(a = b + s c over arrays far larger than the caches, one thread; fastloss's C loop of
csrc/stream.c, written as the memory-bound kernels are, best of the run) and reports, per
case: time per call, elements per second, speed-up over the NumPy reference and over
torch, and the fraction of that bandwidth the fastloss call reaches (bytes a single pass
must move / time).  The triad in NumPy is printed beside it for comparison.
fastloss is compared with the reference at 1 thread each, and with torch at --threads
each (default: all cores).

--isa avx2 runs every contender as an AVX2-only CPU (AMD Zen 3, say) would, on a machine
that also has AVX-512: the script runs itself again with FASTLOSS_TARGET=avx2,
NPY_DISABLE_CPU_FEATURES set to NumPy's AVX-512 dispatch targets and
ATEN_CPU_CAPABILITY=avx2 (torch), so that the ratios compare like with like.  The
instruction set, not the microarchitecture: the numbers are still this machine's.

Writes bench/results/report.md, report.json and (with matplotlib) report.png.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cases import Case, optional, standard_cases  # noqa: E402

import fastloss  # noqa: E402


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _numpy_dispatch():
    """NumPy's dispatch targets and CPU-feature table (([], {}) where NumPy has none)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # NumPy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
        except ImportError:
            return [], {}
    return __cpu_dispatch__, __cpu_features__


def numpy_simd():
    """NumPy's dispatch targets this process uses (NPY_DISABLE_CPU_FEATURES applied)."""
    dispatch, features = _numpy_dispatch()
    return " ".join(d for d in dispatch if features.get(d)) or "baseline"


def reexec_for_isa(isa, argv):
    """Runs this script again with every library restricted to `isa` (see --isa)."""
    if os.environ.get("FASTLOSS_BENCH_ISA") == isa:
        return
    env = dict(os.environ, FASTLOSS_BENCH_ISA=isa, FASTLOSS_TARGET=isa, ATEN_CPU_CAPABILITY=isa)
    above = [d for d in _numpy_dispatch()[0] if "AVX512" in d or d == "X86_V4"]
    if above:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(above)
    args = [sys.executable, os.path.abspath(__file__)] + list(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    os.execve(sys.executable, args, env)


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [f for f in ("sse2", "avx2", "fma", "avx512f", "avx512bw",
                                        "avx512dq", "avx512vl") if f in flags]
    except OSError:
        pass
    return []


TRIAD_N = 2**25  # 3 x 128 MiB of float32: far beyond the caches


def triad_arrays(n=TRIAD_N):
    a = np.empty(n, np.float32)
    b = np.ones(n, np.float32)
    c = np.ones(n, np.float32)
    a.fill(0.0)  # touch every page before timing
    return a, b, c


def stream_triad_bandwidth(arrays, repeats=7):
    """Bytes/s of STREAM's triad a = b + s c over 3 x 128 MiB of float32 on one thread
    (two streams read, one written, counted as STREAM counts them: 3 x 4 bytes per
    element), best of `repeats`, with fastloss's C loop for the dispatched target
    (csrc/stream.c: vectors, streaming stores, prefetched inputs, as the memory-bound
    kernels run): the memory roofline the "of bandwidth" column is a fraction of."""
    a, b, c = arrays
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fastloss._stream_triad(a, b, c, 3.0)
        best = min(best, time.perf_counter() - t0)
    return 3 * a.size * a.itemsize / best


def numpy_triad_bandwidth(arrays, repeats=7, chunk=2**16):
    """The same triad in NumPy, for comparison only: NumPy has no fused triad, so it
    runs in cache-sized chunks (s c into a small temporary that stays in L1/L2, then
    b + tmp into a) with ordinary stores, each written line read for ownership first."""
    a, b, c = arrays
    tmp = np.empty(chunk, np.float32)
    s = np.float32(3.0)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, a.size, chunk):
            np.multiply(c[i:i + chunk], s, out=tmp)
            np.add(b[i:i + chunk], tmp, out=a[i:i + chunk])
        best = min(best, time.perf_counter() - t0)
    return 3 * a.size * a.itemsize / best


def time_call(fn, min_time=0.05):
    """Seconds per call: calls repeated until min_time has passed, the mean of that run."""
    fn()
    number, elapsed = 0, 0.0
    t0 = time.perf_counter()
    while elapsed < min_time:
        fn()
        number += 1
        elapsed = time.perf_counter() - t0
    return elapsed / number


def run(dtype, scale, repeats, min_time, threads):
    torch = optional("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    Case.threads = threads
    results = []
    arrays = triad_arrays()
    bw_numpy = numpy_triad_bandwidth(arrays)
    # the roofline: the best triad of the run, measured at the start and again in every
    # repetition of every case, so that a machine that is slower during part of the run
    # is not compared against its bandwidth from another part
    bw = stream_triad_bandwidth(arrays)
    for case in standard_cases(dtype, scale=scale):
        times = {who: float("inf") for who in case.contenders}
        for _ in range(repeats):
            for who, fn in case.contenders.items():
                times[who] = min(times[who], time_call(fn, min_time))
            bw = max(bw, stream_triad_bandwidth(arrays, repeats=2))
        results.append({"case": case.name, "elements": case.elements,
                        "bytes": case.nbytes, "seconds": times})
        print(f"  {case.name}: " + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in times.items()),
              flush=True)
        del case
    return {"triad": bw, "numpy_triad": bw_numpy}, results


def markdown(meta, bws, results):
    bw = bws["triad"]
    lines = [
        f"fastloss {meta['fastloss']} | numpy {meta['numpy']} | torch {meta['torch']} | "
        f"sklearn {meta['sklearn']} | {meta['cpu']} ({', '.join(meta['cpu_flags'])}) | "
        f"{meta['dtype']} | kernels: {meta['target']} | NumPy SIMD: {meta['numpy_simd']} | "
        f"torch SIMD: {meta['torch_simd']} | STREAM triad (1 thread) {bw / 1e9:.1f} GB/s "
        f"(in NumPy: {bws['numpy_triad'] / 1e9:.1f} GB/s)",
        "",
        f"fastloss and the NumPy reference on 1 thread; fastloss ({meta['threads']}t) and torch "
        f"on {meta['threads']} threads.  ns/el = nanoseconds per element.",
        "",
        f"| case | fastloss 1t | (allocating grad) | fastloss {meta['threads']}t | NumPy reference | "
        f"torch {meta['threads']}t | sklearn | ns/el 1t / {meta['threads']}t | vs reference (1t) | "
        f"vs torch ({meta['threads']}t) | of bandwidth (1t) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(t):
        if t is None or t == float("inf"):
            return "-"
        return f"{t * 1e6:.1f} us" if t < 1e-3 else f"{t * 1e3:.2f} ms"

    for r in results:
        s = r["seconds"]
        fast = s["fastloss"]
        mt = s["fastloss_mt"]
        ref = s.get("reference")
        tor = s.get("torch")
        lines.append(
            f"| {r['case']} | {fmt(fast)} | {fmt(s.get('fastloss_alloc'))} | {fmt(mt)} | "
            f"{fmt(ref)} | {fmt(tor)} | {fmt(s.get('sklearn'))} | "
            f"{fast / r['elements'] * 1e9:.2f} / {mt / r['elements'] * 1e9:.2f} | "
            f"{ref / fast:.1f}x | {(f'{tor / mt:.1f}x' if tor else '-')} | "
            f"{r['bytes'] / fast / bw:.0%} |")
    return "\n".join(lines) + "\n"


def plot(results, path):
    plt = optional("matplotlib.pyplot")
    if plt is None:
        return False
    names = [r["case"] for r in results]
    who = ["fastloss", "fastloss_mt", "reference", "torch", "sklearn"]
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(names) + 1.5))
    height = 0.8 / len(who)
    for k, w in enumerate(who):
        vals = [r["elements"] / r["seconds"][w] if w in r["seconds"] else 0 for r in results]
        ax.barh([i + k * height for i in range(len(names))], vals, height, label=w)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(names))], names)
    ax.set_xscale("log")
    ax.set_xlabel("elements per second (loss + gradient)")
    ax.invert_yaxis()
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--scale", type=float, default=1.0, help="problem-size factor")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repetitions")
    p.add_argument("--min-time", type=float, default=0.1, help="seconds per timing")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for fastloss_mt and torch (default: all cores)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "results"))
    p.add_argument("--isa", choices=("avx2",),
                   help="restrict fastloss, NumPy and torch to this instruction set")
    args = p.parse_args(argv)
    if args.isa:
        reexec_for_isa(args.isa, argv)
    torch = optional("torch")
    sk = optional("sklearn")
    meta = {
        "fastloss": fastloss.__version__, "numpy": np.__version__,
        "torch": getattr(torch, "__version__", "not installed"),
        "sklearn": getattr(sk, "__version__", "not installed"),
        "python": platform.python_version(), "cpu": cpu_name(), "cpu_flags": cpu_flags(),
        "dtype": args.dtype, "threads": args.threads, "scale": args.scale,
        "target": fastloss._dispatch_info()["target"], "numpy_simd": numpy_simd(),
        "torch_simd": (torch.backends.cpu.get_cpu_capability()
                       if torch is not None and hasattr(torch.backends, "cpu") else "-"),
        "isa": args.isa or "native",
    }
    print(f"{meta['cpu']} | numpy {meta['numpy']} | torch {meta['torch']}", flush=True)
    bws, results = run(np.dtype(args.dtype), args.scale, args.repeats, args.min_time,
                      args.threads)
    os.makedirs(args.out, exist_ok=True)
    md = markdown(meta, bws, results)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump({"meta": meta, "stream_triad_bytes_per_s": bws["triad"],
                   "numpy_triad_bytes_per_s": bws["numpy_triad"], "results": results}, f,
                  indent=1, default=lambda v: None if v == float("inf") else v)
    png = plot(results, os.path.join(args.out, "report.png"))
    print()
    print(md)
    print(f"written to {args.out}" + ("" if png else " (no PNG: matplotlib not installed)"))


if __name__ == "__main__":
    main()
