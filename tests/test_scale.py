"""Calls over more than 2**31 elements are correct (issue 5, "Concurrency and scale"):
64-bit sizes, offsets and block indices everywhere, the mean divided by the true count.

The inputs are built cheaply: np.zeros of 2**31 + 5 float32 (8 GiB of address space) is
calloc'ed, i.e. fresh anonymous pages that the kernel backs with its shared zero page
until written, so reading them costs neither memory nor page faults beyond page tables;
only a few "spikes" are written.  Only the outputs (gradient, or "none" losses) are real
memory: one 8 GiB float32 array at a time, freed before the next call.  Each test runs
in well under a minute on this 2-core machine.

Every expected value is derived analytically in the comments; the spikes sit at the
places where 32-bit arithmetic breaks (2**31 - 1, 2**31, 2**31 + 1, the very last
element) and at block boundaries (multiples of 65536), so a truncated size, a wrapped
offset or a lost tail changes the numbers checked.
"""
import gc

import numpy as np
import pytest

import fastloss

pytestmark = pytest.mark.slow

N = 2**31 + 5
GiB = 1 << 30


def _mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.fixture(autouse=True)
def _enough_memory():
    # one 8 GiB output plus headroom; this machine has 24 GiB
    if _mem_available() < 10 * GiB:
        pytest.skip(f"needs 10 GiB of available memory, {_mem_available() / GiB:.1f} GiB free")
    yield
    gc.collect()


def test_huber_over_2_31_plus_5_elements():
    """huber_loss, delta = 100, over n = 2**31 + 5 float32 elements.

    x and t are 0 except x[P] = 1..8 and t[Q] = 9, 10, 11, so d = x - t is 0 except
    d[P] = 1..8 and d[Q] = -9, -10, -11, all with |d| < delta: the loss is 0.5 d**2
    and its gradient ("sum") is d.
        sum  = 0.5 (1 + 4 + ... + 64 + 81 + 100 + 121) = 0.5 * 506 = 253 (exact in float32)
        mean = 253 / (2**31 + 5), rounded once to float32
        grad = d: nonzero exactly at P and Q with those values (flatnonzero checks that no
               other element was written)
        "none": 0.5 d**2, nonzero exactly at P and Q."""
    P = np.array([0, 1, 65535, 65536, 2**31 - 65536, 2**31 - 1, 2**31, N - 1])
    Q = np.array([3, 2**31 + 1, N - 2])
    x = np.zeros(N, np.float32)
    t = np.zeros(N, np.float32)
    x[P] = np.arange(1, 9)
    t[Q] = [9, 10, 11]
    d = np.zeros(len(P) + len(Q))
    where = np.concatenate([P, Q])
    d[:len(P)] = np.arange(1, 9)
    d[len(P):] = [-9, -10, -11]
    order = np.argsort(where)
    where, d = where[order], d[order]

    loss, grad = fastloss.huber_loss(x, t, delta=100.0, reduction="sum", return_grad=True)
    assert type(loss) is np.float32 and loss == np.float32(253.0)
    assert grad.shape == (N,) and grad.dtype == np.float32
    np.testing.assert_array_equal(np.flatnonzero(grad), where)
    np.testing.assert_array_equal(grad[where], d)
    del grad
    gc.collect()

    mean = fastloss.huber_loss(x, t, delta=100.0)
    assert mean == np.float32(253.0 / N)

    per = fastloss.huber_loss(x, t, delta=100.0, reduction="none")
    assert per.shape == (N,)
    np.testing.assert_array_equal(np.flatnonzero(per), where)
    np.testing.assert_array_equal(per[where], 0.5 * d**2)


