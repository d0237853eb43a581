"""binary_cross_entropy (probabilities) and binary_cross_entropy_with_logits: against the
reference, finite differences, torch, and the edge cases (p exactly 0 / 1, logits of
+-1e4 and +-inf)."""
import numpy as np
import pytest

import fastloss
from conftest import (RTOL64, assert_grad_fd, assert_ulp_close, binary_targets, get_impl,
                      implementations, logits, pick_coords, probabilities, seed_of)

ref = fastloss.reference

# name -> (input shape, {"weight": shape or "scalar", "pos_weight": shape})
OPTIONS = {
    "plain": ((10, 6), {}),
    "weight_full": ((10, 6), {"weight": (10, 6)}),
    "weight_scalar": ((10, 6), {"weight": "scalar"}),
    "weight_last_axis": ((10, 6), {"weight": (6,)}),
    "weight_leading_axis": ((10, 6), {"weight": (10, 1)}),
    "weight_middle_3d": ((3, 4, 5), {"weight": (4, 1)}),
    "pos_weight": ((10, 6), {"pos_weight": (6,)}),
    "pos_weight_3d": ((3, 4, 5), {"pos_weight": (5,)}),
    "pos_weight_full": ((3, 4, 5), {"pos_weight": (3, 4, 5)}),
    "weight_and_pos_weight": ((3, 4, 5), {"weight": (3, 1, 5), "pos_weight": (5,)}),
    "1d": ((17,), {"weight": (17,)}),
}
BCE_OPTIONS = [k for k, (_, o) in OPTIONS.items() if "pos_weight" not in o]


def make(rng, option, kind, dtype=np.float64):
    shape, opts = OPTIONS[option]
    x = (probabilities(rng, shape, dtype=dtype) if kind == "bce"
         else logits(rng, shape, dtype=dtype))
    t = binary_targets(rng, shape, dtype=dtype)
    kw = {}
    for k, s in opts.items():
        kw[k] = (np.asarray(rng.uniform(0.3, 2.0), dtype=dtype) if s == "scalar"
                 else rng.uniform(0.3, 2.0 if k == "weight" else 4.0, s).astype(dtype))
    return x, t, kw


def fn_of(mod, kind):
    return mod.binary_cross_entropy if kind == "bce" else mod.binary_cross_entropy_with_logits


def wmax(kw):
    m = 1.0
    for v in kw.values():
        m *= float(np.max(v))
    return m


PARAMS = ([pytest.param("bce", o, id=f"bce-{o}") for o in BCE_OPTIONS]
          + [pytest.param("logits", o, id=f"logits-{o}") for o in OPTIONS])


# ------------------------------------------------------------------ vs the reference

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind,option", PARAMS)
def test_float64_matches_reference(kind, option, reduction, rng):
    x, t, kw = make(rng, option, kind)
    loss, grad = fn_of(fastloss, kind)(x, t, reduction=reduction, return_grad=True, **kw)
    rloss, rgrad = fn_of(ref, kind)(x, t, reduction=reduction, return_grad=True, **kw)
    assert np.shape(loss) == np.shape(rloss)
    # losses are sums of non-negative terms (no cancellation): rtol; the atol floor covers
    # soft targets, where a loss is ~eps * |x| accurate in absolute terms.
    np.testing.assert_allclose(loss, rloss, rtol=RTOL64, atol=1e-13 * wmax(kw))
    # gradients are differences (sigmoid(x) - y, p - y): absolute error ~eps * magnitude
    np.testing.assert_allclose(grad, rgrad, rtol=RTOL64, atol=1e-12 * np.max(np.abs(rgrad)))


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind,option", PARAMS)
def test_float32_within_few_ulp_of_exact(impl, kind, option, reduction, rng):
    """float32 against the float64 reference on the same float32 data."""
    mod = get_impl(impl)
    x, t, kw = make(rng, option, kind, dtype=np.float32)
    loss, grad = fn_of(mod, kind)(x, t, reduction=reduction, return_grad=True, **kw)
    kw64 = {k: v.astype(np.float64) for k, v in kw.items()}
    eloss, egrad = fn_of(ref, kind)(x.astype(np.float64), t.astype(np.float64),
                                    reduction=reduction, return_grad=True, **kw64)
    w = wmax(kw)
    gs = 1.0 / x.size if reduction == "mean" else 1.0
    if kind == "bce":
        x64 = x.astype(np.float64)
        # loss: y log p + (1 - y) log(1 - p): relative accuracy, at least ~w ulp(1);
        # gradient (p - y) / (p (1 - p)): the difference p - y is exact to ulp(1), so the
        # error is relative to w / (p (1 - p)).
        lscale = w
        gscale = w * gs / (x64 * (1 - x64))
    else:
        # softplus(+-x): error ~ulp(|x|) (|x| + 1 magnitude); gradient sigmoid(x) - y at
        # the magnitude of the weights.
        lscale = w * (np.abs(x.astype(np.float64)) + 1.0)
        gscale = w * gs
    if reduction == "none":
        assert_ulp_close(loss, eloss, 4, scale=lscale)
    else:
        assert type(loss) is np.float32
        np.testing.assert_allclose(loss, eloss, rtol=1e-6)
    assert_ulp_close(grad, egrad, 4, scale=gscale)


