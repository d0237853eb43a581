"""Threads: n_threads never changes a bit of the result, the pool survives fork(), and
concurrent callers get serial results."""
import multiprocessing as mp
import os
import sys
import threading

import numpy as np
import pytest

import fastloss

# Large enough for several blocks (blocks are 65536 elements or whole rows of that much).
N = 300_007


def _calls(rng, dtype):
    """(name, call(n_threads)) for every function, on inputs spanning many blocks and
    with the options that change the blocking (broadcast weights, NCHW, ignored rows)."""
    x = (rng.standard_normal(N) * 3).astype(dtype)
    y = (rng.random(N) < 0.3).astype(dtype)
    p = rng.random(N).astype(dtype)
    rows = N // 11
    xm = rng.standard_normal((rows, 11)).astype(dtype)
    ym = (rng.random((rows, 11)) < 0.3).astype(dtype)
    pw = (rng.random(11) * 2).astype(dtype)
    wr = rng.random((rows, 1)).astype(dtype)
    logits = rng.standard_normal((rows, 11)).astype(dtype)
    labels = rng.integers(0, 11, rows)
    labels[::5] = -100
    img = rng.standard_normal((6, 3, 150, 150)).astype(dtype)
    img_lab = rng.integers(0, 3, (6, 150, 150))
    probs = rng.dirichlet(np.ones(11), rows).astype(dtype)
    g = dict(return_grad=True)
    return [
        ("huber", lambda k: fastloss.huber_loss(x, y, n_threads=k, **g)),
        ("smooth_l1", lambda k: fastloss.smooth_l1_loss(x, y, beta=0.5, n_threads=k, **g)),
        ("bce_logits", lambda k: fastloss.binary_cross_entropy_with_logits(
            xm, ym, weight=wr, pos_weight=pw, n_threads=k, **g)),
        ("bce", lambda k: fastloss.binary_cross_entropy(p, y, n_threads=k, **g)),
        ("sigmoid_focal", lambda k: fastloss.sigmoid_focal_loss(x, y, n_threads=k, **g)),
        ("cross_entropy", lambda k: fastloss.cross_entropy(
            logits, labels, label_smoothing=0.1, n_threads=k, **g)),
        ("cross_entropy_probs", lambda k: fastloss.cross_entropy(
            logits, probs, n_threads=k, **g)),
        ("cross_entropy_nchw", lambda k: fastloss.cross_entropy(
            img, img_lab, n_threads=k, **g)),
        ("softmax_focal", lambda k: fastloss.softmax_focal_loss(
            logits, labels, n_threads=k, **g)),
        ("dice", lambda k: fastloss.dice_loss(
            img, img_lab, activation="softmax", n_threads=k, **g)),
        ("none", lambda k: fastloss.huber_loss(x, y, reduction="none", n_threads=k, **g)),
    ]


def _same(a, b):
    return all(np.array_equal(np.asarray(u), np.asarray(v), equal_nan=True)
               and np.asarray(u).dtype == np.asarray(v).dtype for u, v in zip(a, b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_results_are_bitwise_identical_for_every_thread_count(dtype):
    for name, call in _calls(np.random.default_rng(3), dtype):
        base = call(1)
        for k in (2, 3, 8, None):  # more threads than cores is allowed
            assert _same(call(k), base), (name, k)


def test_n_threads_validation_and_defaults():
    x = np.zeros(10)
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="n_threads"):
            fastloss.huber_loss(x, x, n_threads=bad)
    before = fastloss.get_num_threads()
    assert before == os.cpu_count() or before >= 1
    try:
        fastloss.set_num_threads(1)
        assert fastloss.get_num_threads() == 1
        with pytest.raises(ValueError):
            fastloss.set_num_threads(0)
    finally:
        fastloss.set_num_threads(None)
    assert fastloss.get_num_threads() == before


def _child(conn):
    rng = np.random.default_rng(5)
    results = [(name, call(2)) for name, call in _calls(rng, np.float32)]
    conn.send([(name, r[0].item() if np.ndim(r[0]) == 0 else float(np.sum(r[0])))
               for name, r in results])
    conn.close()


@pytest.mark.skipif(sys.platform == "win32", reason="fork() is POSIX-only")
def test_pool_survives_fork():
    """Use the pool, fork, use it in the child (no deadlock), compare with the parent."""
    rng = np.random.default_rng(5)
    expected = [(name, r[0].item() if np.ndim(r[0]) == 0 else float(np.sum(r[0])))
                for name, r in ((name, call(2)) for name, call in _calls(rng, np.float32))]
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child,))
    proc.start()
    assert parent.poll(120), "child did not answer: deadlock after fork?"
    got = parent.recv()
    proc.join(30)
    assert proc.exitcode == 0
    assert got == expected


def test_concurrent_callers_get_serial_results():
    """Eight Python threads, each calling a different function with n_threads=2 at once:
    the pool serves one, the others run serially; every result is the serial one."""
    calls = _calls(np.random.default_rng(9), np.float64)[:8]
    expected = {name: call(1) for name, call in calls}
    got = {}
    errors = []

    def run(name, call):
        try:
            for _ in range(3):
                got[name] = call(2)
        except Exception as e:  # pragma: no cover - reported below
            errors.append((name, e))

    threads = [threading.Thread(target=run, args=c) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors
    for name, _ in calls:
        assert _same(got[name], expected[name]), name
