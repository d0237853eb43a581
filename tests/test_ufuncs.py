"""fastloss.ufuncs: real numpy.ufunc objects that behave like NumPy's own (broadcasting,
out=, dtypes, strided inputs, floating-point warnings) and equal the functions with
reduction="none"."""
import warnings

import numpy as np
import pytest

import fastloss
from fastloss import ufuncs as U
from conftest import binary_targets, class_labels, logits, probabilities, seed_of

# name -> (number of scalar parameters, the function it mirrors, parameter names there)
ELEM = {
    "bce_with_logits": (0, "binary_cross_entropy_with_logits", ()),
    "bce": (0, "binary_cross_entropy", ()),
    "sigmoid_focal": (2, "sigmoid_focal_loss", ("alpha", "gamma")),
    "huber": (1, "huber_loss", ("delta",)),
    "smooth_l1": (1, "smooth_l1_loss", ("beta",)),
}
PARAM_VALUES = {"bce_with_logits": (), "bce": (), "sigmoid_focal": (0.25, 2.0),
                "huber": (1.5,), "smooth_l1": (0.5,)}
ALL = list(ELEM) + [n + "_grad" for n in ELEM] + ["softmax_cross_entropy", "softmax_cross_entropy_grad"]


def elem_inputs(rng, name, shape, dtype=np.float64):
    x = probabilities(rng, shape) if name == "bce" else logits(rng, shape)
    y = binary_targets(rng, shape) if name in ("bce", "bce_with_logits", "sigmoid_focal") \
        else logits(rng, shape)
    return x.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("name", ALL)
def test_is_a_real_ufunc(name):
    uf = getattr(U, name)
    assert isinstance(uf, np.ufunc)
    assert uf.__name__ == name
    assert uf.__doc__ and name in uf.__doc__
    grad = name.endswith("_grad")
    if name.startswith("softmax_cross_entropy"):
        assert uf.nin == 2
        assert uf.nout == (2 if grad else 1)
        assert uf.signature == ("(c),()->(),(c)" if grad else "(c),()->()")
    else:
        base = name[:-5] if grad else name
        assert uf.nin == 2 + ELEM[base][0]
        assert uf.nout == (2 if grad else 1)
        assert uf.signature is None
    # a float32 and a float64 loop
    kinds = {t.split("->")[0][0] for t in uf.types}
    assert {"f", "d"} <= kinds


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(ELEM))
def test_elementwise_equals_function_with_reduction_none(name, dtype, rng):
    nparams, fname, pnames = ELEM[name]
    x, y = elem_inputs(rng, name, (7, 9), dtype)
    params = PARAM_VALUES[name]
    fn = getattr(fastloss, fname)
    want_l, want_g = fn(x, y, reduction="none", return_grad=True, **dict(zip(pnames, params)))
    loss = getattr(U, name)(x, y, *params)
    loss2, grad = getattr(U, name + "_grad")(x, y, *params)
    assert loss.dtype == dtype and grad.dtype == dtype
    np.testing.assert_array_equal(loss, want_l)
    np.testing.assert_array_equal(loss2, want_l)
    np.testing.assert_array_equal(grad, want_g)


