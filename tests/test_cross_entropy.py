"""fastloss.cross_entropy: against the NumPy reference (both dtypes, every reduction,
option and layout), against finite differences, against torch F.cross_entropy, and on
the edge cases of issue 3."""
import numpy as np
import pytest

import fastloss
from conftest import (RTOL64, assert_grad_fd, assert_ulp_close, class_labels, class_probs,
                      get_impl, implementations, logits, pick_coords, seed_of)

ref = fastloss.reference

# (shape, axis) of the logits; the class axis is `axis` (1-D input: axis 0).
LAYOUTS = {
    "NC": ((13, 7), 1),
    "NCHW": ((3, 5, 4, 2), 1),
    "NHWC-axis-1": ((3, 4, 2, 5), -1),
    "C-1d": ((6,), 1),
    "CN-axis0": ((5, 6), 0),
}

# name -> (probability targets?, fraction of ignored labels, fastloss keyword options)
OPTIONS = {
    "plain": (False, 0.0, {}),
    "weight": (False, 0.0, {"weight": True}),
    "ignore": (False, 0.3, {}),
    "ignore_index_in_range": (False, 0.0, {"ignore_index": 2}),
    "smoothing": (False, 0.0, {"label_smoothing": 0.2}),
    "smoothing_1": (False, 0.0, {"label_smoothing": 1.0}),
    "smooth_weight_ignore": (False, 0.3, {"label_smoothing": 0.15, "weight": True}),
    "probs": (True, 0.0, {}),
    "probs_weight_smooth": (True, 0.0, {"label_smoothing": 0.25, "weight": True}),
}


def make(rng, layout, option, dtype=np.float64, scale=3.0):
    shape, axis = LAYOUTS[layout]
    probs, ignore_frac, opts = OPTIONS[option]
    ax = axis % len(shape) if len(shape) > 1 else 0
    C = shape[ax]
    x = logits(rng, shape, scale=scale, dtype=dtype)
    sample_shape = shape[:ax] + shape[ax + 1:]
    if probs:
        t = class_probs(rng, shape, axis=ax, dtype=dtype)
    else:
        t = np.array(class_labels(rng, sample_shape, C, ignore_frac=ignore_frac))
        if ignore_frac and np.all(t == -100):  # keep one target (all-ignored is tested apart)
            t.flat[0] = 0
    kw = {"axis": axis}
    for k, v in opts.items():
        kw[k] = rng.uniform(0.3, 2.0, C).astype(dtype) if k == "weight" else v
    return x, t, kw


def weight_of(kw):
    return np.max(kw["weight"]) if kw.get("weight") is not None else 1.0


PARAMS = [pytest.param(lay, opt, id=f"{lay}-{opt}") for lay in LAYOUTS for opt in OPTIONS]


# ------------------------------------------------------------------ vs the reference

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout,option", PARAMS)
def test_float64_matches_reference(layout, option, reduction, rng):
    x, t, kw = make(rng, layout, option)
    loss, grad = fastloss.cross_entropy(x, t, reduction=reduction, return_grad=True, **kw)
    rloss, rgrad = ref.cross_entropy(x, t, reduction=reduction, return_grad=True, **kw)
    assert np.asarray(loss).dtype == np.float64 and np.shape(loss) == np.shape(rloss)
    # A row loss logsumexp(x) - x_y carries rounding of the size of ulp(max|x|) whatever
    # its value (cancellation), times the weights: hence atol = 1e-12 * that magnitude.
    scale = (np.max(np.abs(x)) + np.log(x.shape[0] if x.ndim == 1 else 8)) * weight_of(kw)
    np.testing.assert_allclose(loss, rloss, rtol=RTOL64, atol=1e-12 * scale)
    # Gradient entries are p_j - [j == y] (times weights and the mean's 1/denominator):
    # O(1) terms whose difference may cancel to ~0, so the absolute error is ~eps times
    # the largest entry.
    np.testing.assert_allclose(grad, rgrad, rtol=RTOL64, atol=1e-12 * np.max(np.abs(rgrad)))


