"""sigmoid_focal_loss (torchvision semantics) and softmax_focal_loss: against the
reference, finite differences, the torch formulas written out, the gamma = 0 identities,
and large logits with gamma in {0, 0.5, 2, 5}."""
import numpy as np
import pytest

import fastloss
from conftest import (RTOL64, assert_close, assert_grad_fd, assert_ulp_close, binary_targets, class_labels,
                      get_impl, implementations, logits, pick_coords, seed_of)

ref = fastloss.reference
GAMMAS = [0.0, 0.5, 2.0, 5.0]

# ================================================================== sigmoid focal

ALPHAS = {"a0.25": 0.25, "aNone": None, "a-1": -1.0, "a0.75": 0.75, "a0": 0.0, "a1": 1.0}
SIG_PARAMS = [pytest.param(a, g, id=f"{an}-g{g:g}") for an, a in ALPHAS.items() for g in GAMMAS]


def sig_make(rng, dtype=np.float64, shape=(8, 5), scale=3.0, clip=None):
    x = logits(rng, shape, scale=scale)
    if clip:
        x = np.clip(x, -clip, clip)
    return x.astype(dtype), binary_targets(rng, shape, dtype=dtype)


def alpha_t(alpha, y):
    if alpha is None or alpha < 0:
        return np.ones_like(y)
    return alpha * y + (1 - alpha) * (1 - y)


