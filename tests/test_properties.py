"""Property tests (hypothesis): fastloss and its NumPy twin fastloss.reference agree on
random inputs, or raise the same exception type (issue 5, "Proven by tools").

Every example draws
* a shape (0-d / 1-d / n-d, sides of length 0 included),
* a dtype for each array (float16 / float32 / float64, integer dtypes for real inputs,
  every integer dtype for class labels) and a byte order,
* a memory layout for each array: C order, Fortran order, negative strides (a reversed
  copy seen through a reversed view), every other element of a bigger buffer, a zero-stride
  axis (np.broadcast_to) or a read-only copy,
* values mixing ordinary numbers with NaN, +-inf, subnormals (float16/32/64), -0.0,
  +-1e30 and +-1e-30 (probabilities: 0, 1, subnormals, 1 - eps and a few values outside
  [0, 1], which must raise the same ValueError on both sides),
* the function's options and a reduction,
and checks that
* both raise, with the same exception type, or neither does;
* the loss and the gradient have the same shape and dtype on both sides and agree to the
  tolerances of the existing tests (float64: rtol 1e-12 with an absolute floor of 1e-12
  times the magnitude of the terms the value is computed from; float32: a few ulp at that
  magnitude, doubled because both sides round -- see _agree; reductions: 1e-6 relative);
  NaN must meet NaN and an infinity the same infinity;
* no input array was modified (bytes and flags compared before/after both calls).

Budget: FASTLOSS_HYPOTHESIS_EXAMPLES examples per test (default 200: the whole file in
under a minute on 2 cores), derandomized so that every run of CI tries the same examples;
raise the variable for a longer local search, set FASTLOSS_HYPOTHESIS_SHRINK=1 to shrink
a failure to a minimal example (minutes).
"""
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

import fastloss
from conftest import RTOL64, assert_close, assert_ulp_close

ref = fastloss.reference

EXAMPLES = int(os.environ.get("FASTLOSS_HYPOTHESIS_EXAMPLES", "200"))
# Shrinking a failure to a minimal example can take minutes (arrays of ~100 elements):
# off by default so that a failing CI run stays within its budget; set
# FASTLOSS_HYPOTHESIS_SHRINK=1 to get minimal failing examples locally.
SHRINK = os.environ.get("FASTLOSS_HYPOTHESIS_SHRINK", "0") not in ("", "0")
PHASES = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if SHRINK else [])
settings.register_profile(
    "fastloss-properties",
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
PROFILE = settings.get_profile("fastloss-properties")

# ------------------------------------------------------------------ value strategies

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324, -1e-310, 1e-40, -1e-45, 6e-8,
            1e30, -1e30, 1e-30, -1e-30, 1.0, -1.0]
PROB_SPECIALS = [0.0, -0.0, 1.0, 5e-324, 1e-310, 1e-40, 1e-45, 6e-8, 1 - 2.0 ** -53,
                 1 - 2.0 ** -24, 0.5, np.nan]
# finite values outside [0, 1]: binary_cross_entropy must reject them (same ValueError)
PROB_BAD = [1.5, -0.25, -1e30, np.inf, -np.inf]

FLOAT_DTYPES = [np.float16, np.float32, np.float64]
REAL_DTYPES = FLOAT_DTYPES + [np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8]
LABEL_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                np.uint64, np.intp]
LAYOUTS = ["c", "c", "fortran", "reversed", "strided", "broadcast", "readonly"]
REDUCTIONS = ["mean", "sum", "none"]


def _values(special, lo, hi):
    """A float64 element: 3 in 4 an ordinary number in [lo, hi], 1 in 4 a special."""
    ordinary = st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    return st.one_of(ordinary, ordinary, ordinary, st.sampled_from(special))


def _float_array(draw, shape, elements):
    n = int(np.prod(shape, dtype=np.int64))
    vals = draw(st.lists(elements, min_size=n, max_size=n))
    return np.array(vals, dtype=np.float64).reshape(shape)