def _ulp_scales(x, kw, reduction, denom):
    """Magnitudes for float32 ulp errors: the row loss at (max|x_row| + log C) * max w, the
    gradient at max w (times the mean's 1 / denominator)."""
    ax = kw["axis"] % x.ndim if x.ndim > 1 else 0
    C = x.shape[ax]
    w = weight_of(kw)
    lscale = (np.max(np.abs(x.astype(np.float64)), axis=ax) + np.log(C) + 1.0) * w
    gscale = w * (1.0 / denom if reduction == "mean" and denom else 1.0)
    return lscale, gscale


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout,option", PARAMS)
def test_float32_within_few_ulp_of_exact(impl, layout, option, reduction, rng):
    """float32 results against the float64 reference on the same float32 inputs (exact to
    ~1e-16, i.e. exact at float32 resolution): a few ulp element-wise, 1e-6 on reductions."""
    mod = get_impl(impl)
    x, t, kw = make(rng, layout, option, dtype=np.float32)
    loss, grad = mod.cross_entropy(x, t, reduction=reduction, return_grad=True, **kw)
    assert grad.dtype == np.float32
    kw64 = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    t64 = t.astype(np.float64) if t.dtype.kind == "f" else t
    eloss, egrad = ref.cross_entropy(x.astype(np.float64), t64, reduction=reduction,
                                     return_grad=True, **kw64)
    if t.dtype.kind == "f":
        denom = x.size // (x.shape[kw["axis"] % x.ndim] if x.ndim > 1 else x.size)
    else:
        valid = t != kw.get("ignore_index", -100)
        w = kw.get("weight")
        denom = np.sum(w.astype(np.float64)[t[valid]]) if w is not None else np.count_nonzero(valid)
    lscale, gscale = _ulp_scales(x, kw, reduction, denom)
    if reduction == "none":
        assert loss.dtype == np.float32
        assert_ulp_close(loss, eloss, 4, scale=lscale)
    else:
        assert type(loss) is np.float32
        # accumulated in float64: only the final rounding and the per-row errors remain
        np.testing.assert_allclose(loss, eloss, rtol=1e-6, atol=1e-6 * np.mean(lscale))
    assert_ulp_close(grad, egrad, 4, scale=gscale)


# ------------------------------------------------------------------ gradient vs finite differences

@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout,option", PARAMS)
def test_gradient_matches_finite_differences(impl, layout, option, reduction, rng):
    mod = get_impl(impl)
    x, t, kw = make(rng, layout, option)
    _, grad = mod.cross_entropy(x, t, reduction=reduction, return_grad=True, **kw)

    def f(z):  # the returned loss ("none": the sum of the returned losses)
        return np.sum(mod.cross_entropy(z, t, reduction=reduction, **kw))

    assert_grad_fd(f, grad, x, pick_coords(x.shape, rng, k=10))


# ------------------------------------------------------------------ vs torch

def _torch_ce(torch, x, t, kw, reduction):
    """torch F.cross_entropy with classes moved to axis 1; returns (loss, grad) as numpy,
    grad = d(returned loss)/dx ("none": of its sum), in x's layout."""
    F = torch.nn.functional
    ax = kw["axis"] % x.ndim if x.ndim > 1 else 0
    xm = np.moveaxis(x, ax, 1) if x.ndim > 1 else x
    xt = torch.tensor(xm, dtype=torch.float64, requires_grad=True)
    if t.dtype.kind == "f":
        tt = torch.tensor(np.moveaxis(t, ax, 1) if x.ndim > 1 else t, dtype=torch.float64)
    else:
        tt = torch.tensor(t, dtype=torch.int64)
    w = kw.get("weight")
    loss = F.cross_entropy(xt, tt, weight=None if w is None else torch.tensor(w, dtype=torch.float64),
                           ignore_index=kw.get("ignore_index", -100),
                           label_smoothing=kw.get("label_smoothing", 0.0), reduction=reduction)
    loss.sum().backward()
    g = xt.grad.numpy()
    return loss.detach().numpy(), (np.moveaxis(g, 1, ax) if x.ndim > 1 else g)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout,option", PARAMS)