# ------------------------------------------------------------------ finite differences

@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind,option", PARAMS)
def test_gradient_matches_finite_differences(impl, kind, option, reduction, rng):
    mod = get_impl(impl)
    x, t, kw = make(rng, option, kind)
    f = fn_of(mod, kind)
    _, grad = f(x, t, reduction=reduction, return_grad=True, **kw)
    assert_grad_fd(lambda z: np.sum(f(z, t, reduction=reduction, **kw)), grad, x,
                   pick_coords(x.shape, rng, k=10))


# ------------------------------------------------------------------ vs torch

def _torch_bce(torch, kind, x, t, kw, reduction):
    F = torch.nn.functional
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(t, dtype=torch.float64)
    tk = {k: torch.tensor(np.asarray(v), dtype=torch.float64) for k, v in kw.items()}
    if kind == "bce":
        loss = F.binary_cross_entropy(xt, tt, reduction=reduction, **tk)
    else:
        loss = F.binary_cross_entropy_with_logits(xt, tt, reduction=reduction, **tk)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind,option", PARAMS)
def test_matches_torch(impl, kind, option, reduction, rng):
    torch = pytest.importorskip("torch", reason="torch not installed: cross-checks against PyTorch skipped")
    mod = get_impl(impl)
    x, t, kw = make(rng, option, kind)
    loss, grad = fn_of(mod, kind)(x, t, reduction=reduction, return_grad=True, **kw)
    tloss, tgrad = _torch_bce(torch, kind, x, t, kw, reduction)
    # torch's (1 - y) x + lw softplus(-x) cancels for x < 0, y < 1 (absolute error ~eps |x|),
    # hence the absolute floor tied to max|x|; otherwise agreement to ~1e-15.
    np.testing.assert_allclose(loss, tloss, rtol=1e-10, atol=1e-14 * np.max(np.abs(x)) * wmax(kw))
    np.testing.assert_allclose(grad, tgrad, rtol=1e-10, atol=1e-14 * np.max(np.abs(tgrad)))


# ------------------------------------------------------------------ edge cases

@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_probabilities_exactly_zero_and_one(impl, dtype):
    """torch's clamps: log is clamped at -100, the gradient's denominator at 1e-12.
      p=0, y=0: -(0 * -100 + 1 * log1p(-0)) = 0;          grad (0 - 0) / 1e-12 = 0
      p=0, y=1: -(1 * max(log 0, -100)) = 100;             grad -1 / 1e-12 = -1e12
      p=1, y=1: 0;                                         grad 0
      p=1, y=0: -(1 * max(log1p(-1), -100)) = 100;         grad  1 / 1e-12 = 1e12
      p=0, y=0.3: -(0.3 * -100 + 0.7 * 0) = 30;            grad -0.3 / 1e-12 = -3e11
      p=1, y=0.3: -(0.3 * 0 + 0.7 * -100) = 70;            grad  0.7 / 1e-12 = 7e11
    (1e-12 is rounded to the computing dtype, as torch does: hence a few ulp in float32.)"""
    mod = get_impl(impl)
    p = np.array([0, 0, 1, 1, 0, 1], dtype=dtype)
    y = np.array([0, 1, 1, 0, 0.3, 0.3], dtype=dtype)
    loss, grad = mod.binary_cross_entropy(p, y, reduction="none", return_grad=True)
    assert_ulp_close(loss, np.array([0, 100, 0, 100, 30, 70.0]), 2)
    assert_ulp_close(grad, np.array([0, -1e12, 0, 1e12, -3e11, 7e11]), 4)