def _layout(draw, a, allow_broadcast=True):
    """The logical array `a` (dtype and byte order already final) in a drawn layout."""
    kind = draw(st.sampled_from(LAYOUTS))
    if a.ndim == 0 or a.size == 0:
        kind = "readonly" if kind == "readonly" else "c"
    if kind == "c":
        return np.array(a, order="C")  # (np.ascontiguousarray would make 0-d arrays 1-d)
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "reversed":  # negative strides on every axis, same logical values
        return np.flip(np.flip(a).copy())
    if kind == "strided":
        v = np.repeat(a, 2, axis=-1)[..., ::2]
        return v
    if kind == "broadcast" and allow_broadcast:
        # a zero-stride axis: values constant along it (taken from index 0)
        ax = draw(st.integers(0, a.ndim - 1))
        v = np.broadcast_to(np.take(a, [0], axis=ax), a.shape)
        assert v.strides[ax] == 0 or a.shape[ax] == 1
        return v
    c = a.copy()
    c.setflags(write=False)
    return c


def _with_dtype(draw, vals, dtypes):
    """vals (float64) converted to a drawn dtype and byte order."""
    dt = np.dtype(draw(st.sampled_from(dtypes)))
    with np.errstate(all="ignore"):
        if dt.kind in "iu":
            info = np.iinfo(dt)
            v = np.nan_to_num(vals, nan=0.0, posinf=info.max, neginf=info.min)
            a = np.clip(np.round(v), info.min, info.max).astype(dt)
        else:
            a = vals.astype(dt)
    if dt.itemsize > 1 and draw(st.booleans()):
        a = a.astype(a.dtype.newbyteorder())
    return a


def _computing_dtype(a):
    dt = np.asarray(a).dtype
    if dt.kind == "f":
        return np.dtype(np.float32) if dt.itemsize <= 4 else np.dtype(np.float64)
    return np.dtype(np.float64)


def _f64(a):
    return np.asarray(a).astype(np.float64)


def _finite_abs(a):
    """|a| where finite, 0 at inf/NaN: the magnitude of a value's rounding errors (an
    infinite operand gives an exact limit, not a rounding error of infinite size)."""
    a = np.abs(_f64(a))
    return np.where(np.isfinite(a), a, 0.0)


# ------------------------------------------------------------------ the comparison

def _snapshot(arrays):
    return [(a.tobytes(), a.dtype, a.shape, a.strides, a.flags.writeable) for a in arrays]


def _run(mod, fn, args, kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return getattr(mod, fn)(*args, **kw), None
        except Exception as e:  # compared below: same type on both sides
            return None, e


def _agree(actual, desired, scale, dtype, maxulp=8, what=""):
    """fastloss's `actual` against the reference's `desired`, both computed in `dtype`.

    float64: |a - d| <= 1e-12 |d| + 1e-12 scale (the existing tests' RTOL64 and atol rule).
    float32: within maxulp ulp at max(|d|, scale).  The existing float32 tests allow 4 ulp
    against the *exact* (float64) value; here both sides round in float32, so 8.
    NaN must meet NaN and inf the same inf."""
    a = np.asarray(actual)
    d = np.asarray(desired)
    assert a.shape == d.shape, f"{what}: shape {a.shape} != reference {d.shape}"
    assert a.dtype == d.dtype == dtype, f"{what}: dtype {a.dtype} / reference {d.dtype} / expected {dtype}"
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), d.shape)
    if dtype == np.float64:
        assert_close(a, d, rtol=RTOL64, atol=1e-12 * scale, err_msg=what)
    else:
        assert_ulp_close(a, d, maxulp, scale=scale, err_msg=what)


def _agree_reduced(actual, desired, lscale, denom, dtype, what=""):
    """A reduced loss (sum or mean of non-negative element losses, accumulated in float64):
    1e-12 (float64) / 1e-6 (float32) relative, with the absolute floor of the element
    scales summed (divided by the mean's denominator)."""
    a = np.asarray(actual)
    d = np.asarray(desired)
    assert a.shape == d.shape == (), what
    assert type(actual) is type(desired) is dtype.type, f"{what}: {type(actual)} {type(desired)}"
    floor = float(np.sum(lscale)) / (denom if denom else 1.0)
    if dtype == np.float64:
        assert_close(a, d, rtol=RTOL64, atol=1e-12 * floor, err_msg=what)
    else:
        assert_close(a, d, rtol=1e-6, atol=1e-6 * floor, err_msg=what)


