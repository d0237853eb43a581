"""huber_loss and smooth_l1_loss: against the reference, finite differences (away from the
kinks), torch F.huber_loss / F.smooth_l1_loss (beta = 0 included) and the edge cases."""
import numpy as np
import pytest

import fastloss
from conftest import (RTOL64, assert_grad_fd, assert_ulp_close, get_impl, implementations,
                      pick_coords, seed_of)

ref = fastloss.reference

# Parameters exactly representable in float32, so float32 and float64 runs use the same
# threshold (the reference and the kernels round the parameter to the computing dtype).
PARAMS = ([pytest.param("huber", d, id=f"huber-delta{d:g}") for d in (1.0, 0.5, 2.5, 2.0 ** -10)]
          + [pytest.param("smooth_l1", b, id=f"smooth_l1-beta{b:g}") for b in (1.0, 0.5, 2.5, 0.0)])
SHAPES = {"2d": (9, 7), "3d": (2, 3, 5), "1d": (31,)}


def call(mod, kind, x, t, param, **kw):
    if kind == "huber":
        return mod.huber_loss(x, t, delta=param, **kw)
    return mod.smooth_l1_loss(x, t, beta=param, **kw)


def make(rng, shape, param, dtype=np.float64, kink_gap=0.0):
    """x = t + d with d spread over both branches; with kink_gap, |d| stays at least that far
    from the kinks |d| = param and d = 0 (finite differences must not straddle them)."""
    t = rng.standard_normal(shape) * 2.0
    scale = max(param, 0.25)
    d = rng.standard_normal(shape) * 2.0 * scale
    if kink_gap:
        near = (np.abs(np.abs(d) - param) < kink_gap) | (np.abs(d) < kink_gap)
        d = np.where(near, np.sign(d) * (np.abs(d) + 3 * kink_gap), d)
    return (t + d).astype(dtype), t.astype(dtype)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("kind,param", PARAMS)
def test_float64_matches_reference(kind, param, shape, reduction, rng):
    x, t = make(rng, shape, param)
    loss, grad = call(fastloss, kind, x, t, param, reduction=reduction, return_grad=True)
    rloss, rgrad = call(ref, kind, x, t, param, reduction=reduction, return_grad=True)
    # d = x - t is rounded identically on both sides; 0.5 d^2 and delta(|d| - delta/2) have
    # no cancellation (|d| >= delta there): relative agreement, no absolute floor needed.
    np.testing.assert_allclose(loss, rloss, rtol=RTOL64)
    np.testing.assert_allclose(grad, rgrad, rtol=RTOL64)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind,param", PARAMS)
def test_float32_within_few_ulp_of_exact(impl, kind, param, reduction, rng):
    mod = get_impl(impl)
    x, t = make(rng, (9, 7), param, dtype=np.float32)
    loss, grad = call(mod, kind, x, t, param, reduction=reduction, return_grad=True)
    eloss, egrad = call(ref, kind, x.astype(np.float64), t.astype(np.float64), param,
                        reduction=reduction, return_grad=True)
    # d = x - t in float32 is within 0.5 ulp of the exact difference, 0.5 d^2 within ~2 ulp
    if reduction == "none":
        assert_ulp_close(loss, eloss, 4)
    else:
        assert type(loss) is np.float32
        np.testing.assert_allclose(loss, eloss, rtol=1e-6)
    assert_ulp_close(grad, egrad, 4)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("kind,param", PARAMS)
def test_gradient_matches_finite_differences(impl, kind, param, shape, reduction, rng):
    mod = get_impl(impl)
    # the 4th-order stencil spans +-2h ~ 2e-5 * max(1, |x|): stay 1e-3 away from the kinks
    x, t = make(rng, shape, param, kink_gap=1e-3)
    _, grad = call(mod, kind, x, t, param, reduction=reduction, return_grad=True)
    assert_grad_fd(lambda z: np.sum(call(mod, kind, z, t, param, reduction=reduction)),
                   grad, x, pick_coords(x.shape, rng, k=10))


def _torch(torch, kind, x, t, param, reduction):
    F = torch.nn.functional
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(t, dtype=torch.float64)
    if kind == "huber":
        loss = F.huber_loss(xt, tt, delta=param, reduction=reduction)
    else:
        loss = F.smooth_l1_loss(xt, tt, beta=param, reduction=reduction)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind,param", PARAMS)