def test_bce_with_logits_pos_weight_phase_over_2_31_elements():
    """binary_cross_entropy_with_logits on an (R, 7) float32 input, R = (2**31 + 5) / 7
    = 306,783,379 rows (n = 7 R = 2**31 + 5), pos_weight = [1, ..., 7] along the last axis.

    x = 0 everywhere; y = 0 except y = 1 in the last 3 elements and at flat index
    2**31 - 1 and 2**31.  With loss = (1 - y) x + (1 + (pw - 1) y) softplus(-x):
        y = 0: loss = softplus(0) = log 2,      dloss/dx = sigmoid(0) = 1/2
        y = 1: loss = pw[c] log 2,              dloss/dx = -pw[c] sigmoid(-0) = -pw[c] / 2
    with c = flat index mod 7 (the pos_weight phase: a 32-bit wrap of the flat index or a
    block offset would pick the wrong pw).  "sum": loss = log 2 ((n - k) + sum pw[c]) for
    the k = 5 positive elements."""
    C = 7
    R = -(-N // C)
    n = R * C
    assert n > 2**31
    pw = np.arange(1, C + 1, dtype=np.float32)
    x = np.zeros((R, C), np.float32)
    y = np.zeros((R, C), np.float32)
    assert n == N
    pos = np.concatenate([[2**31 - 1, 2**31], np.arange(n - 3, n)])
    y.reshape(-1)[pos] = 1.0
    cls = pos % C
    want_sum = np.log(2.0) * ((n - len(pos)) + np.sum(pw[cls], dtype=np.float64))

    loss, grad = fastloss.binary_cross_entropy_with_logits(
        x, y, pos_weight=pw, reduction="sum", return_grad=True)
    assert type(loss) is np.float32
    np.testing.assert_allclose(loss, want_sum, rtol=1e-6)
    g = grad.reshape(-1)
    np.testing.assert_array_equal(g[pos], -pw[cls] / 2)
    # neighbours of the positives, the first elements and a block boundary: y = 0 -> 1/2
    for i in (0, 1, 65536, 2**31 - 2, 2**31 + 1, n - 4):
        assert g[i] == 0.5, i
    # every negative element has gradient 1/2 (count of exact 0.5 values)
    assert np.count_nonzero(g == 0.5) == n - len(pos)
    # (the mean's division by the 64-bit count is checked in the Huber test)


def test_cross_entropy_over_2_31_elements():
    """cross_entropy on an (R, 1000) float32 input, R = 2,147,487 rows
    (n = 2,147,487,000 > 2**31), labels y_r = r mod 1000.

    Every logit is 0 except x[r, h_r] = a = 5 in the rows of S (the first, the rows around
    the 2**31 element boundary, the last).  With Z = 999 + e^a for a spiked row, 1000
    otherwise:
        loss_r = log Z - x[r, y_r]
        grad[r, j] = p_j - [j == y_r] ("sum"), p_j = 1/Z (j != h_r), e^a / Z (j = h_r).
    The "none" losses are checked for every row (8 MB), the gradient in the spiked rows
    and at the last element."""
    C = 1000
    R = 2**31 // C + 4  # rows boundary - 1 .. boundary + 3 = R - 1
    assert R * C > 2**31
    a = 5.0
    boundary_row = 2**31 // C  # the row holding flat element 2**31
    S = np.array([0, boundary_row - 1, boundary_row, boundary_row + 1, R - 1])
    H = np.array([7, 999, (2**31) % C, 0, 999])  # h_r: includes the element 2**31 itself
    x = np.zeros((R, C), np.float32)
    x[S, H] = a
    y = np.arange(R, dtype=np.int64) % C
    y[R - 1] = 999  # last row: label = spiked class (the very last element)

    Z = np.full(R, float(C))
    Z[S] = (C - 1) + np.exp(a)
    xy = np.zeros(R)
    xy[S] = np.where(H == y[S], a, 0.0)
    want = np.log(Z) - xy

    per = fastloss.cross_entropy(x, y, reduction="none")
    assert per.shape == (R,) and per.dtype == np.float32
    np.testing.assert_allclose(per, want, rtol=2e-6)
    mean = fastloss.cross_entropy(x, y)
    np.testing.assert_allclose(mean, np.mean(want), rtol=1e-6)

    loss, grad = fastloss.cross_entropy(x, y, reduction="sum", return_grad=True)
    np.testing.assert_allclose(loss, np.sum(want), rtol=1e-6)
    for r, h in zip(S, H):
        p = np.full(C, 1.0 / Z[r])
        p[h] = np.exp(a) / Z[r]
        p[y[r]] -= 1.0
        np.testing.assert_allclose(grad[r], p, rtol=2e-6, atol=1e-9, err_msg=f"row {r}")
    # an unspiked row next to the boundary and the last element
    p = np.full(C, 1.0 / C)
    p[y[boundary_row + 2]] -= 1.0
    np.testing.assert_allclose(grad[boundary_row + 2], p, rtol=2e-6)
    np.testing.assert_allclose(grad[R - 1, C - 1], np.exp(a) / Z[R - 1] - 1.0, rtol=2e-6)