def _check(fn, args, kw, lscale_of, gscale_of, denom_of, maxulp=8):
    """Call fastloss and the reference with return_grad=True; compare as described."""
    arrays = [a for a in list(args) + list(kw.values()) if isinstance(a, np.ndarray)]
    before = _snapshot(arrays)
    kw = dict(kw, return_grad=True)
    got, gerr = _run(fastloss, fn, args, kw)
    want, werr = _run(ref, fn, args, kw)
    assert _snapshot(arrays) == before, "an input array was modified"
    if gerr is not None or werr is not None:
        assert type(gerr) is type(werr), (
            f"fastloss raised {gerr!r}, the reference raised {werr!r}")
        event(f"{fn}: both raised {type(gerr).__name__}")
        return None
    event(f"{fn}: results compared")
    (loss, grad), (rloss, rgrad) = got, want
    dt = _computing_dtype(args[0])
    red = kw.get("reduction", "mean")
    lscale = lscale_of(rloss if red == "none" else None)
    denom = denom_of()
    gs = (1.0 / denom if denom else 0.0) if red == "mean" else 1.0
    if red == "none":
        _agree(loss, rloss, lscale, dt, maxulp, what=f"{fn} loss")
    else:
        _agree_reduced(loss, rloss, lscale, denom if red == "mean" else 1.0, dt,
                       what=f"{fn} {red} loss")
    _agree(grad, rgrad, gscale_of(rgrad) * gs, dt, maxulp, what=f"{fn} gradient")
    return loss, grad


# ------------------------------------------------------------------ shapes

def _shape(draw, min_dims=0, max_dims=3, min_side=0, max_side=5):
    nd = draw(st.integers(min_dims, max_dims))
    return tuple(draw(st.integers(min_side, max_side)) for _ in range(nd))


def _broadcastable_shape(draw, shape):
    """A shape that broadcasts to `shape`: leading axes dropped, some sides set to 1."""
    k = draw(st.integers(0, len(shape)))
    tail = shape[len(shape) - k:]
    return tuple(1 if draw(st.booleans()) else s for s in tail)


def _positive_operand(draw, shape):
    vals = _float_array(draw, shape, st.floats(0.0, 3.0))
    return _layout(draw, _with_dtype(draw, vals, FLOAT_DTYPES))


# ------------------------------------------------------------------ element-wise losses

@st.composite
def regression_case(draw):
    fn = draw(st.sampled_from(["huber_loss", "smooth_l1_loss"]))
    shape = _shape(draw)
    x = _layout(draw, _with_dtype(draw, _float_array(draw, shape, _values(SPECIALS, -8, 8)),
                                  REAL_DTYPES))
    t = _layout(draw, _with_dtype(draw, _float_array(draw, shape, _values(SPECIALS, -8, 8)),
                                  REAL_DTYPES))
    # parameters exactly representable in float32 (both sides round them to the dtype)
    p = draw(st.sampled_from([1.0, 0.5, 2.5, 2.0 ** -10, 2.0 ** 20]
                             + ([0.0] if fn == "smooth_l1_loss" else [])))
    kw = {("delta" if fn == "huber_loss" else "beta"): p,
          "reduction": draw(st.sampled_from(REDUCTIONS))}
    return fn, x, t, kw


@given(regression_case())
@settings(PROFILE)
def test_regression_agrees_with_reference(case):
    fn, x, t, kw = case
    n = x.size
    # d = x - t is rounded identically on both sides, the loss 0.5 d^2 (/ beta) or
    # delta (|d| - delta / 2) and the gradient clip(d, ...) have no cancellation: relative
    # agreement (scale 0), the absolute floor only for the reductions' accumulated |loss|
    _check(fn, (x, t), kw,
           lscale_of=lambda r: (_finite_abs(r) if r is not None else 0.0),
           gscale_of=lambda g: 0.0,
           denom_of=lambda: n)