@pytest.mark.parametrize("impl", implementations())
def test_probabilities_zero_and_one_match_torch(impl):
    torch = pytest.importorskip("torch", reason="torch not installed: cross-checks against PyTorch skipped")
    mod = get_impl(impl)
    p = np.array([0, 0, 1, 1, 0, 1, 1e-300, 1 - 1e-16, 0.5])
    y = np.array([0, 1, 1, 0, 0.3, 0.3, 1.0, 0.0, 0.5])
    w = np.linspace(0.5, 2.0, p.size)
    for red in ("none", "sum", "mean"):
        loss, grad = mod.binary_cross_entropy(p, y, weight=w, reduction=red, return_grad=True)
        tloss, tgrad = _torch_bce(torch, "bce", p, y, {"weight": w}, red)
        np.testing.assert_allclose(loss, tloss, rtol=1e-13)
        # torch's backward clamps at the float32 constant 1e-12f = 9.99999996e-13, the
        # issue's formula at 1e-12: a 4e-9 relative difference at the clamped entries.
        np.testing.assert_allclose(grad, tgrad, rtol=1e-8)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_logits_plus_minus_1e4(impl, dtype):
    """loss = (1 - y) softplus(x) + y softplus(-x), grad = sigmoid(x) - y, with
    softplus(1e4) = 1e4 + log1p(e^-1e4) = 1e4 and softplus(-1e4) = e^-1e4 = 0 in floating
    point, sigmoid(1e4) = 1, sigmoid(-1e4) = 0:
      x=+1e4 y=0: 1e4, 1      x=+1e4 y=1: 0, 0      x=+1e4 y=0.25: 7500, 0.75
      x=-1e4 y=0: 0, 0        x=-1e4 y=1: 1e4, -1   x=-1e4 y=0.25: 2500, -0.25"""
    mod = get_impl(impl)
    x = np.array([1e4, 1e4, 1e4, -1e4, -1e4, -1e4], dtype=dtype)
    y = np.array([0, 1, 0.25, 0, 1, 0.25], dtype=dtype)
    loss, grad = mod.binary_cross_entropy_with_logits(x, y, reduction="none", return_grad=True)
    assert_ulp_close(loss, np.array([1e4, 0, 7500, 0, 1e4, 2500]), 2)
    assert_ulp_close(grad, np.array([1, 0, 0.75, 0, -1, -0.25]), 2, scale=1.0)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_logits_plus_minus_inf_give_the_limits(impl, dtype):
    """At x = +-inf the loss and gradient are their limits as x -> +-inf (from the same
    formulas as above; the stable form never forms 0 * inf):
      x=+inf y=0: inf, 1      x=+inf y=1: 0, 0      x=+inf y=0.25: inf, 0.75
      x=-inf y=0: 0, 0        x=-inf y=1: inf, -1   x=-inf y=0.25: inf, -0.25
    (torch's non-symmetric form returns NaN for (+inf, 1) and (-inf, 0); the issue asks for
    the stable softplus form, which has these limits.)"""
    mod = get_impl(impl)
    inf = np.inf
    x = np.array([inf, inf, inf, -inf, -inf, -inf], dtype=dtype)
    y = np.array([0, 1, 0.25, 0, 1, 0.25], dtype=dtype)
    loss, grad = mod.binary_cross_entropy_with_logits(x, y, reduction="none", return_grad=True)
    np.testing.assert_array_equal(loss, np.array([inf, 0, inf, 0, inf, inf], dtype=dtype))
    np.testing.assert_array_equal(grad, np.array([1, 0, 0.75, 0, -1, -0.25], dtype=dtype))
    # with pos_weight 3: the positive term is 3 y softplus(-x), its gradient -3 y sigmoid(-x)
    loss, grad = mod.binary_cross_entropy_with_logits(x, y, pos_weight=np.array(3.0, dtype),
                                                      reduction="none", return_grad=True)
    np.testing.assert_array_equal(loss, np.array([inf, 0, inf, 0, inf, inf], dtype=dtype))
    np.testing.assert_array_equal(grad, np.array([1, 0, 0.75, 0, -3, -0.75], dtype=dtype))