def test_matches_torch(impl, kind, param, reduction, rng):
    torch = pytest.importorskip("torch", reason="torch not installed: cross-checks against PyTorch skipped")
    mod = get_impl(impl)
    x, t = make(rng, (9, 7), param)
    # a few differences exactly on the kinks: |d| = param and d = 0
    x[0, :3] = t[0, :3] + np.array([param, -param, 0.0])
    loss, grad = call(mod, kind, x, t, param, reduction=reduction, return_grad=True)
    tloss, tgrad = _torch(torch, kind, x, t, param, reduction)
    np.testing.assert_allclose(loss, tloss, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(grad, tgrad, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_huber_hand_values(impl, dtype):
    """delta = 2, d = x - t:
      d = 0:    0.5 * 0 = 0,            grad 0
      d = 1:    0.5 * 1 = 0.5,          grad 1
      d = -2:   |d| = delta -> linear: 2 * (2 - 1) = 2 (= 0.5 d^2), grad -2
      d = 5:    2 * (5 - 1) = 8,        grad 2
      d = -1e30: 2 * (1e30 - 1) = 2e30, grad -2
      d = +inf: inf, grad 2;  d = -inf: inf, grad -2;  inf - inf: NaN, NaN"""
    mod = get_impl(impl)
    inf = np.inf
    x = np.array([3, 4, 1, 8, -1e30, inf, -inf, inf], dtype=dtype)
    t = np.array([3, 3, 3, 3, 0, 0, 0, inf], dtype=dtype)
    loss, grad = mod.huber_loss(x, t, delta=2.0, reduction="none", return_grad=True)
    assert_ulp_close(loss, np.array([0, 0.5, 2, 8, 2e30, inf, inf, np.nan]), 1)
    assert_ulp_close(grad, np.array([0, 1, -2, 2, -2, 2, -2, np.nan]), 0)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_smooth_l1_hand_values(impl, dtype):
    """beta = 0.5:  d = 0.25 -> 0.5 d^2 / beta = 0.0625, grad d / beta = 0.5;
    d = -3 -> |d| - beta / 2 = 2.75, grad -1;  d = 0 -> 0, grad 0.
    beta = 0 (L1): d = 0.25 -> 0.25, grad 1;  d = -3 -> 3, grad -1;  d = 0 -> 0, grad 0
    (torch's gradient of |d| at 0 is 0)."""
    mod = get_impl(impl)
    x = np.array([1.25, -2.0, 1.0], dtype=dtype)
    t = np.array([1.0, 1.0, 1.0], dtype=dtype)
    loss, grad = mod.smooth_l1_loss(x, t, beta=0.5, reduction="none", return_grad=True)
    assert_ulp_close(loss, np.array([0.0625, 2.75, 0.0]), 0)
    assert_ulp_close(grad, np.array([0.5, -1.0, 0.0]), 0)
    loss, grad = mod.smooth_l1_loss(x, t, beta=0.0, reduction="none", return_grad=True)
    assert_ulp_close(loss, np.array([0.25, 3.0, 0.0]), 0)
    assert_ulp_close(grad, np.array([1.0, -1.0, 0.0]), 0)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_huber_is_delta_times_smooth_l1(impl, reduction, rng):
    """torch documents huber(delta) = delta * smooth_l1(beta = delta): the same holds for
    the gradients (clamp(d, +-delta) = delta clamp(d / delta, +-1))."""
    mod = get_impl(impl)
    x, t = make(rng, (50,), 1.5)
    hl, hg = mod.huber_loss(x, t, delta=1.5, reduction=reduction, return_grad=True)
    sl, sg = mod.smooth_l1_loss(x, t, beta=1.5, reduction=reduction, return_grad=True)
    np.testing.assert_allclose(hl, 1.5 * sl, rtol=1e-14)
    np.testing.assert_allclose(hg, 1.5 * sg, rtol=1e-14)


@pytest.mark.parametrize("impl", implementations())
def test_mean_is_sum_over_count(impl, rng):
    mod = get_impl(impl)
    x, t = make(rng, (6, 5), 1.0)
    s, gs = mod.huber_loss(x, t, reduction="sum", return_grad=True)
    m, gm = mod.huber_loss(x, t, reduction="mean", return_grad=True)
    np.testing.assert_allclose(m, s / 30, rtol=1e-15)
    np.testing.assert_allclose(gm, gs / 30, rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["huber", "smooth_l1"])
def test_large_calls_streaming_stores_any_alignment_bitwise(kind, dtype):
    """Inputs of 8 MB or more go to the kernels in 1 MiB blocks written with streaming
    stores; with AVX-512 each output cache line is assembled from two vectors and written
    whole, starting wherever the output sits in its line (csrc/elementwise.h,
    fl_ew_nts).  Outputs at every 16-byte position in a line (and one not 16-byte aligned,
    which takes regular stores), 3M + 5 elements: the same loss and gradient bits as
    64K-element calls (regular stores), nothing written outside the output, and the same
    mean whatever the alignment."""
    rng = np.random.default_rng(seed_of("streaming-alignment", kind, dtype.__name__))
    n = 3_000_005
    t = rng.standard_normal(n).astype(dtype)
    x = (t + rng.standard_normal(n) * 2).astype(dtype)
    assert x.nbytes >= 8 << 20
    f = getattr(fastloss, kind + "_loss")
    step = 1 << 16
    want_l = np.concatenate([f(x[i:i + step], t[i:i + step], reduction="none")
                             for i in range(0, n, step)])
    want_g = np.concatenate([f(x[i:i + step], t[i:i + step], reduction="sum",
                               return_grad=True)[1] for i in range(0, n, step)])
    lanes16 = 16 // x.itemsize
    base_mean, _ = f(x, t, return_grad=True)
    for off in [j * lanes16 for j in range(4)] + [1]:
        lbuf = np.full(n + 16, 7.0, dtype)
        gbuf = np.full(n + 16, 7.0, dtype)
        lv, gv = lbuf[off:off + n], gbuf[off:off + n]
        loss, grad = f(x, t, reduction="none", return_grad=True, out=lv, grad_out=gv)
        assert loss is lv and grad is gv
        np.testing.assert_array_equal(lv, want_l, err_msg=f"loss, offset {off}")
        # the gradient of "none" is the gradient of "sum": scale 1
        np.testing.assert_array_equal(gv, want_g, err_msg=f"grad, offset {off}")
        for buf in (lbuf, gbuf):
            assert (buf[:off] == 7.0).all() and (buf[off + n:] == 7.0).all(), off
        m, g = f(x, t, return_grad=True, grad_out=gv)
        assert m == base_mean, (off, m, base_mean)
        np.testing.assert_array_equal(g, f(x, t, return_grad=True)[1])


# ------------------------------------------------------------ the triad of bench/report.py

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 63, 64, 65, 1000, (1 << 20) // 4 + 37,
                               (1 << 20) // 8 + 37])
def test_stream_triad_is_b_plus_s_c(dtype, n, rng):
    """fastloss._stream_triad, the memory roofline of bench/report.py, computes exactly
    NumPy's b + s * c (one multiply, one add, rounded in dtype) for every length: the
    masked tail and, from 1 MiB of output, the streaming-store path.  The sizes around
    (1 << 20) / itemsize + 37 take the streaming path for one dtype and not the other.
    Special values go through as NumPy's; a at every 16-byte position of a cache line;
    nothing is written outside a."""
    b = rng.standard_normal(n).astype(dtype)
    c = rng.standard_normal(n).astype(dtype)
    if n >= 7:
        b[:4] = [np.nan, np.inf, -np.inf, 0.0]
        c[:4] = [1.0, -np.inf, 2.0, -0.0]
    s = 0.1  # not exact in float32: rounded to dtype first, as NumPy's dtype(s) is
    with np.errstate(invalid="ignore"):
        expect = b + dtype(s) * c
    lanes16 = 16 // np.dtype(dtype).itemsize
    for off in range(0, 64 // np.dtype(dtype).itemsize, lanes16):  # each 16 B of a line
        buf = np.full(n + 32, 7.0, dtype)
        a = buf[off:off + n]
        fastloss._stream_triad(a, b, c, s)
        np.testing.assert_array_equal(a, expect, err_msg=f"offset {off}")
        assert (np.signbit(a) == np.signbit(expect)).all()
        assert (buf[:off] == 7.0).all() and (buf[off + n:] == 7.0).all()


def test_stream_triad_rejects_bad_arrays():
    f4 = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="one dtype and length"):
        fastloss._stream_triad(np.zeros(8), f4, np.zeros(8), 1.0)
    with pytest.raises(ValueError, match="one dtype and length"):
        fastloss._stream_triad(np.zeros(8), np.zeros(8), np.zeros(9), 1.0)
    with pytest.raises(TypeError, match="b must be a 1-D C-contiguous"):
        fastloss._stream_triad(np.zeros(4), np.zeros(8)[::2], np.zeros(4), 1.0)
    with pytest.raises(TypeError, match="a must be a 1-D C-contiguous"):
        fastloss._stream_triad([0.0], np.zeros(1), np.zeros(1), 1.0)
    with pytest.raises(TypeError, match="c must be"):
        fastloss._stream_triad(np.zeros(3), np.zeros(3), np.zeros(3, np.int64), 1.0)
    x = np.zeros(8)
    with pytest.raises(ValueError, match="must not overlap"):
        fastloss._stream_triad(x, x, np.zeros(8), 1.0)
    ro = np.zeros(8)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        fastloss._stream_triad(ro, np.zeros(8), np.zeros(8), 1.0)