@st.composite
def binary_case(draw):
    fn = draw(st.sampled_from(["binary_cross_entropy", "binary_cross_entropy_with_logits",
                               "sigmoid_focal_loss"]))
    shape = _shape(draw)
    if fn == "binary_cross_entropy":
        bad = draw(st.integers(0, 9)) == 0  # 1 in 10: some entries outside [0, 1]
        xel = _values(PROB_SPECIALS + (PROB_BAD if bad else []), 0.0, 1.0)
    else:
        xel = _values(SPECIALS, -30, 30)
    x = _layout(draw, _with_dtype(draw, _float_array(draw, shape, xel), REAL_DTYPES))
    # targets in [0, 1] (hard or soft) or NaN: the documented domain
    t = _layout(draw, _with_dtype(draw, _float_array(draw, shape, _values(PROB_SPECIALS, 0, 1)),
                                  FLOAT_DTYPES))
    kw = {"reduction": draw(st.sampled_from(REDUCTIONS))}
    if fn in ("binary_cross_entropy", "binary_cross_entropy_with_logits") and draw(st.booleans()):
        kw["weight"] = _positive_operand(draw, _broadcastable_shape(draw, shape))
    if fn == "binary_cross_entropy_with_logits" and draw(st.booleans()):
        kw["pos_weight"] = _positive_operand(draw, _broadcastable_shape(draw, shape))
    if fn == "sigmoid_focal_loss":
        kw["alpha"] = draw(st.sampled_from([None, -1.0, 0.0, 0.25, 0.5, 1.0]))
        kw["gamma"] = draw(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 5.0]))
    return fn, x, t, kw


@given(binary_case())
@settings(PROFILE)
def test_binary_agrees_with_reference(case):
    fn, x, t, kw = case
    n = x.size
    dt = _computing_dtype(x)
    shape = np.shape(x)
    x64 = _f64(x)
    w = np.ones(shape)
    for k in ("weight", "pos_weight"):
        if k in kw:
            w = w * (1.0 + np.broadcast_to(_f64(kw[k]), shape))
    if fn == "binary_cross_entropy":
        # loss: -w (y log p + (1 - y) log(1 - p)), non-negative terms (clamped at -100):
        # relative, floor ~w; gradient w (p - y) / max(p (1 - p), 1e-12): the difference
        # p - y is exact to ulp(1), so the error is relative to w / max(p (1 - p), 1e-12)
        with np.errstate(all="ignore"):
            lscale = w
            gscale = np.nan_to_num(w / np.maximum(x64 * (1 - x64), 1e-12), nan=0.0)
    elif fn == "binary_cross_entropy_with_logits":
        # softplus(+-x): error ~ulp(|x| + 1) times the weights; gradient sigmoid(x) - y:
        # a difference of O(1) terms, times the weights
        lscale = w * (_finite_abs(x) + 1.0)
        gscale = w
    else:
        # focal: ce (1 - p_t)^gamma alpha_t: ce's rounding ~ulp(|x| + 1); the gradient's
        # terms are bounded by alpha_t (1 + gamma) (see test_focal.sig_scales)
        lscale = _finite_abs(x) + 1.0
        gscale = np.full(shape, 1.0 + kw["gamma"])
    maxulp = 8 + 4 * kw.get("gamma", 0.0)  # test_focal: 4 + 2 gamma against the exact value
    _check(fn, (x, t), kw,
           lscale_of=lambda r: lscale,
           gscale_of=lambda g: gscale,
           denom_of=lambda: n, maxulp=maxulp)


# ------------------------------------------------------------------ softmax rows

