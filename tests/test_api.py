"""The public API as a contract: signatures, dtype rules, return types, errors, out= and
grad_out=, awkward memory layouts, inputs left untouched, empty/one-element inputs, NaN
propagation and GIL-free kernels."""
import inspect
import re
import threading
import time

import numpy as np
import pytest

import fastloss
from cases import CASES, ELEMENTWISE, FUNCTIONS, func_name, make_case, none_shape
from conftest import get_impl, seed_of

# The signatures exactly as written in issue 3.  huber_loss and smooth_l1_loss are given
# there as "(input, target, *, delta=1.0, reduction="mean", ...)": the "..." is the common
# tail every other element-wise function spells out (return_grad, out, grad_out).
ISSUE_SIGNATURES = {
    "cross_entropy": '(input, target, *, weight=None, ignore_index=-100, label_smoothing=0.0, '
                     'reduction="mean", axis=1, return_grad=False, out=None, grad_out=None)',
    "binary_cross_entropy": '(input, target, *, weight=None, reduction="mean", '
                            'return_grad=False, out=None, grad_out=None)',
    "binary_cross_entropy_with_logits": '(input, target, *, weight=None, pos_weight=None, '
                                        'reduction="mean", return_grad=False, out=None, '
                                        'grad_out=None)',
    "sigmoid_focal_loss": '(input, target, *, alpha=0.25, gamma=2.0, reduction="mean", '
                          'return_grad=False, out=None, grad_out=None)',
    "softmax_focal_loss": '(input, target, *, alpha=None, gamma=2.0, ignore_index=-100, '
                          'reduction="mean", axis=1, return_grad=False, out=None, grad_out=None)',
    "huber_loss": '(input, target, *, delta=1.0, reduction="mean", return_grad=False, '
                  'out=None, grad_out=None)',
    "smooth_l1_loss": '(input, target, *, beta=1.0, reduction="mean", return_grad=False, '
                      'out=None, grad_out=None)',
    "dice_loss": '(input, target, *, activation=None, include_background=True, '
                 'squared_pred=False, jaccard=False, smooth_nr=1e-5, smooth_dr=1e-5, '
                 'batch=False, weight=None, reduction="mean", return_grad=False, grad_out=None)',
}


def _issue_signature(name):
    ns = {}
    exec(f"def {name}{ISSUE_SIGNATURES[name]}: pass", ns)
    return inspect.signature(ns[name])


def _describe(sig):
    return [(p.name, p.kind, p.default, type(p.default)) for p in sig.parameters.values()]


@pytest.mark.parametrize("where", ["fastloss", "reference"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_signature_matches_issue(name, where):
    """Issue 3's signature exactly; fastloss's functions also take issue 4's keyword-only
    n_threads=None last (the NumPy reference is single-threaded and does not)."""
    mod = fastloss if where == "fastloss" else fastloss.reference
    fn = getattr(mod, name)
    expected = _describe(_issue_signature(name))
    if where == "fastloss":
        expected.append(("n_threads", inspect.Parameter.KEYWORD_ONLY, None, type(None)))
    assert _describe(inspect.signature(fn)) == expected


def test_public_names_and_submodules():
    assert set(FUNCTIONS) <= set(fastloss.__all__)
    for name in FUNCTIONS:
        assert callable(getattr(fastloss, name))
    # reachable as attributes right after `import fastloss` (issue: "NumPy reference")
    assert hasattr(fastloss.reference, "cross_entropy")
    assert isinstance(fastloss.ufuncs.huber, np.ufunc)


# ------------------------------------------------------------------ dtypes and return types

@pytest.fixture(params=["fastloss", "reference"])
def mod(request):
    """The package or its NumPy oracle: the API rules hold for both (same semantics)."""
    return get_impl(request.param)


def _call(mod, fn, x, t, kw, **extra):
    return getattr(mod, fn)(x, t, **{**kw, **extra})


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES)
def test_reduced_loss_is_numpy_scalar_of_computing_dtype(mod, case, dtype, reduction, rng):
    fn, x, t, kw = make_case(case, rng, dtype)
    loss, grad = _call(mod, fn, x, t, kw, reduction=reduction, return_grad=True)
    assert type(loss) is np.dtype(dtype).type
    assert grad.dtype == dtype and grad.shape == x.shape
    loss_only = _call(mod, fn, x, t, kw, reduction=reduction)
    assert type(loss_only) is np.dtype(dtype).type
    # the fused pass returns the same loss with or without the gradient
    assert loss_only == loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES)