def test_sigmoid_focal_negative_alpha_is_no_alpha(rng):
    """In the ufunc, alpha < 0 switches the alpha weighting off (torchvision), i.e. the
    function's alpha=None."""
    x, y = elem_inputs(rng, "sigmoid_focal", (20,))
    want = fastloss.sigmoid_focal_loss(x, y, alpha=None, gamma=1.5, reduction="none")
    np.testing.assert_array_equal(U.sigmoid_focal(x, y, -1.0, 1.5), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_softmax_cross_entropy_equals_function(dtype, rng):
    x = logits(rng, (6, 4, 5), dtype=dtype)
    lab = class_labels(rng, (6, 4), 5)
    want_l, want_g = fastloss.cross_entropy(x, lab, axis=-1, reduction="none", return_grad=True)
    loss = U.softmax_cross_entropy(x, lab)
    loss2, grad = U.softmax_cross_entropy_grad(x, lab)
    assert loss.shape == (6, 4) and grad.shape == x.shape
    assert loss.dtype == dtype and grad.dtype == dtype
    np.testing.assert_array_equal(loss, want_l)
    np.testing.assert_array_equal(loss2, want_l)
    np.testing.assert_array_equal(grad, want_g)


def test_softmax_cross_entropy_value_by_hand():
    """x = (0, log 3), label 1: logsumexp = log(1 + 3) = log 4, loss = log 4 - log 3;
    softmax = (1/4, 3/4), gradient = (1/4, -1/4)."""
    loss, grad = U.softmax_cross_entropy_grad(np.array([0.0, np.log(3.0)]), 1)
    np.testing.assert_allclose(loss, np.log(4.0 / 3.0), rtol=1e-15)
    np.testing.assert_allclose(grad, [0.25, -0.25], rtol=1e-15)


# ------------------------------------------------------------------ broadcasting and out=

@pytest.mark.parametrize("name", list(ELEM))
def test_broadcasting(name, rng):
    nparams, fname, pnames = ELEM[name]
    x, _ = elem_inputs(rng, name, (4, 1, 6))
    _, y = elem_inputs(rng, name, (3, 1))
    params = PARAM_VALUES[name]
    got_l, got_g = getattr(U, name + "_grad")(x, y, *params)
    assert got_l.shape == (4, 3, 6)
    xb, yb = np.broadcast_arrays(x, y)
    want_l, want_g = getattr(fastloss, fname)(xb, yb, reduction="none", return_grad=True,
                                             **dict(zip(pnames, params)))
    np.testing.assert_array_equal(got_l, want_l)
    np.testing.assert_array_equal(got_g, want_g)


@pytest.mark.parametrize("name", ["huber", "smooth_l1", "sigmoid_focal"])
def test_parameters_broadcast_elementwise(name, rng):
    """Array-valued parameters (one per element) give each element its own parameter."""
    x, y = elem_inputs(rng, name, (5, 4))
    if name == "sigmoid_focal":
        params = (rng.uniform(0, 1, (5, 1)), rng.choice([0.0, 0.5, 2.0, 5.0], (4,)))
    else:
        params = (rng.uniform(0.1, 2.0, (5, 4)),)
    loss, grad = getattr(U, name + "_grad")(x, y, *params)
    for i in range(5):
        for j in range(4):
            p = [np.broadcast_to(q, (5, 4))[i, j] for q in params]
            l1, g1 = getattr(U, name + "_grad")(x[i, j], y[i, j], *p)
            assert loss[i, j] == l1 and grad[i, j] == g1


@pytest.mark.parametrize("name", list(ELEM))
def test_out_is_returned(name, rng):
    x, y = elem_inputs(rng, name, (3, 5))
    params = PARAM_VALUES[name]
    o = np.empty((3, 5))
    assert getattr(U, name)(x, y, *params, out=o) is o
    np.testing.assert_array_equal(o, getattr(U, name)(x, y, *params))
    o1, o2 = np.empty((3, 5)), np.empty((6, 10))[::2, ::2]   # the second one strided
    res = getattr(U, name + "_grad")(x, y, *params, out=(o1, o2))
    assert res[0] is o1 and res[1] is o2
    want = getattr(U, name + "_grad")(x, y, *params)
    np.testing.assert_array_equal(o1, want[0])
    np.testing.assert_array_equal(o2, want[1])


def test_gufunc_out_and_axes(rng):
    x = logits(rng, (5, 7))
    lab = class_labels(rng, (5,), 7)
    o, go = np.empty(5), np.empty((7, 5)).T   # gradient into a transposed view
    res = U.softmax_cross_entropy_grad(x, lab, out=(o, go))
    assert res[0] is o and res[1] is go
    want = U.softmax_cross_entropy_grad(np.ascontiguousarray(x), lab)
    np.testing.assert_array_equal(o, want[0])
    np.testing.assert_array_equal(go, want[1])
    # classes on axis 0 through axes=
    got = U.softmax_cross_entropy(x.T.copy(), lab, axes=[(0,), (), ()])
    np.testing.assert_array_equal(got, want[0])


def test_where(rng):
    x, y = elem_inputs(rng, "huber", (10,))
    mask = np.arange(10) % 3 == 0
    o = np.full(10, -1.0)
    U.huber(x, y, 1.0, out=o, where=mask)
    np.testing.assert_array_equal(o[mask], U.huber(x, y, 1.0)[mask])
    assert np.all(o[~mask] == -1.0)


# ------------------------------------------------------------------ dtypes and layouts

@pytest.mark.parametrize("name", list(ELEM))
def test_float32_stays_float32(name, rng):
    x, y = elem_inputs(rng, name, (8,), np.float32)
    params = PARAM_VALUES[name]   # Python floats are "weak" scalars (NEP 50)
    assert getattr(U, name)(x, y, *params).dtype == np.float32
    l, g = getattr(U, name + "_grad")(x, y, *params)
    assert l.dtype == np.float32 and g.dtype == np.float32
    assert U.softmax_cross_entropy(logits(rng, (3, 4), dtype=np.float32), [0, 1, 2]).dtype == np.float32
    # float64 data computes in float64
    assert getattr(U, name)(x.astype(np.float64), y, *params).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(ELEM))