def sig_scales(x, y, alpha, gamma):
    """float64 magnitudes of the terms making up the loss and its gradient (for ulp errors
    that are meaningful where soft labels make the gradient a cancelling difference):
    loss = a_t ce q^g, with ce's own rounding ~ulp(|x| + 1);
    grad = a_t q^g ((1 - y) s(x) - y s(-x) + g ce (1 - 2y) s(x) s(-x) / q)."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    at = alpha_t(alpha, y)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        sp, sn = 1 / (1 + np.exp(-x)), 1 / (1 + np.exp(x))
        q = (1 - y) * sp + y * sn
        qg = q ** gamma
        ce = (1 - y) * np.logaddexp(0, x) + y * np.logaddexp(0, -x)
        lscale = at * (np.abs(x) + 1) * qg
        # where q underflows to 0 the gamma term's limit is 0 (ce -> 0 faster)
        ratio = np.where(q > 0, ce * sp * sn / q, 0.0)
        gscale = at * qg * (q + gamma * ratio)
    return lscale, gscale


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("alpha,gamma", SIG_PARAMS)
def test_sigmoid_float64_matches_reference(alpha, gamma, reduction, rng):
    x, y = sig_make(rng)
    loss, grad = fastloss.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction=reduction,
                                             return_grad=True)
    rloss, rgrad = ref.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction=reduction,
                                          return_grad=True)
    lscale, gscale = sig_scales(x, y, alpha, gamma)
    gs = 1 / x.size if reduction == "mean" else 1.0
    # both evaluate sums of positive terms for the loss: 1e-12 relative, with an absolute
    # floor at 1e-12 of the terms' magnitude (soft labels: ce of size ~|x| ulp-accurate).
    if reduction == "none":
        assert_close(loss, rloss, rtol=RTOL64, atol=1e-12 * lscale)
    else:
        np.testing.assert_allclose(loss, rloss, rtol=RTOL64, atol=1e-12 * np.sum(lscale) * gs)
    # gradient: a difference of terms for soft labels -> absolute error at their magnitude
    assert_close(grad, rgrad, rtol=RTOL64, atol=1e-12 * gscale * gs)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("alpha,gamma", SIG_PARAMS)
def test_sigmoid_float32_within_few_ulp_of_exact(impl, alpha, gamma, reduction, rng):
    mod = get_impl(impl)
    x, y = sig_make(rng, dtype=np.float32)
    loss, grad = mod.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction=reduction,
                                        return_grad=True)
    eloss, egrad = ref.sigmoid_focal_loss(x.astype(np.float64), y.astype(np.float64), alpha=alpha,
                                          gamma=gamma, reduction=reduction, return_grad=True)
    lscale, gscale = sig_scales(x, y, alpha, gamma)
    gs = 1 / x.size if reduction == "mean" else 1.0
    # q = 1 - p_t is a sum of two sigmoids (relative error <= ~2 ulp) and q^gamma
    # multiplies that by gamma: allow 4 + 2 gamma ulp
    maxulp = 4 + 2 * gamma
    if reduction == "none":
        assert_ulp_close(loss, eloss, maxulp, scale=lscale)
    else:
        assert type(loss) is np.float32
        np.testing.assert_allclose(loss, eloss, rtol=1e-6)
    assert_ulp_close(grad, egrad, maxulp, scale=gscale * gs)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("alpha,gamma", SIG_PARAMS)
def test_sigmoid_gradient_matches_finite_differences(impl, alpha, gamma, reduction, rng):
    mod = get_impl(impl)
    x, y = sig_make(rng)
    _, grad = mod.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction=reduction,
                                     return_grad=True)

    def f(z):
        return np.sum(mod.sigmoid_focal_loss(z, y, alpha=alpha, gamma=gamma, reduction=reduction))

    assert_grad_fd(f, grad, x, pick_coords(x.shape, rng, k=12))


def torchvision_sigmoid_focal(torch, x, y, alpha, gamma, reduction):
    """torchvision.ops.sigmoid_focal_loss, written out (torchvision is not a dependency)."""
    F = torch.nn.functional
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    yt = torch.tensor(y, dtype=torch.float64)
    p = torch.sigmoid(xt)
    ce = F.binary_cross_entropy_with_logits(xt, yt, reduction="none")
    p_t = p * yt + (1 - p) * (1 - yt)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha is not None and alpha >= 0:
        loss = loss * (alpha * yt + (1 - alpha) * (1 - yt))
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("alpha,gamma", SIG_PARAMS)
def test_sigmoid_matches_torchvision_formula(impl, alpha, gamma, reduction, rng):
    torch = pytest.importorskip("torch", reason="torch not installed: cross-checks against PyTorch skipped")
    mod = get_impl(impl)
    # |x| <= 8: the written-out formula forms 1 - p_t by subtraction, which loses
    # eps / (1 - p_t) relative accuracy; with 1 - p_t >= sigmoid(-8) = 3.4e-4 that is
    # < 1e-12 relative (times gamma), inside the 1e-10 tolerance.
    x, y = sig_make(rng, clip=8.0)
    loss, grad = mod.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction=reduction,
                                        return_grad=True)
    tloss, tgrad = torchvision_sigmoid_focal(torch, x, y, alpha, gamma, reduction)
    np.testing.assert_allclose(loss, tloss, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(grad, tgrad, rtol=1e-10, atol=1e-12 * np.max(np.abs(tgrad)))


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("alpha", list(ALPHAS.values()), ids=list(ALPHAS))
def test_sigmoid_gamma0_is_alpha_weighted_bce_with_logits(impl, alpha, dtype, reduction, rng):
    """(1 - p_t)^0 = 1, so the focal loss is ce * alpha_t = BCE-with-logits with element
    weight alpha_t = alpha y + (1 - alpha)(1 - y) (no weight when alpha is None or < 0)."""
    mod = get_impl(impl)
    x, y = sig_make(rng, dtype=dtype)
    loss, grad = mod.sigmoid_focal_loss(x, y, alpha=alpha, gamma=0.0, reduction=reduction,
                                        return_grad=True)
    w = None if alpha is None or alpha < 0 else (alpha * y + (1 - alpha) * (1 - y)).astype(dtype)
    bloss, bgrad = mod.binary_cross_entropy_with_logits(x, y, weight=w, reduction=reduction,
                                                        return_grad=True)
    at = alpha_t(alpha, y.astype(np.float64))
    gs = 1 / x.size if reduction == "mean" else 1.0
    # same formula, possibly a different evaluation order: 2 ulp at the terms' magnitude
    # (alpha_t (|x| + 1) for the loss, alpha_t for the gradient, whose soft-label
    # difference cancels); reductions to 1e-14 (float64) / 1e-6 (float32) relative
    if reduction == "none":
        assert_ulp_close(loss, bloss, 2, scale=at * (np.abs(x) + 1))
    else:
        np.testing.assert_allclose(loss, bloss, rtol=1e-14 if dtype == np.float64 else 1e-6)
    assert_ulp_close(grad, bgrad, 2, scale=at * gs)


def _sigmoid_focal_hard_exact(x, y, alpha, gamma):
    """Independent float64 evaluation for hard labels, in log space.  With s = x (y = 0) or
    -x (y = 1): ce = softplus(s), 1 - p_t = sigmoid(s), so
      loss = a_t softplus(s) sigmoid(s)^g
      d loss / ds = a_t sigmoid(s)^g (sigmoid(s) + g softplus(s) sigmoid(-s))
    (product rule with d sigmoid(s)^g / ds = g sigmoid(s)^g sigmoid(-s)); dx = ds for y = 0,
    -ds for y = 1.  softplus(s) = logaddexp(0, s) = log1p(e^s) for s < 0."""
    s = np.where(y == 0, x, -x)
    with np.errstate(over="ignore"):  # exp(1e4) = inf gives the limits 1 / inf = 0
        sp = np.logaddexp(0.0, s)
        sig_s = 1 / (1 + np.exp(-s))   # each a few ulp accurate (no exp of a rounded log)
        sig_ms = 1 / (1 + np.exp(s))
    F = sig_s ** gamma
    at = alpha_t(alpha, y)
    loss = at * sp * F
    dds = at * F * (sig_s + gamma * sp * sig_ms)
    return loss, np.where(y == 0, dds, -dds)


BIG = [30.0, 50.0, 100.0, 700.0, 1e4]


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("alpha", [0.25, None], ids=["a0.25", "aNone"])
@pytest.mark.parametrize("gamma", GAMMAS, ids=[f"g{g:g}" for g in GAMMAS])
def test_sigmoid_large_logits_hard_labels(impl, gamma, alpha, dtype):
    """Confidently right and confidently wrong predictions at |x| up to 1e4: finite, and
    equal to the log-space evaluation above.  gamma = 0.5 is the known NaN trap of the
    naive autograd ((1 - p_t)^(gamma - 1) = inf times 0)."""
    mod = get_impl(impl)
    xs = np.array(BIG + [-b for b in BIG])
    x = np.concatenate([xs, xs])
    y = np.concatenate([np.zeros(xs.size), np.ones(xs.size)])
    loss, grad = mod.sigmoid_focal_loss(x.astype(dtype), y.astype(dtype), alpha=alpha, gamma=gamma,
                                        reduction="none", return_grad=True)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    eloss, egrad = _sigmoid_focal_hard_exact(x, y, alpha, gamma)
    # relative accuracy for these sums of positive terms (4 + 2 gamma ulp: q^gamma scales
    # q's relative error by gamma).  Results below the normal range (e.g. e^-100 in
    # float32) may be flushed to 0, as NumPy's SIMD float32 exp does: atol = smallest normal.
    tiny = np.finfo(dtype).tiny
    assert_ulp_close(loss, eloss, 4 + gamma * 2, atol=tiny)
    assert_ulp_close(grad, egrad, 4 + gamma * 2, atol=tiny)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("gamma", GAMMAS, ids=[f"g{g:g}" for g in GAMMAS])
def test_sigmoid_large_logits_soft_labels_finite(impl, gamma, dtype):
    """Soft labels at large |x|: loss ~ min(y, 1 - y)^g y |x| (finite), gradient finite;
    float64 equals the reference."""
    mod = get_impl(impl)
    x = np.array(BIG + [-b for b in BIG] + [0.0, 1.0, -1.0])
    y = np.array([0.3, 0.7, 0.01, 0.99, 0.5] * 2 + [0.3, 0.6, 0.2])
    loss, grad = mod.sigmoid_focal_loss(x.astype(dtype), y.astype(dtype), gamma=gamma,
                                        reduction="none", return_grad=True)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    assert np.all(loss > 0)
    if impl == "fastloss" and dtype == np.float64:
        rl, rg = ref.sigmoid_focal_loss(x, y, gamma=gamma, reduction="none", return_grad=True)
        np.testing.assert_allclose(loss, rl, rtol=1e-12)
        np.testing.assert_allclose(grad, rg, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("gamma", GAMMAS, ids=[f"g{g:g}" for g in GAMMAS])
def test_sigmoid_infinite_logits_give_the_limits(impl, gamma):
    """x = +-inf: p = 1 or 0.  Right (x=+inf, y=1 / x=-inf, y=0): ce -> 0 so loss 0 and
    gradient 0.  Wrong (x=+inf, y=0 / x=-inf, y=1): ce -> inf, 1 - p_t = 1: loss +inf;
    gradient a_t ((1 - y) - y) * 1 = +-a_t (the gamma term ce q'/q -> 0)."""
    mod = get_impl(impl)
    inf = np.inf
    x = np.array([inf, -inf, inf, -inf])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    loss, grad = mod.sigmoid_focal_loss(x, y, alpha=0.25, gamma=gamma, reduction="none",
                                        return_grad=True)
    np.testing.assert_array_equal(loss, [0.0, 0.0, inf, inf])
    np.testing.assert_array_equal(grad, [0.0, 0.0, 0.75, -0.25])


# ================================================================== softmax focal

SM_ALPHAS = ["none", "scalar", "vector"]
LAYOUTS = {"NC": ((12, 6), 1), "NCHW": ((2, 4, 3, 3), 1), "NHWC-axis-1": ((2, 3, 3, 4), -1),
           "C-1d": ((5,), 1)}
SM_PARAMS = [pytest.param(lay, a, g, ign, id=f"{lay}-{a}-g{g:g}{'-ignore' if ign else ''}")
             for lay in LAYOUTS for a in SM_ALPHAS for g in GAMMAS for ign in (False, True)
             if not (ign and lay == "C-1d")]


def sm_make(rng, layout, alpha_kind, ignore, dtype=np.float64, clip=None):
    shape, axis = LAYOUTS[layout]
    ax = axis % len(shape) if len(shape) > 1 else 0
    C = shape[ax]
    x = logits(rng, shape)
    if clip:
        x = np.clip(x, -clip, clip)
    t = np.array(class_labels(rng, shape[:ax] + shape[ax + 1:], C, ignore_frac=0.3 if ignore else 0.0))
    if ignore and np.all(t == -100):
        t.flat[0] = 1
    alpha = {"none": None, "scalar": 0.4, "vector": rng.uniform(0.2, 1.0, C).astype(dtype)}[alpha_kind]
    return x.astype(dtype), t, {"alpha": alpha, "axis": axis}


def sm_denominator(t, reduction):
    return max(np.count_nonzero(t != -100), 1) if reduction == "mean" else 1


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout,alpha_kind,gamma,ignore", SM_PARAMS)
def test_softmax_float64_matches_reference(layout, alpha_kind, gamma, ignore, reduction, rng):
    x, t, kw = sm_make(rng, layout, alpha_kind, ignore)
    loss, grad = fastloss.softmax_focal_loss(x, t, gamma=gamma, reduction=reduction,
                                             return_grad=True, **kw)
    rloss, rgrad = ref.softmax_focal_loss(x, t, gamma=gamma, reduction=reduction,
                                          return_grad=True, **kw)
    # -log p_y = logsumexp(x) - x_y cancels: absolute rounding ~eps * max|x| (times alpha);
    # the gradient (p - onehot) F: ~eps times its largest entry.
    np.testing.assert_allclose(loss, rloss, rtol=RTOL64, atol=1e-12 * (np.max(np.abs(x)) + 1))
    np.testing.assert_allclose(grad, rgrad, rtol=RTOL64, atol=1e-12 * np.max(np.abs(rgrad)))


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout,alpha_kind,gamma,ignore", SM_PARAMS)
def test_softmax_float32_within_few_ulp_of_exact(impl, layout, alpha_kind, gamma, ignore,
                                                 reduction, rng):
    mod = get_impl(impl)
    x, t, kw = sm_make(rng, layout, alpha_kind, ignore, dtype=np.float32)
    loss, grad = mod.softmax_focal_loss(x, t, gamma=gamma, reduction=reduction, return_grad=True,
                                        **kw)
    kw64 = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    eloss, egrad = ref.softmax_focal_loss(x.astype(np.float64), t, gamma=gamma, reduction=reduction,
                                          return_grad=True, **kw64)
    ax = kw["axis"] % x.ndim if x.ndim > 1 else 0
    # row loss carries ~ulp(max|x_row| + log C) (logsumexp), gradient ~ulp(1) (times
    # alpha and the mean's 1/denominator); (1 - p_y)^gamma adds gamma ulp
    lscale = np.max(np.abs(x.astype(np.float64)), axis=ax) + np.log(x.shape[ax]) + 1
    gscale = 1.0 / sm_denominator(t, reduction)
    maxulp = 4 + 2 * gamma
    if reduction == "none":
        assert_ulp_close(loss, eloss, maxulp, scale=lscale)
    else:
        assert type(loss) is np.float32
        np.testing.assert_allclose(loss, eloss, rtol=1e-6, atol=1e-6 * np.mean(lscale))
    assert_ulp_close(grad, egrad, maxulp, scale=gscale)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout,alpha_kind,gamma,ignore", SM_PARAMS)
def test_softmax_gradient_matches_finite_differences(impl, layout, alpha_kind, gamma, ignore,
                                                     reduction, rng):
    mod = get_impl(impl)
    x, t, kw = sm_make(rng, layout, alpha_kind, ignore)
    _, grad = mod.softmax_focal_loss(x, t, gamma=gamma, reduction=reduction, return_grad=True, **kw)

    def f(z):
        return np.sum(mod.softmax_focal_loss(z, t, gamma=gamma, reduction=reduction, **kw))

    assert_grad_fd(f, grad, x, pick_coords(x.shape, rng, k=10))


def torch_softmax_focal(torch, x, t, alpha, gamma, reduction, axis, ignore_index=-100):
    """Softmax focal loss written out in torch: log_softmax over the class axis, gather the
    target's log-probability, loss = -a_y (1 - p_y)^gamma log p_y, ignored samples 0,
    "mean" over the non-ignored samples."""
    F = torch.nn.functional
    ax = axis % x.ndim if x.ndim > 1 else 0
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(np.asarray(t), dtype=torch.int64)
    valid = tt != ignore_index
    safe = torch.where(valid, tt, torch.zeros_like(tt))
    logp = F.log_softmax(xt, dim=ax)
    logp_y = torch.gather(logp, ax, safe.unsqueeze(ax)).squeeze(ax)
    p_y = logp_y.exp()
    loss = -((1 - p_y) ** gamma) * logp_y
    if alpha is not None:
        a = torch.as_tensor(np.asarray(alpha, dtype=np.float64))
        loss = loss * (a[safe] if a.ndim else a)
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if reduction == "mean":
        loss = loss.sum() / valid.sum()
    elif reduction == "sum":
        loss = loss.sum()
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout,alpha_kind,gamma,ignore", SM_PARAMS)
def test_softmax_matches_torch_formula(impl, layout, alpha_kind, gamma, ignore, reduction, rng):
    torch = pytest.importorskip("torch", reason="torch not installed: cross-checks against PyTorch skipped")
    mod = get_impl(impl)
    # |x| <= 6 keeps 1 - p_y (formed by subtraction in the written-out formula) >= ~1e-5:
    # its relative error eps / (1 - p_y) stays below 1e-11
    x, t, kw = sm_make(rng, layout, alpha_kind, ignore, clip=6.0)
    loss, grad = mod.softmax_focal_loss(x, t, gamma=gamma, reduction=reduction, return_grad=True, **kw)
    tloss, tgrad = torch_softmax_focal(torch, x, t, kw["alpha"], gamma, reduction, kw["axis"])
    np.testing.assert_allclose(loss, tloss, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grad, tgrad, rtol=1e-10, atol=1e-12 * np.max(np.abs(tgrad)))


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout,ignore", [pytest.param(lay, ign, id=f"{lay}{'-ignore' if ign else ''}")
                                           for lay in LAYOUTS for ign in (False, True)
                                           if not (ign and lay == "C-1d")])