def test_none_reduction_shape_and_dtype(mod, case, dtype, rng):
    fn, x, t, kw = make_case(case, rng, dtype)
    loss, grad = _call(mod, fn, x, t, kw, reduction="none", return_grad=True)
    assert isinstance(loss, np.ndarray)
    assert loss.dtype == dtype and loss.shape == none_shape(fn, x, kw)
    assert grad.dtype == dtype and grad.shape == x.shape


def _cast_case(x, t, kw, dtype):
    """The case's float arrays (input, float targets, float options) cast to dtype."""
    def c(a):
        return a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
    return c(x), c(t), {k: c(v) for k, v in kw.items()}


@pytest.mark.parametrize("case", CASES)
def test_float16_computes_in_float32(mod, case, rng):
    fn, x, t, kw = make_case(case, rng, np.float32)
    x16, t16, kw16 = _cast_case(x, t, kw, np.float16)
    loss, grad = _call(mod, fn, x16, t16, kw16, return_grad=True)
    assert type(loss) is np.float32 and grad.dtype == np.float32
    # same as converting the float16 values to float32 first (float16 -> float32 is exact)
    x32, t32, kw32 = _cast_case(x16, t16, kw16, np.float32)
    loss32, grad32 = _call(mod, fn, x32, t32, kw32, return_grad=True)
    assert loss == loss32
    np.testing.assert_array_equal(grad, grad32)
    none = _call(mod, fn, x16, t16, kw16, reduction="none")
    assert none.dtype == np.float32


@pytest.mark.parametrize("fn", ["huber_loss", "smooth_l1_loss", "binary_cross_entropy_with_logits",
                                "sigmoid_focal_loss", "cross_entropy", "softmax_focal_loss"])
@pytest.mark.parametrize("itype", [np.int32, np.int64, np.uint8])
def test_integer_input_computes_in_float64(mod, fn, itype, rng):
    x = rng.integers(0, 5, size=(4, 3)).astype(itype)
    if fn in ("cross_entropy", "softmax_focal_loss"):
        t = rng.integers(0, 3, size=4)
    else:
        t = rng.integers(0, 2, size=(4, 3)).astype(np.float64)
    loss, grad = getattr(mod, fn)(x, t, return_grad=True)
    assert type(loss) is np.float64 and grad.dtype == np.float64
    loss64, grad64 = getattr(mod, fn)(x.astype(np.float64), t, return_grad=True)
    assert loss == loss64
    np.testing.assert_array_equal(grad, grad64)


def test_float32_input_with_float64_target_computes_in_float32(mod, rng):
    """The computing dtype is the input's: a float64 target is converted to float32."""
    x = rng.standard_normal((5, 3)).astype(np.float32)
    t = rng.standard_normal((5, 3))
    loss = mod.huber_loss(x, t)
    assert type(loss) is np.float32
    assert loss == mod.huber_loss(x, t.astype(np.float32))


@pytest.mark.parametrize("bad", ["complex", "bool", "object", "str"])
@pytest.mark.parametrize("case", CASES)
def test_non_real_input_dtype_is_type_error(mod, case, bad, rng):
    fn, x, t, kw = make_case(case, rng)
    if bad == "complex":
        xb = x.astype(np.complex128)
    elif bad == "bool":
        xb = x > 0
    elif bad == "object":
        xb = x.astype(object)
    else:
        xb = x.astype(str)
    with pytest.raises(TypeError):
        _call(mod, fn, xb, t, kw)