@st.composite
def softmax_case(draw):
    fn = draw(st.sampled_from(["cross_entropy", "cross_entropy", "softmax_focal_loss"]))
    layout = draw(st.sampled_from(["1d", "nc", "ncd", "channels_last"]))
    C = draw(st.integers(1, 6))
    N = draw(st.integers(0, 5))
    d = draw(st.integers(0, 3))
    shape, axis = {"1d": ((C,), 0), "nc": ((N, C), 1), "ncd": ((N, C, d), 1),
                   "channels_last": ((N, d, C), -1)}[layout]
    x = _layout(draw, _with_dtype(draw, _float_array(draw, shape, _values(SPECIALS, -20, 20)),
                                  REAL_DTYPES))
    ax = axis % len(shape)
    sample_shape = shape[:ax] + shape[ax + 1:]
    kw = {"reduction": draw(st.sampled_from(REDUCTIONS))}
    if layout != "nc" or draw(st.booleans()):
        kw["axis"] = axis
    probs = fn == "cross_entropy" and draw(st.integers(0, 3)) == 0
    if probs:
        # class probabilities (rows summing to 1) or arbitrary values in [0, 1]
        p = _float_array(draw, shape, st.floats(0.0, 1.0))
        if draw(st.booleans()) and p.size:
            s = p.sum(axis=ax, keepdims=True)
            p = np.where(s > 0, p / np.where(s > 0, s, 1.0), 1.0 / C)
        t = _layout(draw, _with_dtype(draw, p, FLOAT_DTYPES))
    else:
        ltype = np.dtype(draw(st.sampled_from(LABEL_DTYPES)))
        signed = ltype.kind == "i"
        ignore = -100 if signed and ltype.itemsize > 1 else None
        if ignore is None and draw(st.booleans()):
            ignore = C  # unsigned / int8: an ignore_index they can hold
        choices = list(range(C)) * 4
        if ignore is not None:
            choices += [ignore] * 2
        if draw(st.integers(0, 9)) == 0:  # 1 in 10: some label out of range -> IndexError
            choices += [C + 2] + ([-1] if signed else [])
        n = int(np.prod(sample_shape, dtype=np.int64))
        lab = np.array(draw(st.lists(st.sampled_from(choices), min_size=n, max_size=n)),
                       dtype=np.int64).reshape(sample_shape).astype(ltype)
        if ltype.itemsize > 1 and draw(st.booleans()):
            lab = lab.astype(lab.dtype.newbyteorder())
        t = _layout(draw, lab)
        if ignore is not None and ignore != -100:
            kw["ignore_index"] = ignore
        elif ignore is None:
            kw["ignore_index"] = -100
    if fn == "cross_entropy":
        if draw(st.booleans()):
            kw["weight"] = _positive_operand(draw, (C,))
        kw["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    else:
        kind = draw(st.sampled_from(["none", "scalar", "vector"]))
        if kind == "scalar":
            kw["alpha"] = draw(st.sampled_from([0.25, 1.0, 2.0]))
        elif kind == "vector":
            kw["alpha"] = _positive_operand(draw, (C,))
        kw["gamma"] = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0]))
    return fn, x, t, kw


@given(softmax_case())
@settings(PROFILE)
def test_softmax_losses_agree_with_reference(case):
    fn, x, t, kw = case
    shape = np.shape(x)
    ax = kw.get("axis", 1) % len(shape) if len(shape) > 1 else 0
    C = shape[ax]
    wvec = kw.get("weight", kw.get("alpha"))
    wmax = float(np.max(_f64(wvec))) if isinstance(wvec, np.ndarray) and wvec.size else (
        float(wvec) if wvec is not None and not isinstance(wvec, np.ndarray) else 1.0)
    wmax = max(wmax, 1.0)
    # a row loss logsumexp(x) - x_y (times weights and the focal factor) carries rounding of
    # ulp(max|x_row| + log C); gradient entries p_j - [j == y] are O(1) times the weights
    # (test_cross_entropy._ulp_scales, test_focal: the same rule)
    rowmax = np.max(_finite_abs(x), axis=ax) if x.size else np.zeros(shape[:ax] + shape[ax + 1:])
    lscale = (rowmax + np.log(C) + 1.0) * wmax

    def denom():
        tt = np.asarray(t)
        if tt.dtype.kind == "f":
            return int(np.prod(shape, dtype=np.int64)) // C
        valid = tt.astype(np.int64) != kw.get("ignore_index", -100)
        w = kw.get("weight")
        if fn == "cross_entropy" and w is not None:
            return float(np.sum(_f64(w).astype(_computing_dtype(x))[tt.astype(np.int64)[valid]], dtype=np.float64))
        return int(np.count_nonzero(valid))

    maxulp = 8 + 4 * kw.get("gamma", 0.0)
    _check(fn, (x, t), kw,
           lscale_of=lambda r: lscale,
           gscale_of=lambda g: np.full(shape, wmax * (1.0 + kw.get("gamma", 0.0))),
           denom_of=denom, maxulp=maxulp)


