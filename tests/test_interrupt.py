"""Ctrl-C (issue 5, "Concurrency and scale"): a multi-second call raises KeyboardInterrupt
within about half a second of SIGINT, leaks nothing, and leaves the thread pool usable.

How it works (fastloss/_core.pyx, "Ctrl-C"): a call of more than one block polls for
pending signals between the blocks its calling thread runs (the GIL is taken every
50 ms for PyErr_CheckSignals); when a handler raises, no further block starts on any
thread and the call raises that exception.

The long calls read large np.zeros arrays: np.zeros is calloc'ed, i.e. fresh anonymous
pages that the kernel backs with its shared zero page until written, so reading them
costs address space and page tables but no memory (as tests/test_scale.py).  The losses
are reduced with "sum" and no gradient, so nothing big is written either.

The signal is sent to the main thread (where CPython runs signal handlers) by a timer
thread 0.2 s into the call.  A fastloss that ignored it would let the call finish and
the KeyboardInterrupt surface later in the test: every test turns that into a failure
(`_late_interrupt_is_a_failure`) instead of an interrupted test session.
"""
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastloss

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
    pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                       reason="signal handlers run in the main thread only"),
]

SIGNAL_AFTER = 0.2   # s into the call
DEADLINE = 0.5       # s from the signal to the exception (issue 5: "about half a second")
TARGET = 2.5         # s: the long calls are sized to last about this long uninterrupted
MAX_ELEMENTS = 4_000_000_000  # address space: 16 GB of float32 zero pages per array
# (below 1 s uninterrupted a call could not tell a 0.5 s reaction from none: skipped)


def _sized(make, n_threads, target=TARGET):
    """A call of `make(n)` (n elements) sized to last ~target s uninterrupted: timed on
    a small n first, since zero pages are read at compute speed (0.3-1 ns per element
    on this machine).  Skips when MAX_ELEMENTS cannot last over a second.  Fixed sizes
    are not enough: the CI machine may be several times faster than this one."""
    n0 = 50_000_000
    small = make(n0)
    small()
    t0 = time.perf_counter()
    small()
    rate = (time.perf_counter() - t0) / n0
    n = int(min(MAX_ELEMENTS, target / rate))
    if n == MAX_ELEMENTS and n * rate < 1.0:
        pytest.skip(f"this machine is too fast for {MAX_ELEMENTS} elements to last a second")
    return make(n)