# ------------------------------------------------------------------ bad parameters

BAD_PARAMS = [
    ("sigmoid_focal_loss", {"gamma": -0.5}, "gamma"),
    ("softmax_focal_loss", {"gamma": -1.0}, "gamma"),
    ("huber_loss", {"delta": 0.0}, "delta"),
    ("huber_loss", {"delta": -1.0}, "delta"),
    ("smooth_l1_loss", {"beta": -0.1}, "beta"),
    ("cross_entropy", {"label_smoothing": -0.1}, "label_smoothing"),
    ("cross_entropy", {"label_smoothing": 1.5}, "label_smoothing"),
    ("dice_loss", {"activation": "relu"}, "activation"),
    ("dice_loss", {"activation": "Softmax"}, "activation"),
    ("dice_loss", {"weight": np.array([1.0, -0.5])}, "weight"),
] + [(f, {"reduction": r}, "reduction") for f in FUNCTIONS for r in ("avg", "MEAN", None)]


@pytest.mark.parametrize("fn,params,name", BAD_PARAMS,
                         ids=[f"{f}-{next(iter(p))}={str(list(p.values())[0]).replace(' ', '')}" for f, p, _ in BAD_PARAMS])
def test_bad_parameter_value_error_names_parameter(mod, fn, params, name, rng):
    _, x, t, kw = make_case(fn, rng)
    with pytest.raises(ValueError, match=name):
        _call(mod, fn, x, t, {**kw, **params})


@pytest.mark.parametrize("fn,param,length", [
    ("cross_entropy", "weight", 4),
    ("cross_entropy", "weight", 6),
    ("softmax_focal_loss", "alpha", 3),
    ("dice_loss", "weight", 3),   # 3 channels, include_background=False keeps 2
    ("dice_loss", "weight", 1),
    ("binary_cross_entropy", "weight", 3),   # (6, 4) input: (3,) does not broadcast
    ("binary_cross_entropy_with_logits", "weight", 5),
    ("binary_cross_entropy_with_logits", "pos_weight", 3),
])
def test_weight_of_wrong_length_value_error_names_parameter(mod, fn, param, length, rng):
    _, x, t, kw = make_case(fn, rng)
    kw = {**kw, param: np.ones(length)}
    with pytest.raises(ValueError, match=param):
        _call(mod, fn, x, t, kw)


SHAPE_MISMATCH = [
    ("huber_loss", (6, 3)),
    ("smooth_l1_loss", (4, 6)),
    ("binary_cross_entropy", (6,)),
    ("binary_cross_entropy_with_logits", (6, 4, 1)),
    ("sigmoid_focal_loss", (5, 4)),
    ("cross_entropy", (6,)),          # input (7, 5): labels must be (7,)
    ("cross_entropy", (7, 5, 1)),
    ("cross_entropy_probs", (7, 4)),  # probabilities must be input's shape
    ("softmax_focal_loss", (8,)),
    ("dice_loss", (2, 3, 4, 4)),      # input (2, 3, 4, 5)
    ("dice_loss", (2, 5, 4)),         # label map must be (2, 4, 5) or (2, 1, 4, 5)
]


@pytest.mark.parametrize("case,tshape", SHAPE_MISMATCH,
                         ids=[f"{c}-target{'x'.join(map(str, s))}" for c, s in SHAPE_MISMATCH])
def test_shape_mismatch_names_both_arguments_and_shapes(mod, case, tshape, rng):
    fn, x, t, kw = make_case(case, rng)
    t_bad = np.zeros(tshape, dtype=t.dtype)
    with pytest.raises(ValueError) as exc:
        _call(mod, fn, x, t_bad, kw)
    msg = str(exc.value)
    assert "input" in msg and "target" in msg, msg
    assert str(tuple(x.shape)) in msg and str(tuple(tshape)) in msg, msg