def test_matches_torch(impl, layout, option, reduction, rng):
    torch = pytest.importorskip("torch", reason="torch not installed: cross-checks against PyTorch skipped")
    mod = get_impl(impl)
    x, t, kw = make(rng, layout, option)
    loss, grad = mod.cross_entropy(x, t, reduction=reduction, return_grad=True, **kw)
    tloss, tgrad = _torch_ce(torch, x, t, kw, reduction)
    # torch and we evaluate the same formulas in a different order: agreement to ~1e-15
    # relative; 1e-10 is the cross-check tolerance, with an absolute floor at the
    # magnitude of the inputs for cancelling row losses / gradient entries.
    np.testing.assert_allclose(loss, tloss, rtol=1e-10, atol=1e-12 * np.max(np.abs(x)))
    np.testing.assert_allclose(grad, tgrad, rtol=1e-10, atol=1e-12 * np.max(np.abs(tgrad)))


# ------------------------------------------------------------------ edge cases

@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_large_logits(impl, dtype):
    """Rows with logits of +-1e4 (exp would overflow without max-subtraction).
    Row 0: x = (1e4, -1e4, 0), y = 1: logsumexp = 1e4 + log(1 + e^-1e4 + e^-2e4) = 1e4 in
    floating point, loss = 1e4 - (-1e4) = 2e4; softmax = (1, 0, 0), grad = (1, -1, 0).
    Row 1: x = (-1e4, 1e4, 1e4), y = 0: logsumexp = 1e4 + log 2, loss = 2e4 + log 2;
    softmax = (0, 1/2, 1/2), grad = (-1, 1/2, 1/2)."""
    mod = get_impl(impl)
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype=dtype)
    y = np.array([1, 0])
    loss, grad = mod.cross_entropy(x, y, reduction="none", return_grad=True)
    assert_ulp_close(loss, np.array([2e4, 2e4 + np.log(2.0)]), 2)
    assert_ulp_close(grad, np.array([[1.0, -1.0, 0.0], [-1.0, 0.5, 0.5]]), 2, scale=1.0)


@pytest.mark.parametrize("impl", implementations())
def test_minus_inf_logits(impl):
    """A logit of -inf is a class of probability exactly 0.
    Row 0: x = (0, -inf, 0), y = 0: softmax (1/2, 0, 1/2), loss log 2, grad (-1/2, 0, 1/2).
    Row 1: x = (0, -inf, 0), y = 1: the target has probability 0: loss +inf; the gradient
    p - onehot is still finite: (1/2, -1, 1/2)."""
    mod = get_impl(impl)
    x = np.array([[0.0, -np.inf, 0.0], [0.0, -np.inf, 0.0]])
    y = np.array([0, 1])
    loss, grad = mod.cross_entropy(x, y, reduction="none", return_grad=True)
    np.testing.assert_allclose(loss, [np.log(2.0), np.inf], rtol=1e-15)
    np.testing.assert_allclose(grad, [[-0.5, 0.0, 0.5], [0.5, -1.0, 0.5]], rtol=1e-15)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_inf_logits_agree_with_torch(impl, smoothing):
    """Rows with +-inf logits in every position relative to the target: the same loss and
    gradient as torch (inf, or NaN where torch gets inf - inf), and the finite rows are
    unaffected."""
    torch = pytest.importorskip("torch", reason="torch not installed: cross-checks against PyTorch skipped")
    mod = get_impl(impl)
    inf = np.inf
    x = np.array([[0.0, -inf, 1.0], [0.0, -inf, 1.0], [inf, 0.0, 0.0], [inf, 0.0, 0.0],
                  [-inf, -inf, 2.0], [0.5, -1.0, 2.0]])
    y = np.array([0, 1, 0, 1, 2, 1])
    kw = {"axis": 1, "label_smoothing": smoothing}
    loss, grad = mod.cross_entropy(x, y, reduction="none", return_grad=True, **kw)
    tloss, tgrad = _torch_ce(torch, x, y, kw, "none")
    np.testing.assert_allclose(loss, tloss, rtol=1e-14)
    np.testing.assert_allclose(grad, tgrad, rtol=1e-14, atol=1e-16)
    assert np.isfinite(loss[5]) and np.all(np.isfinite(grad[5]))


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("option", ["plain", "weight", "smooth_weight_ignore"])
def test_all_targets_ignored(impl, dtype, option, rng):
    """Documented deviation from torch (NaN): "mean" returns 0.0 and a zero gradient;
    "sum" is 0.0 and "none" all zeros."""
    mod = get_impl(impl)
    x, t, kw = make(rng, "NCHW", option, dtype=dtype)
    t = np.full_like(t, -100)
    loss, grad = mod.cross_entropy(x, t, return_grad=True, **kw)
    assert type(loss) is np.dtype(dtype).type and loss == 0.0
    assert grad.shape == x.shape and not np.any(grad)
    s, gs = mod.cross_entropy(x, t, reduction="sum", return_grad=True, **kw)
    assert s == 0.0 and not np.any(gs)
    none = mod.cross_entropy(x, t, reduction="none", **kw)
    assert none.shape == t.shape and not np.any(none)