def _long_call(fn, n_threads, target=TARGET, weight=None):
    """A multi-second call over zero pages (see the module docstring)."""
    if fn == "sigmoid_focal_loss":
        # the element-wise path (_elementwise); the slowest element-wise kernel, since
        # Huber reads zero pages at ~0.2 ns per element: too fast to last a second
        def make(n):
            x = np.zeros(n, np.float32)
            return lambda: fastloss.sigmoid_focal_loss(x, x, reduction="sum",
                                                       n_threads=n_threads)
    elif fn == "cross_entropy":
        def make(n):
            # few classes: the most work per element (CE over zero pages with C = 1000
            # reads at 0.2 ns per element on 2 threads, too fast to last a second)
            C = 3
            x = np.zeros((n // C, C), np.float32)
            y = np.zeros(n // C, np.int64)
            return lambda: fastloss.cross_entropy(x, y, weight=weight, reduction="sum",
                                                  n_threads=n_threads)
    else:
        def make(n):
            C, S = 4, 250_000
            x = np.zeros((max(n // (C * S), 1), C, 500, 500), np.float32)
            t = np.zeros(x.shape, x.dtype)  # (not zeros_like: that writes every page)
            return lambda: fastloss.dice_loss(x, t, activation="softmax", reduction="sum",
                                              n_threads=n_threads)
    return _sized(make, n_threads, target)


def _check_call(fn, n_threads):
    """A multi-block call (so it runs on the pool with n_threads > 1) and its result
    computed serially: the pool must give the same bits after an interrupted call."""
    rng = np.random.default_rng(5)
    if fn == "sigmoid_focal_loss":
        x = rng.standard_normal(300_000)
        t = rng.random(300_000)
        call = lambda n: fastloss.sigmoid_focal_loss(x, t, reduction="none",  # noqa: E731
                                                     return_grad=True, n_threads=n)
    elif fn == "cross_entropy":
        x = rng.standard_normal((30_000, 10))
        y = rng.integers(0, 10, 30_000)
        call = lambda n: fastloss.cross_entropy(x, y, reduction="none", return_grad=True,  # noqa: E731
                                                n_threads=n)
    else:
        x = rng.standard_normal((6, 3, 100, 120))
        y = rng.integers(0, 3, (6, 100, 120))
        call = lambda n: fastloss.dice_loss(x, y, activation="softmax", reduction="none",  # noqa: E731
                                            return_grad=True, n_threads=n)
    return (lambda: call(n_threads)), call(1)


class _Timer:
    """Sends SIGINT to the main thread `after` seconds from start(); records when."""

    def __init__(self, after=SIGNAL_AFTER, sig=signal.SIGINT):
        self.after = after
        self.sig = sig
        self.sent_at = None
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        time.sleep(self.after)
        self.sent_at = time.perf_counter()
        signal.pthread_kill(self._main, self.sig)

    def start(self):
        self._thread.start()
        return self

    def join(self):
        self._thread.join()


def _late_interrupt_is_a_failure(timer):
    """Wait for the timer; a KeyboardInterrupt delivered now (the call did not react to
    the signal) fails the test instead of interrupting the whole session."""
    try:
        timer.join()
        time.sleep(0.05)  # lets the interpreter run a pending handler here
    except KeyboardInterrupt:
        pytest.fail("the call did not react to SIGINT: KeyboardInterrupt arrived after it")


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler (raises KeyboardInterrupt), restored afterwards."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("fn", ["sigmoid_focal_loss", "cross_entropy", "dice_loss"])
def test_keyboard_interrupt_within_half_a_second(fn, n_threads, default_sigint):
    call = _long_call(fn, n_threads)
    check, want = _check_call(fn, n_threads)
    timer = _Timer().start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            call()
        raised_at = time.perf_counter()
    except KeyboardInterrupt:  # pragma: no cover - raised outside the call
        pytest.fail("KeyboardInterrupt outside the call")
    _late_interrupt_is_a_failure(timer)
    assert timer.sent_at is not None and raised_at >= timer.sent_at, (
        f"the call ended ({raised_at - t0:.2f} s) before the signal was sent")
    assert raised_at - timer.sent_at < DEADLINE, (
        f"KeyboardInterrupt {raised_at - timer.sent_at:.3f} s after SIGINT (limit {DEADLINE} s)")
    # the pool still works and gives the bits of a serial call
    got = check()
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_the_handlers_exception_is_raised_and_a_quiet_handler_does_not_stop_the_call():
    """Whatever the Python-level handler raises is what the call raises; a handler that
    returns normally lets the call run to its result, bitwise that of an undisturbed
    call."""
    class Stop(Exception):
        pass

    seen = []

    def raising(signum, frame):
        seen.append(signum)
        raise Stop("from the handler")

    def quiet(signum, frame):
        seen.append(signum)

    call = _long_call("sigmoid_focal_loss", 2, target=1.2)
    want = call()  # undisturbed
    old = signal.signal(signal.SIGUSR1, raising)
    timer = None
    try:
        timer = _Timer(sig=signal.SIGUSR1).start()
        t0 = time.perf_counter()
        with pytest.raises(Stop, match="from the handler"):
            call()
        assert time.perf_counter() - t0 < SIGNAL_AFTER + DEADLINE
        timer.join()
        signal.signal(signal.SIGUSR1, quiet)
        timer = _Timer(sig=signal.SIGUSR1).start()
        got = call()
        timer.join()
        time.sleep(0.05)
    finally:
        # never restore the default action (which terminates) with a signal pending
        if timer is not None:
            timer.join()
            time.sleep(0.05)
        signal.signal(signal.SIGUSR1, old)
    assert seen == [signal.SIGUSR1, signal.SIGUSR1]
    assert got.tobytes() == want.tobytes()


def test_interrupted_calls_leak_nothing(default_sigint):
    """Interrupted calls leave the arguments' reference counts and the Python-level
    allocations as they were (the exception and the temporaries are released)."""
    w = np.ones(3, np.float32)
    call = _long_call("cross_entropy", 2, target=1.0, weight=w)

    def interrupted():
        timer = _Timer(after=0.1).start()
        try:
            call()
        except KeyboardInterrupt:
            pass
        else:  # pragma: no cover
            _late_interrupt_is_a_failure(timer)
            pytest.fail("not interrupted")
        _late_interrupt_is_a_failure(timer)

    interrupted()  # warm-up
    gc.collect()
    args = [w] + [c.cell_contents for c in call.__closure__  # x and y
                  if isinstance(c.cell_contents, np.ndarray) and c.cell_contents is not w]
    assert len(args) == 3
    refs = [sys.getrefcount(a) for a in args]
    import tracemalloc
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            interrupted()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(a) for a in args] == refs
    assert grown < 64 * 1024, f"{grown} bytes of Python-level memory kept by 3 interrupted calls"


def test_fork_during_a_parallel_call_does_not_deadlock():
    """Another thread forks while the main thread is in a long parallel call that polls
    for signals (it takes the GIL every 50 ms; the forking thread holds the GIL through
    fork()).  Neither may wait for the other: the call finishes with its exact result and
    the child, which does not inherit the call, uses the pool.  Run in a subprocess with
    a timeout, so that a deadlock fails the test instead of hanging it."""
    script = textwrap.dedent(f"""
        import os, threading, time
        import numpy as np
        import fastloss
        n = 3_000_000_000  # ~1 s or more: the fork comes at 0.2 s
        x = np.zeros(n, np.float32)
        t = np.zeros(n, np.float32)
        x[[0, n - 1]] = [1.0, 3.0]
        status = []

        def fork_soon():
            time.sleep(0.2)
            pid = os.fork()
            if pid == 0:
                a = np.linspace(-3, 3, 400_000)
                l1 = fastloss.huber_loss(a, a[::-1].copy(), reduction="sum", n_threads=2)
                l2 = fastloss.huber_loss(a, a[::-1].copy(), reduction="sum", n_threads=1)
                os._exit(0 if l1 == l2 else 3)
            status.append(os.waitpid(pid, 0)[1])

        th = threading.Thread(target=fork_soon)
        th.start()
        loss = fastloss.huber_loss(x, t, delta=10.0, reduction="sum", n_threads=2)
        th.join()
        assert loss == np.float32(5.0), loss
        assert status == [0], status
        print("ok")
    """)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(fastloss.__file__))]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    # cwd = tests/: `python -c` puts the cwd first on sys.path, and a source checkout's
    # fastloss/ must not shadow the package under test
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env=env, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert res.returncode == 0 and res.stdout.strip() == "ok", (res.stdout, res.stderr)