# ------------------------------------------------------------------ Dice

@st.composite
def dice_case(draw):
    B = draw(st.integers(0, 3))
    C = draw(st.integers(1, 4))
    sp = tuple(draw(st.integers(0, 4)) for _ in range(draw(st.integers(1, 2))))
    shape = (B, C) + sp
    act = draw(st.sampled_from([None, "sigmoid", "softmax"]))
    xel = _values(PROB_SPECIALS, 0.0, 1.0) if act is None else _values(SPECIALS, -20, 20)
    x = _layout(draw, _with_dtype(draw, _float_array(draw, shape, xel), REAL_DTYPES))
    tkind = draw(st.sampled_from(["onehot", "soft", "labels", "labels_b1"]))
    n = B * int(np.prod(sp, dtype=np.int64))
    lab = np.array(draw(st.lists(st.integers(0, C - 1), min_size=n, max_size=n)),
                   dtype=np.int64).reshape((B,) + sp)
    if tkind == "onehot":
        t = _with_dtype(draw, np.moveaxis(np.eye(C)[lab], -1, 1), FLOAT_DTYPES)
    elif tkind == "soft":
        t = _with_dtype(draw, _float_array(draw, shape, st.floats(0.0, 1.0)), FLOAT_DTYPES)
    else:
        ltype = np.dtype(draw(st.sampled_from(LABEL_DTYPES)))
        t = lab.astype(ltype) if tkind == "labels" else lab[:, None].astype(ltype)
    t = _layout(draw, t)
    include_background = draw(st.booleans())
    K = C - (0 if include_background or C == 1 else 1)
    kw = dict(activation=act, include_background=include_background,
              squared_pred=draw(st.booleans()), jaccard=draw(st.booleans()),
              batch=draw(st.booleans()),
              smooth_nr=draw(st.sampled_from([1e-5, 0.0, 1.0])),
              smooth_dr=draw(st.sampled_from([1e-5, 1.0])),
              reduction=draw(st.sampled_from(REDUCTIONS)))
    if draw(st.booleans()):
        kw["weight"] = _positive_operand(draw, (K,))
    return "dice_loss", x, t, kw


def _dice_grad_scale(x, t, kw):
    """Magnitude of the terms a Dice gradient entry is computed from (float64).

    Per kept class k (of item b, or of the batch with batch=True), with I = sum p t,
    D = sum p^(1|2) + sum t (jaccard: 2 (D - I)) and f = (2 I + nr) / (D + dr), the loss
    1 - f has d(1 - f)/dp = -(2 t - f dD/dp) / (D + dr): a difference of terms bounded by
    G = (2 + 6 |f|) / |D + dr| (|t| <= 1, |dD/dp| <= 2, jaccard <= 6), however much the
    difference cancels.  The activation's chain rule multiplies by p (1 - p) (sigmoid) or
    forms p_j (g_j - sum_k p_k g_k), bounded by 2 max_k G (softmax).  Times the weight."""
    x64 = _f64(x)
    B, C = x64.shape[:2]
    act = kw["activation"] if C > 1 or kw["activation"] != "softmax" else None
    with np.errstate(all="ignore"):
        if act == "sigmoid":
            p = 1.0 / (1.0 + np.exp(-x64))
        elif act == "softmax":
            e = np.exp(x64 - np.max(x64, axis=1, keepdims=True))
            p = e / np.sum(e, axis=1, keepdims=True)
        else:
            p = x64
        tt = np.asarray(t)
        if tt.shape == x64.shape:
            t64 = _f64(tt)
        else:
            lab = tt.astype(np.int64).reshape((B,) + x64.shape[2:])
            t64 = (lab[:, None].astype(np.float64) if C == 1
                   else np.moveaxis(np.eye(C)[lab], -1, 1))
        c0 = 0 if kw["include_background"] or C == 1 else 1
        pk, tk = p[:, c0:], t64[:, c0:]
        axes = tuple(range(2, x64.ndim)) + ((0,) if kw["batch"] else ())
        inter = np.sum(pk * tk, axis=axes, keepdims=True)
        den = np.sum(pk * pk if kw["squared_pred"] else pk, axis=axes, keepdims=True) \
            + np.sum(tk, axis=axes, keepdims=True)
        if kw["jaccard"]:
            den = 2.0 * (den - inter)
        f = (2.0 * inter + kw["smooth_nr"]) / (den + kw["smooth_dr"])
        G = (2.0 + 6.0 * np.abs(f)) / np.abs(den + kw["smooth_dr"])
        G = np.where(np.isfinite(G), G, 0.0) * np.ones_like(pk)
        w = kw.get("weight")
        if w is not None and C - c0 > 1:
            G = G * np.max(_f64(w))
        full = np.zeros_like(p)
        if act == "softmax":
            full[...] = 2.0 * np.max(G, axis=1, keepdims=True) if G.size else 0.0
        elif act == "sigmoid":
            full[:, c0:] = G * np.nan_to_num(p[:, c0:] * (1.0 - p[:, c0:]))
        else:
            full[:, c0:] = G
    return np.where(np.isfinite(full), full, 0.0)