@pytest.mark.parametrize("impl", implementations())
def test_smoothing_weights_and_ignore_together_vs_torch_by_hand(impl):
    """A hand-checkable instance of torch's rule, C = 2, eps = 0.5, w = (1, 3):
    row 0: x = (0, 0), y = 1 -> logp = (-log 2, -log 2)
      loss = (1 - eps) w_1 log 2 + (eps / C)(w_0 + w_1) log 2 = 1.5 log 2 + 1.0 log 2
    row 1: y = ignore -> 0.   "mean" divides by sum of w[y] over kept rows = 3."""
    mod = get_impl(impl)
    x = np.zeros((2, 2))
    y = np.array([1, -100])
    kw = dict(weight=np.array([1.0, 3.0]), label_smoothing=0.5)
    np.testing.assert_allclose(mod.cross_entropy(x, y, reduction="none", **kw),
                               [2.5 * np.log(2.0), 0.0], rtol=1e-15)
    np.testing.assert_allclose(mod.cross_entropy(x, y, **kw), 2.5 * np.log(2.0) / 3.0, rtol=1e-15)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("option", ["plain", "smoothing", "probs_weight_smooth"])
def test_one_class(impl, option, rng):
    """C = 1: softmax is identically 1, log p = 0: loss 0 and gradient 0 (torch agrees)."""
    mod = get_impl(impl)
    probs, _, opts = OPTIONS[option]
    x = logits(rng, (4, 1, 3))
    t = np.ones_like(x) if probs else np.zeros((4, 3), dtype=np.int64)
    kw = {k: (np.array([1.7]) if k == "weight" else v) for k, v in opts.items()}
    for red in ("mean", "sum", "none"):
        loss, grad = mod.cross_entropy(x, t, reduction=red, return_grad=True, **kw)
        assert np.all(np.asarray(loss) == 0.0) and not np.any(grad)