@pytest.mark.parametrize("impl", implementations())
def test_bce_with_logits_moderately_negative_logits_no_cancellation(impl):
    """x = -40, y = 0: loss = softplus(-40) = log1p(e^-40) = 4.248354255291589e-18 (to full
    precision, log1p(e) ~ e - e^2/2 with e = e^-40); a cancelling form (x + softplus(-x))
    returns 0 here."""
    mod = get_impl(impl)
    loss = mod.binary_cross_entropy_with_logits(np.array([-40.0]), np.array([0.0]), reduction="sum")
    e = np.exp(-40.0)
    np.testing.assert_allclose(loss, e - e * e / 2, rtol=1e-14)


@pytest.mark.parametrize("impl", implementations())
def test_bce_matches_logits_version_through_sigmoid(impl, rng):
    """binary_cross_entropy(sigmoid(x)) = binary_cross_entropy_with_logits(x) for moderate x
    (no clamp active); the gradients differ by the chain factor p (1 - p)."""
    mod = get_impl(impl)
    x = logits(rng, (40,), scale=2.0)
    y = binary_targets(rng, (40,))
    p = 1 / (1 + np.exp(-x))
    l1, g1 = mod.binary_cross_entropy(p, y, reduction="none", return_grad=True)
    l2, g2 = mod.binary_cross_entropy_with_logits(x, y, reduction="none", return_grad=True)
    np.testing.assert_allclose(l1, l2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g1 * p * (1 - p), g2, rtol=1e-10, atol=1e-15)