@given(dice_case())
@settings(PROFILE)
def test_dice_agrees_with_reference(case):
    fn, x, t, kw = case
    B, C = np.shape(x)[:2]
    K = C - (0 if kw["include_background"] or C == 1 else 1)
    w = kw.get("weight")
    wmax = max(float(np.max(_f64(w))) if w is not None and w.size and K > 1 else 1.0, 1.0)
    nf = K if kw["batch"] else B * K
    gscale = _dice_grad_scale(x, t, kw)
    # loss 1 - (2 I + nr) / (D + dr) per (item, class): ~eps * weight.  float32: 16 ulp
    # (the existing test allows 8 against the exact value; both sides round here)
    _check(fn, (x, t), kw,
           lscale_of=lambda r: np.full(np.shape(r) if r is not None else (nf,), wmax),
           gscale_of=lambda g: gscale,
           denom_of=lambda: nf, maxulp=16)


# ------------------------------------------------------------------ parameters

PARAM_CASES = [
    ("sigmoid_focal_loss", "gamma"), ("sigmoid_focal_loss", "alpha"),
    ("softmax_focal_loss", "gamma"), ("softmax_focal_loss", "alpha"),
    ("huber_loss", "delta"), ("smooth_l1_loss", "beta"),
    ("cross_entropy", "label_smoothing"),
    ("dice_loss", "smooth_nr"), ("dice_loss", "smooth_dr"),
]


@pytest.mark.parametrize("fn,param", PARAM_CASES, ids=[f"{f}-{p}" for f, p in PARAM_CASES])
@given(value=st.one_of(st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0,
                                        1.5, 0.5, 1e30, -1e30, 5e-324]),
                       st.floats(-3, 3, allow_nan=False)))
@settings(PROFILE)
def test_scalar_parameters_accepted_or_rejected_alike(fn, param, value):
    """Both sides accept a parameter value (and then agree) or both reject it with the same
    exception type: NaN, inf and out-of-domain values must be ValueError on both."""
    x = np.array([[0.3, -1.2, 2.0], [0.0, 0.7, -0.4]])
    if fn in ("cross_entropy", "softmax_focal_loss"):
        t = np.array([2, 0])
    elif fn == "dice_loss":
        x = x[:, :, None]
        t = np.array([[1], [0]])
    elif fn in ("huber_loss", "smooth_l1_loss"):
        t = np.array([[0.1, 0.4, -2.0], [3.0, 0.2, 0.0]])
    else:
        t = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 1.0]])
    kw = {param: value, "reduction": "none"}
    if fn == "dice_loss":
        kw["activation"] = "softmax"
    got, gerr = _run(fastloss, fn, (x, t), dict(kw, return_grad=True))
    want, werr = _run(ref, fn, (x, t), dict(kw, return_grad=True))
    assert type(gerr) is type(werr), (
        f"{fn}({param}={value!r}): fastloss {gerr!r}, reference {werr!r}")
    if gerr is not None:
        return
    for a, r in zip(got, want):
        assert_close(a, r, rtol=RTOL64, atol=1e-12 * max(1.0, abs(value)) * 8)