@pytest.mark.parametrize("fn", ["cross_entropy", "softmax_focal_loss", "dice_loss"])
@pytest.mark.parametrize("bad", [5, -1, 10**12, -100])
def test_label_out_of_range_index_error_names_value(mod, fn, bad, rng):
    """C = 5 (3 for dice): a label outside [0, C) that is not ignore_index raises
    IndexError naming it.  -100 is the default ignore_index, so we switch ignore_index to
    -1 for that row of the table (for dice there is no ignore_index: -100 is just bad)."""
    _, x, t, kw = make_case(fn, rng)
    if fn == "dice_loss":
        bad = {5: 3}.get(bad, bad)
    t = t.copy()
    t.flat[3] = bad
    if bad == -100 and fn != "dice_loss":
        kw = {**kw, "ignore_index": -1}
    with pytest.raises(IndexError, match=re.escape(str(bad))):
        _call(mod, fn, x, t, kw)


@pytest.mark.parametrize("p", [1.5, -0.25, 1.0000001, -1e-30, np.inf, -np.inf])
def test_bce_probability_outside_unit_interval(mod, p):
    x = np.array([0.2, p, 0.7])
    y = np.array([0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="binary_cross_entropy_with_logits"):
        mod.binary_cross_entropy(x, y)
    with pytest.raises(ValueError, match="binary_cross_entropy_with_logits"):
        mod.binary_cross_entropy(x.astype(np.float32), y, reduction="none", return_grad=True)


# ------------------------------------------------------------------ out= and grad_out=

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("case", [c for c in CASES if c != "dice_loss"])
def test_out_and_grad_out_are_returned_and_filled(mod, case, layout, dtype, rng):
    fn, x, t, kw = make_case(case, rng, dtype)
    want_loss, want_grad = _call(mod, fn, x, t, kw, reduction="none", return_grad=True)
    lshape = none_shape(fn, x, kw)
    if layout == "contiguous":
        out = np.full(lshape, -7.0, dtype=dtype)
        gout = np.full(x.shape, -7.0, dtype=dtype)
    else:  # every other element of a bigger buffer, in reversed order
        out = np.full(tuple(2 * s for s in lshape), -7.0, dtype=dtype)[tuple(slice(None, None, -2) for _ in lshape)]
        gout = np.full(tuple(2 * s for s in x.shape), -7.0, dtype=dtype)[tuple(slice(None, None, -2) for _ in x.shape)]
        assert not out.flags.c_contiguous and not gout.flags.c_contiguous
    loss, grad = _call(mod, fn, x, t, kw, reduction="none", return_grad=True, out=out, grad_out=gout)
    assert loss is out and grad is gout
    np.testing.assert_array_equal(out, want_loss)
    np.testing.assert_array_equal(gout, want_grad)
    # out= alone, and grad_out= with a reduced loss
    out2 = np.empty(lshape, dtype=dtype)
    assert _call(mod, fn, x, t, kw, reduction="none", out=out2) is out2
    np.testing.assert_array_equal(out2, want_loss)
    gout2 = np.empty(x.shape, dtype=dtype)
    loss_m, g_m = _call(mod, fn, x, t, kw, reduction="mean", return_grad=True, grad_out=gout2)
    assert g_m is gout2
    np.testing.assert_array_equal(gout2, _call(mod, fn, x, t, kw, reduction="mean", return_grad=True)[1])


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_dice_grad_out(mod, layout, rng):
    fn, x, t, kw = make_case("dice_loss", rng)
    _, want = _call(mod, fn, x, t, kw, return_grad=True)
    if layout == "contiguous":
        gout = np.empty_like(x)
    else:
        gout = np.empty(x.shape[::-1]).T  # Fortran order
    loss, g = _call(mod, fn, x, t, kw, return_grad=True, grad_out=gout)
    assert g is gout
    np.testing.assert_array_equal(gout, want)


@pytest.mark.parametrize("case", ["huber_loss", "cross_entropy", "binary_cross_entropy_with_logits"])
def test_out_with_wrong_shape_or_dtype_is_rejected(mod, case, rng):
    fn, x, t, kw = make_case(case, rng)
    lshape = none_shape(fn, x, kw)
    with pytest.raises((ValueError, TypeError)):
        _call(mod, fn, x, t, kw, reduction="none", out=np.empty(lshape, dtype=np.float32))
    with pytest.raises((ValueError, TypeError)):
        _call(mod, fn, x, t, kw, reduction="none", out=np.empty((1,) + lshape))
    with pytest.raises((ValueError, TypeError)):
        _call(mod, fn, x, t, kw, return_grad=True, grad_out=np.empty(x.shape + (1,)))


def test_out_aliasing_input_gives_correct_result(mod, rng):
    """out= may be the input array itself (like np.add(a, b, out=a)): the result must be
    what a fresh output would hold."""
    x = rng.standard_normal(50)
    t = rng.standard_normal(50)
    want, want_g = mod.huber_loss(x, t, reduction="none", return_grad=True)
    x2 = x.copy()
    loss, g = mod.huber_loss(x2, t, reduction="none", return_grad=True, out=x2)
    assert loss is x2
    np.testing.assert_array_equal(loss, want)
    np.testing.assert_array_equal(g, want_g)


# ------------------------------------------------------------------ memory layouts

def _readonly(a):
    if isinstance(a, np.ndarray):
        a = a.copy()
        a.setflags(write=False)
    return a


def _reversed_layout(a):
    """The same values in Fortran (transposed) order: a non-C-contiguous view."""
    if not isinstance(a, np.ndarray) or a.ndim < 2:
        if isinstance(a, np.ndarray) and a.ndim == 1 and a.size > 1:
            return np.repeat(a, 2)[::2]  # strided 1-D view
        return a
    return np.asfortranarray(a)


def _strided(a):
    """The same values as every other element of a twice-as-large buffer."""
    if not isinstance(a, np.ndarray) or a.ndim == 0:
        return a
    big = np.repeat(a, 2, axis=-1)
    v = big[..., ::2]
    assert np.array_equal(v, a) and (a.shape[-1] <= 1 or not v.flags.c_contiguous)
    return v


@pytest.mark.parametrize("layout", ["readonly", "fortran", "strided"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES)
def test_awkward_layouts_give_identical_results(mod, case, dtype, layout, rng):
    fn, x, t, kw = make_case(case, rng, dtype)
    conv = {"readonly": _readonly, "fortran": _reversed_layout, "strided": _strided}[layout]
    xs, ts = conv(x), conv(t)
    kws = {k: conv(v) for k, v in kw.items()}
    for red in ("none", "mean"):
        want_l, want_g = _call(mod, fn, x, t, kw, reduction=red, return_grad=True)
        got_l, got_g = _call(mod, fn, xs, ts, kws, reduction=red, return_grad=True)
        if mod is fastloss:
            # the kernel sees the same contiguous data (a copy): the very same bits
            np.testing.assert_array_equal(got_l, want_l)
            np.testing.assert_array_equal(got_g, want_g)
        else:
            # NumPy's pairwise sums follow the memory layout: equal to rounding
            rtol = 1e-12 if dtype == np.float64 else 1e-5
            np.testing.assert_allclose(got_l, want_l, rtol=rtol)
            np.testing.assert_allclose(got_g, want_g, rtol=rtol, atol=rtol * np.max(np.abs(want_g)))


@pytest.mark.parametrize("case", CASES)
def test_byteswapped_input(mod, case, rng):
    fn, x, t, kw = make_case(case, rng)
    xs = x.astype(x.dtype.newbyteorder())
    want_l, want_g = _call(mod, fn, x, t, kw, reduction="none", return_grad=True)
    got_l, got_g = _call(mod, fn, xs, t, kw, reduction="none", return_grad=True)
    np.testing.assert_array_equal(got_l, want_l)
    np.testing.assert_array_equal(got_g, want_g)


def test_transposed_cross_entropy_axis(mod):
    """A transposed (C, N) view with axis=0 equals the (N, C) array with axis=1 ... i.e.
    the class axis is honoured on a non-contiguous view."""
    rng = np.random.default_rng(seed_of("transposed-ce"))
    x = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 6)
    want = mod.cross_entropy(x, y, reduction="none", return_grad=True)
    xt = np.ascontiguousarray(x.T).T   # same logical (6, 4), Fortran memory
    got = mod.cross_entropy(xt, y, reduction="none", return_grad=True)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    got0 = mod.cross_entropy(x.T, y, axis=0, reduction="none", return_grad=True)
    np.testing.assert_array_equal(got0[0], want[0])
    np.testing.assert_array_equal(got0[1], want[1].T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES)
def test_inputs_are_not_modified(mod, case, dtype, rng):
    fn, x, t, kw = make_case(case, rng, dtype)
    arrays = [x, t] + [v for v in kw.values() if isinstance(v, np.ndarray)]
    copies = [a.copy() for a in arrays]
    for red in ("none", "mean", "sum"):
        _call(mod, fn, x, t, kw, reduction=red, return_grad=True)
    # also through the non-contiguous path
    _call(mod, fn, np.asfortranarray(x), t, kw, reduction="none", return_grad=True)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)
        assert a.dtype == c.dtype