def test_softmax_gamma0_alpha_none_is_cross_entropy(impl, ignore, layout, dtype, reduction, rng):
    mod = get_impl(impl)
    x, t, kw = sm_make(rng, layout, "none", ignore, dtype=dtype)
    loss, grad = mod.softmax_focal_loss(x, t, gamma=0.0, reduction=reduction, return_grad=True, **kw)
    closs, cgrad = mod.cross_entropy(x, t, axis=kw["axis"], reduction=reduction, return_grad=True)
    ax = kw["axis"] % x.ndim if x.ndim > 1 else 0
    lscale = np.max(np.abs(x.astype(np.float64)), axis=ax) + np.log(x.shape[ax])
    # the same quantity logsumexp(x) - x_y and p - onehot(y): 2 ulp at the inputs' magnitude
    if reduction == "none":
        assert_ulp_close(loss, closs, 2, scale=lscale)
    else:
        np.testing.assert_allclose(loss, closs, rtol=1e-14 if dtype == np.float64 else 1e-6)
    assert_ulp_close(grad, cgrad, 2, scale=1.0 / sm_denominator(t, reduction))


def _softmax_focal_dominant_exact(L, C, gamma):
    """Row x = (L, 0, ..., 0) (C classes), target 0, alpha None, computed in float64 with
    e = (C - 1) e^-L (the other classes' mass relative to the target's):
      log p_y = -log1p(e),  1 - p_y = e / (1 + e),  p_j = e^-L / (1 + e) for j != 0
      loss = (1 - p_y)^g log1p(e)
      grad_j = (p_j - [j = 0]) F,  F = (1 - p_y)^g (1 - g p_y log p_y / (1 - p_y)),
    where p_y log p_y / (1 - p_y) = -log1p(e) / e (-> -1 as e -> 0, taken as the limit)."""
    e = (C - 1) * np.exp(-L)
    om = e / (1 + e)
    ratio = np.log1p(e) / e if e > 0 else 1.0
    F = om ** gamma * (1 + gamma * ratio)
    loss = om ** gamma * np.log1p(e)
    pj = np.exp(-L) / (1 + e)
    grad = np.full(C, pj * F)
    grad[0] = -om * F
    return loss, grad


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("gamma", GAMMAS, ids=[f"g{g:g}" for g in GAMMAS])
@pytest.mark.parametrize("L", [20.0, 50.0, 100.0, 1e4])
def test_softmax_large_logits_finite_and_exact(impl, L, gamma, dtype):
    """A confidently right row: p_y -> 1, 1 - p_y -> 0.  gamma = 0.5 makes the naive
    gradient inf * 0; we expect finite values equal to the closed form above.  A confidently
    wrong row (target class at -L) has loss ~ L and gradient ~ (p - onehot)."""
    mod = get_impl(impl)
    C = 4
    x = np.zeros((2, C))
    x[0, 0] = L
    x[1, 1] = L
    y = np.array([0, 0])
    loss, grad = mod.softmax_focal_loss(x.astype(dtype), y, gamma=gamma, reduction="none",
                                        return_grad=True)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    el, eg = _softmax_focal_dominant_exact(L, C, gamma)
    assert_ulp_close(loss[0], el, 4 + 2 * gamma)
    assert_ulp_close(grad[0], eg, 4 + 2 * gamma)
    # wrong row x = (0, L, 0, 0), y = 0: log p_0 = -(L + log1p((C - 1) e^-L)),
    # loss = (1 - p_0)^g (-log p_0) with 1 - p_0 = -expm1(log p_0)
    lp0 = -(L + np.log1p((C - 1) * np.exp(-L)))
    assert_ulp_close(loss[1], (-np.expm1(lp0)) ** gamma * -lp0, 4 + 2 * gamma, scale=L)
    assert grad[1, 0] < 0 and grad[1, 1] > 0


