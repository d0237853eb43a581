"""Shared helpers for the fastloss test suite.

* seeded random generators (every test gets its own reproducible stream, derived from its
  node id, so adding a test never changes another test's data);
* ``assert_ulp_close``: element-wise error measured in units in the last place;
* ``fd_grad`` / ``assert_grad_fd``: 4th-order central finite differences in float64;
* small adapters between the fastloss calling convention and torch.

Everything here works on the *installed* package (``import fastloss``), never on paths
into the source tree.
"""
import zlib

import numpy as np
import pytest

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]
REDUCTIONS = ["mean", "sum", "none"]

# float64 comparisons against the reference: both sides evaluate the same formulas in
# double precision, so they agree to a few ulp of the quantities involved; 1e-12 leaves
# ~4 decimal digits of headroom for formulas that are algebraically rearranged (log1p vs
# log, compensated vs pairwise sums).
RTOL64 = 1e-12


# ------------------------------------------------------------------ randomness

def seed_of(*key):
    """A stable 32-bit seed from any repr-able key (crc32 is stable across runs and
    platforms, unlike hash())."""
    return zlib.crc32(repr(key).encode())


@pytest.fixture
def rng(request):
    """A generator seeded from the test's node id (including its parameters)."""
    return np.random.default_rng(seed_of(request.node.nodeid))


def logits(rng, shape, scale=3.0, dtype=np.float64):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def probabilities(rng, shape, lo=0.02, dtype=np.float64):
    """Uniform in [lo, 1 - lo]: away from the BCE clamp so the function is smooth."""
    return rng.uniform(lo, 1.0 - lo, size=shape).astype(dtype)


def binary_targets(rng, shape, dtype=np.float64):
    """Half hard {0, 1}, half soft in (0, 1): the focal kernel has a separate path for
    each, so every test exercises both."""
    hard = rng.integers(0, 2, size=shape).astype(np.float64)
    soft = rng.uniform(0.0, 1.0, size=shape)
    use_soft = rng.random(size=shape) < 0.5
    return np.where(use_soft, soft, hard).astype(dtype)


def class_labels(rng, shape, C, ignore_frac=0.0, ignore_index=-100):
    lab = rng.integers(0, C, size=shape).astype(np.int64)
    if ignore_frac:
        lab[rng.random(size=shape) < ignore_frac] = ignore_index
    return lab


def class_probs(rng, shape, axis=1, dtype=np.float64):
    """Random class-probability targets (each slice along `axis` sums to 1)."""
    z = rng.standard_normal(shape) * 2.0
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(dtype)


# ------------------------------------------------------------------ ulp comparison

def ulp_error(actual, desired, scale=None):
    """|actual - desired| in ulps of actual's dtype, measured at max(|desired|, |scale|).

    ``scale`` (scalar or broadcastable array) expresses the magnitude of the quantities a
    result is computed from: e.g. a cross-entropy row loss logsumexp(x) - x_y carries
    rounding errors of the size of ulp(max|x|) however small the difference is, so its
    error is measured against that magnitude, not against the (possibly tiny) result.
    Returns a float64 array; positions where both are NaN, or both the same inf, are 0;
    a NaN/inf mismatch is +inf.
    """
    a = np.asarray(actual)
    dt = a.dtype if a.dtype.kind == "f" else np.dtype(np.float64)
    a = a.astype(np.float64)
    d = np.asarray(desired).astype(np.float64)
    a, d = np.broadcast_arrays(a, d)
    mag = np.abs(d)
    if scale is not None:
        mag = np.maximum(mag, np.abs(np.asarray(scale, dtype=np.float64)))
    with np.errstate(invalid="ignore", over="ignore"):
        ulp = np.spacing(mag.astype(dt)).astype(np.float64)
        err = np.abs(a - d) / ulp
    both_nan = np.isnan(a) & np.isnan(d)
    same_inf = np.isinf(a) & (a == d)
    err = np.where(both_nan | same_inf, 0.0, err)
    err = np.where(np.isnan(err), np.inf, err)  # NaN vs number, inf vs other inf
    return err


def assert_ulp_close(actual, desired, maxulp, scale=None, err_msg="", atol=0.0):
    """Assert that every element of ``actual`` is within ``maxulp`` ulps of ``desired``
    (ulps of actual's dtype, at the magnitude max(|desired|, |scale|); see ulp_error).
    NaN must match NaN and inf must match the same inf.  Elements within ``atol`` (absolute)
    pass regardless (used only for results below the normal range, see callers)."""
    actual = np.asarray(actual)
    desired = np.asarray(desired)
    assert actual.shape == desired.shape, f"shape {actual.shape} != {desired.shape} {err_msg}"
    if actual.size == 0:
        return
    err = ulp_error(actual, desired, scale)
    if atol:
        with np.errstate(invalid="ignore"):
            close = np.abs(actual.astype(np.float64) - desired.astype(np.float64)) <= atol
        err = np.where(close, 0.0, err)
    worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.ndim else ()
    if err[worst] > maxulp:
        a = actual[worst]
        d = desired[worst]
        nbad = int(np.sum(err > maxulp))
        raise AssertionError(
            f"{nbad} of {err.size} elements differ by more than {maxulp} ulp; worst at "
            f"{worst}: actual={a!r} desired={d!r} error={err[worst]:.3g} ulp "
            f"(dtype {actual.dtype}) {err_msg}")