def test_strided_and_contiguous_give_identical_bits(name, dtype, rng):
    x, y = elem_inputs(rng, name, (40,), dtype)
    params = PARAM_VALUES[name]
    uf = getattr(U, name + "_grad")
    xs, ys = x[::2], y[1::2]                  # strided views
    a = uf(xs, ys, *params)
    b = uf(xs.copy(), ys.copy(), *params)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # reversed (negative strides) and scalar-broadcast y
    c = uf(x[::-1], y[0], *params)
    d = uf(x[::-1].copy(), np.full(40, y[0]), *params)
    np.testing.assert_array_equal(c[0], d[0])
    np.testing.assert_array_equal(c[1], d[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_gufunc_strided_rows_identical_bits(dtype, rng):
    x = logits(rng, (6, 10), dtype=dtype)
    lab = class_labels(rng, (6,), 5)
    xs = x[:, ::2]                             # rows with stride 2
    a = U.softmax_cross_entropy_grad(xs, lab)
    b = U.softmax_cross_entropy_grad(xs.copy(), lab)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    lab_s = np.repeat(lab, 2)[::2]             # strided labels
    c = U.softmax_cross_entropy(xs, lab_s)
    np.testing.assert_array_equal(c, b[0])


@pytest.mark.parametrize("itype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.intp])
def test_gufunc_integer_labels_are_cast(itype, rng):
    x = logits(rng, (9, 6))
    lab = class_labels(rng, (9,), 6)
    want = U.softmax_cross_entropy_grad(x, lab)
    got = U.softmax_cross_entropy_grad(x, lab.astype(itype))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_gufunc_many_classes():
    rng = np.random.default_rng(seed_of("ufunc-32000"))
    x = logits(rng, (2, 32000))
    lab = np.array([31999, 5])
    l, g = U.softmax_cross_entropy_grad(x, lab)
    rl, rg = fastloss.reference.cross_entropy(x, lab, reduction="none", return_grad=True)
    np.testing.assert_allclose(l, rl, rtol=1e-12)
    np.testing.assert_allclose(g, rg, rtol=1e-12, atol=1e-17)


def test_scalars_and_empty():
    # Huber, delta 1: d = 2 -> 1 * (2 - 0.5) = 1.5, grad 1
    l, g = U.huber_grad(3.0, 1.0, 1.0)
    assert isinstance(l, np.float64) and l == 1.5 and g == 1.0
    e = U.bce_with_logits_grad(np.empty((0, 3)), np.empty((0, 3)))
    assert e[0].shape == (0, 3) and e[1].shape == (0, 3)
    assert U.softmax_cross_entropy(np.empty((0, 4)), np.empty(0, np.int64)).shape == (0,)


# ------------------------------------------------------------------ floating-point warnings

def test_invalid_label_gives_nan_and_invalid_warning(rng):
    x = logits(rng, (4, 3))
    lab = np.array([0, 3, 2, -1])
    good = U.softmax_cross_entropy_grad(x, np.array([0, 0, 2, 0]))
    with pytest.warns(RuntimeWarning, match="invalid value"):
        loss, grad = U.softmax_cross_entropy_grad(x, lab)
    assert np.isnan(loss[1]) and np.isnan(loss[3])
    assert np.all(np.isnan(grad[1])) and np.all(np.isnan(grad[3]))
    np.testing.assert_array_equal(loss[[0, 2]], good[0][[0, 2]])
    np.testing.assert_array_equal(grad[[0, 2]], good[1][[0, 2]])
    with pytest.warns(RuntimeWarning, match="invalid value"):
        assert np.isnan(U.softmax_cross_entropy(x, lab)[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(invalid="ignore"):
            assert np.isnan(U.softmax_cross_entropy(x, lab)[1])
    with np.errstate(invalid="raise"):
        with pytest.raises(FloatingPointError):
            U.softmax_cross_entropy(x, lab)


@pytest.mark.parametrize("call", [
    pytest.param(lambda: U.bce(np.array([0.5, 1.5]), np.array([1.0, 1.0])), id="bce-p>1"),
    pytest.param(lambda: U.bce_grad(np.array([0.5, -0.5]), np.array([1.0, 1.0])), id="bce_grad-p<0"),
    pytest.param(lambda: U.huber(np.array([0.5, 1.5]), 0.0, 0.0), id="huber-delta0"),
    pytest.param(lambda: U.smooth_l1_grad(np.array([0.5, 1.5]), 0.0, -1.0), id="smooth_l1-beta<0"),
    pytest.param(lambda: U.sigmoid_focal(np.array([0.5, 1.5]), 1.0, 0.25, -1.0), id="focal-gamma<0"),
])
def test_invalid_values_give_nan_and_invalid_warning(call):
    with pytest.warns(RuntimeWarning, match="invalid value"):
        res = call()
    res = res if isinstance(res, tuple) else (res,)
    assert np.isnan(res[0][-1])
    with np.errstate(invalid="raise"):
        with pytest.raises(FloatingPointError):
            call()


def _no_fp_warning(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # NumPy's defaults (underflow is not reported: np.exp(-1e4) is silent too)
        with np.errstate(divide="warn", over="warn", invalid="warn", under="ignore"):
            return fn()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(ELEM) + [n + "_grad" for n in ELEM])
def test_finite_inputs_raise_no_floating_point_warning(name, dtype):
    """Like NumPy's own ufuncs, ordinary finite inputs with finite results must not set
    floating-point flags (no spurious "divide by zero"/"invalid value" warnings): hard and
    soft targets, logits up to +-1e4, probabilities strictly inside (0, 1)."""
    base = name[:-5] if name.endswith("_grad") else name
    rng = np.random.default_rng(seed_of("nofp", name))
    x, y = elem_inputs(rng, base, (60,), dtype)
    if base != "bce":
        x[:8] = np.array([1e4, -1e4, 50, -50, 20, -20, 0, 1e-3], dtype)
    y[:8] = np.array([0, 1, 0, 1, 0.5, 1, 0, 1], dtype) if base != "huber" and base != "smooth_l1" else y[:8]
    params = PARAM_VALUES[base]
    uf = getattr(U, name)
    for k in range(x.size):   # element by element, so a failure names the element
        res = _no_fp_warning(lambda: uf(x[k:k + 1], y[k:k + 1], *params))
        res = res if isinstance(res, tuple) else (res,)
        assert all(np.all(np.isfinite(r)) for r in res), (x[k], y[k])
    _no_fp_warning(lambda: uf(x, y, *params))
    if base == "sigmoid_focal":
        for g in (0.0, 0.5, 5.0):
            _no_fp_warning(lambda: uf(x, y, -1.0, g))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ALL)
def test_nan_input_propagates_without_warning(name, dtype):
    """NaN in -> NaN out for that element (row), others unaffected, and no warning: NumPy's
    own ufuncs propagate quiet NaNs silently (np.add(nan, 1), np.exp(nan), np.log(nan))."""
    if name.startswith("softmax"):
        x = np.array([[0.5, np.nan, 1.0], [0.2, 0.1, -1.0]], dtype)
        args = (x, np.array([0, 2]))
    else:
        base = name[:-5] if name.endswith("_grad") else name
        x = np.array([np.nan, 0.25], dtype)
        args = (x, np.array([1.0, 0.0], dtype)) + PARAM_VALUES[base]
    uf = getattr(U, name)
    res = _no_fp_warning(lambda: uf(*args))
    res = res if isinstance(res, tuple) else (res,)
    assert np.all(np.isnan(res[0][0])) and np.all(np.isfinite(res[0][1]))


def test_errstate_is_restored_and_respected(rng):
    """The ufuncs follow np.errstate like NumPy's own: 'ignore' silences, 'raise' raises,
    and our calls do not change the caller's error state."""
    before = np.geterr()
    with np.errstate(invalid="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert np.isnan(U.huber(1.0, 0.0, -1.0))
    assert np.geterr() == before


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", [n + "_grad" for n in ELEM] + ["softmax_cross_entropy_grad"])
def test_every_length_equals_element_by_element(name, dtype):
    """Contiguous inner loops of every length 1..40 (all SIMD tails) give the bits of the
    element-by-element (length-1) calls."""
    rng = np.random.default_rng(seed_of("lengths", name, dtype.__name__))
    if name.startswith("softmax"):
        x = logits(rng, (40, 7), dtype=dtype)
        y = class_labels(rng, (40,), 7)
        params = ()
    else:
        x, y = elem_inputs(rng, name[:-5], (40,), dtype)
        params = PARAM_VALUES[name[:-5]]
    uf = getattr(U, name)
    one = [uf(x[i:i + 1], y[i:i + 1], *params) for i in range(40)]
    one_l = np.concatenate([o[0] for o in one])
    one_g = np.concatenate([o[1] for o in one])
    for n in range(1, 41):
        l, g = uf(x[:n], y[:n], *params)
        np.testing.assert_array_equal(l, one_l[:n], err_msg=f"length {n}")
        np.testing.assert_array_equal(g, one_g[:n], err_msg=f"length {n}")