@pytest.mark.parametrize("impl", implementations())
def test_softmax_alpha_scalar_equals_constant_vector(impl, rng):
    mod = get_impl(impl)
    x, t, _ = sm_make(rng, "NC", "none", True)
    a = mod.softmax_focal_loss(x, t, alpha=0.3, reduction="none", return_grad=True)
    b = mod.softmax_focal_loss(x, t, alpha=np.full(6, 0.3), reduction="none", return_grad=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("impl", implementations())
def test_softmax_mean_is_over_non_ignored_count_not_alpha(impl, rng):
    """"mean" divides by the number of non-ignored samples (alpha is not a weight in the
    denominator, unlike cross_entropy's weight)."""
    mod = get_impl(impl)
    x, t, kw = sm_make(rng, "NC", "vector", True)
    s = mod.softmax_focal_loss(x, t, reduction="sum", **kw)
    m = mod.softmax_focal_loss(x, t, reduction="mean", **kw)
    np.testing.assert_allclose(m, s / np.count_nonzero(t != -100), rtol=1e-14)


@pytest.mark.parametrize("impl", implementations())
def test_softmax_all_ignored(impl, rng):
    mod = get_impl(impl)
    x, t, kw = sm_make(rng, "NCHW", "vector", False)
    t = np.full_like(t, -100)
    loss, grad = mod.softmax_focal_loss(x, t, return_grad=True, **kw)
    assert loss == 0.0 and not np.any(grad)


@pytest.mark.parametrize("impl", implementations())
def test_softmax_one_class(impl, rng):
    """C = 1: p_y = 1, log p_y = 0 -> loss 0, gradient 0 for every gamma."""
    mod = get_impl(impl)
    x = logits(rng, (5, 1))
    for g in GAMMAS:
        loss, grad = mod.softmax_focal_loss(x, np.zeros(5, np.int64), gamma=g, reduction="none",
                                            return_grad=True)
        assert not np.any(loss) and not np.any(grad)


MAGNITUDES = np.concatenate([[0.0], 10.0 ** np.arange(-30, 5), 3.0 * 10.0 ** np.arange(-30, 3)])


@pytest.mark.parametrize("gamma", GAMMAS, ids=[f"g{g:g}" for g in GAMMAS])
def test_sigmoid_every_order_of_magnitude_matches_reference(gamma):
    """Logits +-0, +-1e-30 ... +-1e4 (and 3e-30 ... 300) against hard and soft targets:
    fastloss and the reference agree to 1e-12 relative in float64 (the gradient at the
    magnitude of its terms, see sig_scales), and both are finite."""
    x = np.concatenate([MAGNITUDES, -MAGNITUDES])
    x, y = np.meshgrid(x, [0.0, 1.0, 0.3, 0.999], indexing="ij")
    loss, grad = fastloss.sigmoid_focal_loss(x, y, gamma=gamma, reduction="none", return_grad=True)
    rloss, rgrad = ref.sigmoid_focal_loss(x, y, gamma=gamma, reduction="none", return_grad=True)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    lscale, gscale = sig_scales(x, y, 0.25, gamma)
    assert_close(loss, rloss, rtol=RTOL64, atol=1e-12 * lscale)
    assert_close(grad, rgrad, rtol=RTOL64, atol=1e-12 * gscale)


# ------------------------------------------------- sigmoid focal: the block paths

def _sig_mixed(rng, n, dtype, odd):
    """n logits ~ N(0, 6^2) with hard labels; with odd, the second half also holds soft
    and out-of-range labels, |x| > 87 (the float32 fast range), +-inf and NaN logits."""
    x = (rng.standard_normal(n) * 6).astype(dtype)
    y = (rng.random(n) < 0.5).astype(dtype)
    if odd:
        idx = rng.permutation(np.arange(n // 2, n))[:48]
        y[idx[:12]] = rng.random(12)
        y[idx[12:16]] = [1.5, -0.5, np.nan, -0.0]
        x[idx[16:24]] = [87.5, -87.5, 100.0, -100.0, 86.99, -86.99, 1e30, -1e30]
        x[idx[24:28]] = [np.inf, -np.inf, np.nan, -np.nan]
    return x, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("odd", [False, True], ids=["hard", "mixed"])
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 3.0, 5.0, 1.5])
def test_sigmoid_blocks_match_single_elements_bitwise(gamma, odd, dtype):
    """float32 calls go through blocks of 4 vectors (64 elements on AVX-512): a block whose
    labels are all hard and whose |x| <= 87 takes the float-lane path in one branch-free
    stretch; other blocks are evaluated vector by vector, the double core for the lanes
    that need it and the float-lane path for the others.  Every element must get the
    same bits as when it is computed alone."""
    rng = np.random.default_rng(seed_of("focal-blocks", gamma, odd, dtype.__name__))
    x, y = _sig_mixed(rng, 700, dtype, odd)
    kw = dict(alpha=0.25, gamma=gamma, reduction="none", return_grad=True)
    loss, grad = fastloss.sigmoid_focal_loss(x, y, **kw)
    single = [fastloss.sigmoid_focal_loss(x[i:i + 1], y[i:i + 1], **kw) for i in range(x.size)]
    np.testing.assert_array_equal(loss, np.concatenate([s[0] for s in single]))
    np.testing.assert_array_equal(grad, np.concatenate([s[1] for s in single]))


@pytest.mark.parametrize("alpha", [0.25, None])
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 3.0])
def test_sigmoid_float32_hard_labels_within_4_ulp(gamma, alpha):
    """Issue 4: float32 losses within 4 ulp of the correctly rounded value, here for the
    float-lane path (hard labels, whole blocks, |x| up to 87 and beyond) against float64;
    gradients within 4 + 2 gamma ulp (no cancellation for hard labels: plain ulps)."""
    rng = np.random.default_rng(seed_of("focal-4ulp", gamma, alpha))
    n = 1 << 16
    x = np.concatenate([rng.standard_normal(n // 2) * 4,
                        rng.uniform(-90, 90, n // 2)]).astype(np.float32)
    y = (rng.random(n) < 0.5).astype(np.float32)
    kw = dict(alpha=alpha, gamma=gamma, reduction="none", return_grad=True)
    loss, grad = fastloss.sigmoid_focal_loss(x, y, **kw)
    eloss, egrad = ref.sigmoid_focal_loss(x.astype(np.float64), y.astype(np.float64), **kw)
    tiny = np.finfo(np.float32).tiny  # below the normal range ulps are absolute
    assert_ulp_close(loss, eloss, 4, atol=tiny)
    assert_ulp_close(grad, egrad, 4 + 2 * gamma, atol=tiny)