def test_array_likes_accepted(mod):
    loss = mod.huber_loss([0.0, 3.0], [1.0, 0.0], reduction="none")
    # Huber, delta = 1: |d| = 1 -> linear branch 1 * (1 - 0.5) = 0.5; |d| = 3 -> 3 - 0.5
    np.testing.assert_array_equal(loss, [0.5, 2.5])
    # uniform over 2 classes: -log(1/2) = log 2
    np.testing.assert_allclose(mod.cross_entropy([[0.0, 0.0]], [1]), np.log(2.0), rtol=1e-15)


# ------------------------------------------------------------------ empty / one element

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES)
def test_empty_input(mod, case, dtype, rng):
    shape = {"dice_loss": (0, 3, 4), "cross_entropy": (0, 5), "cross_entropy_probs": (0, 5),
             "softmax_focal_loss": (0, 5)}.get(case, (0, 4))
    fn, x, t, kw = make_case(case, rng, dtype, shape=shape)
    for red in ("sum", "mean"):
        loss, grad = _call(mod, fn, x, t, kw, reduction=red, return_grad=True)
        assert type(loss) is np.dtype(dtype).type
        assert loss == 0.0, (red, loss)
        assert grad.shape == x.shape and grad.dtype == dtype
    loss, grad = _call(mod, fn, x, t, kw, reduction="none", return_grad=True)
    assert loss.shape == none_shape(fn, x, kw) and loss.size == 0
    assert grad.shape == x.shape