MAGNITUDES = np.concatenate([[0.0], 10.0 ** np.arange(-30, 5), 3.0 * 10.0 ** np.arange(-30, 3)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_logits_every_order_of_magnitude(dtype):
    """Logits +-0, +-1e-30 ... +-1e4 against hard and soft targets, float64 exact values
    from the reference on the same data: loss within 4 ulp of max(loss, ulp(|x| + 1)
    magnitude), gradient within 4 ulp at magnitude 1."""
    x = np.concatenate([MAGNITUDES, -MAGNITUDES]).astype(dtype)
    x, y = np.meshgrid(x, np.array([0.0, 1.0, 0.3, 0.999], dtype), indexing="ij")
    loss, grad = fastloss.binary_cross_entropy_with_logits(x, y, reduction="none", return_grad=True)
    eloss, egrad = ref.binary_cross_entropy_with_logits(x.astype(np.float64), y.astype(np.float64),
                                                        reduction="none", return_grad=True)
    # hard targets: no cancellation anywhere (sums of positive terms): plain relative ulps
    hard = (y == 0) | (y == 1)
    assert_ulp_close(loss[hard], eloss[hard], 4)
    assert_ulp_close(grad[hard], egrad[hard], 4)
    # soft targets: (1 - y) softplus(x) + y softplus(-x) with rounded y-products
    soft = ~hard
    assert_ulp_close(loss[soft], eloss[soft], 4, scale=np.abs(x[soft]) + 1)
    assert_ulp_close(grad[soft], egrad[soft], 4, scale=1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_weight_times_infinite_logit_is_zero_in_package_and_reference(dtype):
    """Found by hypothesis in CI: weight 0 at x = +-inf with a soft label.  The term is
    inf there, and its weighted limit is 0 (torch: 0 * inf = NaN)."""
    x = np.array([np.inf, -np.inf, np.inf, 1.0], dtype)
    y = np.array([0.968, 0.25, 0.968, 0.5], dtype)
    w = np.array([0.0, 0.0, 2.0, 0.0], dtype)
    for mod in (fastloss, ref):
        loss, grad = mod.binary_cross_entropy_with_logits(x, y, weight=w, reduction="none",
                                                          return_grad=True)
        assert loss[0] == 0 and loss[1] == 0 and loss[3] == 0, (mod.__name__, loss)
        assert loss[2] == np.inf, (mod.__name__, loss)  # 2 * (1 - y) * inf
        assert np.all(grad[[0, 1, 3]] == 0), (mod.__name__, grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("weights", ["none", "weight", "pos_weight", "both"])
@pytest.mark.parametrize("odd", [False, True], ids=["finite", "special"])
def test_bce_with_logits_blocks_match_single_elements_bitwise(odd, weights, dtype):
    """BCE with logits runs whole vectors in blocks of 4 (64 float32 elements on AVX-512)
    with one range check, and a block holding |x| > 87, inf or NaN vector by vector: every
    element must get the same bits as when it is computed alone, with and without
    weights (the unweighted form is a different formula)."""
    rng = np.random.default_rng(seed_of("bcel-blocks", odd, weights, dtype.__name__))
    n = 700
    x = (rng.standard_normal(n) * 6).astype(dtype)
    y = np.where(rng.random(n) < 0.3, rng.random(n), rng.random(n) < 0.5).astype(dtype)
    if odd:
        idx = rng.permutation(np.arange(n // 2, n))[:12]
        x[idx] = [87.5, -87.5, 100.0, -100.0, 1e30, -1e30, np.inf, -np.inf, np.nan, 86.99,
                  -86.99, -0.0]
    kw = {}
    if weights in ("weight", "both"):
        kw["weight"] = rng.uniform(0, 2, n).astype(dtype)
    if weights in ("pos_weight", "both"):
        kw["pos_weight"] = rng.uniform(0, 3, n).astype(dtype)
    loss, grad = fastloss.binary_cross_entropy_with_logits(x, y, reduction="none",
                                                          return_grad=True, **kw)
    for i in range(n):
        kwi = {k: v[i:i + 1] for k, v in kw.items()}
        li, gi = fastloss.binary_cross_entropy_with_logits(x[i:i + 1], y[i:i + 1], reduction="none",
                                                          return_grad=True, **kwi)
        np.testing.assert_array_equal(li, loss[i:i + 1], err_msg=f"element {i}: x={x[i]!r} y={y[i]!r}")
        np.testing.assert_array_equal(gi, grad[i:i + 1], err_msg=f"element {i}: x={x[i]!r} y={y[i]!r}")


@pytest.mark.parametrize("hard", [True, False], ids=["hard", "soft"])
def test_bce_with_logits_float32_blocks_within_4_ulp(hard):
    """Issue 4: float32 losses within 4 ulp of the correctly rounded value, over whole
    blocks, |x| up to 90 (hard labels: plain relative ulps for loss and gradient; soft
    labels: the gradient sigmoid(x) - y at the magnitude of its terms, 1)."""
    rng = np.random.default_rng(seed_of("bcel-4ulp", hard))
    n = 1 << 16
    x = np.concatenate([rng.standard_normal(n // 2) * 4,
                        rng.uniform(-90, 90, n // 2)]).astype(np.float32)
    y = (rng.random(n) < 0.5) if hard else rng.random(n)
    y = y.astype(np.float32)
    loss, grad = fastloss.binary_cross_entropy_with_logits(x, y, reduction="none", return_grad=True)
    eloss, egrad = ref.binary_cross_entropy_with_logits(x.astype(np.float64), y.astype(np.float64),
                                                       reduction="none", return_grad=True)
    tiny = np.finfo(np.float32).tiny
    assert_ulp_close(loss, eloss, 4, atol=tiny)
    assert_ulp_close(grad, egrad, 4, scale=None if hard else 1.0, atol=tiny)


@pytest.mark.parametrize("fn", ["binary_cross_entropy_with_logits", "sigmoid_focal_loss"])
def test_large_calls_streaming_stores_match_small_calls_bitwise(fn):
    """Inputs of 8 MB or more go to the kernels in 1 MiB blocks, which write their whole
    vector blocks with streaming (non-temporal) stores (csrc/binary.c); smaller calls use
    regular stores.  Float32, 3M + 5 elements (12 MB, a tail past the last block) with hard
    and soft labels and a few logits beyond the fast range: the same loss and gradient
    bits as 64K-element calls, and the same sum to rounding."""
    rng = np.random.default_rng(seed_of("streaming", fn))
    n = 3_000_005
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    y = (rng.random(n) < 0.5).astype(np.float32)
    y[::97] = rng.random(y[::97].size)  # soft labels: the general path in some blocks
    x[::1009] = 100.0
    assert x.nbytes >= 8 << 20
    f = getattr(fastloss, fn)
    loss, grad = f(x, y, reduction="none", return_grad=True)
    step = 1 << 16
    for i in range(0, n, step):
        li, gi = f(x[i:i + step], y[i:i + step], reduction="none", return_grad=True)
        np.testing.assert_array_equal(li, loss[i:i + step], err_msg=f"elements {i}..")
        np.testing.assert_array_equal(gi, grad[i:i + step], err_msg=f"elements {i}..")
    total = f(x, y, reduction="sum")
    np.testing.assert_allclose(total, np.sum(loss, dtype=np.float64), rtol=1e-6)