def assert_close(actual, desired, rtol, atol=0.0, err_msg=""):
    """Like numpy.testing.assert_allclose (|actual - desired| <= atol + rtol |desired|,
    NaN == NaN, equal infinities) but with an element-wise (broadcastable) atol: the
    absolute error allowed at each element is tied to the magnitude of the terms that
    element is computed from."""
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    assert a.shape == d.shape, f"shape {a.shape} != {d.shape} {err_msg}"
    atol = np.broadcast_to(np.asarray(atol, dtype=np.float64), d.shape)
    with np.errstate(invalid="ignore"):
        ok = np.abs(a - d) <= atol + rtol * np.abs(d)
    ok |= (np.isnan(a) & np.isnan(d)) | (np.isinf(a) & (a == d))
    if not np.all(ok):
        bad = np.argwhere(~ok) if ok.ndim else [()]
        i = tuple(bad[0])
        raise AssertionError(
            f"{int(np.size(ok) - np.count_nonzero(ok))} of {ok.size} elements differ beyond "
            f"rtol={rtol:g} + atol; first at {i}: actual={a[i]!r} desired={d[i]!r} "
            f"|diff|={abs(a[i] - d[i]):.3g} allowed={atol[i] + rtol * abs(d[i]):.3g} {err_msg}")


# ------------------------------------------------------------------ finite differences

FD_REL_STEP = 2.0 ** -17  # ~7.6e-6


def fd_step(v):
    """A power-of-two step ~FD_REL_STEP * max(1, |v|): x + k h is then exact or within
    half an ulp of x, so the effective steps are the nominal ones to ~1e-11 relative.
    With the 4th-order formula the truncation error is h^4 f^(5) / 30 ~ 1e-22 f^(5) and
    the rounding error ~1.5 * (error of f) / h ~ 2e5 * (error of f): with f accurate to
    a few ulp that is ~1e-10 |f|, far below the tolerances used."""
    m = max(1.0, abs(float(v)))
    return 2.0 ** np.floor(np.log2(FD_REL_STEP * m))


def pick_coords(shape, rng, k=10):
    """All multi-indices of `shape` when there are at most k, else k distinct random ones."""
    n = int(np.prod(shape, dtype=np.int64))
    flat = np.arange(n) if n <= k else rng.choice(n, size=k, replace=False)
    return [np.unravel_index(int(i), shape) for i in flat]


def fd_grad(f, x, coords):
    """4th-order central difference of the scalar function f at x (float64) along each
    multi-index in coords:  (f(x-2h) - 8 f(x-h) + 8 f(x+h) - f(x+2h)) / (12 h)."""
    x = np.array(x, dtype=np.float64)
    out = []
    for idx in coords:
        h = fd_step(x[idx])
        vals = []
        for k in (-2, -1, 1, 2):
            xp = x.copy()
            xp[idx] = x[idx] + k * h
            vals.append(float(f(xp)))
        out.append((vals[0] - 8.0 * vals[1] + 8.0 * vals[2] - vals[3]) / (12.0 * h))
    return np.array(out)


def assert_grad_fd(f, grad, x, coords, rtol=1e-6, atol=None):
    """The analytic gradient `grad` (array of x's shape) agrees with the finite difference
    of the scalar f at x on coords.

    Tolerance: the finite difference has an absolute error ~1e-10 max(|f|, 1) (see fd_step);
    atol defaults to 1e-8 max(|f(x)|, 1e-2) (two orders above that), rtol 1e-6.  A wrong
    formula, a missing chain-rule factor or a wrong reduction scale is off by far more."""
    x = np.asarray(x, dtype=np.float64)
    f0 = float(f(x))
    assert np.isfinite(f0), f"loss is not finite at the base point: {f0}"
    fd = fd_grad(f, x, coords)
    g = np.array([grad[idx] for idx in coords], dtype=np.float64)
    if atol is None:
        atol = 1e-8 * max(abs(f0), 1e-2)
    np.testing.assert_allclose(g, fd, rtol=rtol, atol=atol,
                               err_msg=f"analytic gradient vs 4th-order finite difference at {coords}")


# ------------------------------------------------------------------ misc

def as_f64(a):
    return np.asarray(a, dtype=np.float64)


def implementations():
    """[fastloss, fastloss.reference] as pytest params (ids 'fastloss', 'reference'), for
    tests that hold both the package and its NumPy oracle to an external truth."""
    return [pytest.param("fastloss", id="fastloss"), pytest.param("reference", id="reference")]


def get_impl(name):
    import fastloss
    return fastloss if name == "fastloss" else fastloss.reference