def test_empty_spatial_dice(mod, rng):
    """(B, C, 0): every sum is 0, so every class scores 1 - smooth_nr / smooth_dr = 0."""
    x = np.empty((2, 3, 0))
    t = np.empty((2, 3, 0))
    loss = mod.dice_loss(x, t, reduction="none")
    np.testing.assert_array_equal(loss, np.zeros((2, 3)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", sorted(ELEMENTWISE))
def test_one_element_equals_same_element_in_a_batch(mod, case, dtype, rng):
    fn, x, t, kw = make_case(case, rng, dtype)
    big_l, big_g = _call(mod, fn, x, t, kw, reduction="none", return_grad=True)
    # array options (weight, pos_weight) reduced to the entry that x[0, 0] uses
    kw1 = {k: (v.flat[0] if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    l1, g1 = _call(mod, fn, x.reshape(-1)[:1], t.reshape(-1)[:1], kw1, reduction="mean", return_grad=True)
    assert l1 == big_l.flat[0]
    assert g1.shape == (1,) and g1[0] == big_g.flat[0]


# ------------------------------------------------------------------ NaN propagation

@pytest.mark.parametrize("where", ["input", "target"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", sorted(ELEMENTWISE))
def test_nan_propagates_elementwise(mod, case, dtype, where, rng):
    fn, x, t, kw = make_case(case, rng, dtype)
    clean_l, clean_g = _call(mod, fn, x, t, kw, reduction="none", return_grad=True)
    bad = (2, 1)
    x2, t2 = x.copy(), t.copy()
    (x2 if where == "input" else t2)[bad] = np.nan
    loss, grad = _call(mod, fn, x2, t2, kw, reduction="none", return_grad=True)
    assert np.isnan(loss[bad]) and np.isnan(grad[bad])
    mask = np.ones(x.shape, bool)
    mask[bad] = False
    np.testing.assert_array_equal(loss[mask], clean_l[mask])
    np.testing.assert_array_equal(grad[mask], clean_g[mask])
    s, gs = _call(mod, fn, x2, t2, kw, reduction="sum", return_grad=True)
    assert np.isnan(s)
    np.testing.assert_array_equal(gs[mask], _call(mod, fn, x, t, kw, reduction="sum", return_grad=True)[1][mask])
    assert np.isnan(_call(mod, fn, x2, t2, kw, reduction="mean"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", ["cross_entropy", "cross_entropy_probs", "softmax_focal_loss"])
def test_nan_propagates_to_its_row_only(mod, case, dtype, rng):
    fn, x, t, kw = make_case(case, rng, dtype)
    t = t.copy()
    if t.dtype.kind in "iu":
        t[2] = 1  # row 2 not ignored
    clean_l, clean_g = _call(mod, fn, x, t, kw, reduction="none", return_grad=True)
    x2 = x.copy()
    x2[2, 3] = np.nan
    loss, grad = _call(mod, fn, x2, t, kw, reduction="none", return_grad=True)
    assert np.isnan(loss[2]) and np.all(np.isnan(grad[2]))
    rows = np.arange(x.shape[0]) != 2
    np.testing.assert_array_equal(loss[rows], clean_l[rows])
    np.testing.assert_array_equal(grad[rows], clean_g[rows])
    assert np.isnan(_call(mod, fn, x2, t, kw, reduction="mean"))
    assert np.isnan(_call(mod, fn, x2, t, kw, reduction="sum"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_nan_propagates_dice_to_its_class_only(mod, dtype, rng):
    x = rng.uniform(0.05, 0.95, size=(2, 3, 4, 4)).astype(dtype)
    t = rng.integers(0, 3, size=(2, 4, 4))
    clean = mod.dice_loss(x, t, reduction="none")
    x2 = x.copy()
    x2[1, 2, 0, 3] = np.nan
    loss, grad = mod.dice_loss(x2, t, reduction="none", return_grad=True)
    assert np.isnan(loss[1, 2]) and np.all(np.isnan(grad[1, 2]))
    mask = np.ones((2, 3), bool)
    mask[1, 2] = False
    np.testing.assert_array_equal(loss[mask], clean[mask])
    assert np.all(np.isfinite(grad[0])) and np.all(np.isfinite(grad[1, :2]))
    assert np.isnan(mod.dice_loss(x2, t))


# ------------------------------------------------------------------ threads and the GIL

@pytest.mark.parametrize("case", CASES)
def test_kernel_runs_without_the_gil(case):
    """While a worker thread is inside a call, the main thread keeps running Python.

    The worker timestamps each call (start a, end b); the main thread records ticks in a
    tight Python loop.  If the GIL were held for the kernel, the main thread could not
    tick during it: the largest gap between ticks inside [a, b] would be about b - a.
    With the GIL released (2 cores) the main thread ticks throughout, and the gaps are
    OS time slices (~ms) or the call's short Python prologue.  Comparing with the same
    call's own duration keeps this valid on a loaded machine; the best of 5 calls is
    used, and a GIL-holding kernel cannot pass."""
    rng = np.random.default_rng(seed_of("gil", case))
    # each call must last well beyond OS wake-up latency on a loaded machine (the SIMD
    # Dice kernel does (4, 4, 256, 256) in ~2 ms: too short to observe reliably)
    shape = {"dice_loss": (32, 4, 256, 256), "cross_entropy": (1 << 17, 16),
             "cross_entropy_probs": (1 << 17, 16), "softmax_focal_loss": (1 << 17, 16),
             # the SIMD Huber/smooth L1 kernels do 2M float64 in 1-2 ms
             "huber_loss": (1 << 24,), "smooth_l1_loss": (1 << 24,)}.get(case, (1 << 21,))
    fn, x, t, kw = make_case(case, rng, np.float64, shape=shape)
    if fn == "binary_cross_entropy_with_logits":
        kw["pos_weight"] = kw["pos_weight"][:1]
    calls = []
    done = threading.Event()
    started = threading.Event()

    def worker():
        started.set()
        for _ in range(5):
            a = time.perf_counter()
            _call(fastloss, fn, x, t, kw, reduction="sum", return_grad=True)
            calls.append((a, time.perf_counter()))
        done.set()

    ticks = []
    th = threading.Thread(target=worker)
    th.start()
    started.wait()
    while not done.is_set():
        ticks.append(time.perf_counter())
    th.join()
    ticks = np.array(ticks)
    ratios = []
    for a, b in calls:
        pts = np.concatenate([[a], ticks[(ticks > a) & (ticks < b)], [b]])
        ratios.append(np.max(np.diff(pts)) / (b - a))
    assert min(ratios) < 0.5, (
        f"the main thread was blocked for most of every call (largest gap / call duration: "
        f"{np.round(ratios, 2)}, durations {[round((b - a) * 1e3, 1) for a, b in calls]} ms)")


@pytest.mark.parametrize("case", CASES)
def test_concurrent_calls_give_sequential_results(case):
    rng = np.random.default_rng(seed_of("threads", case))
    jobs = [make_case(case, rng, dt) for dt in (np.float32, np.float64) * 3]
    want = [_call(fastloss, fn, x, t, kw, reduction="none", return_grad=True) for fn, x, t, kw in jobs]
    got = [None] * len(jobs)

    def run(i):
        fn, x, t, kw = jobs[i]
        for _ in range(20):
            got[i] = _call(fastloss, fn, x, t, kw, reduction="none", return_grad=True)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for (wl, wg), (gl, gg) in zip(want, got):
        np.testing.assert_array_equal(gl, wl)
        np.testing.assert_array_equal(gg, wg)


# ------------------------------------------------------------------ batch independence

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES)
def test_each_result_independent_of_its_neighbours(case, dtype):
    """An element's (row's, batch item's) loss and gradient are the same bits whether it is
    computed alone or at any position of a batch of any length (vectorised main loops and
    their tails must agree).  Batches of 1..19 samples cover every tail length of SIMD
    widths up to 16."""
    rng = np.random.default_rng(seed_of("neighbours", case, dtype.__name__))
    shape = {"dice_loss": (19, 3, 5), "cross_entropy": (19, 5), "cross_entropy_probs": (19, 5),
             "softmax_focal_loss": (19, 5)}.get(case, (19,))
    fn, x, t, kw = make_case(case, rng, dtype, shape=shape)
    if fn in ELEMENTWISE:
        kw = {k: v for k, v in kw.items() if not isinstance(v, np.ndarray) or v.ndim == 0}
    if fn == "dice_loss":
        kw = {**kw, "batch": False}
    full_l, full_g = _call(fastloss, fn, x, t, kw, reduction="none", return_grad=True)
    for n in range(1, 20):
        for start in sorted({0, 19 - n}):
            sl = slice(start, start + n)
            l, g = _call(fastloss, fn, x[sl], t[sl], kw, reduction="none", return_grad=True)
            np.testing.assert_array_equal(l, full_l[sl], err_msg=f"samples {start}:{start + n}")
            np.testing.assert_array_equal(g, full_g[sl], err_msg=f"samples {start}:{start + n}")