@pytest.mark.parametrize("impl", implementations())
def test_one_sample_1d(impl, rng):
    """1-D input (C,) with a 0-d target: the class axis is 0, and it equals row 0 of the
    (1, C) batch."""
    mod = get_impl(impl)
    x = logits(rng, (9,))
    l1, g1 = mod.cross_entropy(x, np.int64(4), return_grad=True)
    l2, g2 = mod.cross_entropy(x[None], np.array([4]), return_grad=True)
    assert np.shape(l1) == () and g1.shape == (9,)
    assert l1 == l2
    np.testing.assert_array_equal(g1, g2[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_huge_class_count(dtype):
    """C = 32000 (a vocabulary): reference, torch and finite differences agree."""
    rng = np.random.default_rng(seed_of("C=32000", dtype.__name__))
    N, C = 3, 32000
    x = logits(rng, (N, C), scale=4.0, dtype=dtype)
    y = np.array([0, C - 1, 12345])
    w = rng.uniform(0.5, 1.5, C).astype(dtype)
    for kw in ({}, {"weight": w, "label_smoothing": 0.1}):
        loss, grad = fastloss.cross_entropy(x, y, reduction="none", return_grad=True, **kw)
        kw64 = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        eloss, egrad = ref.cross_entropy(x.astype(np.float64), y, reduction="none",
                                         return_grad=True, **kw64)
        if dtype == np.float64:
            np.testing.assert_allclose(loss, eloss, rtol=RTOL64, atol=1e-12 * np.max(np.abs(x)))
            np.testing.assert_allclose(grad, egrad, rtol=RTOL64, atol=1e-15)
        else:
            lscale = (np.max(np.abs(x), axis=1) + np.log(C)) * 1.5
            assert_ulp_close(loss, eloss, 4, scale=lscale)
            assert_ulp_close(grad, egrad, 4, scale=1.5)
    if dtype == np.float64:
        _, g = fastloss.cross_entropy(x, y, return_grad=True)
        coords = [(0, 0), (1, C - 1), (2, 12345), (2, 7)] + pick_coords(x.shape, rng, k=4)
        assert_grad_fd(lambda z: fastloss.cross_entropy(z, y), g, x, coords)


@pytest.mark.parametrize("impl", implementations())
def test_huge_class_count_matches_torch(impl):
    torch = pytest.importorskip("torch", reason="torch not installed: cross-checks against PyTorch skipped")
    mod = get_impl(impl)
    rng = np.random.default_rng(seed_of("C=32000-torch"))
    N, C = 3, 32000
    x = logits(rng, (N, C), scale=4.0)
    y = np.array([0, C - 1, 12345])
    kw = {"axis": 1, "weight": rng.uniform(0.5, 1.5, C), "label_smoothing": 0.1}
    loss, g = mod.cross_entropy(x, y, return_grad=True, **kw)
    tl, tg = _torch_ce(torch, x, y, kw, "mean")
    np.testing.assert_allclose(loss, tl, rtol=1e-12)
    np.testing.assert_allclose(g, tg, rtol=1e-10, atol=1e-12 * np.max(np.abs(tg)))


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("itype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32,
                                   np.int64, np.uint64, np.intp])
def test_any_integer_label_dtype(impl, itype, rng):
    mod = get_impl(impl)
    x = logits(rng, (8, 6))
    y = rng.integers(0, 6, 8)
    want = mod.cross_entropy(x, y, reduction="none", return_grad=True)
    got = mod.cross_entropy(x, y.astype(itype), reduction="none", return_grad=True)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("impl", implementations())
def test_label_out_of_range_index_error(impl, rng):
    mod = get_impl(impl)
    x = logits(rng, (4, 3))
    for bad in (3, -1, 7):
        y = np.array([0, bad, 1, 2])
        with pytest.raises(IndexError, match=str(bad)):
            mod.cross_entropy(x, y)
    # ignore_index outside [0, C) is honoured, and a label equal to it is not an error
    np.testing.assert_allclose(mod.cross_entropy(x, np.array([0, 7, 1, 2]), ignore_index=7),
                               mod.cross_entropy(x, np.array([0, -100, 1, 2])), rtol=1e-15)


def test_mean_is_sum_over_weighted_count():
    """torch's weighted mean: sum_i w[y_i] l_i / sum_i w[y_i] (over non-ignored i)."""
    rng = np.random.default_rng(seed_of("weighted-mean"))
    x = logits(rng, (10, 4))
    y = class_labels(rng, (10,), 4, ignore_frac=0.3)
    y[0] = 1
    w = rng.uniform(0.5, 2.0, 4)
    s = fastloss.cross_entropy(x, y, weight=w, reduction="sum")
    m = fastloss.cross_entropy(x, y, weight=w)
    np.testing.assert_allclose(m, s / np.sum(w[y[y >= 0]]), rtol=1e-14)


# ------------------------------------------------------------------ small-call path

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(32, 10), (1, 1), (3, 1000), (257, 3), (65, 1024),
                                   (6554, 10), (65536, 1), (65537, 1)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_small_call_path_matches_general_path_bitwise(dtype, shape, reduction, rng):
    """(N, C) + int64 labels with default options takes a shortcut (_ce_small) when the
    general path would run one block; weight=ones forces the general path: both must give
    the same bits (also just past the one-block size, where the shortcut steps aside),
    and the shortcut must fall back for every option it does not handle."""
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    t = rng.integers(0, shape[1], shape[0])
    t[::4] = -100  # ignored
    fast = fastloss.cross_entropy(x, t, reduction=reduction, return_grad=True)
    # weight=ones forces the general path (same kernel with a weight vector of ones)
    slow = fastloss.cross_entropy(x, t, reduction=reduction, return_grad=True, n_threads=1,
                                  weight=np.ones(shape[1], dtype))
    assert fastloss.cross_entropy(x, t, reduction=reduction, n_threads=2) == \
        fastloss.cross_entropy(x, t, reduction=reduction, n_threads=1) if reduction != "none" \
        else True
    for a, b in zip(fast, slow):
        assert np.asarray(a).dtype == np.asarray(b).dtype and np.shape(a) == np.shape(b)
        np.testing.assert_array_equal(a, b)
    assert type(fast[0]) is type(slow[0])
    # a truthy non-bool return_grad, and a preallocated gradient
    g = np.full(shape, np.nan, dtype)
    l2, g2 = fastloss.cross_entropy(x, t, reduction=reduction, return_grad=1, grad_out=g)
    assert g2 is g
    np.testing.assert_array_equal(g, slow[1])
    np.testing.assert_array_equal(l2, slow[0])
    # grad_out aliasing the input: correct results (computed into a temporary)
    xc = x.copy()
    l3, g3 = fastloss.cross_entropy(xc, t, reduction=reduction, return_grad=True, grad_out=xc)
    assert g3 is xc
    np.testing.assert_array_equal(xc, slow[1])
    np.testing.assert_array_equal(l3, slow[0])


def test_small_call_path_errors_are_the_general_ones():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(IndexError, match=r"class index 3 .*outside \[0, 3\)"):
        fastloss.cross_entropy(x, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        fastloss.cross_entropy(x, np.array([0, 1, 2, 0]), reduction="avg")
    with pytest.raises(ValueError, match="grad_out must have shape"):
        fastloss.cross_entropy(x, np.array([0, 1, 2, 0]), return_grad=True,
                               grad_out=np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="grad_out is only used with return_grad=True"):
        fastloss.cross_entropy(x, np.array([0, 1, 2, 0]), grad_out=np.zeros((4, 3), np.float32))


# ------------------------------------------------------------------ streaming row engine

@pytest.mark.parametrize("dtype,shape", [(np.float32, (2100, 1000)), (np.float64, (1100, 1000)),
                                         (np.float32, (70, 32000))],
                         ids=["f32-C1000", "f64-C1000", "f32-C32000"])
@pytest.mark.parametrize("option", ["ignore", "smooth_weight_ignore", "probs_weight_smooth"])
def test_streaming_row_engine_matches_small_calls_bitwise(dtype, shape, option, rng):
    """Inputs of 8 MiB or more on the row engine run in 4 MiB blocks whose gradient is
    streamed out (non-temporal stores, one group behind the arithmetic, the next row
    prefetched; csrc/cross_entropy.c ce_rows); calls of a few rows take the regular-store
    path.  Per-row losses and gradients must be the same bits either way, the last,
    smaller block and ignored rows included."""
    N, C = shape
    assert N * C * np.dtype(dtype).itemsize >= 8 << 20
    probs, ignore_frac, opts = OPTIONS[option]
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if probs:
        t = class_probs(rng, shape, axis=1, dtype=dtype)
    else:
        t = np.array(class_labels(rng, (N,), C, ignore_frac=ignore_frac))
    kw = {k: (rng.uniform(0.3, 2.0, C).astype(dtype) if k == "weight" else v)
          for k, v in opts.items()}
    loss, grad = fastloss.cross_entropy(x, t, reduction="none", return_grad=True, **kw)
    for n_threads in (1, 2):
        g = np.empty_like(x)
        total = fastloss.cross_entropy(x, t, reduction="sum", return_grad=True, grad_out=g,
                                       n_threads=n_threads, **kw)[0]
        np.testing.assert_array_equal(g, grad)
    step = 7  # rows per small call: far below the streaming size
    for r in range(0, N, step):
        lr, gr = fastloss.cross_entropy(x[r:r + step], t[r:r + step], reduction="none",
                                        return_grad=True, **kw)
        np.testing.assert_array_equal(lr, loss[r:r + step])
        np.testing.assert_array_equal(gr, grad[r:r + step])
    np.testing.assert_allclose(total, np.sum(loss, dtype=np.float64), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_streaming_block_engine_matches_row_layout_bitwise(dtype, rng):
    """(N, C, H, W) with C * H * W of 4 MiB or more per sample index is one block-engine
    call per index, which streams its gradient (csrc/cross_entropy.c, ce_block_any); the
    same samples in the (N * H * W, C) layout, a few rows per call, take regular stores.
    Samples get the same bits in every layout."""
    x = (rng.standard_normal((2, 5, 512, 512)) * 3).astype(dtype)
    assert x[0].nbytes >= 4 << 20
    t = np.array(class_labels(rng, (2, 512, 512), 5, ignore_frac=0.2))
    loss, grad = fastloss.cross_entropy(x, t, reduction="none", return_grad=True)
    xr = np.ascontiguousarray(x.transpose(0, 2, 3, 1).reshape(-1, 5))
    tr = t.reshape(-1)
    lr, gr = fastloss.cross_entropy(xr, tr, reduction="none", return_grad=True, n_threads=1)
    np.testing.assert_array_equal(loss.reshape(-1), lr)
    np.testing.assert_array_equal(grad.transpose(0, 2, 3, 1).reshape(-1, 5), gr)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("probs,extra", [(False, False), (False, True), (True, False),
                                         (True, True)],
                         ids=["index", "index-weight-smooth", "probs", "probs-weight-smooth"])
def test_small_rows_every_class_count_match_class_major_bitwise(dtype, probs, extra, rng):
    """Rows of at most 32 classes are transposed in registers, a chunk of a row's classes
    at a time (csrc/cross_entropy.c, ce_small_rows); a row's last, partial chunk goes
    through vecmath's partial loads and stores (AVX2: 16/8/4-byte stores, no VMASKMOVPS).
    Their exp / smoothing / target sums run sample-major with the slot sums in registers
    (ce_rows_sweep2), the class-major layout's class by class (ce_pacc).  Every class count
    1..33, row counts around the 64-row blocks, with weights (some zero) and label
    smoothing, and rows with a tied maximum: the same bits as the class-major (C, N)
    layout (block engine, no transposes), nothing written past grad_out's rows, nothing
    read past x's (the rows after it in memory are NaN)."""
    for C in range(1, 34):
        kw = {}
        if extra:
            w = rng.uniform(0.3, 2.0, C).astype(dtype)
            w[::3] = 0.0
            kw = dict(weight=w, label_smoothing=0.2)
        for N in (1, 7, 64, 67, 130):
            big = np.full((N + 3, C), np.nan, dtype)
            big[:N] = logits(rng, (N, C), dtype=dtype)
            big[:N:5, C // 2] = big[:N:5].max(axis=1)  # ties for the maximum
            x = big[:N]
            if probs:
                tbig = np.full((N + 3, C), np.nan, dtype)
                tbig[:N] = class_probs(rng, (N, C), axis=1, dtype=dtype)
                t, tcm = tbig[:N], np.ascontiguousarray(tbig[:N].T)
            else:
                t = np.array(class_labels(rng, (N,), C, ignore_frac=0.2))
                tcm = t
            gbig = np.full((N + 3, C), 7.0, dtype)
            loss = fastloss.cross_entropy(x, t, reduction="none", return_grad=True,
                                          grad_out=gbig[:N], n_threads=1, **kw)[0]
            lcm, gcm = fastloss.cross_entropy(np.ascontiguousarray(x.T), tcm, axis=0,
                                              reduction="none", return_grad=True, n_threads=1,
                                              **kw)
            assert np.all(gbig[N:] == 7.0), (C, N)
            np.testing.assert_array_equal(loss, lcm, err_msg=f"C={C} N={N}")
            np.testing.assert_array_equal(gbig[:N], gcm.T, err_msg=f"C={C} N={N}")
            assert np.all(np.isfinite(gbig[:N])), (C, N)


@pytest.mark.parametrize("fn", ["cross_entropy", "softmax_focal_loss"])
def test_label_count_on_threads_same_as_one_thread(fn, rng):
    """The "mean" denominator's label count is split over the call's threads when there
    are many labels (fastloss/_core.pyx, _check_labels): the same loss bits and the same
    first bad index as on one thread."""
    f = getattr(fastloss, fn)
    n, C = 600_000, 10
    x = rng.standard_normal((n, C)).astype(np.float32)
    t = np.array(class_labels(rng, (n,), C, ignore_frac=0.3))
    one = f(x, t, return_grad=True, n_threads=1)
    two = f(x, t, return_grad=True, n_threads=2)
    assert one[0] == two[0]
    np.testing.assert_array_equal(one[1], two[1])
    # the denominator is the count of kept labels: the sum over kept rows / count
    assert float(one[0]) == pytest.approx(
        float(f(x, t, reduction="sum", n_threads=1)) / np.count_nonzero(t != -100), rel=1e-6)
    bad = t.copy()
    bad[550_000] = -5
    bad[300_001] = C
    for k in (1, 2):
        with pytest.raises(IndexError, match=r"at flat index 300001\)"):
            f(x, bad, n_threads=k)
